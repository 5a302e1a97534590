//! What an operator sees on a real terminal: the progress bar while
//! replies arrive, then the results and the statistics block, captured
//! from a tmux pane (a real pseudo-terminal, not a pipe).

use std::process::Command;
use std::time::{Duration, Instant};

use muster_testkit::{BrokerKind, Caller, FleetProcess, TestBroker};

const MCO: &str = env!("CARGO_BIN_EXE_mco");

/// A detached tmux session, killed when dropped.
pub(crate) struct Session(pub(crate) String);

impl Session {
    pub(crate) fn capture(&self) -> String {
        let output = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.0])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_bar_then_statistics_on_a_real_terminal() {
    if Command::new("tmux").arg("-V").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install tmux (.ci/run does)"
        );
        eprintln!("skipped: tmux is not installed");
        return;
    }
    let broker = TestBroker::start(BrokerKind::Embedded).await;
    let caller = Caller::new("tester");
    let _fleet = FleetProcess::start(MCO, &broker.url(), &caller, 30).await;
    let config = caller.client_config(&broker.url());

    // Batches with pauses make the run last long enough to watch the bar.
    let command = format!(
        "{MCO} rpc rpcutil ping --config {} --batch 5 --batch-sleep 0.4; echo MUSTER-DONE; sleep 60",
        config.display()
    );
    let session = Session(format!("muster-test-{}", std::process::id()));
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

    let mut bar = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    let screen = loop {
        let screen = session.capture();
        if bar.is_none() {
            bar = screen
                .lines()
                .find(|l| l.contains(" * [ ") && l.contains(" / 30"))
                .map(str::to_string);
        }
        if screen.contains("MUSTER-DONE") {
            break screen;
        }
        assert!(
            Instant::now() < deadline,
            "the run did not finish:\n{screen}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    let bar = bar.unwrap_or_else(|| panic!("no progress bar was drawn; final screen:\n{screen}"));
    assert!(bar.contains('='), "{bar}");
    // The bar is cleared once the results print, which end in `Finished processing`.
    assert!(!screen.lines().any(|l| l.contains(" * [ ")), "{screen}");
    assert!(
        screen.contains("Finished processing 30 / 30 hosts"),
        "{screen}"
    );
    assert!(!screen.contains("---- rpc stats ----"), "{screen}");
}
