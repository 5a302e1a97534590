//! A rough throughput measurement, not a pass/fail test. Re-run with:
//!
//! ```text
//! cargo test --release -p muster-broker --test throughput -- --ignored --nocapture
//! ```

use crate::harness;

use std::time::Instant;

use harness::{start, Raw};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run explicitly"]
async fn broadcast_fan_out() {
    const CONNECTIONS: usize = 50;
    const PER_CONNECTION: usize = 100;
    const BROADCASTS: usize = 200;
    let broker = start().await;
    let mut nodes = Vec::new();
    for c in 0..CONNECTIONS {
        let mut raw = Raw::connect(broker.local_addr()).await;
        let mut subs = String::new();
        for sid in 0..PER_CONNECTION {
            subs.push_str(&format!(
                "SUB mcollective.broadcast.agent.rpcutil {sid}\r\n"
            ));
            subs.push_str(&format!("SUB mcollective.node.node{c}x{sid} n{sid}\r\n"));
        }
        subs.push_str(&format!("SUB _INBOX.c{c}.* inbox\r\n"));
        raw.send(subs).await;
        raw.ping().await;
        nodes.push(raw);
    }
    let readers: Vec<_> = nodes
        .into_iter()
        .map(|mut raw| {
            tokio::spawn(async move {
                for _ in 0..PER_CONNECTION * BROADCASTS {
                    raw.msg().await;
                }
            })
        })
        .collect();

    let mut publisher = Raw::connect(broker.local_addr()).await;
    let started = Instant::now();
    let payload = "x".repeat(512);
    for _ in 0..BROADCASTS {
        publisher
            .send(format!(
                "PUB mcollective.broadcast.agent.rpcutil _INBOX.c0.1 {}\r\n{payload}\r\n",
                payload.len()
            ))
            .await;
    }
    let target = (CONNECTIONS * PER_CONNECTION * BROADCASTS) as u64;
    harness::stats_until(&broker, |s| s.msgs_out >= target).await;
    let routed = started.elapsed();
    for reader in readers {
        reader.await.unwrap();
    }
    let elapsed = started.elapsed();
    let delivered = (CONNECTIONS * PER_CONNECTION * BROADCASTS) as f64;
    println!(
        "| subscriptions | broadcasts | deliveries | routed (s) | received (s) | deliveries/s |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    println!(
        "| {} | {BROADCASTS} | {delivered} | {:.3} | {:.3} | {:.0} |",
        CONNECTIONS * PER_CONNECTION,
        routed.as_secs_f64(),
        elapsed.as_secs_f64(),
        delivered / elapsed.as_secs_f64()
    );
    broker.shutdown().await;
}
