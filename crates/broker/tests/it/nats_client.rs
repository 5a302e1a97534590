//! The broker as async-nats (the client muster uses) sees it.

use crate::harness;

use std::collections::BTreeSet;

use async_nats::{Client, HeaderMap};
use futures::StreamExt;
use harness::{start, within, Raw};

async fn connect(url: &str) -> Client {
    within("async-nats connect", async_nats::connect(url))
        .await
        .expect("connects")
}

async fn next(sub: &mut async_nats::Subscriber) -> async_nats::Message {
    within("a message", sub.next())
        .await
        .expect("subscription open")
}

#[tokio::test]
async fn publish_subscribe_and_headers() {
    let broker = start().await;
    let client = connect(&broker.url()).await;
    let mut sub = client.subscribe("mcollective.node.node0042").await.unwrap();
    client
        .publish("mcollective.node.node0042", "hello".into())
        .await
        .unwrap();
    let msg = next(&mut sub).await;
    assert_eq!(msg.subject.as_str(), "mcollective.node.node0042");
    assert_eq!(&msg.payload[..], b"hello");
    assert!(msg.headers.is_none());

    let mut headers = HeaderMap::new();
    headers.insert("X-Muster", "signed");
    headers.insert("Nats-Msg-Id", "42");
    client
        .publish_with_headers("mcollective.node.node0042", headers, "with headers".into())
        .await
        .unwrap();
    let msg = next(&mut sub).await;
    assert_eq!(&msg.payload[..], b"with headers");
    let headers = msg.headers.expect("headers arrive");
    assert_eq!(headers.get("X-Muster").map(|v| v.as_str()), Some("signed"));
    assert_eq!(headers.get("Nats-Msg-Id").map(|v| v.as_str()), Some("42"));

    let stats = broker.stats();
    assert_eq!(
        (stats.connections, stats.msgs_in, stats.msgs_out),
        (1, 2, 2)
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn request_reply() {
    let broker = start().await;
    let responder = connect(&broker.url()).await;
    let mut service = responder.subscribe("svc.upper").await.unwrap();
    responder.flush().await.unwrap();
    tokio::spawn(async move {
        while let Some(msg) = service.next().await {
            let reply = msg.reply.expect("requests carry a reply subject");
            let upper = String::from_utf8_lossy(&msg.payload).to_uppercase();
            responder.publish(reply, upper.into()).await.unwrap();
        }
    });

    let client = connect(&broker.url()).await;
    for word in ["ping", "pong"] {
        let reply = within("a reply", client.request("svc.upper", word.into()))
            .await
            .unwrap();
        assert_eq!(&reply.payload[..], word.to_uppercase().as_bytes());
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn request_to_nobody_fails_with_no_responders() {
    let broker = start().await;
    let client = connect(&broker.url()).await;
    let err = within(
        "no responders",
        client.request("nobody.listens", "hi".into()),
    )
    .await
    .expect_err("nobody answers");
    assert_eq!(err.kind(), async_nats::RequestErrorKind::NoResponders);
    broker.shutdown().await;
}

#[tokio::test]
async fn wildcards() {
    let broker = start().await;
    let client = connect(&broker.url()).await;
    let mut star = client.subscribe("fleet.*").await.unwrap();
    let mut rest = client.subscribe("fleet.>").await.unwrap();
    let mut middle = client.subscribe("fleet.*.facts").await.unwrap();
    for subject in [
        "fleet",
        "fleet.a",
        "fleet.a.facts",
        "fleet.a.b.c",
        "other.a",
        "fleet.end",
    ] {
        client.publish(subject, subject.into()).await.unwrap();
    }
    let mut got = Vec::new();
    loop {
        let msg = next(&mut star).await;
        got.push(msg.subject.to_string());
        if msg.subject.as_str() == "fleet.end" {
            break;
        }
    }
    assert_eq!(got, ["fleet.a", "fleet.end"]);
    let mut got = Vec::new();
    loop {
        let msg = next(&mut rest).await;
        got.push(msg.subject.to_string());
        if msg.subject.as_str() == "fleet.end" {
            break;
        }
    }
    assert_eq!(
        got,
        ["fleet.a", "fleet.a.facts", "fleet.a.b.c", "fleet.end"]
    );
    assert_eq!(next(&mut middle).await.subject.as_str(), "fleet.a.facts");
    broker.shutdown().await;
}

#[tokio::test]
async fn queue_group_delivers_each_message_once() {
    let broker = start().await;
    let client = connect(&broker.url()).await;
    let mut members = Vec::new();
    for _ in 0..3 {
        members.push(
            client
                .queue_subscribe("jobs", "workers".into())
                .await
                .unwrap(),
        );
    }
    let mut plain = client.subscribe("jobs").await.unwrap();
    client.flush().await.unwrap();

    let publisher = connect(&broker.url()).await;
    for i in 0..30 {
        publisher
            .publish("jobs", i.to_string().into())
            .await
            .unwrap();
    }
    publisher.flush().await.unwrap();

    for i in 0..30 {
        assert_eq!(next(&mut plain).await.payload, i.to_string());
    }
    // The group's messages arrive after the plain copies; merge the members.
    let mut group = futures::stream::select_all(
        members
            .into_iter()
            .enumerate()
            .map(|(i, member)| member.map(move |msg| (i, msg)).boxed()),
    );
    let mut per_member = [0usize; 3];
    let mut seen = BTreeSet::new();
    for _ in 0..30 {
        let (i, msg) = within("a group message", group.next()).await.unwrap();
        assert!(
            seen.insert(String::from_utf8(msg.payload.to_vec()).unwrap()),
            "delivered twice"
        );
        per_member[i] += 1;
    }
    assert_eq!(
        seen.len(),
        30,
        "every message reached the group: {per_member:?}"
    );
    assert!(
        per_member.iter().all(|n| *n > 0),
        "round robin spreads work: {per_member:?}"
    );
    // 30 to the plain subscriber, 30 to the group, nothing more.
    assert_eq!(broker.stats().msgs_out, 60);
    broker.shutdown().await;
}

#[tokio::test]
async fn unsubscribe_after_stops_deliveries() {
    let broker = start().await;
    let client = connect(&broker.url()).await;
    let mut sub = client.subscribe("limited").await.unwrap();
    sub.unsubscribe_after(3).await.unwrap();
    for i in 0..5 {
        client
            .publish("limited", i.to_string().into())
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    for i in 0..3 {
        assert_eq!(next(&mut sub).await.payload, i.to_string());
    }
    assert!(within("end of subscription", sub.next()).await.is_none());
    assert_eq!(broker.stats().msgs_out, 3, "the broker stopped after 3");
    broker.shutdown().await;
}

#[tokio::test]
async fn no_echo_skips_own_publications() {
    let broker = start().await;
    let quiet = within(
        "connect",
        async_nats::ConnectOptions::new()
            .no_echo()
            .connect(broker.url()),
    )
    .await
    .unwrap();
    let mut sub = quiet.subscribe("chatter").await.unwrap();
    quiet.publish("chatter", "mine".into()).await.unwrap();
    quiet.flush().await.unwrap();

    let other = connect(&broker.url()).await;
    other.publish("chatter", "theirs".into()).await.unwrap();
    assert_eq!(&next(&mut sub).await.payload[..], b"theirs");
    broker.shutdown().await;
}

#[tokio::test]
async fn broadcast_reaches_thousands_of_subscriptions() {
    const CONNECTIONS: usize = 50;
    const PER_CONNECTION: usize = 100;
    let broker = start().await;
    let mut nodes = Vec::new();
    for _ in 0..CONNECTIONS {
        let mut raw = Raw::connect(broker.local_addr()).await;
        let subs: String = (0..PER_CONNECTION)
            .map(|sid| format!("SUB mcollective.broadcast.agent.rpcutil {sid}\r\n"))
            .collect();
        raw.send(subs).await;
        raw.ping().await;
        nodes.push(raw);
    }
    let client = connect(&broker.url()).await;
    client
        .publish("mcollective.broadcast.agent.rpcutil", "discover".into())
        .await
        .unwrap();
    for raw in &mut nodes {
        let mut sids = BTreeSet::new();
        for _ in 0..PER_CONNECTION {
            let msg = raw.msg().await;
            assert_eq!(msg.data, b"discover");
            sids.insert(msg.line.split(' ').nth(2).unwrap().to_string());
        }
        assert_eq!(sids.len(), PER_CONNECTION);
    }
    assert_eq!(
        broker.stats().msgs_out,
        (CONNECTIONS * PER_CONNECTION) as u64
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn two_brokers_are_independent() {
    let first = start().await;
    let second = start().await;
    assert_ne!(first.local_addr(), second.local_addr());
    let a = connect(&first.url()).await;
    let b = connect(&second.url()).await;
    let mut on_a = a.subscribe("shared.subject").await.unwrap();
    let mut on_b = b.subscribe("shared.subject").await.unwrap();
    a.flush().await.unwrap();
    b.flush().await.unwrap();

    a.publish("shared.subject", "for a".into()).await.unwrap();
    b.publish("shared.subject", "for b".into()).await.unwrap();
    assert_eq!(&next(&mut on_a).await.payload[..], b"for a");
    assert_eq!(&next(&mut on_b).await.payload[..], b"for b");
    a.publish("shared.subject", "again a".into()).await.unwrap();
    assert_eq!(&next(&mut on_a).await.payload[..], b"again a");

    first.shutdown().await;
    // The second broker is unaffected by the first one's shutdown.
    b.publish("shared.subject", "still b".into()).await.unwrap();
    assert_eq!(&next(&mut on_b).await.payload[..], b"still b");
    assert_eq!(second.stats().msgs_in, 2);
    second.shutdown().await;
}
