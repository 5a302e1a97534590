//! Ctrl-C while `mco rpc` waits: what arrived is printed (or is the
//! `--json` document, marked interrupted), with the nodes that had not
//! answered and the request id, and the exit status is 130. One real
//! `mco server` is stopped with SIGSTOP: connected, but never answering.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use muster_testkit::{stdout, BrokerKind, Caller, NodeSetup, ServerProcess, TestBroker};
use serde_json::Value;

use crate::terminal::Session;

const MCO: &str = env!("CARGO_BIN_EXE_mco");

/// Long enough that only Ctrl-C ends the call.
const PATIENT: &str = "120";

/// A broker, three `mco server` processes, node3 stopped (SIGCONT on drop).
struct Stalled {
    _broker: TestBroker,
    _caller: Caller,
    config: String,
    servers: Vec<ServerProcess>,
}

impl Stalled {
    async fn start() -> Stalled {
        let broker = TestBroker::start(BrokerKind::Embedded).await;
        let caller = Caller::new("tester");
        let config = caller.client_config(&broker.url()).display().to_string();
        // `big`: a reply larger than a pipe holds, for a reader that stalls.
        let facts = format!("role: web\nbig: {}\n", "x".repeat(BIG_FACT));
        let servers: Vec<ServerProcess> = ["node1", "node2", "node3"]
            .iter()
            .map(|identity| {
                ServerProcess::start(
                    Path::new(MCO),
                    &broker.url(),
                    caller.pki(),
                    &NodeSetup {
                        identity,
                        facts_yaml: &facts,
                        classes: &[],
                        collectives: &[],
                        settings: "",
                    },
                )
            })
            .collect();
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
        Stalled {
            _broker: broker,
            _caller: caller,
            config,
            servers,
        }
    }

    /// `mco rpc rpcutil ping` addressed to all three by name.
    fn rpc_args(&self) -> Vec<String> {
        [
            "rpc",
            "rpcutil",
            "ping",
            "--config",
            &self.config,
            "-I",
            "node1",
            "-I",
            "node2",
            "-I",
            "node3",
            "-t",
            PATIENT,
        ]
        .map(String::from)
        .to_vec()
    }
}

impl Drop for Stalled {
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

/// Bytes of the `big` fact: two replies overfill a 64 KiB pipe.
const BIG_FACT: usize = 100_000;

/// The two live nodes answer a ping at once; this is only generous.
const REPLIES_ARRIVE: Duration = Duration::from_secs(5);

/// Runs `mco ARGS`, sends SIGINT once the live nodes have had time to
/// answer, and returns the output and its `--json` document.
async fn interrupted(args: &[String]) -> (std::process::Output, Value) {
    let child = Command::new(MCO)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mco");
    tokio::time::sleep(REPLIES_ARRIVE).await;
    signal(child.id(), "INT");
    let output = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::task::spawn_blocking(move || child.wait_with_output()),
    )
    .await
    .expect("mco ends after SIGINT")
    .expect("join")
    .expect("wait");
    let text = stdout(&output);
    let document: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {text}\n{}",
            muster_testkit::stderr(&output)
        )
    });
    (output, document)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_keeps_the_json_document_complete() {
    let fleet = Stalled::start().await;
    let mut rpc = fleet.rpc_args();
    rpc.push("--json".into());
    // rpc, and ping (which waits its own way) addressed to the same names.
    let mut ping = rpc.clone();
    ping.drain(..3);
    ping.insert(0, "ping".into());
    for args in [rpc, ping] {
        let (output, document) = interrupted(&args).await;
        let text = document.to_string();
        let mut senders: Vec<&str> = document["replies"]
            .as_array()
            .expect("replies")
            .iter()
            .filter_map(|r| r["sender"].as_str())
            .collect();
        senders.sort();
        assert_eq!(senders, ["node1", "node2"], "{args:?}: {text}");
        let statistics = &document["statistics"];
        assert_eq!(statistics["interrupted"], true, "{args:?}: {text}");
        assert_eq!(
            statistics["no_responses"],
            serde_json::json!(["node3"]),
            "{args:?}: {text}"
        );
        assert!(statistics["request_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty()));
        assert_eq!(output.status.code(), Some(130), "{args:?}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_on_a_terminal_shows_what_arrived_and_who_did_not_answer() {
    if Command::new("tmux").arg("-V").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install tmux (.ci/run does)"
        );
        eprintln!("skipped: tmux is not installed");
        return;
    }
    let fleet = Stalled::start().await;
    // bash continues after a child that handled SIGINT and exited.
    let command = format!(
        "bash -c '{MCO} {}; echo MUSTER-EXIT=$?; sleep 60'",
        fleet.rpc_args().join(" ")
    );
    let session = Session(format!("muster-ctrlc-{}", std::process::id()));
    let started = Command::new("tmux")
        .args([
            "new-session",
            "-d",
            "-s",
            &session.0,
            "-x",
            "160",
            "-y",
            "80",
        ])
        .arg(&command)
        .status()
        .expect("tmux new-session");
    assert!(started.success());
    tokio::time::sleep(REPLIES_ARRIVE).await;
    let sent = Command::new("tmux")
        .args(["send-keys", "-t", &session.0, "C-c"])
        .status()
        .expect("tmux send-keys");
    assert!(sent.success());

    let deadline = Instant::now() + Duration::from_secs(30);
    let screen = loop {
        let screen = session.capture();
        if screen.contains("MUSTER-EXIT=") {
            break screen;
        }
        assert!(Instant::now() < deadline, "mco did not end:\n{screen}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(screen.contains("MUSTER-EXIT=130"), "{screen}");
    assert!(
        screen.contains("Finished processing 2 / 3 hosts"),
        "{screen}"
    );
    assert!(
        screen.contains("node1") && screen.contains("node2"),
        "{screen}"
    );
    assert!(screen.contains("No response from:"), "{screen}");
    let silent = screen.split("No response from:").nth(1).unwrap_or_default();
    assert!(silent.contains("node3"), "{screen}");
    assert!(screen.contains("Request ID: "), "{screen}");
    assert!(screen.contains("Interrupted"), "{screen}");
    assert!(!screen.lines().any(|l| l.contains(" * [ ")), "{screen}");
}

/// Waits (bounded) for `child` to end, reading neither of its pipes.
async fn ends(child: std::process::Child, what: &str) -> std::process::Output {
    tokio::time::timeout(
        Duration::from_secs(30),
        tokio::task::spawn_blocking(move || child.wait_with_output()),
    )
    .await
    .unwrap_or_else(|_| panic!("mco did not end after {what}"))
    .expect("join")
    .expect("wait")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_between_batches_keeps_the_sent_batch_and_names_the_rest() {
    let fleet = Stalled::start().await;
    let args: Vec<String> = [
        "rpc",
        "rpcutil",
        "ping",
        "--config",
        &fleet.config,
        "-I",
        "node1",
        "-I",
        "node2",
        "--batch",
        "1",
        "--batch-sleep",
        PATIENT,
        "--json",
    ]
    .map(String::from)
    .to_vec();
    // node1 answers at once; then mco sleeps before node2's batch.
    let (output, document) = interrupted(&args).await;
    let text = document.to_string();
    let senders: Vec<&str> = document["replies"]
        .as_array()
        .expect("replies")
        .iter()
        .filter_map(|r| r["sender"].as_str())
        .collect();
    assert_eq!(senders, ["node1"], "{text}");
    assert_eq!(document["statistics"]["interrupted"], true, "{text}");
    assert_eq!(
        document["statistics"]["no_responses"],
        serde_json::json!(["node2"]),
        "{text}"
    );
    assert_eq!(output.status.code(), Some(130), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_during_discovery_says_nothing_was_sent() {
    let dir = tempfile::tempdir().expect("temp dir");
    let program = dir.path().join("slow-discovery");
    std::fs::write(&program, "#!/bin/sh\nexec sleep 20\n").expect("write");
    std::fs::set_permissions(
        &program,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let broker = TestBroker::start(BrokerKind::Embedded).await;
    let caller = Caller::new("tester");
    let config = caller.client_config(&broker.url()).display().to_string();
    let child = Command::new(MCO)
        .args([
            "rpc",
            "rpcutil",
            "ping",
            "--config",
            &config,
            "--dt",
            "60",
            "--discovery-program",
        ])
        .arg(&program)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mco");
    // Generous: the program has started by then; mco is waiting on it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    signal(child.id(), "INT");
    let output = ends(child, "SIGINT during discovery").await;
    let err = muster_testkit::stderr(&output);
    assert_eq!(output.status.code(), Some(130), "{err}");
    assert!(
        err.contains("interrupted during discovery; no request was sent"),
        "{err}"
    );
    assert!(stdout(&output).is_empty(), "{}", stdout(&output));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_ctrl_c_exits_at_once_while_output_is_stuck() {
    let fleet = Stalled::start().await;
    let mut args = fleet.rpc_args();
    args[1] = "rpcutil".into();
    args[2] = "get_fact".into();
    args.insert(3, "fact=big".into());
    args.push("--json".into());
    // Nobody reads stdout: the document (two big replies) fills the pipe
    // and writing it blocks after the first Ctrl-C stopped the wait.
    let mut child = Command::new(MCO)
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("mco");
    tokio::time::sleep(REPLIES_ARRIVE).await;
    signal(child.id(), "INT");
    // Generous: by then mco is stuck writing.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "mco ended without a reader: the test proves nothing"
    );
    signal(child.id(), "INT");
    // Still nobody reads: only the second Ctrl-C can end it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "a second Ctrl-C did not end mco");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status.code(), Some(130));
}
