//! A call waits as long as its action's DDL says (plus a network margin),
//! not a fixed default: a node whose `slow` action takes 11 s, within its
//! DDL's 15 s, is waited for and answers, though nobody passed a timeout.

use std::sync::Arc;
use std::time::Duration;

use muster_client::{ddls, Call, Client, ClientConfig, Targets};
use muster_protocol::ddl::Ddl;
use muster_protocol::Request;
use muster_server::agent::{ActionFuture, Agent};
use muster_server::daemon::serve;
use muster_server::fleet::simulated_node;
use muster_server::Node;
use muster_testkit::{BrokerKind, Caller, TestBroker};

/// Longer than the 10 s a call used to wait by default.
const WORK: Duration = Duration::from_secs(11);

const DDL: &str = r#"{
  "metadata": {"name": "slow", "description": "Takes its time", "timeout": 15},
  "actions": [{"action": "work", "description": "Sleep 11 s", "input": {}, "output": {}}]
}"#;

struct SlowAgent(Ddl);

impl Agent for SlowAgent {
    fn ddl(&self) -> &Ddl {
        &self.0
    }

    fn call(&self, _node: &Node, _action: &str, _request: &Request) -> ActionFuture {
        Box::pin(async move {
            tokio::time::sleep(WORK).await;
            Ok(serde_json::json!({}))
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_waits_as_long_as_the_ddl_says() {
    let broker = TestBroker::start(BrokerKind::Embedded).await;
    let caller = Caller::new("tester");
    let ddl = Ddl::from_json(DDL).expect("the slow DDL parses");
    let connection = muster_connector::connect_client(
        &[broker.url()],
        "slow node",
        Duration::from_secs(10),
        &caller.pki().transport("node.fleet"),
    )
    .await
    .expect("node connects");
    let mut node = simulated_node("node1", 1, caller.pki().authority());
    node.add_agent(Arc::new(SlowAgent(ddl)));
    let signer = Arc::new(caller.pki().credential("node.fleet"));
    let task = serve(Arc::new(node), connection.clone(), signer)
        .await
        .expect("serve");
    connection.flush().await.expect("flush subscriptions");

    // The client reads the DDL where nodes keep external agents' DDLs.
    let ddl_dir = tempfile::tempdir().unwrap();
    std::fs::write(ddl_dir.path().join("slow.json"), DDL).unwrap();
    let file = caller.client_config(&broker.url());
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str(&format!(
        "plugin.external.agents_dir = {}\n",
        ddl_dir.path().display()
    ));
    std::fs::write(&file, text).unwrap();
    let config = ClientConfig::load(Some(&file)).expect("client config");
    assert_eq!(
        ddls::call_timeout(&config, "slow"),
        Duration::from_secs(15) + ddls::NETWORK_MARGIN
    );
    assert_eq!(
        ddls::call_timeout(&config, "package"),
        Duration::from_secs(302)
    );
    assert_eq!(
        ddls::call_timeout(&config, "nosuchagent"),
        ddls::UNKNOWN_AGENT_TIMEOUT
    );
    let client = Client::connect(config).await.expect("connect");

    let call = Call::new("slow", "work").with_targets(Targets::Nodes(vec!["node1".into()]));
    assert_eq!(call.timeout, None);
    let outcome = client.call(&call, |_| {}).await.expect("call");
    assert!(outcome.missing.is_empty(), "{outcome:?}");
    assert_eq!(outcome.responses.len(), 1);
    assert!(outcome.responses[0].reply.statuscode.is_ok(), "{outcome:?}");
    assert!(outcome.responses[0].rtt >= WORK);
    task.abort();
}
