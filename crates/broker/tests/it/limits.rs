//! The CONNECT deadline and the connection cap, on a plain TCP broker.

use crate::harness;

use std::time::Duration;

use harness::{config, read_until_closed, start_with, stats_until, within, Raw};
use muster_broker::BrokerConfig;
use tokio::net::TcpStream;

#[tokio::test]
async fn silent_client_gets_authentication_timeout() {
    let broker = start_with(BrokerConfig {
        auth_timeout: Duration::from_millis(300),
        ..config()
    })
    .await;
    let mut silent = Raw::open(broker.local_addr()).await;
    assert_eq!(
        silent.until_closed().await,
        "-ERR 'Authentication Timeout'\r\n"
    );
    let stats = stats_until(&broker, |s| s.auth_timeouts == 1 && s.connections == 0).await;
    assert_eq!(stats.protocol_errors, 0);
    broker.shutdown().await;
}

#[tokio::test]
async fn commands_before_connect_are_served_until_the_deadline() {
    // The default 2 s: the commands below must beat it even on a loaded machine.
    let broker = start_with(config()).await;
    // Without security, commands before CONNECT are served (as nats-server
    // does), but CONNECT must still come in time.
    let mut late = Raw::open(broker.local_addr()).await;
    late.send("SUB early 1\r\nPUB early 2\r\nok\r\n").await;
    assert_eq!(late.msg().await.data, b"ok");
    assert_eq!(
        late.until_closed().await,
        "-ERR 'Authentication Timeout'\r\n"
    );
    stats_until(&broker, |s| s.auth_timeouts == 1 && s.connections == 0).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn a_client_that_sent_connect_outlives_the_auth_timeout() {
    let broker = start_with(BrokerConfig {
        auth_timeout: Duration::from_millis(300),
        ..config()
    })
    .await;
    // Raw::connect sends CONNECT right after INFO. Should a loaded machine
    // delay it past 300 ms, the broker closes the client; try again then, as
    // this test is about what happens after a timely CONNECT.
    let mut raw = None;
    for _ in 0..5 {
        let mut candidate = Raw::connect(broker.local_addr()).await;
        candidate.send("SUB still.here 1\r\nPING\r\n").await;
        if candidate.line().await == "PONG" {
            raw = Some(candidate);
            break;
        }
    }
    let mut raw = raw.expect("a client connected in time");
    tokio::time::sleep(Duration::from_millis(900)).await;
    raw.send("PUB still.here 3\r\nyes\r\n").await;
    assert_eq!(raw.msg().await.data, b"yes");
    broker.shutdown().await;
}

#[tokio::test]
async fn silent_sockets_do_not_keep_others_out() {
    let broker = start_with(BrokerConfig {
        auth_timeout: Duration::from_secs(3),
        ..config()
    })
    .await;
    let addr = broker.local_addr();
    let mut silent = Vec::new();
    for _ in 0..50 {
        silent.push(within("connect", TcpStream::connect(addr)).await.unwrap());
    }
    let mut good = Raw::connect(addr).await;
    good.send("SUB busy 1\r\nPUB busy 6\r\nserved\r\n").await;
    assert_eq!(good.msg().await.data, b"served");

    for tcp in &mut silent {
        let got = read_until_closed(tcp).await;
        assert!(got.starts_with("INFO {"), "{got}");
        assert!(got.ends_with("-ERR 'Authentication Timeout'\r\n"), "{got}");
    }
    let stats = stats_until(&broker, |s| s.auth_timeouts == 50 && s.connections == 1).await;
    assert_eq!(stats.connections, 1);
    assert!(
        good.ping().await.is_empty(),
        "the good client is still served"
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn past_max_connections_new_clients_are_refused() {
    let broker = start_with(BrokerConfig {
        max_connections: 3,
        ..config()
    })
    .await;
    let addr = broker.local_addr();
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut raw = Raw::connect(addr).await;
        assert!(raw.ping().await.is_empty());
        clients.push(raw);
    }

    let mut fourth = within("connect", TcpStream::connect(addr)).await.unwrap();
    assert_eq!(
        read_until_closed(&mut fourth).await,
        "-ERR 'maximum connections exceeded'\r\n"
    );
    let err = within("async-nats connect", async_nats::connect(broker.url()))
        .await
        .expect_err("over the cap");
    assert!(
        err.to_string().contains("maximum connections exceeded"),
        "{err}"
    );
    let stats = broker.stats();
    assert_eq!(
        (stats.connections, stats.max_connections_refused),
        (3, 2),
        "{stats:?}"
    );

    // Once one leaves, a new client is admitted.
    drop(clients.pop());
    stats_until(&broker, |s| s.connections == 2).await;
    let mut again = Raw::connect(addr).await;
    assert!(again.ping().await.is_empty());
    for raw in &mut clients {
        assert!(raw.ping().await.is_empty());
    }
    assert_eq!(broker.stats().total_connections, 4);
    broker.shutdown().await;
}
