//! A call stopped from outside (the cli's Ctrl-C) keeps what arrived: the
//! replies so far, the nodes still silent, and says it was interrupted.

use std::sync::Arc;
use std::time::Duration;

use muster_client::{Call, Client, ClientConfig, Targets};
use muster_server::daemon::serve;
use muster_server::fleet::simulated_node;
use muster_testkit::{BrokerKind, Caller, TestBroker};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_mid_call_keeps_the_replies_and_names_the_silent() {
    let broker = TestBroker::start(BrokerKind::Embedded).await;
    let caller = Caller::new("tester");
    let connection = muster_connector::connect_client(
        &[broker.url()],
        "interrupted nodes",
        Duration::from_secs(10),
        &caller.pki().transport("node.fleet"),
    )
    .await
    .expect("nodes connect");
    let signer = Arc::new(caller.pki().credential("node.fleet"));
    let mut tasks = Vec::new();
    for n in 1..=2 {
        let node = simulated_node(&format!("node0{n}"), n, caller.pki().authority());
        tasks.push(
            serve(Arc::new(node), connection.clone(), signer.clone())
                .await
                .expect("serve"),
        );
    }
    connection.flush().await.expect("flush subscriptions");
    let config =
        ClientConfig::load(Some(&caller.client_config(&broker.url()))).expect("client config");
    let client = Client::connect(config).await.expect("connect");

    // "ghost" listens but never answers (a stopped node): without the
    // stop, the call waits its minute.
    let ghost = muster_connector::connect_client(
        &[broker.url()],
        "ghost",
        Duration::from_secs(10),
        &caller.pki().transport("ghost"),
    )
    .await
    .expect("ghost connects");
    let _listening = ghost
        .subscribe(muster_protocol::subject::node(
            &client.config().main_collective,
            "ghost",
        ))
        .await
        .expect("ghost subscribes");
    ghost.flush().await.expect("flush the ghost");
    let nodes = ["node01", "node02", "ghost"].map(String::from).to_vec();
    let call = Call::new("rpcutil", "ping")
        .with_targets(Targets::Nodes(nodes))
        .with_timeout(Duration::from_secs(60));
    let (fire, stop) = tokio::sync::oneshot::channel::<()>();
    let mut fire = Some(fire);
    let mut seen = 0;
    let outcome = tokio::time::timeout(
        Duration::from_secs(30),
        client.call_until(
            &call,
            |_| {
                seen += 1;
                if seen == 2 {
                    if let Some(fire) = fire.take() {
                        let _ = fire.send(());
                    }
                }
            },
            stop,
        ),
    )
    .await
    .expect("the stop ends the call")
    .expect("call");

    assert!(outcome.interrupted, "{outcome:?}");
    let mut senders: Vec<&str> = outcome.responses.iter().map(|r| r.identity()).collect();
    senders.sort();
    assert_eq!(senders, ["node01", "node02"]);
    assert_eq!(outcome.missing, ["ghost"]);
    assert!(!outcome.request_id.is_empty());

    // Without a stop that fires, the same call is not marked.
    let call = call.with_targets(Targets::Nodes(vec!["node01".into()]));
    let outcome = client.call(&call, |_| {}).await.expect("call");
    assert!(!outcome.interrupted);
    assert_eq!(outcome.responses.len(), 1);
    for task in tasks {
        task.abort();
    }
}
