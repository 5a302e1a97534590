//! Replies are believed on their signature, not on the broker's word: a
//! broker that enforces nothing (as a compromised one would) still cannot
//! make one node's answer pass for another's.

use std::time::Duration;

use futures::StreamExt;
use muster_client::{Call, Client, ClientConfig, Targets};
use muster_protocol::identity::caller_token;
use muster_protocol::{subject, Envelope, Reply, SignedReply};
use muster_server::fleet::{Fleet, FleetSpec};
use muster_testkit::{BrokerKind, Caller, TestBroker, TestPki};

/// A plain-text broker with no admission: every connection may publish anywhere.
async fn lawless_broker() -> TestBroker {
    TestBroker::start_plaintext(BrokerKind::Embedded).await
}

async fn client(caller: &Caller, broker: &TestBroker, verify: bool) -> Client {
    let path = caller.client_config(&broker.url());
    let mut config = ClientConfig::load(Some(&path)).expect("client config");
    config.verify_replies = verify;
    Client::connect_over(
        config,
        caller.pki().identity(&caller.name),
        &Default::default(),
        Duration::from_secs(5),
    )
    .await
    .expect("connect")
}

/// Answers every rpcutil broadcast as `claimed`, on `claimed`'s own reply
/// subject, signed with `signer`'s certificate.
async fn impersonate(broker: &TestBroker, signer: &str, claimed: &'static [&'static str]) {
    let credential = TestPki::shared().credential(signer);
    let nats = async_nats::connect(broker.url())
        .await
        .expect("rogue connects");
    let mut requests = nats
        .subscribe("mcollective.broadcast.agent.rpcutil")
        .await
        .expect("subscribe");
    nats.flush().await.expect("flush");
    tokio::spawn(async move {
        while let Some(message) = requests.next().await {
            let Ok(request) = Envelope::from_bytes(&message.payload).and_then(|e| e.request())
            else {
                continue;
            };
            for &who in claimed {
                let reply = Reply::ok(&request.id, who, serde_json::json!({"pong": 1}));
                let signed = SignedReply::seal(&reply, &credential).expect("sign");
                let subject = subject::reply(
                    "mcollective",
                    &caller_token(&request.caller),
                    &request.id,
                    who,
                );
                let _ = nats.publish(subject, signed.to_bytes().into()).await;
            }
            let _ = nats.flush().await;
        }
    });
}

async fn fleet(broker: &TestBroker, nodes: usize) -> Fleet {
    let spec = FleetSpec::new(
        vec![broker.url()],
        nodes,
        TestPki::shared().identity("node.fleet"),
    );
    Fleet::start(spec).await.expect("fleet")
}

fn ping() -> Call {
    Call::new("rpcutil", "ping")
        .with_targets(Targets::Broadcast)
        .with_timeout(Duration::from_secs(5))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lawless_broker_cannot_make_one_node_speak_for_another() {
    let broker = lawless_broker().await;
    let fleet = fleet(&broker, 3).await;
    // web1 is a real node of the same CA, answering as node01 and as a node
    // that does not exist, on their subjects (nothing stops it here).
    impersonate(&broker, "web1", &["node01", "ghost"]).await;
    let caller = Caller::new("tester");
    let client = client(&caller, &broker, true).await;
    let outcome = client.call(&ping(), |_| {}).await.expect("ping");
    let mut answered: Vec<&str> = outcome.responses.iter().map(|r| r.identity()).collect();
    answered.sort();
    assert_eq!(answered, vec!["node01", "node02", "node03"]);
    let mut ignored = outcome.impostors.clone();
    ignored.sort();
    assert_eq!(ignored, vec!["ghost", "node01"], "{outcome:?}");
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_verification_off_the_broker_is_all_there_is() {
    // The switch a very large deployment might want: documented as a risk,
    // and this is the risk.
    let broker = lawless_broker().await;
    let fleet = fleet(&broker, 2).await;
    impersonate(&broker, "web1", &["ghost"]).await;
    let caller = Caller::new("tester");
    let client = client(&caller, &broker, false).await;
    let outcome = client.call(&ping(), |_| {}).await.expect("ping");
    assert!(
        outcome.responses.iter().any(|r| r.identity() == "ghost"),
        "without verification a forged reply is believed: {outcome:?}"
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_and_foreign_replies_are_refused() {
    let broker = lawless_broker().await;
    let fleet = fleet(&broker, 1).await;
    let caller = Caller::new("tester");
    // A certificate from another CA, claiming node01.
    let outsider = TestPki::new();
    outsider.issue("node01");
    let credential = outsider.credential("node01");
    let nats = async_nats::connect(broker.url()).await.expect("connect");
    let mut requests = nats
        .subscribe("mcollective.broadcast.agent.rpcutil")
        .await
        .expect("subscribe");
    nats.flush().await.expect("flush");
    tokio::spawn(async move {
        while let Some(message) = requests.next().await {
            let Ok(request) = Envelope::from_bytes(&message.payload).and_then(|e| e.request())
            else {
                continue;
            };
            let token = caller_token(&request.caller);
            let reply = Reply::ok(&request.id, "node01", serde_json::json!({"forged": true}));
            let subject = subject::reply("mcollective", &token, &request.id, "node01");
            let signed = SignedReply::seal(&reply, &credential).expect("sign");
            let _ = nats
                .publish(subject.clone(), signed.to_bytes().into())
                .await;
            // Unsigned, as replies were before.
            let plain = serde_json::to_vec(&reply).expect("json");
            let _ = nats.publish(subject, plain.into()).await;
            let _ = nats.flush().await;
        }
    });
    let client = client(&caller, &broker, true).await;
    let outcome = client.call(&ping(), |_| {}).await.expect("ping");
    assert_eq!(outcome.responses.len(), 1, "{outcome:?}");
    assert!(outcome.responses[0].reply.data.get("forged").is_none());
    assert_eq!(outcome.impostors, vec!["node01"], "{outcome:?}");
    assert!(outcome.bad_replies >= 1, "{outcome:?}");
    fleet.stop().await;
}
