//! A reader that stops early (`mco find | head -1`) is not a failure:
//! every application ends quietly with 0 when its stdout is closed, as
//! ripgrep does.

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use muster_testkit::{BrokerKind, Caller, FleetProcess, TestBroker};

const MCO: &str = env!("CARGO_BIN_EXE_mco");

/// Runs `mco args` with stdout a pipe whose read end is closed before
/// `mco` writes anything (not `output()`, which would keep reading), and
/// returns its exit status and stderr. Its temporary files go to `tmp`.
async fn with_stdout_closed(args: &[&str], tmp: &Path) -> (ExitStatus, String) {
    let mut child = tokio::process::Command::new(MCO)
        .args(args)
        .env_remove("MCO_CONFIG")
        .env("TMPDIR", tmp)
        .env("XDG_CONFIG_HOME", "/nonexistent-muster-test")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("cannot run mco");
    drop(child.stdout.take());
    let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("mco {args:?} did not finish within 30 s"))
        .expect("cannot wait for mco");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_application_ends_quietly_with_0_when_stdout_is_closed() {
    let broker = TestBroker::start(BrokerKind::Embedded).await;
    let caller = Caller::new("tester");
    let config = caller.client_config(&broker.url()).display().to_string();
    let _fleet = FleetProcess::start(MCO, &broker.url(), &caller, 3).await;
    // `mco demo` leaves its directory behind when it ends on a closed stdout.
    let tmp = tempfile::tempdir().expect("temp dir");

    let applications: &[&[&str]] = &[
        &["find"],
        &["ping"],
        &["rpc", "rpcutil", "ping"],
        &["rpc", "rpcutil", "ping", "--json"],
        &["facts", "os.family"],
        &["inventory", "node01"],
        &["plugin", "doc", "package"],
        &["help"],
        &["man"],
        &["completion", "bash"],
        // Writes with println!, which panics on a closed stdout.
        &["demo", "--nodes", "3"],
    ];
    let mut failures = Vec::new();
    for application in applications {
        let mut args = vec!["--config", config.as_str()];
        args.extend_from_slice(application);
        let (status, stderr) = with_stdout_closed(&args, tmp.path()).await;
        if !status.success() || stderr.contains("Broken pipe") || stderr.contains("panicked") {
            failures.push(format!(
                "mco {}: {status}, stderr {stderr:?}",
                application.join(" ")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
