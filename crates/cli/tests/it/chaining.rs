//! Request chaining through real pipes: one `mco`'s `--json` or `--jsonl`
//! output picks the next one's nodes with `--nodes -`, on a simulated
//! fleet (`mco fleet`) on a test broker. The pipes are std's, run from
//! the test's thread: the fleet is another process.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use muster_testkit::{stderr, stdout, BrokerKind, Caller, FleetProcess, TestBroker};

const MCO: &str = env!("CARGO_BIN_EXE_mco");

/// Runs `first | second` and returns the second's output.
fn pipe(first: &[&str], second: &[&str]) -> Output {
    let mut producer = Command::new(MCO)
        .args(first)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the first mco");
    let consumer = Command::new(MCO)
        .args(second)
        .stdin(producer.stdout.take().expect("its stdout"))
        .output()
        .expect("run the second mco");
    let first_status = producer.wait().expect("the first mco ends");
    assert!(first_status.success(), "{first:?} failed: {first_status}");
    consumer
}

/// Runs `mco args` with `input` on stdin.
fn with_stdin(args: &[&str], input: &str) -> Output {
    let mut child = Command::new(MCO)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start mco");
    let mut stdin = child.stdin.take().expect("its stdin");
    stdin.write_all(input.as_bytes()).expect("write stdin");
    drop(stdin);
    child.wait_with_output().expect("mco ends")
}

/// The senders in a `--json` document, sorted.
fn senders(out: &Output) -> Vec<String> {
    let doc: serde_json::Value = serde_json::from_str(&stdout(out))
        .unwrap_or_else(|e| panic!("{e}: {}{}", stdout(out), stderr(out)));
    let mut senders: Vec<String> = doc["replies"]
        .as_array()
        .expect("replies")
        .iter()
        .map(|r| r["sender"].as_str().expect("sender").to_string())
        .collect();
    senders.sort();
    senders
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_and_jsonl_output_choose_the_next_requests_nodes() {
    let broker = TestBroker::start(BrokerKind::Embedded).await;
    let caller = Caller::new("tester");
    let config = caller.client_config(&broker.url()).display().to_string();
    let _fleet = FleetProcess::start(MCO, &broker.url(), &caller, 20).await;
    let c = config.as_str();
    // Roles cycle web, db, cache, app, lb by n % 5: web is 5, 10, 15, 20.
    let web = ["node05", "node10", "node15", "node20"];

    for format in ["--json", "--jsonl"] {
        let out = pipe(
            &[
                "rpc",
                "rpcutil",
                "get_fact",
                "fact=role",
                format,
                "-F",
                "role=web",
                "-c",
                c,
            ],
            &["rpc", "rpcutil", "ping", "--nodes", "-", "--json", "-c", c],
        );
        assert!(out.status.success(), "{format}: {}", stderr(&out));
        assert_eq!(senders(&out), web, "{format}");
    }

    // mco find --json, too.
    let out = pipe(
        &["find", "--json", "-F", "role=web", "-c", c],
        &["rpc", "rpcutil", "ping", "--nodes", "-", "--json", "-c", c],
    );
    assert!(out.status.success(), "find: {}", stderr(&out));
    assert_eq!(senders(&out), web);

    // A JSON fragment or a garbage line is an error naming its line, and
    // nothing is sent.
    for (input, line) in [
        ("node05\n\"replies\": [\n", "stdin line 2"),
        ("{\"sender\": \"node05\"}\nnot json\n", "stdin line 2"),
        (
            "{\"sender\": \"node05\"}\n{\"statuscode\": 0}\n",
            "stdin line 2",
        ),
    ] {
        let out = with_stdin(&["rpc", "rpcutil", "ping", "--nodes", "-", "-c", c], input);
        assert!(!out.status.success(), "{input:?} was accepted");
        assert!(stderr(&out).contains(line), "{input:?}: {}", stderr(&out));
        assert!(!stdout(&out).contains("node05"), "{}", stdout(&out));
    }
}
