//! End to end: `--limit-nodes`, `--one` and `--batch` on the real `mco`
//! binary against a simulated fleet (`mco fleet`) on a test broker.

use std::collections::BTreeSet;
use std::process::Output;
use std::time::{Duration, Instant};

use muster_testkit::{stderr, stdout, BrokerKind, Caller, FleetProcess, TestBroker};

const MCO: &str = env!("CARGO_BIN_EXE_mco");

async fn mco(args: &[&str]) -> Output {
    muster_testkit::run_mco(MCO, args).await
}

/// Every `sender` in `--json` output, wherever the document puts the
/// replies.
fn senders(output: &Output) -> BTreeSet<String> {
    fn collect(value: &serde_json::Value, into: &mut BTreeSet<String>) {
        match value {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::String(sender)) = map.get("sender") {
                    into.insert(sender.clone());
                }
                map.values().for_each(|v| collect(v, into));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| collect(v, into)),
            _ => {}
        }
    }
    let document: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("--json output does not parse: {e}\n{}", stdout(output)));
    let mut senders = BTreeSet::new();
    collect(&document, &mut senders);
    senders
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_and_batches_from_the_command_line() {
    let broker = TestBroker::start(BrokerKind::Embedded).await;
    let caller = Caller::new("tester");
    let config = caller.client_config(&broker.url()).display().to_string();
    let _fleet = FleetProcess::start(MCO, &broker.url(), &caller, 20).await;
    let c = config.as_str();

    let ping = ["rpc", "rpcutil", "ping", "--config", c];
    for (flags, hosts) in [
        (&["--limit-nodes", "5"][..], 5),
        (&["--limit-nodes", "25%"], 5),
        (&["--ln", "3"], 3),
        (&["--one"], 1),
        (&["--limit-nodes", "50"], 20),
        (&["--batch", "5", "--batch-sleep", "0.1"], 20),
        (&["--batch", "3", "--batch-sleep", "0", "--one"], 1),
    ] {
        let args: Vec<&str> = ping.iter().chain(flags).copied().collect();
        let out = mco(&args).await;
        let text = stdout(&out);
        assert!(out.status.success(), "{flags:?}: {text}{}", stderr(&out));
        let finished = format!("Finished processing {hosts} / {hosts} hosts");
        assert!(
            text.contains(&finished),
            "{flags:?}: {finished:?} not in\n{text}"
        );
    }

    // The same seed picks the same nodes; some other seed picks others.
    let seeded = |seed: &'static str| {
        let args = [
            "rpc",
            "rpcutil",
            "ping",
            "--config",
            c,
            "--json",
            "--limit-nodes",
            "4",
            "--limit-seed",
            seed,
        ];
        async move {
            let out = mco(&args).await;
            assert!(out.status.success(), "{}", stderr(&out));
            senders(&out)
        }
    };
    let first = seeded("7").await;
    assert_eq!(first.len(), 4, "{first:?}");
    assert_eq!(seeded("7").await, first);
    let mut differs = false;
    for seed in ["8", "9", "10", "11"] {
        if seeded(seed).await != first {
            differs = true;
            break;
        }
    }
    assert!(differs, "four other seeds all picked {first:?}");

    // Batches honour their sleep: 20 nodes in batches of 5 sleep 3 times.
    let started = Instant::now();
    let out = mco(&[
        "rpc",
        "rpcutil",
        "ping",
        "--config",
        c,
        "--batch",
        "5",
        "--batch-sleep",
        "0.3",
    ])
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(started.elapsed() >= Duration::from_millis(900));

    // Usage errors: exit 2, nothing sent.
    for flags in [
        &["--batch", "0"][..],
        &["--limit-nodes", "0"],
        &["--limit-nodes", "120%"],
        &["--one", "--limit-nodes", "2"],
        &["--batch-sleep", "1"],
    ] {
        let args: Vec<&str> = ping.iter().chain(flags).copied().collect();
        let out = mco(&args).await;
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {}", stderr(&out));
    }
}
