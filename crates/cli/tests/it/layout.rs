//! End to end: what `mco rpc` says before and after a call that went
//! nowhere — a typo of a known agent or action stops before anything is
//! sent, and a call nobody answers hints that the nodes may not trust the
//! caller.

use muster_testkit::{stderr, stdout, BrokerKind, Caller, FleetProcess, TestBroker};

const MCO: &str = env!("CARGO_BIN_EXE_mco");

async fn mco(config: &str, args: &[&str]) -> std::process::Output {
    let mut all = args.to_vec();
    all.extend(["--config", config]);
    muster_testkit::run_mco(MCO, &all).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typo_of_a_known_agent_or_action_is_refused_before_sending() {
    let broker = TestBroker::start(BrokerKind::Embedded).await;
    let caller = Caller::new("tester");
    let config = caller.client_config(&broker.url()).display().to_string();
    let before = broker.stats().expect("embedded broker counters");

    let agent = mco(&config, &["rpc", "pakage", "status", "package=zsh"]).await;
    assert_eq!(agent.status.code(), Some(2), "{}", stderr(&agent));
    assert!(
        stderr(&agent).contains("unknown agent \"pakage\": did you mean package?"),
        "{}",
        stderr(&agent)
    );
    let action = mco(&config, &["rpc", "package", "stauts", "package=zsh"]).await;
    assert_eq!(action.status.code(), Some(2), "{}", stderr(&action));
    assert!(
        stderr(&action).contains("did you mean status?"),
        "{}",
        stderr(&action)
    );
    let after = broker.stats().expect("embedded broker counters");
    assert_eq!(after.msgs_in, before.msgs_in, "a typo reached the broker");
    assert_eq!(after.total_connections, before.total_connections);

    // A name far from every known agent may be one only the nodes have.
    let external = mco(&config, &["rpc", "zookeeper", "status", "-t", "1"]).await;
    assert!(
        !stderr(&external).contains("did you mean"),
        "{}",
        stderr(&external)
    );
    let sent = broker.stats().expect("embedded broker counters");
    assert!(
        sent.msgs_in > after.msgs_in,
        "the external agent's call was not sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_from_every_node_hints_at_trust() {
    let broker = TestBroker::start(BrokerKind::Embedded).await;
    let caller = Caller::new("tester");
    let _fleet = FleetProcess::start(MCO, &broker.url(), &caller, 1).await;
    let config = caller.client_config(&broker.url()).display().to_string();

    let silent = mco(
        &config,
        &[
            "rpc", "rpcutil", "ping", "-I", "ghost1", "-I", "ghost2", "-t", "2",
        ],
    )
    .await;
    assert_eq!(silent.status.code(), Some(3), "{}", stderr(&silent));
    let err = stderr(&silent);
    for expected in [
        "may not trust this caller",
        "tester.mcollective.pem (tester.mcollective)",
        "CA ",
        "ca.pem",
    ] {
        assert!(err.contains(expected), "{expected:?} not in {err}");
    }
    assert!(
        stdout(&silent).contains("No response from:\n\n    ghost1   ghost2"),
        "{}",
        stdout(&silent)
    );

    let half = mco(
        &config,
        &[
            "rpc", "rpcutil", "ping", "-I", "node01", "-I", "ghost1", "-t", "2",
        ],
    )
    .await;
    assert_eq!(half.status.code(), Some(3), "{}", stderr(&half));
    assert!(stdout(&half).contains("node01"), "{}", stdout(&half));
    assert!(
        !stderr(&half).contains("may not trust"),
        "{}",
        stderr(&half)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcollective_spellings_and_help_for_selectors() {
    let help = muster_testkit::run_mco(MCO, &["rpc", "--help"]).await;
    let text = stdout(&help);
    assert!(text.contains("glob") && text.contains("/regex/"), "{text}");
    assert!(text.contains("--np"), "{text}");
    // --np is MCollective's --no-progress: accepted where it is.
    let broker = TestBroker::start(BrokerKind::Embedded).await;
    let caller = Caller::new("tester");
    let config = caller.client_config(&broker.url()).display().to_string();
    let np = mco(
        &config,
        &["rpc", "rpcutil", "ping", "--np", "-I", "ghost", "-t", "1"],
    )
    .await;
    assert_eq!(np.status.code(), Some(3), "{}", stderr(&np));
}
