//! Exact discovery from a known fleet, end to end with real `mco server`
//! processes, one of them stopped with SIGSTOP (connected, never answering).
//!
//! The client's quiet window is set to two minutes and `mco` runs under a
//! 30 s bound, so a call can only finish by knowing whom it waits for: at
//! the last expected reply, or at its own `-t` when an expected node is silent.

use crate::common::{json, senders, timed_mco};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use muster_testkit::{stderr, stdout, BrokerKind, Caller, NodeSetup, ServerProcess, TestBroker};

const MCO: &str = env!("CARGO_BIN_EXE_mco");

/// A broker, node1..node3 as `mco server` processes with node3 stopped
/// (SIGCONT on drop), and a client config whose quiet window never ends a call.
struct Fleet {
    _broker: TestBroker,
    _caller: Caller,
    servers: Vec<ServerProcess>,
    dir: tempfile::TempDir,
    /// A client config with a 2 minute quiet window.
    patient: String,
    /// A client config with the test kit's 500 ms window.
    config: String,
}

impl Fleet {
    async fn start() -> Fleet {
        let broker = TestBroker::start(BrokerKind::Embedded).await;
        let caller = Caller::new("tester");
        let config = caller.client_config(&broker.url());
        let servers: Vec<ServerProcess> = ["node1", "node2", "node3"]
            .iter()
            .map(|identity| {
                ServerProcess::start(
                    Path::new(MCO),
                    &broker.url(),
                    caller.pki(),
                    &NodeSetup {
                        identity,
                        facts_yaml: "role: web\n",
                        classes: &[],
                        collectives: &[],
                        settings: "",
                    },
                )
            })
            .collect();
        let config = config.display().to_string();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let output = muster_testkit::run_mco(MCO, &["ping", "--config", &config]).await;
            let seen = stdout(&output).matches(" time=").count();
            if seen == 3 {
                break;
            }
            assert!(Instant::now() < deadline, "only {seen} of 3 nodes answer");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        signal(servers[2].pid(), "STOP");
        let dir = tempfile::tempdir().expect("temp dir");
        let text = std::fs::read_to_string(&config).expect("client config");
        let patient = dir.path().join("patient.cfg");
        std::fs::write(
            &patient,
            text.replace("discovery_window_ms = 500", "discovery_window_ms = 120000"),
        )
        .expect("patient config");
        assert_ne!(std::fs::read_to_string(&patient).unwrap(), text);
        Fleet {
            _broker: broker,
            _caller: caller,
            servers,
            patient: patient.display().to_string(),
            config,
            dir,
        }
    }

    /// A file listing `nodes`, one per line.
    fn list(&self, name: &str, nodes: &[&str]) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, nodes.join("\n") + "\n").expect("node list");
        path.display().to_string()
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        signal(self.servers[2].pid(), "CONT");
    }
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{name} {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_set_ends_at_its_last_reply_and_names_the_stopped_node() {
    let fleet = Fleet::start().await;
    let cfg = fleet.patient.as_str();
    let live = fleet.list("live.txt", &["node1", "node2"]);
    let all = fleet.list("all.txt", &["node1", "node2", "node3"]);

    // The live nodes only, a 60 s timeout and a 2 minute window: finishing
    // at all (within the 30 s bound) means it ended at the last reply.
    for command in [&["ping"][..], &["rpc", "rpcutil", "ping"][..]] {
        let mut args = command.to_vec();
        args.extend(["--config", cfg, "--nodes", &live, "-t", "60", "--json"]);
        let (output, _) = timed_mco(&args).await;
        assert_eq!(
            output.status.code(),
            Some(0),
            "{args:?}: {}",
            stderr(&output)
        );
        let document = json(&output);
        assert_eq!(senders(&document), ["node1", "node2"], "{args:?}");
        let statistics = &document["statistics"];
        assert_eq!(statistics["no_responses"], serde_json::json!([]));
        assert_eq!(statistics["unexpected"], serde_json::json!([]));
        assert_eq!(statistics["discovery_method"], "flatfile", "{args:?}");
        assert!(statistics["discovery_ms"].is_number(), "{statistics}");
    }

    // The whole known fleet: the stopped node is waited for until -t (not
    // the window), then named, for ping as for any RPC.
    for command in [&["ping"][..], &["rpc", "rpcutil", "ping"][..]] {
        let mut args = command.to_vec();
        args.extend(["--config", cfg, "--nodes", &all, "-t", "3", "-v"]);
        let (output, took) = timed_mco(&args).await;
        let text = stdout(&output);
        assert_eq!(
            output.status.code(),
            Some(3),
            "{args:?}: {text}{}",
            stderr(&output)
        );
        assert!(
            took >= Duration::from_secs(3),
            "{args:?} ended before -t: {took:?}"
        );
        assert!(
            text.contains("\nNo response from:\n\n    node3\n"),
            "{args:?}: {text}"
        );
        assert!(!text.contains("Unexpected"), "{args:?}: {text}");
        assert!(
            text.contains("Discovery: flatfile, ") || text.contains(" ms (flatfile)\n"),
            "{args:?}: {text}"
        );
    }
    let (output, _) = timed_mco(&[
        "ping", "--config", cfg, "--nodes", &all, "-t", "3", "--json",
    ])
    .await;
    let statistics = &json(&output)["statistics"];
    assert_eq!(statistics["no_responses"], serde_json::json!(["node3"]));
    assert_eq!(statistics["responded"], 2);
    assert_eq!(statistics["discovered"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_cross_checks_a_broadcast_against_a_known_set() {
    let fleet = Fleet::start().await;
    let cfg = fleet.config.as_str();
    // node2 answers without being expected; ghost and the stopped node3
    // are expected and silent.
    let expected = fleet.list("expected.txt", &["node1", "node3", "ghost"]);

    let (output, took) =
        timed_mco(&["ping", "--config", cfg, "--expect", &expected, "-t", "3"]).await;
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(3), "{text}{}", stderr(&output));
    // The broadcast waited for the expected nodes until -t.
    assert!(took >= Duration::from_secs(3), "{took:?}");
    assert!(text.contains("node1 "), "{text}");
    assert!(text.contains("node2 "), "{text}");
    assert!(
        text.contains("\nNo response from:\n\n    ghost   node3\n"),
        "{text}"
    );
    assert!(
        text.contains("\nUnexpected replies from:\n\n    node2\n"),
        "{text}"
    );

    for command in [&["ping"][..], &["rpc", "rpcutil", "ping"][..]] {
        let mut args = command.to_vec();
        args.extend([
            "--config", cfg, "--expect", &expected, "-t", "3", "--dt", "3", "--json",
        ]);
        let (output, _) = timed_mco(&args).await;
        assert_eq!(
            output.status.code(),
            Some(3),
            "{args:?}: {}",
            stderr(&output)
        );
        let document = json(&output);
        assert_eq!(senders(&document), ["node1", "node2"], "{args:?}");
        let statistics = &document["statistics"];
        assert_eq!(
            statistics["no_responses"],
            serde_json::json!(["ghost", "node3"])
        );
        assert_eq!(statistics["unexpected"], serde_json::json!(["node2"]));
        assert_eq!(statistics["discovered"], 3, "{args:?}");
        assert_eq!(statistics["discovery_method"], "broadcast", "{args:?}");
    }

    // An inventory as the expected set, with the filter applied to it.
    let records = serde_json::json!([
        {"identity": "node1", "facts": {"role": "web"}, "classes": [],
         "collectives": ["mcollective"], "agents": ["rpcutil"]},
        {"identity": "node2", "facts": {"role": "db"}, "classes": [],
         "collectives": ["mcollective"], "agents": ["rpcutil"]},
    ]);
    let inventory = fleet.dir.path().join("inventory.json");
    std::fs::write(&inventory, records.to_string()).expect("inventory");
    let source = format!("inventory:{}", inventory.display());
    let (output, _) = timed_mco(&[
        "ping", "--config", cfg, "--expect", &source, "-F", "role=web", "--json",
    ])
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let statistics = &json(&output)["statistics"];
    assert_eq!(statistics["no_responses"], serde_json::json!([]));
    assert_eq!(statistics["unexpected"], serde_json::json!(["node2"]));

    // Bad sources are clear errors before anything is sent.
    let (output, _) = timed_mco(&["ping", "--config", cfg, "--expect", "broadcast"]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("--expect broadcast"),
        "{}",
        stderr(&output)
    );
    let (output, _) = timed_mco(&["ping", "--config", cfg, "--expect", "/no/such/file"]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("/no/such/file"),
        "{}",
        stderr(&output)
    );
    let (output, _) = timed_mco(&["find", "--config", cfg, "--expect", &expected]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("this command does not take it"),
        "{}",
        stderr(&output)
    );
    let (output, _) = timed_mco(&[
        "ping", "--config", cfg, "--nodes", &expected, "--expect", &expected,
    ])
    .await;
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("--expect cross-checks broadcast discovery"),
        "{}",
        stderr(&output)
    );
}
