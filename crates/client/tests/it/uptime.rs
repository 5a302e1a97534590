//! The example application `mco-uptime` against nodes with known uptimes.
//!
//! The example's source is included here as a module, so this test runs
//! exactly its code without building it in a nested cargo; its `main`
//! only parses arguments and connects.

#[path = "../../examples/mco-uptime.rs"]
#[allow(dead_code)]
mod example;

use std::sync::Arc;
use std::time::Duration;

use muster_client::{Client, ClientConfig};
use muster_server::facts::Facts;
use muster_server::watched::Source;
use muster_server::Node;
use muster_testkit::{BrokerKind, Caller, TestBroker};
use serde_json::json;

const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

fn args(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_string).collect()
}

#[test]
fn arguments_parse_into_a_filter() {
    let options = example::parse_args(&args("-F role=web -I /^web/ -t 5 --config c.cfg")).unwrap();
    assert_eq!(
        options.config.as_deref(),
        Some(std::path::Path::new("c.cfg"))
    );
    assert_eq!(options.timeout, Some(Duration::from_secs(5)));
    assert!(!options.filter.is_empty());
    assert!(example::parse_args(&args("-F")).is_err());
    assert!(example::parse_args(&args("--bogus")).is_err());
    assert!(example::parse_args(&args("-t soon")).is_err());
    assert!(example::parse_args(&args("--help")).unwrap().help);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uptime_table_for_a_small_fleet() {
    let broker = TestBroker::start(BrokerKind::Embedded).await;
    let caller = Caller::new("tester");
    let trust = caller.pki().authority();
    let nodes = [
        ("web02", "web", Some(3 * DAY + 4 * HOUR + 59)),
        ("web01", "web", Some(12 * DAY + 23 * HOUR)),
        ("db01", "db", Some(2 * HOUR)),
        ("db02", "db", None),
    ];
    let mut tasks = Vec::new();
    let mut connections = Vec::new();
    for (identity, role, seconds) in nodes {
        // One connection per node, each with the node's own certificate:
        // the broker lets a node answer only under its certificate's name.
        let nats = muster_connector::connect_client(
            &[broker.url()],
            identity,
            Duration::from_secs(10),
            &caller.pki().transport(identity),
        )
        .await
        .expect("connect the node");
        let mut facts = json!({"identity": identity, "role": role});
        if let Some(seconds) = seconds {
            facts["system_uptime"] = json!({"seconds": seconds});
        }
        let node = Node::new(
            identity,
            vec!["mcollective".into()],
            "mcollective",
            Facts::fixed(facts),
            Source::fixed(Vec::new()),
            trust.clone(),
        );
        tasks.push(
            muster_server::daemon::serve(
                Arc::new(node),
                nats.clone(),
                Arc::new(caller.pki().credential(identity)),
            )
            .await
            .expect("serve"),
        );
        nats.flush().await.expect("flush subscriptions");
        connections.push(nats);
    }

    let config = ClientConfig::load(Some(&caller.client_config(&broker.url()))).expect("config");
    let client = Client::connect(config).await.expect("connect");

    let mut out = Vec::new();
    let code = example::run(&client, &example::parse_args(&[]).unwrap(), &mut out)
        .await
        .expect("run");
    let text = String::from_utf8(out).unwrap();
    assert_eq!(code, example::EXIT_OK, "{text}");
    let table: Vec<&str> = text.lines().take(5).collect();
    assert_eq!(
        table,
        [
            "IDENTITY  UPTIME",
            "db01      0d  2h",
            "db02      unknown",
            "web01     12d 23h",
            "web02     3d  4h",
        ],
        "{text}"
    );
    assert!(
        text.contains("\nFinished processing 4 / 4 hosts in "),
        "{text}"
    );
    assert!(
        text.contains("Longest up: web01 (12d 23h); shortest: db01 (0d 2h)"),
        "{text}"
    );

    // Selectors reach the fleet: only the web nodes answer.
    let options = example::parse_args(&args("-F role=web")).unwrap();
    let mut out = Vec::new();
    example::run(&client, &options, &mut out)
        .await
        .expect("run");
    let text = String::from_utf8(out).unwrap();
    let identities: Vec<&str> = text
        .lines()
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(|l| l.split_whitespace().next().unwrap_or(""))
        .collect();
    assert_eq!(identities, ["web01", "web02"], "{text}");

    // A node that is named but absent is listed by name.
    let options = example::parse_args(&args("-I web01 -I web09 -t 1")).unwrap();
    let mut out = Vec::new();
    let code = example::run(&client, &options, &mut out)
        .await
        .expect("run");
    let text = String::from_utf8(out).unwrap();
    assert_eq!(code, example::EXIT_NO_ANSWER, "{text}");
    assert!(text.contains("Finished processing 1 / 2 hosts"), "{text}");
    assert!(text.contains("No response from: web09"), "{text}");

    // Nothing matches: nothing is sent.
    let options = example::parse_args(&args("-F role=nothing")).unwrap();
    let code = example::run(&client, &options, &mut Vec::new())
        .await
        .expect("run");
    assert_eq!(code, example::EXIT_NO_MATCH);

    client.close().await;
    for task in tasks {
        task.abort();
    }
}
