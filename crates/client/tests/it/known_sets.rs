//! A broadcast whose filter names exact identities knows whom it waits
//! for: it goes to those nodes directly, ends at the last one's reply
//! instead of waiting for the quiet window, and names the silent ones.

use std::sync::Arc;
use std::time::Duration;

use muster_client::{Call, Client, ClientConfig, QuietWindow, Targets};
use muster_protocol::Filter;
use muster_server::daemon::serve;
use muster_server::fleet::simulated_node;
use muster_testkit::{BrokerKind, Caller, TestBroker};

/// A quiet window no broadcast would end before: only a known set ends sooner.
const PATIENT: QuietWindow = QuietWindow {
    floor: Duration::from_secs(30),
    rtt_factor: 2,
    gap_factor: 4,
    spread_factor: 8,
};

fn ping(identities: &[&str]) -> Call {
    let mut filter = Filter::default();
    for identity in identities {
        filter = filter.identity(identity).expect("identity filter");
    }
    let mut call = Call::new("rpcutil", "ping")
        .with_filter(filter)
        .with_targets(Targets::Broadcast)
        .with_timeout(Duration::from_secs(60));
    call.window = Some(PATIENT);
    call
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_identities_end_at_the_last_reply_and_name_the_silent() {
    let broker = TestBroker::start(BrokerKind::Embedded).await;
    let caller = Caller::new("tester");
    let connection = muster_connector::connect_client(
        &[broker.url()],
        "known nodes",
        Duration::from_secs(10),
        &caller.pki().transport("node.fleet"),
    )
    .await
    .expect("nodes connect");
    let signer = Arc::new(caller.pki().credential("node.fleet"));
    let mut tasks = Vec::new();
    for n in 1..=3 {
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

    let outcome = client
        .call(&ping(&["node01", "node03"]), |_| {})
        .await
        .expect("ping");
    let mut senders: Vec<&str> = outcome.responses.iter().map(|r| r.identity()).collect();
    senders.sort();
    assert_eq!(senders, ["node01", "node03"]);
    assert_eq!(
        outcome.expected.as_deref(),
        Some(&["node01".to_string(), "node03".to_string()][..])
    );
    assert!(outcome.missing.is_empty());
    // Far sooner than the 30 s quiet window a broadcast would wait.
    assert!(outcome.elapsed < Duration::from_secs(15), "{outcome:?}");

    // A silent node is named, and waited for only until the call's timeout.
    let mut call = ping(&["node02", "ghost"]);
    call.timeout = Some(Duration::from_secs(1));
    let outcome = client.call(&call, |_| {}).await.expect("ping");
    assert_eq!(outcome.responses.len(), 1);
    assert_eq!(outcome.missing, ["ghost"]);

    // A regex is no known set: the quiet window decides (it ends at the timeout here).
    let mut call = ping(&["/node0[12]/"]);
    call.timeout = Some(Duration::from_secs(1));
    let outcome = client.call(&call, |_| {}).await.expect("ping");
    assert_eq!(outcome.responses.len(), 2);
    assert_eq!(outcome.expected, None);
    assert!(outcome.unexpected.is_empty());

    // A broadcast cross-checked against a known set: everyone answers, the
    // silent expected node is missing, the strangers are unexpected.
    let mut call = ping(&[]).expecting(vec!["node01".into(), "ghost".into()]);
    call.timeout = Some(Duration::from_secs(1));
    let outcome = client.call(&call, |_| {}).await.expect("ping");
    assert_eq!(outcome.responses.len(), 3);
    assert_eq!(outcome.missing, ["ghost"]);
    assert_eq!(outcome.unexpected, ["node02", "node03"]);
    assert_eq!(
        outcome.expected.as_deref(),
        Some(&["ghost".to_string(), "node01".to_string()][..])
    );

    // Discovery that waits for the expected nodes, then a directed call.
    let mut call = Call::new("rpcutil", "ping")
        .with_timeout(Duration::from_secs(10))
        .expecting(vec!["node02".into(), "ghost".into()]);
    call.discovery_timeout = Duration::from_secs(1);
    let outcome = client.call(&call, |_| {}).await.expect("rpc");
    assert_eq!(outcome.responses.len(), 3);
    assert_eq!(outcome.missing, ["ghost"]);
    assert_eq!(outcome.unexpected, ["node01", "node03"]);
    assert_eq!(outcome.discovery_method.as_deref(), Some("broadcast"));
    for task in tasks {
        task.abort();
    }
}
