//! TLS with required client certificates, admission and permissions.

use crate::harness;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use harness::pki::{self, Ca, Identity};
use harness::{config, read_line, read_until_closed, start_with, stats_until, within, Raw};
use muster_broker::{Admission, BrokerConfig, BrokerHandle, Permissions, Security};
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A CA, the broker's certificate, and a broker using them.
struct Fixture {
    ca: Ca,
    broker: BrokerHandle,
}

impl Fixture {
    /// A TLS broker whose admission gives each common name
    /// `permissions(name)`, refusing names mapped to `None`.
    async fn new(
        permissions: impl Fn(&str) -> Option<Permissions> + Send + Sync + 'static,
    ) -> Fixture {
        Fixture::with(permissions, |c| c).await
    }

    async fn with(
        permissions: impl Fn(&str) -> Option<Permissions> + Send + Sync + 'static,
        tweak: impl FnOnce(BrokerConfig) -> BrokerConfig,
    ) -> Fixture {
        let mut ca = Ca::new("test CA");
        let server = ca.server();
        let security = pki::security(ca.server_config(&server), permissions);
        let broker = start_with(tweak(tls_config(security))).await;
        Fixture { ca, broker }
    }

    /// An async-nats client presenting `identity`.
    async fn nats(
        &self,
        identity: &Identity,
    ) -> Result<async_nats::Client, async_nats::ConnectError> {
        within(
            "async-nats connect",
            async_nats::ConnectOptions::new()
                .tls_client_config(self.ca.client_config(Some(identity)))
                .require_tls(true)
                .connect(self.broker.url()),
        )
        .await
    }

    /// A raw client over TLS presenting `identity`, CONNECT sent.
    async fn raw(&self, identity: &Identity) -> Raw {
        let mut raw = Raw::tls(
            self.broker.local_addr(),
            self.ca.client_config(Some(identity)),
        )
        .await;
        raw.send("CONNECT {}\r\n").await;
        raw
    }
}

/// A config for a TLS broker. The auth timeout is generous so that a loaded
/// machine does not fail good clients; the timeout tests set their own.
fn tls_config(security: Security) -> BrokerConfig {
    BrokerConfig {
        security: Some(security),
        auth_timeout: Duration::from_secs(10),
        ..config()
    }
}

fn allow_all(_: &str) -> Option<Permissions> {
    Some(Permissions::allow_all())
}

fn perms(publish: &[&str], subscribe: &[&str]) -> Permissions {
    Permissions {
        publish: publish.iter().map(|s| s.to_string()).collect(),
        subscribe: subscribe.iter().map(|s| s.to_string()).collect(),
    }
}

async fn next(sub: &mut async_nats::Subscriber) -> async_nats::Message {
    within("a message", sub.next())
        .await
        .expect("subscription open")
}

#[tokio::test]
async fn good_certificate_connects_and_pub_sub_works_over_tls() {
    let mut ca = Ca::new("test CA");
    let server = ca.server();
    let alice = ca.client("alice");
    let seen: Arc<Mutex<Vec<Vec<CertificateDer<'static>>>>> = Arc::default();
    let security = Security::new(ca.server_config(&server), {
        let seen = seen.clone();
        move |chain: &[CertificateDer<'static>]| {
            seen.lock().unwrap().push(chain.to_vec());
            let name = chain.first().and_then(pki::common_name).ok_or("no name")?;
            Ok(Admission {
                name,
                permissions: Permissions::allow_all(),
            })
        }
    });
    let broker = start_with(tls_config(security)).await;

    let client = within(
        "async-nats connect",
        async_nats::ConnectOptions::new()
            .tls_client_config(ca.client_config(Some(&alice)))
            .require_tls(true)
            .connect(broker.url()),
    )
    .await
    .expect("a good certificate connects");
    let mut sub = client.subscribe("mcollective.node.web1").await.unwrap();
    client
        .publish("mcollective.node.web1", "over tls".into())
        .await
        .unwrap();
    let msg = next(&mut sub).await;
    assert_eq!(&msg.payload[..], b"over tls");
    let reply = {
        let responder = client.clone();
        let mut service = client.subscribe("svc.echo").await.unwrap();
        client.flush().await.unwrap();
        tokio::spawn(async move {
            if let Some(msg) = service.next().await {
                let reply = msg.reply.expect("a reply subject");
                responder.publish(reply, msg.payload).await.unwrap();
            }
        });
        within("a reply", client.request("svc.echo", "echo".into()))
            .await
            .unwrap()
    };
    assert_eq!(&reply.payload[..], b"echo");

    let chains = seen.lock().unwrap().clone();
    assert_eq!(chains.len(), 1, "admit runs once per connection");
    assert_eq!(chains[0], alice.chain, "admit saw the client's chain");
    let stats = broker.stats();
    assert_eq!(stats.connections, 1);
    assert_eq!(
        (
            stats.tls_handshake_failed,
            stats.authorization_refused,
            stats.tls_required_refused
        ),
        (0, 0, 0),
        "{stats:?}"
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn rsa_client_certificate_works() {
    let mut f = Fixture::new(allow_all).await;
    let rsa = f.ca.rsa_client("rsa-node");
    let client = f.nats(&rsa).await.expect("an RSA certificate connects");
    let mut sub = client.subscribe("rsa.test").await.unwrap();
    client.publish("rsa.test", "rsa".into()).await.unwrap();
    assert_eq!(&next(&mut sub).await.payload[..], b"rsa");
    f.broker.shutdown().await;
}

#[tokio::test]
async fn plain_text_on_the_tls_port_is_told_tls_is_required() {
    let f = Fixture::new(allow_all).await;
    let mut tcp = TcpStream::connect(f.broker.local_addr()).await.unwrap();
    let info = read_line(&mut tcp).await;
    assert!(info.starts_with("INFO {"), "{info}");
    for field in ["\"tls_required\":true", "\"tls_verify\":true"] {
        assert!(info.contains(field), "{field} in {info}");
    }
    tcp.write_all(b"CONNECT {}\r\nPING\r\n").await.unwrap();
    assert_eq!(
        read_until_closed(&mut tcp).await,
        "-ERR 'Secure Connection - TLS Required'\r\n"
    );
    stats_until(&f.broker, |s| s.tls_required_refused == 1).await;

    // async-nats without a TLS config cannot get in either.
    let plain = within("async-nats connect", async_nats::connect(f.broker.url())).await;
    assert!(plain.is_err(), "connected without a client certificate");
    assert_eq!(f.broker.stats().connections, 0);
    f.broker.shutdown().await;
}

#[tokio::test]
async fn client_without_certificate_is_refused() {
    let f = Fixture::new(allow_all).await;
    let (_, tls) = harness::tls_handshake(f.broker.local_addr(), f.ca.client_config(None)).await;
    // In TLS 1.3 the client's side of the handshake may complete before the
    // server rejects it; then the rejection arrives as an alert on read.
    if let Ok(mut tls) = tls {
        let _ = tls.write_all(b"CONNECT {}\r\nPING\r\n").await;
        let mut buf = [0u8; 64];
        let read = within("the refusal", tls.read(&mut buf)).await;
        assert!(
            matches!(read, Err(_) | Ok(0)),
            "no protocol without a certificate: {read:?}"
        );
    }
    stats_until(&f.broker, |s| s.tls_handshake_failed == 1).await;

    let anonymous = within(
        "async-nats connect",
        async_nats::ConnectOptions::new()
            .tls_client_config(f.ca.client_config(None))
            .require_tls(true)
            .connect(f.broker.url()),
    )
    .await;
    assert!(anonymous.is_err());
    stats_until(&f.broker, |s| s.tls_handshake_failed == 2).await;
    assert_eq!(f.broker.stats().connections, 0);
    f.broker.shutdown().await;
}

#[tokio::test]
async fn certificates_the_verifier_rejects_are_refused() {
    // The CRL goes into the server config, so revoke before starting.
    let mut ca = Ca::new("test CA");
    let revoked = ca.revoked_client("lost-laptop");
    let server = ca.server();
    let security = pki::security(ca.server_config(&server), allow_all);
    let broker = start_with(tls_config(security)).await;
    let mut f = Fixture { ca, broker };
    let mut other = Ca::new("another CA");
    let stranger = other.client("stranger");
    let expired = f.ca.expired_client("old");
    let good = f.ca.client("good");
    for (n, bad) in [stranger, expired, revoked].iter().enumerate() {
        let refused = f.nats(bad).await;
        assert!(refused.is_err(), "certificate {n} was accepted");
        stats_until(&f.broker, |s| s.tls_handshake_failed == n as u64 + 1).await;
    }
    // The broker still serves good clients.
    let client = f.nats(&good).await.expect("a good certificate connects");
    client.flush().await.unwrap();
    assert_eq!(f.broker.stats().connections, 1);
    f.broker.shutdown().await;
}

#[tokio::test]
async fn admission_refusal_is_an_authorization_violation() {
    let mut f = Fixture::new(|name| (name != "intruder").then(Permissions::allow_all)).await;
    let intruder = f.ca.client("intruder");
    let mut raw = Raw::tls(f.broker.local_addr(), f.ca.client_config(Some(&intruder))).await;
    raw.send("CONNECT {}\r\nPING\r\n").await;
    assert_eq!(
        raw.until_closed().await,
        "-ERR 'Authorization Violation'\r\n"
    );

    let err = f.nats(&intruder).await.expect_err("refused");
    assert_eq!(
        err.kind(),
        async_nats::ConnectErrorKind::AuthorizationViolation,
        "{err}"
    );
    let stats = stats_until(&f.broker, |s| s.authorization_refused == 2).await;
    assert_eq!(
        stats.tls_handshake_failed, 0,
        "the handshake itself was fine"
    );
    assert_eq!(stats.connections, 0);
    f.broker.shutdown().await;
}

#[tokio::test]
async fn garbage_handshakes_fail_cleanly() {
    let mut f = Fixture::new(allow_all).await;
    let addr = f.broker.local_addr();

    let mut seed = 7u64;
    let mut noise = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (seed >> 56) as u8
            })
            .collect()
    };
    // A whole record holding a handshake message of a type that does not exist.
    let small = [
        &[0x16, 0x03, 0x01, 0x00, 0xc8, 0x63, 0x00, 0x00, 0xc4][..],
        &noise(196),
    ]
    .concat();
    // A handshake message claiming 11 MB.
    let bogus_record = [&[0x16, 0x03, 0x01, 0x00, 0x05][..], b"\xde\xad\xbe\xef\x00"].concat();
    let huge_random = [vec![0x16], noise(8 << 20)].concat();
    // A ClientHello that claims 16 MB, sent as full-size records.
    let mut huge_hello = Vec::with_capacity(5 << 20);
    huge_hello.extend_from_slice(&[0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0xff, 0xff, 0xff]);
    huge_hello.extend_from_slice(&noise(16384 - 4));
    while huge_hello.len() < 4 << 20 {
        huge_hello.extend_from_slice(&[0x16, 0x03, 0x01, 0x40, 0x00]);
        huge_hello.extend_from_slice(&noise(16384));
    }

    for (n, garbage) in [small, bogus_record, huge_random, huge_hello]
        .into_iter()
        .enumerate()
    {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let info = read_line(&mut tcp).await;
        assert!(info.contains("tls_required"));
        let (mut rd, mut wr) = tcp.into_split();
        // The broker gives up long before a huge write is done: ignore errors.
        let writer = tokio::spawn(async move {
            let _ = wr.write_all(&garbage).await;
            wr
        });
        read_until_closed(&mut rd).await;
        let _ = within("the writer", writer).await;
        stats_until(&f.broker, |s| s.tls_handshake_failed == n as u64 + 1).await;
    }

    let good = f.ca.client("good");
    let client = f.nats(&good).await.expect("still serving");
    let mut sub = client.subscribe("after.garbage").await.unwrap();
    client.publish("after.garbage", "ok".into()).await.unwrap();
    assert_eq!(&next(&mut sub).await.payload[..], b"ok");
    let stats = f.broker.stats();
    assert_eq!((stats.connections, stats.tls_handshake_failed), (1, 4));
    f.broker.shutdown().await;
}

#[tokio::test]
async fn subscription_outside_permissions_is_refused_and_the_connection_stays() {
    let mut f = Fixture::new(|name| match name {
        "node" => Some(perms(
            &["mc.reply.>"],
            &["mc.node.web1", "mc.broadcast.*", "_INBOX.>"],
        )),
        _ => Some(Permissions::allow_all()),
    })
    .await;
    let node = f.ca.client("node");
    let admin = f.ca.client("admin");
    let mut raw = f.raw(&node).await;
    for (sub, err) in [
        (
            "SUB > 1\r\n",
            "-ERR 'Permissions Violation for Subscription to \">\"'",
        ),
        (
            "SUB mc.> 1\r\n",
            "-ERR 'Permissions Violation for Subscription to \"mc.>\"'",
        ),
        (
            "SUB mc.node.web2 1\r\n",
            "-ERR 'Permissions Violation for Subscription to \"mc.node.web2\"'",
        ),
        (
            "SUB mc.broadcast.> 1\r\n",
            "-ERR 'Permissions Violation for Subscription to \"mc.broadcast.>\"'",
        ),
        (
            "SUB mc.node.* workers 1\r\n",
            "-ERR 'Permissions Violation for Subscription to \"mc.node.*\" using queue \"workers\"'",
        ),
    ] {
        raw.send(sub).await;
        assert_eq!(raw.ping().await, vec![err.to_string()], "{sub:?}");
    }
    // The same connection can still subscribe where it may, and receive.
    raw.send("SUB mc.node.web1 2\r\nSUB mc.broadcast.* 3\r\nSUB _INBOX.x.* 4\r\n")
        .await;
    assert!(raw.ping().await.is_empty());

    let publisher = f.nats(&admin).await.expect("admin connects");
    for subject in [
        "mc.node.web2",
        "mc.node.web1",
        "mc.broadcast.rpcutil",
        "_INBOX.x.1",
    ] {
        publisher.publish(subject, subject.into()).await.unwrap();
    }
    publisher.flush().await.unwrap();
    let got: Vec<String> = vec![
        raw.msg().await.line,
        raw.msg().await.line,
        raw.msg().await.line,
    ];
    assert_eq!(
        got,
        [
            "MSG mc.node.web1 2 12",
            "MSG mc.broadcast.rpcutil 3 20",
            "MSG _INBOX.x.1 4 10"
        ]
    );
    assert_eq!(f.broker.stats().permission_violations, 5);
    assert_eq!(f.broker.stats().connections, 2);
    f.broker.shutdown().await;
}

#[tokio::test]
async fn publish_outside_permissions_is_dropped() {
    let mut f = Fixture::new(|name| match name {
        "node" => Some(perms(&["mc.reply.>", "_INBOX.>"], &[">"])),
        _ => Some(Permissions::allow_all()),
    })
    .await;
    let node = f.ca.client("node");
    let watcher = f.ca.client("watcher");
    let mut watch = f.raw(&watcher).await;
    watch.send("SUB > 1\r\n").await;
    assert!(watch.ping().await.is_empty());

    let mut raw = f.raw(&node).await;
    raw.send("PUB mc.request.x 4\r\nnope\r\n").await;
    assert_eq!(
        raw.ping().await,
        ["-ERR 'Permissions Violation for Publish to \"mc.request.x\"'"]
    );
    raw.send("HPUB mc.reply 12 14\r\nNATS/1.0\r\n\r\nno\r\n")
        .await;
    assert_eq!(
        raw.ping().await,
        ["-ERR 'Permissions Violation for Publish to \"mc.reply\"'"]
    );
    raw.send("PUB mc.reply.x 3\r\nyes\r\n").await;
    assert!(raw.ping().await.is_empty());

    // Only the allowed message went anywhere.
    let msg = watch.msg().await;
    assert_eq!(
        (msg.line.as_str(), &msg.data[..]),
        ("MSG mc.reply.x 1 3", &b"yes"[..])
    );
    assert!(watch.ping().await.is_empty());
    let stats = f.broker.stats();
    assert_eq!((stats.permission_violations, stats.msgs_in), (2, 1));
    f.broker.shutdown().await;
}

#[tokio::test]
async fn prefix_token_grants_a_fleet_of_node_names() {
    let mut f = Fixture::new(|name| match name {
        "simulator" => Some(perms(&["mc.reply.>"], &["mc.node.node*", "mc.broadcast.>"])),
        _ => Some(Permissions::allow_all()),
    })
    .await;
    let sim = f.ca.client("simulator");
    let admin = f.ca.client("admin");
    let mut raw = f.raw(&sim).await;
    raw.send("SUB mc.node.node0001 1\r\nSUB mc.node.node0002 2\r\n")
        .await;
    assert!(raw.ping().await.is_empty());
    for refused in ["mc.node.web1", "mc.node.*", "mc.node.node1.x"] {
        raw.send(format!("SUB {refused} 9\r\n")).await;
        assert_eq!(
            raw.ping().await,
            [format!(
                "-ERR 'Permissions Violation for Subscription to \"{refused}\"'"
            )]
        );
    }
    raw.send("PUB mc.node.node0001 1\r\nx\r\n").await;
    assert_eq!(
        raw.ping().await,
        ["-ERR 'Permissions Violation for Publish to \"mc.node.node0001\"'"]
    );

    let publisher = f.nats(&admin).await.expect("admin connects");
    publisher
        .publish("mc.node.node0002", "two".into())
        .await
        .unwrap();
    publisher.flush().await.unwrap();
    let msg = raw.msg().await;
    assert_eq!(
        (msg.line.as_str(), &msg.data[..]),
        ("MSG mc.node.node0002 2 3", &b"two"[..])
    );
    assert_eq!(f.broker.stats().permission_violations, 4);
    f.broker.shutdown().await;
}

#[tokio::test]
async fn a_tls_client_must_send_connect_first() {
    let mut f = Fixture::new(allow_all).await;
    let alice = f.ca.client("alice");
    let mut raw = Raw::tls(f.broker.local_addr(), f.ca.client_config(Some(&alice))).await;
    // PING is fine before CONNECT.
    assert!(raw.ping().await.is_empty());
    raw.send("SUB a 1\r\n").await;
    assert_eq!(
        raw.until_closed().await,
        "-ERR 'Authorization Violation'\r\n"
    );
    stats_until(&f.broker, |s| {
        s.authorization_refused == 1 && s.connections == 0
    })
    .await;
    f.broker.shutdown().await;
}

#[tokio::test]
async fn tls_clients_that_stall_are_timed_out() {
    let mut f = Fixture::with(allow_all, |c| BrokerConfig {
        auth_timeout: Duration::from_secs(1),
        ..c
    })
    .await;
    let addr = f.broker.local_addr();
    let alice = f.ca.client("alice");

    // Completes TLS, never sends CONNECT: told so over TLS. (Should a loaded
    // machine stall a handshake past the timeout, try again: this part is
    // about what follows a finished handshake.)
    let mut attempts = 0;
    let mut raw = None;
    while raw.is_none() && attempts < 5 {
        attempts += 1;
        let (_, tls) = harness::tls_handshake(addr, f.ca.client_config(Some(&alice))).await;
        raw = tls.ok().map(|tls| Raw::over(Box::new(tls)));
    }
    let mut raw = raw.expect("a TLS handshake finished in time");
    assert_eq!(
        raw.until_closed().await,
        "-ERR 'Authentication Timeout'\r\n"
    );

    // Never starts TLS: told so in plain text.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    read_line(&mut silent).await;
    assert_eq!(
        read_until_closed(&mut silent).await,
        "-ERR 'Authentication Timeout'\r\n"
    );

    // Starts a handshake and stalls: closed.
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    read_line(&mut stalled).await;
    stalled.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    assert_eq!(read_until_closed(&mut stalled).await, "");

    let stats = stats_until(&f.broker, |s| {
        s.auth_timeouts == attempts + 2 && s.connections == 0
    })
    .await;
    assert_eq!((stats.connections, stats.tls_handshake_failed), (0, 0));
    f.broker.shutdown().await;
}

#[tokio::test]
async fn silent_sockets_do_not_keep_tls_clients_out() {
    let mut f = Fixture::with(allow_all, |c| BrokerConfig {
        auth_timeout: Duration::from_secs(3),
        ..c
    })
    .await;
    let addr = f.broker.local_addr();
    let mut silent = Vec::new();
    for _ in 0..50 {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    let good = f.ca.client("good");
    let client = f
        .nats(&good)
        .await
        .expect("served despite the silent sockets");
    let mut sub = client.subscribe("busy").await.unwrap();
    client.publish("busy", "served".into()).await.unwrap();
    assert_eq!(&next(&mut sub).await.payload[..], b"served");

    for tcp in &mut silent {
        let got = read_until_closed(tcp).await;
        assert!(got.ends_with("-ERR 'Authentication Timeout'\r\n"), "{got}");
    }
    let stats = stats_until(&f.broker, |s| s.auth_timeouts == 50 && s.connections == 1).await;
    assert_eq!(stats.connections, 1);
    client
        .flush()
        .await
        .expect("the good client is still connected");
    f.broker.shutdown().await;
}

#[tokio::test]
async fn max_connections_applies_to_tls_too() {
    let mut f = Fixture::with(allow_all, |c| BrokerConfig {
        max_connections: 2,
        ..c
    })
    .await;
    let a = f.ca.client("a");
    let first = f.nats(&a).await.expect("first");
    let second = f.nats(&a).await.expect("second");
    first.flush().await.unwrap();
    second.flush().await.unwrap();

    let mut third = TcpStream::connect(f.broker.local_addr()).await.unwrap();
    assert_eq!(
        read_until_closed(&mut third).await,
        "-ERR 'maximum connections exceeded'\r\n"
    );
    let err = f.nats(&a).await.expect_err("over the cap");
    assert!(
        err.to_string().contains("maximum connections exceeded"),
        "{err}"
    );
    assert_eq!(f.broker.stats().max_connections_refused, 2);

    drop(first);
    stats_until(&f.broker, |s| s.connections == 1).await;
    let again = f.nats(&a).await.expect("a place is free again");
    again.flush().await.unwrap();
    f.broker.shutdown().await;
}
