//! Discovery over a wide-area network, on loopback: real `mco server`
//! processes reach the broker through [`LatencyProxy`]s — one site at
//! 50 ms round trip, one at 200 ms with ±20 ms of jitter each way — and
//! a few connect directly. The client connects directly, with the default
//! quiet window (no `discovery_window_ms`).
//!
//! Assertions are about who answered and what the statistics say, not
//! about wall-clock time, which a loaded machine stretches.

use crate::common::{json, senders};
use std::path::Path;
use std::time::{Duration, Instant};

use muster_testkit::{
    stderr, stdout, BrokerKind, Caller, LatencyProxy, NodeSetup, ServerProcess, TestBroker,
};
use serde_json::Value;

const MCO: &str = env!("CARGO_BIN_EXE_mco");
const MS: Duration = Duration::from_millis(1);

const DIRECT: [&str; 2] = ["local1", "local2"];
/// 25 ms each way: a 50 ms round trip.
const NEAR: [&str; 3] = ["near1", "near2", "near3"];
/// 100 ms ± 20 ms each way: a 200 ms round trip, give or take 40.
const FAR: [&str; 3] = ["far1", "far2", "far3"];

/// A broker, its two proxies, the nodes behind them, and client configs.
struct Wan {
    _broker: TestBroker,
    _caller: Caller,
    _proxies: [LatencyProxy; 2],
    _servers: Vec<ServerProcess>,
    dir: tempfile::TempDir,
    /// The default client settings (the test kit's widened window removed).
    default: String,
    /// A quiet window of two minutes: a call that finishes did not wait for it.
    patient: String,
    /// A quiet window of one second, as docs/discovery.md advises for a WAN.
    wide: String,
}

impl Wan {
    async fn start(kind: BrokerKind) -> Wan {
        // nats-server knows the certificates issued before it starts.
        let caller = Caller::new("tester");
        for identity in all() {
            caller.pki().issue(identity);
        }
        let broker = TestBroker::start(kind).await;
        let near = LatencyProxy::start(broker.addr(), 25 * MS, Duration::ZERO);
        let far = LatencyProxy::start(broker.addr(), 100 * MS, 20 * MS);
        let sites = [
            (&DIRECT[..], broker.url(), "site: lan\n"),
            (&NEAR[..], near.url(), "site: near\n"),
            (&FAR[..], far.url(), "site: far\n"),
        ];
        let mut servers = Vec::new();
        for (identities, url, facts_yaml) in &sites {
            for identity in identities.iter() {
                servers.push(ServerProcess::start(
                    Path::new(MCO),
                    url,
                    caller.pki(),
                    &NodeSetup {
                        identity,
                        facts_yaml,
                        classes: &[],
                        collectives: &[],
                        settings: "",
                    },
                ));
            }
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let text =
            std::fs::read_to_string(caller.client_config(&broker.url())).expect("client config");
        let default = dir.path().join("default.cfg");
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| !l.contains("discovery_window_ms") && !l.starts_with('#'))
            .collect();
        std::fs::write(&default, lines.join("\n") + "\n").expect("default config");
        let patient = dir.path().join("patient.cfg");
        std::fs::write(
            &patient,
            lines.join("\n") + "\ndiscovery_window_ms = 120000\n",
        )
        .expect("patient config");
        let wide = dir.path().join("wide.cfg");
        std::fs::write(&wide, lines.join("\n") + "\ndiscovery_window_ms = 1000\n")
            .expect("wide config");
        let wan = Wan {
            _broker: broker,
            _caller: caller,
            _proxies: [near, far],
            _servers: servers,
            default: default.display().to_string(),
            patient: patient.display().to_string(),
            wide: wide.display().to_string(),
            dir,
        };
        wan.wait_until_connected().await;
        wan
    }

    /// Pings the known set until every node answers (at most 60 s): the
    /// daemons connect in their own time, the far ones slowest.
    async fn wait_until_connected(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut args = vec!["ping", "--config", &self.default, "-t", "5", "--json"];
            args.extend(all().iter().flat_map(|n| ["-I", n]));
            let output = muster_testkit::run_mco(MCO, &args).await;
            let answered = serde_json::from_slice::<Value>(&output.stdout)
                .map(|d| senders(&d).len())
                .unwrap_or(0);
            if answered == all().len() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "only {answered} of {} nodes answer after 60 s: {}",
                all().len(),
                stderr(&output)
            );
            tokio::time::sleep(200 * MS).await;
        }
    }
}

fn all() -> Vec<&'static str> {
    let mut all: Vec<&str> = DIRECT.iter().chain(&NEAR).chain(&FAR).copied().collect();
    all.sort();
    all
}

fn ms(statistics: &Value, key: &str) -> f64 {
    statistics[key]
        .as_f64()
        .unwrap_or_else(|| panic!("no {key} in {statistics}"))
}

/// The scenario, against one kind of broker.
async fn discovery_over_a_wan(kind: BrokerKind) {
    let wan = Wan::start(kind).await;

    // (a) Broadcast discovery with the default settings finds every node,
    // near and far, every time; (b) it does so by widening the quiet window
    // past its 100 ms floor.
    for round in 0..3 {
        let output =
            muster_testkit::run_mco(MCO, &["ping", "--config", &wan.default, "--json"]).await;
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        let document = json(&output);
        let statistics = &document["statistics"];
        assert_eq!(
            senders(&document),
            all(),
            "{kind:?} round {round}: {statistics}"
        );
        let quiet = ms(statistics, "quiet_window_ms");
        let rtt = &statistics["rtt_ms"];
        eprintln!(
            "{kind:?} ping: {} nodes, rtt min {} max {} ms, quiet window {quiet} ms, total {} ms",
            statistics["responded"], rtt["min"], rtt["max"], statistics["total_ms"],
        );
        assert!(
            quiet > 100.0,
            "the window stayed at its floor: {statistics}"
        );
    }
    for command in [&["find"][..], &["rpc", "rpcutil", "ping"][..]] {
        let mut args = command.to_vec();
        args.extend(["--config", &wan.default]);
        if command[0] == "rpc" {
            args.push("--json");
        }
        let started = Instant::now();
        let output = muster_testkit::run_mco(MCO, &args).await;
        assert_eq!(
            output.status.code(),
            Some(0),
            "{args:?}: {}",
            stderr(&output)
        );
        let found = if command[0] == "find" {
            stdout(&output).lines().map(str::to_string).collect()
        } else {
            let document = json(&output);
            assert_eq!(
                document["statistics"]["discovered"],
                all().len(),
                "{args:?}"
            );
            senders(&document)
        };
        assert_eq!(found, all(), "{kind:?} {args:?}");
        eprintln!("{kind:?} {command:?}: {:?} wall clock", started.elapsed());
    }

    // (c) A known set ends at its last expected reply: with a two minute
    // quiet window, finishing at all (mco runs under a 30 s bound) shows
    // it did not wait for silence, and the statistics agree.
    let list = wan.dir.path().join("nodes.txt");
    std::fs::write(&list, all().join("\n") + "\n").expect("node list");
    let list = list.display().to_string();
    let mut exact = vec!["ping", "--config", &wan.patient, "--json"];
    exact.extend(all().iter().flat_map(|n| ["-I", n]));
    let flatfile = ["ping", "--config", &wan.patient, "--nodes", &list, "--json"];
    let rpc = [
        "rpc",
        "rpcutil",
        "ping",
        "--config",
        &wan.patient,
        "--nodes",
        &list,
        "--json",
    ];
    for (name, args) in [
        ("ping -I", &exact[..]),
        ("ping --nodes", &flatfile[..]),
        ("rpc --nodes", &rpc[..]),
    ] {
        let output = muster_testkit::run_mco(MCO, args).await;
        assert_eq!(
            output.status.code(),
            Some(0),
            "{args:?}: {}",
            stderr(&output)
        );
        let document = json(&output);
        let statistics = &document["statistics"];
        assert_eq!(senders(&document), all(), "{args:?}");
        assert_eq!(
            statistics["no_responses"],
            serde_json::json!([]),
            "{args:?}"
        );
        assert!(
            statistics["quiet_window_ms"].is_null(),
            "{args:?}: {statistics}"
        );
        // The call ended with its last reply, not a window after it: the
        // bound is generous (the window would be 120 s).
        let after_last = ms(statistics, "agent_ms") - ms(&statistics["rtt_ms"], "max");
        eprintln!(
            "{kind:?} known set, {name}: last reply at {} ms, ended {after_last:.1} ms later",
            statistics["rtt_ms"]["max"]
        );
        assert!(after_last < 1000.0, "{args:?}: {statistics}");
    }

    // (d) Without the near site between them, the LAN's replies say
    // nothing about a far site: the window may close before it answers.
    // The LAN is always found; a known set (--expect) or a window sized
    // for the WAN finds the far site too.
    let lan_and_far = "site=/^(lan|far)$/";
    let mut wanted: Vec<&str> = DIRECT.iter().chain(&FAR).copied().collect();
    wanted.sort();
    let output = muster_testkit::run_mco(
        MCO,
        &[
            "ping",
            "--config",
            &wan.default,
            "-F",
            lan_and_far,
            "--json",
        ],
    )
    .await;
    let document = json(&output);
    let found = senders(&document);
    assert!(
        DIRECT.iter().all(|n| found.iter().any(|f| f == n)),
        "{found:?}"
    );
    assert!(
        found.iter().all(|f| wanted.contains(&f.as_str())),
        "{found:?}"
    );
    eprintln!(
        "{kind:?} LAN and far site, default window: {} of {} found, quiet window {} ms",
        found.len(),
        wanted.len(),
        document["statistics"]["quiet_window_ms"]
    );
    let expected = wan.dir.path().join("lan-and-far.txt");
    std::fs::write(&expected, wanted.join("\n") + "\n").expect("expected list");
    let expected = expected.display().to_string();
    let with_expect = [
        "ping",
        "--config",
        &wan.default,
        "-F",
        lan_and_far,
        "--expect",
        &expected,
        "--json",
    ];
    let rpc_expect = [
        "rpc",
        "rpcutil",
        "ping",
        "--config",
        &wan.default,
        "-F",
        lan_and_far,
        "--expect",
        &expected,
        "--json",
    ];
    let wide = ["ping", "--config", &wan.wide, "-F", lan_and_far, "--json"];
    for args in [&with_expect[..], &rpc_expect[..], &wide[..]] {
        let output = muster_testkit::run_mco(MCO, args).await;
        assert_eq!(
            output.status.code(),
            Some(0),
            "{args:?}: {}",
            stderr(&output)
        );
        let document = json(&output);
        assert_eq!(senders(&document), wanted, "{args:?}");
        assert_eq!(
            document["statistics"]["no_responses"],
            serde_json::json!([]),
            "{args:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wan_discovery_finds_far_nodes_with_the_embedded_broker() {
    discovery_over_a_wan(BrokerKind::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wan_discovery_finds_far_nodes_with_nats_server() {
    if !muster_testkit::nats_server_available() {
        eprintln!("nats-server is not installed: skipped");
        return;
    }
    discovery_over_a_wan(BrokerKind::NatsServer).await;
}
