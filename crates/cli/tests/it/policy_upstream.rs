//! Action policies as MCollective and Choria write them, through a real
//! `mco server`: a `/regex/` caller and the `policies/groups` file decide
//! real requests from real callers (certificate names), and the puppet
//! agent's `puppet()` data plugin selects nodes in `-S`.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use muster_testkit::{stderr, stdout, BrokerKind, Caller, NodeSetup, ServerProcess, TestBroker};
use serde_json::Value;

const MCO: &str = env!("CARGO_BIN_EXE_mco");

async fn mco(args: &[&str]) -> Output {
    muster_testkit::run_mco(MCO, args).await
}

/// `mco rpc <args> --json` as `config`'s caller: the replies' status codes.
async fn statuses(config: &str, args: &[&str]) -> Vec<u64> {
    let mut all = vec!["rpc", "--config", config, "--json"];
    all.extend_from_slice(args);
    let output = mco(&all).await;
    let document: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", stdout(&output), stderr(&output)));
    document["replies"]
        .as_array()
        .unwrap_or_else(|| panic!("no replies in {document}"))
        .iter()
        .map(|r| r["statuscode"].as_u64().unwrap_or(99))
        .collect()
}

#[tokio::test]
async fn a_regex_caller_and_the_groups_file_decide_real_requests() {
    let broker = TestBroker::start(BrokerKind::Embedded).await;
    let (alice, bob, carol) = (
        Caller::new("alice"),
        Caller::new("bob"),
        Caller::new("carol"),
    );
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    // MCollective's layout: `<dir>/<agent>.policy` and `<dir>/groups`.
    std::fs::write(
        policies.join("groups"),
        "# group_name caller_id caller_id ...\noncall cert=alice.mcollective\n",
    )
    .unwrap();
    std::fs::write(
        policies.join("rpcutil.policy"),
        "policy default deny\n\
         allow\t*\t\tping\t\t*\t*\n\
         allow\toncall\t\tinventory\t*\t*\n\
         allow\t/^b.b\\.mcollective$/\tget_fact\trole=web\t*\n",
    )
    .unwrap();
    // Puppet's state: disabled (`puppet agent --disable`'s lock).
    let state = dir.path().join("puppet/state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(
        state.join("agent_disabled.lock"),
        r#"{"disabled_message":"maintenance"}"#,
    )
    .unwrap();
    let settings = format!(
        "plugin.actionpolicy.dir = {}\nplugin.puppet.command = /bin/sh\n\
         plugin.puppet.statedir = {}\nplugin.puppet.rundir = {d}/puppet/run\n\
         plugin.puppet.publicdir = {d}/puppet/public\n",
        policies.display(),
        state.display(),
        d = dir.path().display(),
    );
    let server = ServerProcess::start(
        Path::new(MCO),
        &broker.url(),
        alice.pki(),
        &NodeSetup {
            identity: "node1",
            facts_yaml: "role: web\n",
            classes: &["base"],
            collectives: &[],
            settings: &settings,
        },
    );
    let configs: Vec<String> = [&alice, &bob, &carol]
        .iter()
        .map(|c| c.client_config(&broker.url()).display().to_string())
        .collect();
    let (a, b, c) = (&configs[0], &configs[1], &configs[2]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ping = mco(&["ping", "--config", a, "-t", "1"]).await;
        if stdout(&ping).contains("node1 ") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node1 never answered: {}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The group: alice is on call, bob and carol are not.
    let inventory = ["rpcutil", "inventory", "-I", "node1"];
    assert_eq!(statuses(a, &inventory).await, vec![0], "{}", server.log());
    assert_eq!(statuses(b, &inventory).await, vec![1]);
    assert_eq!(statuses(c, &inventory).await, vec![1]);
    // The regex: bob's certificate matches, alice's and carol's do not.
    let get_fact = ["rpcutil", "get_fact", "fact=role", "-I", "node1"];
    assert_eq!(statuses(b, &get_fact).await, vec![0], "{}", server.log());
    assert_eq!(statuses(a, &get_fact).await, vec![1]);
    assert_eq!(statuses(c, &get_fact).await, vec![1]);
    assert!(
        server.log().contains("not authorized") || server.log().contains("rpcutil.policy"),
        "denials are logged: {}",
        server.log()
    );

    // puppet() in -S: the node's Puppet is disabled.
    let found = mco(&["find", "--config", a, "-S", "puppet().enabled=false"]).await;
    assert_eq!(stdout(&found).trim(), "node1", "{}", stderr(&found));
    let found = mco(&["find", "--config", a, "-S", "puppet().enabled=true"]).await;
    assert_eq!(stdout(&found).trim(), "", "{}", stderr(&found));
}
