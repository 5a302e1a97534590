//! The broker driven byte by byte: framing, errors, and misbehaving clients.

use crate::harness;

use harness::{config, start, start_with, stats_until, Raw};

#[tokio::test]
async fn info_announces_what_clients_need() {
    let broker = start_with(muster_broker::BrokerConfig {
        max_payload: 1234,
        server_name: "test \"quoted\"".into(),
        ..config()
    })
    .await;
    let raw = Raw::connect(broker.local_addr()).await;
    for field in [
        "\"max_payload\":1234",
        "\"proto\":1",
        "\"headers\":true",
        "\"version\":\"2.10.0\"",
        "\"server_name\":\"test \\\"quoted\\\"\"",
        "\"server_id\":\"",
        "\"client_id\":",
        &format!("\"port\":{}", broker.local_addr().port()),
    ] {
        assert!(raw.info.contains(field), "{field} in {}", raw.info);
    }
    assert!(!raw.info.contains("tls_required"), "{}", raw.info);
    broker.shutdown().await;
}

#[tokio::test]
async fn publish_split_at_every_byte_arrives_intact() {
    let broker = start().await;
    let mut sub = Raw::connect(broker.local_addr()).await;
    sub.send("SUB split.test 1\r\n").await;
    sub.ping().await;

    let mut publisher = Raw::connect(broker.local_addr()).await;
    for byte in b"PUB split.test reply.to 11\r\nhello world\r\n" {
        publisher.send([*byte]).await;
    }
    let msg = sub.msg().await;
    assert_eq!(msg.line, "MSG split.test 1 reply.to 11");
    assert_eq!(msg.data, b"hello world");
    broker.shutdown().await;
}

#[tokio::test]
async fn pipelined_commands_in_one_write() {
    let broker = start().await;
    let mut raw = Raw::connect(broker.local_addr()).await;
    let mut batch = String::from("SUB pipe 9\r\n");
    for i in 0..100 {
        let payload = format!("m{i}");
        batch.push_str(&format!("PUB pipe {}\r\n{payload}\r\n", payload.len()));
    }
    batch.push_str("PING\r\n");
    raw.send(batch).await;
    for i in 0..100 {
        let msg = raw.msg().await;
        assert!(msg.line.starts_with("MSG pipe 9 "), "{}", msg.line);
        assert_eq!(msg.data, format!("m{i}").as_bytes());
    }
    assert_eq!(raw.line().await, "PONG");
    broker.shutdown().await;
}

#[tokio::test]
async fn verbose_mode_acknowledges_each_command() {
    let broker = start().await;
    let mut raw = Raw::connect(broker.local_addr()).await;
    raw.send("CONNECT {\"verbose\":true,\"pedantic\":null,\"name\":null}\r\n")
        .await;
    assert_eq!(raw.line().await, "+OK");
    raw.send("SUB v 1\r\n").await;
    assert_eq!(raw.line().await, "+OK");
    raw.send("PUB v 2\r\nhi\r\n").await;
    let msg = raw.msg().await;
    assert_eq!(
        (msg.line.as_str(), &msg.data[..]),
        ("MSG v 1 2", &b"hi"[..])
    );
    assert_eq!(raw.line().await, "+OK");
    raw.send("UNSUB 1\r\n").await;
    assert_eq!(raw.line().await, "+OK");
    // PING is answered by PONG alone.
    assert!(raw.ping().await.is_empty());
    broker.shutdown().await;
}

#[tokio::test]
async fn garbage_is_rejected_and_others_are_still_served() {
    let broker = start().await;
    let mut bad = Raw::connect(broker.local_addr()).await;
    bad.send("HELLO WORLD\r\n").await;
    assert_eq!(
        bad.until_closed().await,
        "-ERR 'Unknown Protocol Operation'\r\n"
    );

    let mut good = Raw::connect(broker.local_addr()).await;
    assert!(good.ping().await.is_empty());
    assert_eq!(broker.stats().protocol_errors, 1);
    broker.shutdown().await;
}

#[tokio::test]
async fn malformed_arguments_are_parser_errors() {
    let broker = start().await;
    for bad in [
        "PUB foo bar\r\n",
        "PUB\r\n",
        "HPUB foo 10 5\r\n",
        "SUB onlysubject\r\n",
        "UNSUB 1 x\r\n",
        "CONNECT {not json}\r\n",
        "CONNECT {\"verbose\":\"yes\"}\r\n",
        "CONNECT [true]\r\n",
        "PUB foo 3\r\nabcdef\r\n",
    ] {
        let mut raw = Raw::connect(broker.local_addr()).await;
        raw.send(bad).await;
        assert_eq!(
            raw.until_closed().await,
            "-ERR 'Parser Error'\r\n",
            "{bad:?}"
        );
    }
    // Well-formed but nested deeper than any client would: refused all the same.
    let deep = format!(
        "CONNECT {{\"x\":{}1{}}}\r\n",
        "[".repeat(100),
        "]".repeat(100)
    );
    let mut raw = Raw::connect(broker.local_addr()).await;
    raw.send(&deep).await;
    assert_eq!(raw.until_closed().await, "-ERR 'Parser Error'\r\n");
    broker.shutdown().await;
}

#[tokio::test]
async fn oversized_payload_closes_the_connection() {
    let broker = start_with(muster_broker::BrokerConfig {
        max_payload: 1024,
        ..config()
    })
    .await;
    let mut sub = Raw::connect(broker.local_addr()).await;
    sub.send("SUB big 1\r\n").await;
    sub.ping().await;

    let mut raw = Raw::connect(broker.local_addr()).await;
    raw.send("PUB big 2048\r\n").await;
    raw.send(vec![b'x'; 2048]).await;
    assert_eq!(
        raw.until_closed().await,
        "-ERR 'Maximum Payload Violation'\r\n"
    );

    // Exactly max_payload is fine.
    let mut raw = Raw::connect(broker.local_addr()).await;
    raw.send(format!("PUB big 1024\r\n{}\r\n", "y".repeat(1024)))
        .await;
    let msg = sub.msg().await;
    assert_eq!(msg.data.len(), 1024);
    assert!(msg.data.iter().all(|b| *b == b'y'));
    broker.shutdown().await;
}

#[tokio::test]
async fn control_line_too_long_closes_the_connection() {
    let broker = start().await;
    let long = "a".repeat(5000);

    let mut raw = Raw::connect(broker.local_addr()).await;
    raw.send(format!("SUB {long} 1\r\n")).await;
    assert_eq!(
        raw.until_closed().await,
        "-ERR 'Maximum Control Line Exceeded'\r\n"
    );

    // No newline at all: the broker must not buffer forever.
    let mut raw = Raw::connect(broker.local_addr()).await;
    raw.send(format!("PUB {long}")).await;
    assert_eq!(
        raw.until_closed().await,
        "-ERR 'Maximum Control Line Exceeded'\r\n"
    );
    assert_eq!(broker.stats().protocol_errors, 2);
    broker.shutdown().await;
}

#[tokio::test]
async fn client_vanishing_mid_message_delivers_nothing() {
    let broker = start().await;
    let mut sub = Raw::connect(broker.local_addr()).await;
    sub.send("SUB half 1\r\n").await;
    sub.ping().await;

    let mut quitter = Raw::connect(broker.local_addr()).await;
    quitter.send("SUB ghost 1\r\n").await;
    quitter.ping().await;
    quitter.send("PUB half 10\r\nhello").await;
    drop(quitter);
    stats_until(&broker, |s| s.connections == 1).await;

    let mut publisher = Raw::connect(broker.local_addr()).await;
    publisher
        .send("PUB ghost 1\r\nx\r\nPUB half 2\r\nok\r\n")
        .await;
    publisher.ping().await;
    let msg = sub.msg().await;
    assert_eq!(msg.data, b"ok");
    let stats = broker.stats();
    assert_eq!((stats.msgs_in, stats.msgs_out), (2, 1), "{stats:?}");
    broker.shutdown().await;
}

#[tokio::test]
async fn invalid_subjects_are_rejected_but_keep_the_connection() {
    let broker = start().await;
    let mut raw = Raw::connect(broker.local_addr()).await;
    for (cmd, err) in [
        ("PUB a.*.b 1\r\nx\r\n", "-ERR 'Invalid Publish Subject'"),
        ("PUB a.> 1\r\nx\r\n", "-ERR 'Invalid Publish Subject'"),
        ("PUB a..b 1\r\nx\r\n", "-ERR 'Invalid Publish Subject'"),
        ("SUB a..b 1\r\n", "-ERR 'Invalid Subject'"),
        ("SUB a.>.b 1\r\n", "-ERR 'Invalid Subject'"),
        ("SUB .a 1\r\n", "-ERR 'Invalid Subject'"),
    ] {
        raw.send(cmd).await;
        assert_eq!(raw.ping().await, vec![err.to_string()], "{cmd:?}");
    }
    // Still a working connection.
    raw.send("SUB a.*.b 1\r\nPUB a.x.b 2\r\nok\r\n").await;
    assert_eq!(raw.msg().await.data, b"ok");
    assert_eq!(broker.stats().protocol_errors, 6);
    broker.shutdown().await;
}

#[tokio::test]
async fn bare_newlines_and_lowercase_verbs_are_accepted() {
    let broker = start().await;
    let mut raw = Raw::connect(broker.local_addr()).await;
    raw.send("sub  lf\t 3\npub lf 2\nhi\n").await;
    let msg = raw.msg().await;
    assert_eq!(
        (msg.line.as_str(), &msg.data[..]),
        ("MSG lf 3 2", &b"hi"[..])
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn hpub_goes_out_as_hmsg_only_to_header_clients() {
    let broker = start().await;
    let mut plain = Raw::connect(broker.local_addr()).await;
    plain.send("SUB h 1\r\n").await;
    plain.ping().await;
    let mut modern = Raw::connect(broker.local_addr()).await;
    modern
        .send("CONNECT {\"headers\":true}\r\nSUB h 2\r\n")
        .await;
    modern.ping().await;

    let headers = "NATS/1.0\r\nK: v\r\n\r\n";
    let mut publisher = Raw::connect(broker.local_addr()).await;
    publisher
        .send(format!(
            "HPUB h r {} {}\r\n{headers}body\r\n",
            headers.len(),
            headers.len() + 4
        ))
        .await;
    let msg = modern.msg().await;
    assert_eq!(
        msg.line,
        format!("HMSG h 2 r {} {}", headers.len(), headers.len() + 4)
    );
    assert_eq!(msg.data, format!("{headers}body").as_bytes());
    let msg = plain.msg().await;
    assert_eq!(
        (msg.line.as_str(), &msg.data[..]),
        ("MSG h 1 r 4", &b"body"[..])
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn unsub_with_max_counts_earlier_deliveries() {
    let broker = start().await;
    let mut raw = Raw::connect(broker.local_addr()).await;
    raw.send("SUB u 1\r\nPUB u 1\r\na\r\nPUB u 1\r\nb\r\nUNSUB 1 3\r\n")
        .await;
    raw.send("PUB u 1\r\nc\r\nPUB u 1\r\nd\r\nPUB u 1\r\ne\r\n")
        .await;
    let got: Vec<Vec<u8>> = vec![
        raw.msg().await.data,
        raw.msg().await.data,
        raw.msg().await.data,
    ];
    assert_eq!(got, vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
    assert!(
        raw.ping().await.is_empty(),
        "nothing after the third message"
    );

    // A max already reached removes the subscription at once.
    raw.send("SUB w 2\r\nPUB w 1\r\nx\r\nUNSUB 2 1\r\nPUB w 1\r\ny\r\n")
        .await;
    assert_eq!(raw.msg().await.data, b"x");
    assert!(raw.ping().await.is_empty());
    broker.shutdown().await;
}

#[tokio::test]
async fn no_responders_status_for_header_clients() {
    let broker = start().await;
    let mut raw = Raw::connect(broker.local_addr()).await;
    raw.send("CONNECT {\"headers\":true,\"no_responders\":true}\r\nSUB _INBOX.me.* 5\r\n")
        .await;
    raw.send("PUB nobody.home _INBOX.me.1 2\r\nhi\r\n").await;
    let msg = raw.msg().await;
    assert_eq!(msg.line, "HMSG _INBOX.me.1 5 16 16");
    assert_eq!(msg.data, b"NATS/1.0 503\r\n\r\n");

    // Without no_responders the request simply goes unanswered.
    let mut old = Raw::connect(broker.local_addr()).await;
    old.send("SUB _INBOX.old.* 1\r\nPUB nobody.home _INBOX.old.1 2\r\nhi\r\n")
        .await;
    assert!(old.ping().await.is_empty());
    broker.shutdown().await;
}

#[tokio::test]
async fn slow_consumer_is_dropped_and_others_get_everything() {
    const BATCH: usize = 32;
    const SIZE: usize = 1024;
    let broker = start_with(muster_broker::BrokerConfig {
        max_pending: 64 * 1024,
        ..config()
    })
    .await;
    let addr = broker.local_addr();

    let mut slow = Raw::connect_small_buffer(addr).await;
    slow.send("SUB flood 1\r\n").await;
    slow.ping().await;
    let mut healthy = Raw::connect(addr).await;
    healthy.send("SUB flood 1\r\n").await;
    healthy.ping().await;
    let mut publisher = Raw::connect(addr).await;

    // Lockstep with the healthy subscriber, so only the slow one falls behind.
    let mut sent = 0usize;
    let mut received = 0usize;
    for _ in 0..4000 {
        let mut batch = Vec::with_capacity(BATCH * (SIZE + 32));
        for _ in 0..BATCH {
            let payload = format!("{sent:0SIZE$}");
            batch.extend_from_slice(format!("PUB flood {SIZE}\r\n{payload}\r\n").as_bytes());
            sent += 1;
        }
        publisher.send(batch).await;
        for _ in 0..BATCH {
            let msg = healthy.msg().await;
            assert_eq!(
                String::from_utf8(msg.data)
                    .unwrap()
                    .parse::<usize>()
                    .unwrap(),
                received
            );
            received += 1;
        }
        if broker.stats().slow_consumers > 0 {
            break;
        }
    }
    assert_eq!(broker.stats().slow_consumers, 1);
    assert_eq!(received, sent);
    stats_until(&broker, |s| s.connections == 2).await;

    // Everyone else carries on.
    publisher.send("PUB flood 4\r\nlast\r\n").await;
    assert_eq!(healthy.msg().await.data, b"last");
    broker.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_clients_and_stops_listening() {
    let broker = start().await;
    let addr = broker.local_addr();
    let mut raw = Raw::connect(addr).await;
    raw.send("SUB s 1\r\n").await;
    raw.ping().await;
    assert_eq!(broker.stats().connections, 1);
    broker.shutdown().await;
    assert_eq!(raw.until_closed().await, "");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn dropping_the_handle_stops_the_broker() {
    let broker = start().await;
    let mut raw = Raw::connect(broker.local_addr()).await;
    drop(broker);
    assert_eq!(raw.until_closed().await, "");
}

#[tokio::test]
async fn noise_on_many_connections_leaves_the_broker_serving() {
    const PIECES: &[&str] = &[
        "PUB ",
        "HPUB ",
        "SUB ",
        "UNSUB ",
        "PING",
        "PONG",
        "CONNECT ",
        "{\"echo\":false}",
        " ",
        "\t",
        "\r\n",
        "\n",
        "a",
        ".",
        "*",
        ">",
        "0",
        "1",
        "3",
        "12",
        "x",
        "noise.1",
    ];
    let broker = start().await;
    let mut watcher = Raw::connect(broker.local_addr()).await;
    watcher.send("SUB > 1\r\n").await;
    watcher.ping().await;

    let mut seed = 42u64;
    let mut below = |n: usize| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((seed >> 33) as usize) % n
    };
    for _ in 0..50 {
        let mut raw = Raw::connect(broker.local_addr()).await;
        let noise: String = (0..200).map(|_| PIECES[below(PIECES.len())]).collect();
        raw.send(noise).await;
        drop(raw);
    }
    stats_until(&broker, |s| s.connections == 1).await;

    let mut publisher = Raw::connect(broker.local_addr()).await;
    publisher.send("PUB after.noise 2\r\nok\r\n").await;
    publisher.ping().await;
    loop {
        let msg = watcher.msg().await;
        if msg.line.starts_with("MSG after.noise ") {
            assert_eq!(msg.data, b"ok");
            break;
        }
    }
    broker.shutdown().await;
}
