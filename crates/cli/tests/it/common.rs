//! Helpers several test modules share: `mco` timed, its `--json` output
//! read, and who replied.

use std::process::Output;
use std::time::{Duration, Instant};

use muster_testkit::{stderr, stdout};
use serde_json::Value;

/// Runs mco (within the test kit's 30 s bound) and says how long it took.
pub(crate) async fn timed_mco(args: &[&str]) -> (Output, Duration) {
    let started = Instant::now();
    let output = muster_testkit::run_mco(env!("CARGO_BIN_EXE_mco"), args).await;
    (output, started.elapsed())
}

/// The `--json` document mco printed; panics with its output if it is not JSON.
pub(crate) fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(output), stderr(output)))
}

/// The senders of a `--json` document's replies, sorted (none if it has no replies).
pub(crate) fn senders(document: &Value) -> Vec<String> {
    let mut senders: Vec<String> = document["replies"]
        .as_array()
        .map(|replies| {
            replies
                .iter()
                .filter_map(|r| r["sender"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    senders.sort();
    senders
}
