//! The daemon's lifecycle with real processes: a real `mco server`, a real
//! broker, a real external agent whose action runs for seconds. SIGTERM
//! lets running requests finish (or stops their programs after
//! `soft_shutdown_timeout`) and exits 0 in every state; SIGHUP reloads
//! server.cfg, or refuses a broken one and keeps running.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use muster_testkit::{stderr, stdout, BrokerKind, Caller, TestBroker, TestPki};

const MCO: &str = env!("CARGO_BIN_EXE_mco");

/// An external agent whose `nap` action sleeps `seconds`; on SIGTERM it
/// writes `stopped` next to itself and answers that it was interrupted.
const SLEEPER: &str = r#"#!/usr/bin/env python3
import json, os, signal, sys, time
here = os.path.dirname(os.path.abspath(sys.argv[0]))
request_file, reply_file, protocol = sys.argv[1:4]
def reply(answer):
    with open(reply_file, "w") as f:
        json.dump(answer, f)
if protocol == "io.choria.mcorpc.external.v1.activation_request":
    reply({"activate": True})
    sys.exit(0)
def stop(_signum, _frame):
    open(os.path.join(here, "stopped"), "w").write("TERM\n")
    reply({"statuscode": 1, "statusmsg": "interrupted by SIGTERM", "data": {}})
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
request = json.load(open(request_file))
seconds = int(request["data"]["seconds"])
open(os.path.join(here, "started"), "w").write(str(os.getpid()))
time.sleep(seconds)
reply({"statuscode": 0, "statusmsg": "OK", "data": {"slept": seconds}})
"#;

const SLEEPER_DDL: &str = r#"{
  "metadata": {"name": "sleeper", "description": "Sleeps", "author": "muster",
    "version": "1.0.0", "license": "Apache-2.0", "url": "https://example.org", "timeout": 120},
  "actions": [{"action": "nap", "description": "Sleep a while", "display": "always",
    "input": {"seconds": {"prompt": "Seconds", "description": "How long", "type": "integer",
      "optional": false}},
    "output": {"slept": {"description": "Seconds slept", "display_as": "Slept", "type": "integer"}}}]
}"#;

/// A broker (or none), a caller, and one `mco server` process we signal.
struct Node {
    broker: Option<TestBroker>,
    dir: tempfile::TempDir,
    client_config: String,
    server_config: PathBuf,
    child: Child,
    _caller: Caller,
}

impl Node {
    /// Starts `mco server` with `extra` config lines, against `broker`
    /// (none: a port nobody listens on). Waits for it to answer when there
    /// is a broker.
    async fn start(broker: Option<TestBroker>, extra: &str) -> Node {
        let caller = Caller::new("tester");
        let pki: &TestPki = caller.pki();
        pki.issue("node1");
        let dir = tempfile::tempdir().unwrap();
        let agents = dir.path().join("agents");
        std::fs::create_dir(&agents).unwrap();
        let program = agents.join("sleeper");
        std::fs::write(&program, SLEEPER).unwrap();
        std::fs::set_permissions(
            &program,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        std::fs::write(agents.join("sleeper.json"), SLEEPER_DDL).unwrap();
        let url = match &broker {
            Some(broker) => broker.url(),
            None => format!("tls://127.0.0.1:{}", muster_testkit::free_port()),
        };
        let server_config = dir.path().join("server.cfg");
        std::fs::write(&server_config, config_text(dir.path(), pki, &url, extra)).unwrap();
        let client_config = caller.client_config(&url);
        let mut text = std::fs::read_to_string(&client_config).unwrap();
        text.push_str(&format!(
            "plugin.external.agents_dir = {}\n",
            agents.display()
        ));
        std::fs::write(&client_config, text).unwrap();
        let child = Command::new(MCO)
            .arg("server")
            .arg("--config")
            .arg(&server_config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start mco server");
        let node = Node {
            broker,
            dir,
            client_config: client_config.display().to_string(),
            server_config,
            child,
            _caller: caller,
        };
        if node.broker.is_some() {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let ping = node.mco(&["ping", "-t", "1"]).await;
                if stdout(&ping).contains("node1 ") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "node1 never answered: {}",
                    node.log()
                );
            }
        }
        node
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path("server.log")).unwrap_or_default()
    }

    fn audit(&self) -> String {
        std::fs::read_to_string(self.path("audit.log")).unwrap_or_default()
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits up to `limit` for the daemon to exit.
    async fn exited(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// `mco` with the caller's config; `-I node1` for rpc calls.
    async fn mco(&self, args: &[&str]) -> Output {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--config", &self.client_config]);
        muster_testkit::run_mco(MCO, &all).await
    }

    /// `mco rpc sleeper nap seconds=N -I node1 --json`, in the background.
    fn nap(&self, seconds: u32) -> tokio::task::JoinHandle<Output> {
        let config = self.client_config.clone();
        tokio::spawn(async move {
            let seconds = format!("seconds={seconds}");
            muster_testkit::run_mco(
                MCO,
                &[
                    "rpc", "sleeper", "nap", &seconds, "-I", "node1", "--json", "--config", &config,
                ],
            )
            .await
        })
    }

    /// Waits up to 20 s for `name` to appear in the test directory.
    async fn appears(&self, name: &str) -> bool {
        wait_for(|| self.path(name).exists()).await
    }

    /// Waits up to 20 s for the daemon's log to contain `text`.
    async fn logged(&self, text: &str) -> bool {
        wait_for(|| self.log().contains(text)).await
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server.cfg in `dir` for node1 at `url`, with its audit log, its log
/// file and the sleeper agent, plus `extra` lines.
fn config_text(dir: &Path, pki: &TestPki, url: &str, extra: &str) -> String {
    format!(
        "identity = node1\ncollectives = mcollective\nmain_collective = mcollective\n\
         plugin.nats.servers = {url}\nplugin.security.ssldir = {}\nlogfile = {}\n\
         loglevel = info\nrpcaudit = 1\nplugin.rpcaudit.logfile = {}\n\
         plugin.external.agents_dir = {}\n{extra}\n",
        pki.ssldir().root().display(),
        dir.join("server.log").display(),
        dir.join("audit.log").display(),
        dir.join("agents").display(),
    )
}

async fn wait_for(mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    check()
}

async fn broker() -> Option<TestBroker> {
    Some(TestBroker::start(BrokerKind::Embedded).await)
}

fn pid_gone(pid: u32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn term_lets_a_running_action_finish_and_its_reply_go_out() {
    let mut node = Node::start(broker().await, "").await;
    let call = node.nap(3);
    assert!(node.appears("agents/started").await, "{}", node.log());
    node.signal("TERM");
    assert!(node.logged("shutting down").await, "{}", node.log());
    // Unsubscribed: a new request is not answered.
    let ping = node.mco(&["ping", "-t", "1"]).await;
    assert!(!stdout(&ping).contains("node1"), "{}", stdout(&ping));
    let reply = call.await.unwrap();
    assert!(
        reply.status.success(),
        "{}\n{}\n{}",
        stdout(&reply),
        stderr(&reply),
        node.log()
    );
    assert!(
        stdout(&reply).contains("\"slept\": 3"),
        "{}",
        stdout(&reply)
    );
    let status = node.exited(Duration::from_secs(30)).await;
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", node.log());
    let audit = node.audit();
    assert!(
        audit.contains("\"event\":\"accepted\"") && audit.contains("\"event\":\"finished\""),
        "{audit}"
    );
    assert!(!node.path("agents/stopped").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn term_stops_an_action_still_running_after_soft_shutdown_timeout() {
    let mut node = Node::start(broker().await, "soft_shutdown_timeout = 1").await;
    let call = node.nap(60);
    assert!(node.appears("agents/started").await, "{}", node.log());
    let program: u32 = std::fs::read_to_string(node.path("agents/started"))
        .unwrap()
        .parse()
        .unwrap();
    node.signal("TERM");
    let reply = call.await.unwrap();
    let text = stdout(&reply);
    assert!(
        text.contains("interrupted by SIGTERM"),
        "{text}\n{}",
        stderr(&reply)
    );
    assert!(text.contains("mco server was shutting down"), "{text}");
    assert_eq!(
        std::fs::read_to_string(node.path("agents/stopped")).unwrap(),
        "TERM\n"
    );
    let status = node.exited(Duration::from_secs(30)).await;
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", node.log());
    assert!(pid_gone(node.child.id()), "the daemon still runs");
    assert!(
        wait_for(|| pid_gone(program)).await,
        "the agent's program {program} still runs"
    );
    let audit = node.audit();
    assert!(
        audit.contains("\"event\":\"accepted\"") && audit.contains("\"event\":\"finished\""),
        "{audit}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn term_ends_a_daemon_whose_broker_never_existed() {
    let mut node = Node::start(None, "").await;
    assert!(
        node.logged("connecting to the broker").await,
        "{}",
        node.log()
    );
    node.signal("TERM");
    let status = node.exited(Duration::from_secs(10)).await;
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", node.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn term_and_int_end_a_daemon_whose_broker_went_away() {
    for signal in ["TERM", "INT"] {
        let mut node = Node::start(broker().await, "").await;
        if let Some(broker) = node.broker.as_mut() {
            broker.stop().await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        node.signal(signal);
        let status = node.exited(Duration::from_secs(10)).await;
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(0),
            "{signal}: {}",
            node.log()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hup_with_a_broken_config_is_refused_and_the_daemon_keeps_answering() {
    let node = Node::start(broker().await, "").await;
    let good = std::fs::read_to_string(&node.server_config).unwrap();
    std::fs::write(&node.server_config, format!("{good}loglevel = loud\n")).unwrap();
    node.signal("HUP");
    assert!(
        node.logged("reload refused, the running settings stay")
            .await,
        "{}",
        node.log()
    );
    assert!(node.log().contains("loglevel"), "{}", node.log());
    let reply = node
        .mco(&[
            "rpc",
            "sleeper",
            "nap",
            "seconds=0",
            "-I",
            "node1",
            "--json",
        ])
        .await;
    assert!(reply.status.success(), "{}\n{}", stdout(&reply), node.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hup_applies_a_new_policy_and_loglevel_without_dropping_a_running_request() {
    let mut node = Node::start(broker().await, "").await;
    let pid = node.child.id();
    let call = node.nap(3);
    assert!(node.appears("agents/started").await, "{}", node.log());
    let good = std::fs::read_to_string(&node.server_config).unwrap();
    std::fs::write(
        &node.server_config,
        good.replace("loglevel = info", "loglevel = debug")
            + "plugin.actionpolicy.allow_unconfigured = 0\n",
    )
    .unwrap();
    node.signal("HUP");
    assert!(node.logged("reloaded").await, "{}", node.log());
    // The request running during the reload is answered by the same daemon.
    let reply = call.await.unwrap();
    assert!(
        stdout(&reply).contains("\"slept\": 3"),
        "{}\n{}",
        stdout(&reply),
        node.log()
    );
    assert_eq!(node.child.id(), pid);
    assert!(
        node.child.try_wait().unwrap().is_none(),
        "the daemon exited: {}",
        node.log()
    );
    // The new policy: no policy file for sleeper, and unconfigured agents are denied.
    let denied = node
        .mco(&[
            "rpc",
            "sleeper",
            "nap",
            "seconds=0",
            "-I",
            "node1",
            "--json",
        ])
        .await;
    assert!(!denied.status.success(), "{}", stdout(&denied));
    assert!(
        stdout(&denied).to_lowercase().contains("not authorized")
            || stdout(&denied).contains("denied"),
        "{}",
        stdout(&denied)
    );
    // The new level: debug lines appear after the reload.
    let log = node.log();
    let after = &log[log.find("reloaded").unwrap()..];
    assert!(after.contains("DEBUG"), "{log}");
    // The counters carry over a reload: back to the first config (rpcutil
    // allowed again), then the nap answered before the first reload, the
    // denied call and this one are all counted.
    std::fs::write(&node.server_config, &good).unwrap();
    node.signal("HUP");
    assert!(
        wait_for(|| node.log().matches("reloaded").count() >= 2).await,
        "{}",
        node.log()
    );
    let stats = node
        .mco(&["rpc", "rpcutil", "daemon_stats", "-I", "node1", "--json"])
        .await;
    let document: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    let total = document["replies"][0]["data"]["total"].as_u64();
    assert!(total >= Some(3), "{}", stdout(&stats));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_survives_hup_and_ends_on_term_and_int() {
    for signal in ["TERM", "INT"] {
        let port = muster_testkit::free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut broker = Command::new(MCO)
            .args(["broker", "--insecure-plaintext", "--listen", &listen])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start mco broker");
        let pid = broker.id().to_string();
        let up = wait_for(|| std::net::TcpStream::connect(&listen).is_ok()).await;
        let kill = |signal: &str| {
            Command::new("kill")
                .args([format!("-{signal}"), pid.clone()])
                .status()
                .unwrap()
        };
        assert!(up, "the broker never listened on {listen}");
        assert!(kill("HUP").success());
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            broker.try_wait().unwrap().is_none(),
            "SIGHUP ended the broker"
        );
        assert!(std::net::TcpStream::connect(&listen).is_ok());
        assert!(kill(signal).success());
        let ended = wait_for(|| matches!(broker.try_wait(), Ok(Some(_)))).await;
        let _ = broker.kill();
        let status = broker.wait().unwrap();
        assert!(ended, "{signal} did not end the broker");
        assert_eq!(status.code(), Some(0), "{signal}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_format_json_writes_one_object_per_line_and_text_has_no_colour() {
    let mut node = Node::start(broker().await, "log_format = json").await;
    node.signal("TERM");
    let status = node.exited(Duration::from_secs(30)).await;
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", node.log());
    let log = node.log();
    assert!(log.lines().count() >= 3, "{log}");
    for line in log.lines() {
        let object: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            object["level"].is_string() && object["fields"].is_object(),
            "{line}"
        );
    }
    assert!(
        log.contains("\"message\":\"serving: identity node1"),
        "{log}"
    );
    let node = Node::start(broker().await, "").await;
    assert!(node.logged("serving").await);
    assert!(!node.log().contains('\u{1b}'), "{}", node.log());
}
