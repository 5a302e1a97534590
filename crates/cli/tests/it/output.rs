//! End to end: what every RPC application prints — the statistics block,
//! `--display`, the `--json` document (against a reviewed golden file),
//! `--jsonl` streaming, `--filter-replies`, colour, the progress bar and the
//! exit codes — from the real `mco` binary against a simulated fleet
//! (`mco fleet`) on a test broker.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use muster_testkit::{stderr, stdout, BrokerKind, Caller, FleetProcess, TestBroker};
use serde_json::{json, Value};

const MCO: &str = env!("CARGO_BIN_EXE_mco");

async fn mco(args: &[&str]) -> Output {
    muster_testkit::run_mco(MCO, args).await
}

/// A broker and 20 simulated nodes: roles cycle web, db, cache, app, lb by
/// n % 5; os.family is Debian for node01-09 and node20, RedHat for 10-19.
struct Fleet {
    _fleet: FleetProcess,
    _broker: TestBroker,
    _caller: Caller,
    config: String,
}

impl Fleet {
    async fn start() -> Fleet {
        let broker = TestBroker::start(BrokerKind::Embedded).await;
        let caller = Caller::new("tester");
        let config = caller.client_config(&broker.url()).display().to_string();
        let fleet = FleetProcess::start(MCO, &broker.url(), &caller, 20).await;
        Fleet {
            _fleet: fleet,
            _broker: broker,
            _caller: caller,
            config,
        }
    }

    async fn run(&self, args: &[&str]) -> Output {
        let mut all = args.to_vec();
        all.extend(["--config", &self.config]);
        mco(&all).await
    }
}

fn code(output: &Output) -> Option<i32> {
    output.status.code()
}

fn document(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not one JSON document ({e}):\n{}\n{}",
            stdout(output),
            stderr(output)
        )
    })
}

fn senders(replies: &Value) -> BTreeSet<String> {
    replies
        .as_array()
        .expect("replies")
        .iter()
        .map(|r| r["sender"].as_str().expect("sender").to_string())
        .collect()
}

fn nodes(range: std::ops::RangeInclusive<u32>) -> BTreeSet<String> {
    range.map(|n| format!("node{n:02}")).collect()
}

/// Times, round trips and the request id change every run; replies arrive
/// in any order.
fn normalised(mut document: Value) -> Value {
    let replies = document["replies"].as_array_mut().expect("replies");
    replies.sort_by(|a, b| a["sender"].as_str().cmp(&b["sender"].as_str()));
    let statistics = &mut document["statistics"];
    for volatile in ["discovery_ms", "agent_ms", "total_ms"] {
        assert!(statistics[volatile].is_number(), "{volatile}: {statistics}");
        statistics[volatile] = json!("<ms>");
    }
    for rtt in ["min", "avg", "max"] {
        assert!(statistics["rtt_ms"][rtt].is_number(), "{statistics}");
        statistics["rtt_ms"][rtt] = json!("<ms>");
    }
    let id = statistics["request_id"].as_str().expect("request_id");
    assert_eq!(id.len(), 32, "{id}");
    statistics["request_id"] = json!("<request id>");
    document
}

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_application_prints_results_statistics_and_exit_codes() {
    let fleet = Fleet::start().await;
    let c = fleet.config.as_str();

    // Text: results, summary, `Finished processing`; the statistics block
    // only with -v, as in MCollective; no bar in a pipe.
    let text = fleet
        .run(&["rpc", "rpcutil", "get_fact", "fact=os.family"])
        .await;
    assert_eq!(code(&text), Some(0), "{}", stderr(&text));
    let out = stdout(&text);
    for expected in ["Summary of Value:", "Finished processing 20 / 20 hosts in "] {
        assert!(out.contains(expected), "{expected:?} not in\n{out}");
    }
    assert!(
        !out.contains("rpc stats") && !out.contains("Request ID") && !out.contains("Failed:"),
        "{out}"
    );
    let inventory = fleet.run(&["inventory", "node01"]).await;
    let out = stdout(&inventory);
    assert!(
        out.contains("Finished processing 1 / 1 hosts in ") && !out.contains("rpc stats"),
        "{out}"
    );
    let block = fleet
        .run(&["rpc", "rpcutil", "get_fact", "fact=os.family", "-v"])
        .await;
    let out = stdout(&block);
    for expected in [
        "---- rpc stats ----\n           Nodes: 20 / 20\n     Pass / Fail: 20 / 0\n      No Replies: 0\n  Discovery Time: ",
        "      Total Time: ",
    ] {
        assert!(out.contains(expected), "{expected:?} not in\n{out}");
    }
    let err = stderr(&text);
    assert!(
        !err.contains('\r') && !err.contains("=>") && !err.contains(" * ["),
        "a progress bar in a pipe: {err:?}"
    );
    assert!(!out.contains('\x1b'), "colour in a pipe: {out:?}");
    let verbose = fleet
        .run(&["rpc", "rpcutil", "ping", "-v", "-F", "role=db"])
        .await;
    let out = stdout(&verbose);
    assert!(
        out.contains("     Round Trips: min ") && out.contains("      Request ID: "),
        "{out}"
    );

    // --json: one document, compared with the reviewed golden file.
    let json_output = fleet
        .run(&["rpc", "rpcutil", "get_fact", "fact=os.family", "--json"])
        .await;
    assert_eq!(code(&json_output), Some(0), "{}", stderr(&json_output));
    assert!(stderr(&json_output).is_empty(), "{}", stderr(&json_output));
    let actual = normalised(document(&json_output));
    let path = golden("rpc_get_fact.json");
    if std::env::var_os("MUSTER_UPDATE_GOLDEN").is_some() {
        let text = serde_json::to_string_pretty(&actual).unwrap() + "\n";
        std::fs::write(&path, text).expect("write golden file");
    }
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(&path).expect("golden file (MUSTER_UPDATE_GOLDEN=1 writes it)"),
    )
    .expect("golden file is JSON");
    assert_eq!(
        actual,
        expected,
        "--json differs from {}:\n{}",
        path.display(),
        serde_json::to_string_pretty(&actual).unwrap()
    );

    // --jsonl: one line per reply, then the statistics line.
    let lines = fleet
        .run(&["rpc", "rpcutil", "get_fact", "fact=role", "--jsonl"])
        .await;
    assert_eq!(code(&lines), Some(0), "{}", stderr(&lines));
    let parsed: Vec<Value> = stdout(&lines)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(parsed.len(), 21, "{}", stdout(&lines));
    let (last, replies) = parsed.split_last().unwrap();
    assert_eq!(senders(&json!(replies)), nodes(1..=20));
    for reply in replies {
        assert_eq!(reply["agent"], "rpcutil");
        assert_eq!(reply["action"], "get_fact");
        assert_eq!(reply["statuscode"], 0);
        assert!(reply["data"]["value"].is_string(), "{reply}");
    }
    assert_eq!(last["statistics"]["responded"], 20, "{last}");
    assert_eq!(last["statistics"]["shown"], 20, "{last}");

    // --filter-replies keeps exactly the RedHat nodes; statistics still
    // count everyone who answered.
    let filter = r#".data.value == "RedHat""#;
    let redhat = fleet
        .run(&[
            "rpc",
            "rpcutil",
            "get_fact",
            "fact=os.family",
            "--json",
            "--filter-replies",
            filter,
        ])
        .await;
    assert_eq!(code(&redhat), Some(0), "{}", stderr(&redhat));
    let doc = document(&redhat);
    assert_eq!(senders(&doc["replies"]), nodes(10..=19));
    assert_eq!(doc["statistics"]["responded"], 20);
    assert_eq!(doc["statistics"]["shown"], 10);
    let streamed = fleet
        .run(&[
            "rpc",
            "rpcutil",
            "get_fact",
            "fact=os.family",
            "--jsonl",
            "--filter-replies",
            filter,
        ])
        .await;
    assert_eq!(
        stdout(&streamed).lines().count(),
        11,
        "{}",
        stdout(&streamed)
    );
    let text = fleet
        .run(&["facts", "os.family", "--filter-replies", filter, "-v"])
        .await;
    let out = stdout(&text);
    assert!(out.contains("RedHat") && !out.contains("Debian"), "{out}");
    assert!(out.contains("  Filter Matches: 10\n"), "{out}");

    // A filter that does not compile: a usage error, before connecting
    // (this config's broker does not exist, and that is not the error).
    let stranger = Caller::new("nowhere");
    let nowhere = stranger
        .client_config("nats://127.0.0.1:1")
        .display()
        .to_string();
    let bad = mco(&[
        "rpc",
        "rpcutil",
        "ping",
        "--config",
        &nowhere,
        "--filter-replies",
        ".data.value ==",
    ])
    .await;
    assert_eq!(code(&bad), Some(2), "{}", stderr(&bad));
    assert!(
        stderr(&bad).contains("not a valid jq expression"),
        "{}",
        stderr(&bad)
    );

    // --display: OK results only, or failures only.
    let all_ok = fleet
        .run(&[
            "rpc",
            "rpcutil",
            "get_fact",
            "fact=role",
            "--display",
            "failed",
        ])
        .await;
    let out = stdout(&all_ok);
    assert!(
        !out.contains("node0") && !out.contains("\n   Value: "),
        "{out}"
    );
    assert!(out.contains("Finished processing 20 / 20"), "{out}");
    let failing = [
        "rpc",
        "rpcutil",
        "get_data",
        "source=sysctl",
        "query=no.such.key",
    ];
    let all_failed = fleet
        .run(&[&failing[..], &["--display", "ok"]].concat())
        .await;
    assert!(
        !stdout(&all_failed).contains("no such sysctl"),
        "{}",
        stdout(&all_failed)
    );
    let shown = fleet
        .run(&[&failing[..], &["--display", "failed"]].concat())
        .await;
    assert_eq!(stdout(&shown).matches("no such sysctl").count(), 20);
    // After the results, the failed nodes by name, so they do not scroll away.
    let out = stdout(&all_failed);
    let listed = out
        .split_once("\nFailed:\n\n")
        .map(|(_, names)| names.to_string())
        .unwrap_or_else(|| panic!("no Failed: list in\n{out}"));
    assert_eq!(listed.matches("node").count(), 20, "{out}");

    // Exit codes: 1 some failed, 3 some did not answer, 4 none matched,
    // 2 bad input; the same for the other applications.
    assert_eq!(code(&all_failed), Some(1), "{}", stdout(&all_failed));
    let dir = tempfile::tempdir().expect("temp dir");
    let list = dir.path().join("nodes.txt");
    std::fs::write(&list, "node01\nnode02\nghost\n").expect("write nodes");
    let list = list.display().to_string();
    let silent = fleet
        .run(&["rpc", "rpcutil", "ping", "--nodes", &list])
        .await;
    assert_eq!(code(&silent), Some(3), "{}", stdout(&silent));
    assert!(
        stdout(&silent).contains("No response from:\n\n    ghost\n"),
        "{}",
        stdout(&silent)
    );
    let ping = fleet.run(&["ping", "--nodes", &list]).await;
    assert_eq!(code(&ping), Some(3), "{}", stdout(&ping));
    let none = fleet
        .run(&["rpc", "rpcutil", "ping", "-F", "role=nosuch"])
        .await;
    assert_eq!(code(&none), Some(4), "{}", stderr(&none));
    let none = fleet
        .run(&["rpc", "rpcutil", "ping", "-F", "role=nosuch", "--json"])
        .await;
    assert_eq!(code(&none), Some(4));
    assert_eq!(document(&none)["statistics"]["discovered"], 0);
    for app in [&["ping"][..], &["facts", "role"], &["find"], &["inventory"]] {
        let none = fleet
            .run(&[app, &["-F", "role=nosuch", "-t", "1"]].concat())
            .await;
        assert_eq!(code(&none), Some(4), "{app:?}: {}", stderr(&none));
    }
    let bad_input = fleet.run(&["rpc", "rpcutil", "get_fact"]).await;
    assert_eq!(code(&bad_input), Some(2), "{}", stderr(&bad_input));

    // On a terminal: failed lines in red, unless NO_COLOR says otherwise.
    if Path::new("/usr/bin/script").exists() {
        let command = format!("{MCO} {} --config {c} --no-progress -v", failing.join(" "));
        let coloured = on_a_terminal(&command, None);
        assert!(coloured.contains("\x1b[31m"), "{coloured:?}");
        assert!(
            coloured.contains("\x1b[1m---- rpc stats ----"),
            "{coloured:?}"
        );
        let plain = on_a_terminal(&command, Some("1"));
        assert!(!plain.contains('\x1b'), "{plain:?}");
    }
}

/// Runs `command` with a pseudo-terminal as stdout and stderr (util-linux
/// `script`), and returns what it printed.
fn on_a_terminal(command: &str, no_color: Option<&str>) -> String {
    let mut script = Command::new("script");
    script
        .args(["-qec", command, "/dev/null"])
        .env_remove("NO_COLOR")
        .env_remove("MCO_CONFIG")
        .stdin(Stdio::null());
    if let Some(value) = no_color {
        script.env("NO_COLOR", value);
    }
    let output = script.output().expect("run script");
    String::from_utf8_lossy(&output.stdout).into_owned()
}
