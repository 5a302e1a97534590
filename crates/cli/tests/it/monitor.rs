//! Monitoring endpoints of real processes: `mco broker --monitor` serves
//! nats-server's `/varz`, `/connz`, `/subsz` and Prometheus `/metrics`
//! that follow real clients; `mco server` with `plugin.prometheus.listen`
//! serves `/metrics`. Bad HTTP (garbage, a huge header, idle connections)
//! breaks nothing, and a port in use is a clear startup error.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use muster_testkit::free_port;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MCO: &str = env!("CARGO_BIN_EXE_mco");
/// Every wait in these tests is bounded by this.
const LIMIT: Duration = Duration::from_secs(30);

/// A running `mco broker`, killed when dropped.
struct BrokerProcess {
    child: Child,
    nats: String,
    monitor: SocketAddr,
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `mco broker --insecure-plaintext --monitor` on free ports and waits
/// until the monitoring port answers.
async fn start_broker(extra: &[&str]) -> BrokerProcess {
    let port = free_port();
    let monitor: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let listen = format!("127.0.0.1:{port}");
    let monitor_arg = monitor.to_string();
    let mut args = vec!["broker", "--listen", &listen, "--monitor", &monitor_arg];
    args.extend_from_slice(extra);
    if !extra.contains(&"--ssldir") {
        args.push("--insecure-plaintext");
    }
    let child = Command::new(MCO)
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mco broker starts");
    let broker = BrokerProcess {
        child,
        nats: format!("nats://{listen}"),
        monitor,
    };
    let deadline = Instant::now() + LIMIT;
    while TcpStream::connect(monitor).await.is_err() {
        assert!(Instant::now() < deadline, "monitoring port never opened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    broker
}

/// One HTTP/1.1 exchange with `connection: close`: (status, body).
async fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let raw = raw_exchange(
        addr,
        format!("{method} {path} HTTP/1.1\r\nhost: test\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await;
    let status = raw
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {raw:?}"));
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let _ = stream.write_all(request).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(LIMIT, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

async fn json(addr: SocketAddr, path: &str) -> Value {
    let (status, body) = http(addr, "GET", path).await;
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

/// Polls `path` until `ready` holds for its JSON, bounded by LIMIT.
async fn wait_json(addr: SocketAddr, path: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + LIMIT;
    loop {
        let doc = json(addr, path).await;
        if ready(&doc) {
            return doc;
        }
        assert!(Instant::now() < deadline, "{path} never got there: {doc:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn client(url: &str, name: &str) -> async_nats::Client {
    async_nats::ConnectOptions::new()
        .name(name)
        .connect(url)
        .await
        .expect("client connects")
}

#[tokio::test]
async fn broker_pages_follow_real_clients() {
    let broker = start_broker(&[]).await;
    let m = broker.monitor;

    let varz = json(m, "/varz").await;
    assert_eq!(varz["connections"], 0, "{varz:#}");
    assert!(varz["server_id"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(varz["max_payload"].as_u64() > Some(0));
    let nats_port = broker.nats.rsplit(':').next().unwrap();
    assert_eq!(varz["port"].to_string(), nats_port);
    for field in [
        "version",
        "start",
        "now",
        "uptime",
        "total_connections",
        "subscriptions",
    ] {
        assert!(varz.get(field).is_some(), "varz has {field}: {varz:#}");
    }

    let alice = client(&broker.nats, "alice").await;
    let bob = client(&broker.nats, "bob").await;
    let mut a1 = alice.subscribe("orders.new").await.unwrap();
    let _a2 = alice.subscribe("orders.*").await.unwrap();
    let _b1 = bob.queue_subscribe("jobs", "workers".into()).await.unwrap();
    alice.flush().await.unwrap();
    bob.flush().await.unwrap();
    // flush() writes, it does not wait for the broker: /varz says when the
    // subscriptions are in.
    wait_json(m, "/varz", |v| v["subscriptions"] == 3).await;
    for i in 0..3 {
        bob.publish("orders.new", format!("order {i}").into())
            .await
            .unwrap();
    }
    bob.flush().await.unwrap();
    for _ in 0..3 {
        tokio::time::timeout(LIMIT, a1.next())
            .await
            .expect("alice gets bob's messages")
            .expect("alice's subscription is open");
    }

    let varz = wait_json(m, "/varz", |v| v["out_msgs"] == 6).await;
    assert_eq!(varz["connections"], 2, "{varz:#}");
    assert_eq!(varz["total_connections"], 2, "{varz:#}");
    assert_eq!(varz["in_msgs"], 3, "{varz:#}");
    assert_eq!(varz["in_bytes"], 21, "{varz:#}");
    assert_eq!(varz["out_bytes"], 42, "{varz:#}");
    assert_eq!(varz["subscriptions"], 3, "{varz:#}");

    let connz = json(m, "/connz?subs=1").await;
    assert_eq!(connz["num_connections"], 2, "{connz:#}");
    assert_eq!(connz["total"], 2, "{connz:#}");
    let conns = connz["connections"].as_array().unwrap();
    let by_name = |name: &str| {
        conns
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {connz:#}"))
            .clone()
    };
    let a = by_name("alice");
    assert_eq!(a["lang"], "rust", "{a:#}");
    assert!(
        a["version"].as_str().is_some_and(|v| !v.is_empty()),
        "{a:#}"
    );
    assert_eq!(a["ip"], "127.0.0.1", "{a:#}");
    assert!(a["port"].as_u64() > Some(0), "{a:#}");
    assert_eq!(a["subscriptions"], 2, "{a:#}");
    assert_eq!(a["out_msgs"], 6, "{a:#}");
    assert_eq!(a["in_msgs"], 0, "{a:#}");
    let mut subjects: Vec<&str> = a["subscriptions_list"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    subjects.sort();
    assert_eq!(subjects, ["orders.*", "orders.new"], "{a:#}");
    for field in [
        "cid",
        "start",
        "last_activity",
        "uptime",
        "idle",
        "pending_bytes",
    ] {
        assert!(a.get(field).is_some(), "connz has {field}: {a:#}");
    }
    let b = by_name("bob");
    assert_eq!(b["in_msgs"], 3, "{b:#}");
    assert_eq!(b["in_bytes"], 21, "{b:#}");
    assert_eq!(b["subscriptions"], 1, "{b:#}");
    // Without subs=1 the list is not there, as in nats-server.
    let plain = json(m, "/connz").await;
    assert!(plain["connections"][0].get("subscriptions_list").is_none());

    // Paging: in client id order, offset and limit.
    let page = json(m, "/connz?offset=1&limit=1").await;
    assert_eq!(page["offset"], 1);
    assert_eq!(page["limit"], 1);
    assert_eq!(page["total"], 2);
    assert_eq!(page["num_connections"], 1);
    assert_eq!(page["connections"][0]["cid"], b["cid"], "{page:#}");
    let (status, body) = http(m, "GET", "/connz?limit=lots").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("limit"), "{body}");

    let subsz = json(m, "/subsz").await;
    assert_eq!(subsz["num_subscriptions"], 3, "{subsz:#}");
    assert_eq!(subsz["num_inserts"], 3, "{subsz:#}");
    assert_eq!(subsz["num_removes"], 0, "{subsz:#}");
    assert!(subsz["num_matches"].as_u64() >= Some(3), "{subsz:#}");
    assert_eq!(subsz["max_fanout"], 2, "{subsz:#}");
    let listed = json(m, "/subsz?subs=1").await;
    let list = listed["subscriptions_list"].as_array().unwrap();
    assert_eq!(list.len(), 3, "{listed:#}");
    assert!(
        list.iter()
            .any(|s| s["subject"] == "jobs" && s["qgroup"] == "workers"),
        "{listed:#}"
    );

    // A client that leaves disappears from /connz, and its subscriptions go.
    drop(a1);
    drop(_a2);
    drop(alice);
    let connz = wait_json(m, "/connz", |c| c["num_connections"] == 1).await;
    assert_eq!(connz["connections"][0]["name"], "bob", "{connz:#}");
    let varz = json(m, "/varz").await;
    assert_eq!(varz["connections"], 1, "{varz:#}");
    assert_eq!(varz["total_connections"], 2, "{varz:#}");
    let subsz = wait_json(m, "/subsz", |s| s["num_subscriptions"] == 1).await;
    assert_eq!(subsz["num_removes"], 2, "{subsz:#}");

    // Prometheus text from the same counters.
    let (status, metrics) = http(m, "GET", "/metrics").await;
    assert_eq!(status, 200, "{metrics}");
    for line in [
        "muster_broker_connections 1",
        "muster_broker_connections_accepted_total 2",
        "muster_broker_messages_in_total 3",
        "muster_broker_messages_out_total 6",
        "muster_broker_bytes_in_total 21",
        "muster_broker_subscriptions 1",
        "muster_broker_refusals_total{reason=\"permission_violation\"} 0",
        "# EOF",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
    drop(bob);
}

#[tokio::test]
async fn broker_monitoring_answers_404_405_and_head() {
    let broker = start_broker(&[]).await;
    let m = broker.monitor;
    assert_eq!(http(m, "GET", "/nope").await.0, 404);
    assert_eq!(http(m, "POST", "/varz").await.0, 405);
    assert_eq!(http(m, "DELETE", "/connz").await.0, 405);
    let (status, body) = http(m, "HEAD", "/varz").await;
    assert_eq!((status, body.as_str()), (200, ""));
}

#[tokio::test]
async fn a_monitoring_port_in_use_is_a_clear_startup_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut child = Command::new(MCO)
        .args([
            "broker",
            "--insecure-plaintext",
            "--listen",
            &listen,
            "--monitor",
            &addr,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("mco broker kept running with its monitoring port taken");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--monitor"), "{stderr}");
    assert!(stderr.contains(&addr), "{stderr}");
    assert!(stderr.contains("in use"), "{stderr}");
}

#[tokio::test]
async fn bad_http_breaks_nothing() {
    let broker = start_broker(&[]).await;
    let m = broker.monitor;
    let garbage = raw_exchange(m, b"\x16\x03\x01\x00\xff garbage \x00\r\n\r\n").await;
    assert!(
        garbage.is_empty() || garbage.starts_with("HTTP/1.1 400"),
        "{garbage:?}"
    );
    let mut huge = b"GET /varz HTTP/1.1\r\nhost: x\r\nx-huge: ".to_vec();
    huge.extend(std::iter::repeat_n(b'h', 1 << 20));
    huge.extend_from_slice(b"\r\n\r\n");
    let answer = raw_exchange(m, &huge).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{:?}",
        &answer[..answer.len().min(200)]
    );

    // More idle connections than the monitoring port serves at once: they
    // are refused or timed out, and the page comes back (bounded wait).
    let mut idle = Vec::new();
    for _ in 0..100 {
        if let Ok(s) = TcpStream::connect(m).await {
            idle.push(s);
        }
    }
    let deadline = Instant::now() + LIMIT;
    loop {
        let raw = raw_exchange(
            m,
            b"GET /varz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        )
        .await;
        if raw.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "never served again: {raw:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    drop(idle);

    // The broker itself never noticed.
    let c = client(&broker.nats, "after").await;
    let mut sub = c.subscribe("still.here").await.unwrap();
    c.publish("still.here", "yes".into()).await.unwrap();
    let msg = tokio::time::timeout(LIMIT, sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&msg.payload[..], b"yes");
}

/// The value of the sample `name` (with its labels, as written) in Prometheus text.
fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn server_metrics_count_real_requests() {
    let pki = muster_testkit::TestPki::shared().clone();
    let caller = muster_testkit::Caller::with_pki("tester", pki.clone());
    let broker =
        muster_testkit::TestBroker::start_with(muster_testkit::BrokerKind::Embedded, pki).await;
    let config = caller.client_config(&broker.url()).display().to_string();
    let metrics_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let settings = format!("plugin.prometheus.listen = {metrics_addr}\n");
    let server = muster_testkit::ServerProcess::start(
        std::path::Path::new(MCO),
        &broker.url(),
        caller.pki(),
        &muster_testkit::NodeSetup {
            identity: "metrics1.test",
            facts_yaml: "role: web\n",
            classes: &[],
            collectives: &[],
            settings: &settings,
        },
    );

    // The node answers pings; count the ones it answered.
    let mut answered = 0;
    let deadline = Instant::now() + LIMIT;
    while answered < 3 {
        let out = muster_testkit::run_mco(MCO, &["ping", "--config", &config, "-t", "2"]).await;
        if muster_testkit::stdout(&out).contains("metrics1.test") {
            answered += 1;
        }
        assert!(
            Instant::now() < deadline,
            "the node never answered; log:\n{}",
            server.log()
        );
    }
    let out = muster_testkit::run_mco(
        MCO,
        &[
            "rpc",
            "--config",
            &config,
            "rpcutil",
            "agent_inventory",
            "-t",
            "2",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", muster_testkit::stderr(&out));

    let (status, metrics) = http(metrics_addr, "GET", "/metrics").await;
    assert_eq!(status, 200, "{metrics}");
    let pings = sample(
        &metrics,
        "muster_server_action_calls_total{agent=\"rpcutil\",action=\"ping\",status=\"ok\"}",
    )
    .unwrap_or_else(|| panic!("ping calls in\n{metrics}"));
    assert!(pings >= 3.0, "{metrics}");
    let inventories = sample(
        &metrics,
        "muster_server_action_calls_total{agent=\"rpcutil\",action=\"agent_inventory\",status=\"ok\"}",
    );
    assert_eq!(inventories, Some(1.0), "{metrics}");
    let requests = sample(&metrics, "muster_server_requests_total").expect("requests");
    let replies = sample(&metrics, "muster_server_replies_total").expect("replies");
    assert!(requests >= 4.0 && replies >= 4.0, "{metrics}");
    let timed = sample(
        &metrics,
        "muster_server_action_duration_seconds_count{agent=\"rpcutil\",action=\"ping\"}",
    );
    assert_eq!(timed, Some(pings), "{metrics}");
    assert!(
        metrics.contains("muster_server_action_duration_seconds_bucket{le=\"+Inf\",agent=\"rpcutil\",action=\"ping\"}")
            || metrics.contains("muster_server_action_duration_seconds_bucket{agent=\"rpcutil\",action=\"ping\",le=\"+Inf\"}"),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "muster_server_broker_connected"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "muster_server_broker_reconnects_total"),
        Some(0.0),
        "{metrics}"
    );
    assert!(metrics.trim_end().ends_with("# EOF"), "{metrics}");

    // Only /metrics, only GET and HEAD.
    assert_eq!(http(metrics_addr, "GET", "/varz").await.0, 404);
    assert_eq!(http(metrics_addr, "POST", "/metrics").await.0, 405);
    drop(server);
}

#[tokio::test]
async fn server_with_its_metrics_port_taken_says_so() {
    let pki = muster_testkit::TestPki::shared().clone();
    let broker =
        muster_testkit::TestBroker::start_with(muster_testkit::BrokerKind::Embedded, pki.clone())
            .await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let settings = format!("plugin.prometheus.listen = {addr}\n");
    let server = muster_testkit::ServerProcess::start(
        std::path::Path::new(MCO),
        &broker.url(),
        &pki,
        &muster_testkit::NodeSetup {
            identity: "metrics2.test",
            facts_yaml: "role: web\n",
            classes: &[],
            collectives: &[],
            settings: &settings,
        },
    );
    // Run it again in the foreground to read what it says.
    let config = server.dir.path().join("server.cfg");
    let out = tokio::time::timeout(
        LIMIT,
        muster_testkit::run_mco(MCO, &["server", "--config", config.to_str().unwrap()]),
    )
    .await
    .expect("mco server exits when its metrics port is taken");
    assert!(!out.status.success());
    let stderr = muster_testkit::stderr(&out);
    assert!(stderr.contains("plugin.prometheus.listen"), "{stderr}");
    assert!(stderr.contains(&addr.to_string()), "{stderr}");
    assert!(stderr.contains("in use"), "{stderr}");
}

#[tokio::test]
async fn tls_connections_show_their_certificate_name() {
    let pki = muster_testkit::TestPki::shared().clone();
    let broker_name = pki.broker_name();
    pki.issue("watcher.mcollective");
    let ssldir = pki.ssldir().root().display().to_string();
    let broker = start_broker(&["--ssldir", &ssldir, "--certname", broker_name]).await;
    let url = broker.nats.replace("nats://", "tls://");
    let client = muster_connector::connect_client(
        &[url],
        "watcher",
        LIMIT,
        &pki.transport("watcher.mcollective"),
    )
    .await
    .expect("a client with a fleet certificate connects");
    let connz = wait_json(broker.monitor, "/connz", |c| c["num_connections"] == 1).await;
    let conn = &connz["connections"][0];
    assert_eq!(conn["authorized_user"], "watcher.mcollective", "{connz:#}");
    assert_eq!(conn["name"], "watcher", "{connz:#}");
    assert!(
        matches!(conn["tls_version"].as_str(), Some("1.2" | "1.3")),
        "{connz:#}"
    );
    assert!(
        conn["tls_cipher_suite"]
            .as_str()
            .is_some_and(|s| s.starts_with("TLS")),
        "{connz:#}"
    );
    let varz = json(broker.monitor, "/varz").await;
    assert_eq!(varz["tls_required"], true, "{varz:#}");
    drop(client);
}

#[tokio::test]
async fn server_metrics_follow_the_broker_connection() {
    let pki = muster_testkit::TestPki::shared().clone();
    let mut broker =
        muster_testkit::TestBroker::start_with(muster_testkit::BrokerKind::Embedded, pki.clone())
            .await;
    let metrics_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let settings = format!("plugin.prometheus.listen = {metrics_addr}\n");
    let server = muster_testkit::ServerProcess::start(
        std::path::Path::new(MCO),
        &broker.url(),
        &pki,
        &muster_testkit::NodeSetup {
            identity: "metrics3.test",
            facts_yaml: "role: web\n",
            classes: &[],
            collectives: &[],
            settings: &settings,
        },
    );
    let scrape = || async {
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Ok(Ok(_)) =
                tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(metrics_addr)).await
            {
                let (status, body) = http(metrics_addr, "GET", "/metrics").await;
                assert_eq!(status, 200, "{body}");
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "no metrics port; log:\n{}",
                server.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let until = |want: f64, name: &'static str| {
        let scrape = &scrape;
        async move {
            let deadline = Instant::now() + LIMIT;
            loop {
                let metrics = scrape().await;
                if sample(&metrics, name) == Some(want) {
                    return metrics;
                }
                assert!(Instant::now() < deadline, "{name} never {want}:\n{metrics}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    until(1.0, "muster_server_broker_connected").await;
    broker.stop().await;
    until(0.0, "muster_server_broker_connected").await;
    broker.resume().await;
    until(1.0, "muster_server_broker_connected").await;
    let metrics = until(1.0, "muster_server_broker_reconnects_total").await;
    assert!(
        metrics.contains("muster_server_requests_total"),
        "{metrics}"
    );
}

/// nats.py: connect with a name, subscribe, say READY, stay until killed (at most 30 s).
const NATS_PY_SCRIPT: &str = r#"
import asyncio, sys
import nats

async def main():
    nc = await nats.connect(sys.argv[1], name="py-watcher")
    await nc.subscribe("py.events")
    await nc.flush()
    print("READY", flush=True)
    await asyncio.sleep(30)

asyncio.run(main())
"#;

/// `$MUSTER_NATS_PY`, or `python3` if it has nats-py; `None` skips (but CI has it).
fn nats_py() -> Option<String> {
    let imports = |python: &str| {
        Command::new(python)
            .args(["-c", "import nats"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if let Ok(python) = std::env::var("MUSTER_NATS_PY") {
        assert!(
            imports(&python),
            "MUSTER_NATS_PY={python} cannot `import nats`"
        );
        return Some(python);
    }
    if imports("python3") {
        return Some("python3".to_string());
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "nats-py is not installed: set MUSTER_NATS_PY (.ci/run does)"
    );
    None
}

#[tokio::test]
async fn a_nats_py_client_shows_in_connz_with_its_name_and_lang() {
    let Some(python) = nats_py() else {
        eprintln!("skipped: nats-py is not installed (set MUSTER_NATS_PY)");
        return;
    };
    let broker = start_broker(&[]).await;
    let mut script = tokio::process::Command::new(python)
        .args(["-c", NATS_PY_SCRIPT, &broker.nats])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("python starts");
    let stdout = script.stdout.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let ready = tokio::time::timeout(LIMIT, lines.next_line()).await;
    assert!(
        matches!(&ready, Ok(Ok(Some(line))) if line == "READY"),
        "{ready:?}"
    );
    let connz = json(broker.monitor, "/connz?subs=1").await;
    let conn = &connz["connections"][0];
    assert_eq!(conn["name"], "py-watcher", "{connz:#}");
    assert!(
        conn["lang"]
            .as_str()
            .is_some_and(|l| l.starts_with("python")),
        "{connz:#}"
    );
    assert!(
        conn["version"].as_str().is_some_and(|v| !v.is_empty()),
        "{connz:#}"
    );
    assert_eq!(conn["subscriptions_list"][0], "py.events", "{connz:#}");

    let _ = script.kill().await;
    wait_json(broker.monitor, "/connz", |c| c["num_connections"] == 0).await;
}
