//! `mco puppet runall N` against four real `mco server` processes, each
//! running a real `puppet apply` of a manifest that sleeps 2 s and writes
//! down when it started and ended: the recorded intervals show how many
//! runs overlapped, whatever the machine's speed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use muster_testkit::{stderr, stdout, BrokerKind, Caller, NodeSetup, ServerProcess, TestBroker};

const MCO: &str = env!("CARGO_BIN_EXE_mco");
const NODES: usize = 4;

/// The manifest: one exec that sleeps 2 s between two timestamps.
fn manifest(intervals: &Path, node: &str) -> String {
    format!(
        "exec {{ 'window': provider => shell, command => 's=$(date +%s.%N); sleep 2; \
         echo {node} $s $(date +%s.%N) >> {}' }}\n",
        intervals.display()
    )
}

/// `(start, end)` of every run written down so far.
fn intervals(file: &Path) -> Vec<(f64, f64)> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(fields.len(), 3, "bad interval line {line:?}");
            (fields[1].parse().unwrap(), fields[2].parse().unwrap())
        })
        .collect()
}

/// The most intervals running at one moment.
fn most_overlapping(intervals: &[(f64, f64)]) -> usize {
    intervals
        .iter()
        .map(|(start, _)| {
            intervals
                .iter()
                .filter(|(s, e)| s <= start && start < e)
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// `mco puppet runall N`, bounded generously: four Puppet runs one at a
/// time on a loaded 2-core machine take well over `run_mco`'s 30 s.
async fn runall(window: usize, config: &str) -> std::process::Output {
    let child = tokio::process::Command::new(MCO)
        .args(["puppet", "runall", &window.to_string(), "--config", config])
        .env_remove("MCO_CONFIG")
        .env("XDG_CONFIG_HOME", "/nonexistent-muster-test")
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(300), child)
        .await
        .expect("runall did not finish within 300 s")
        .expect("cannot run mco")
}

#[test]
fn overlap_counts_runs_at_the_same_moment() {
    assert_eq!(most_overlapping(&[(0.0, 2.0), (2.0, 4.0)]), 1);
    assert_eq!(most_overlapping(&[(0.0, 2.0), (1.0, 3.0), (2.5, 4.0)]), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runall_keeps_n_puppet_runs_going_at_once() {
    if !Path::new("/usr/bin/puppet").exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install puppet (.ci/run does)"
        );
        eprintln!("skipped: puppet is not installed");
        return;
    }
    let broker = TestBroker::start(BrokerKind::Embedded).await;
    let caller = Caller::new("tester");
    let dir = tempfile::tempdir().unwrap();
    let log: PathBuf = dir.path().join("intervals.txt");
    let mut servers = Vec::new();
    for i in 1..=NODES {
        let node = format!("node{i}");
        let home = dir.path().join(&node);
        std::fs::create_dir_all(&home).unwrap();
        std::fs::write(home.join("site.pp"), manifest(&log, &node)).unwrap();
        let settings = format!(
            "plugin.puppet.vardir = {d}/var\nplugin.puppet.confdir = {d}/etc\n\
             plugin.puppet.codedir = {d}/code\nplugin.puppet.logdir = {d}/log\n\
             plugin.puppet.rundir = {d}/run\nplugin.puppet.apply_manifest = {d}/site.pp\n",
            d = home.display()
        );
        servers.push(ServerProcess::start(
            Path::new(MCO),
            &broker.url(),
            caller.pki(),
            &NodeSetup {
                identity: &node,
                facts_yaml: "role: web\n",
                classes: &[],
                collectives: &[],
                settings: &settings,
            },
        ));
    }
    let config = caller.client_config(&broker.url()).display().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = muster_testkit::run_mco(MCO, &["ping", "--config", &config]).await;
        if stdout(&out).matches("time=").count() == NODES {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the nodes did not come up: {}{}",
            stdout(&out),
            stderr(&out)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    let mut walls = Vec::new();
    for window in [2usize, 1] {
        let _ = std::fs::remove_file(&log);
        let started = Instant::now();
        let out = runall(window, &config).await;
        walls.push((window, started.elapsed()));
        let text = stdout(&out);
        assert!(
            out.status.success(),
            "runall {window}: {text}{}",
            stderr(&out)
        );
        assert!(
            text.contains(&format!("Finished {NODES} / {NODES} Puppet runs in")),
            "{text}"
        );
        let runs = intervals(&log);
        assert_eq!(runs.len(), NODES, "runall {window}: {runs:?}\n{text}");
        assert_eq!(
            most_overlapping(&runs),
            window,
            "runall {window}: {runs:?}\n{text}"
        );
    }
    eprintln!("wall times (runall N, seconds): {walls:?}");
}
