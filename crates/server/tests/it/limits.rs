//! A node runs at most `max_agent_processes` agent actions at once; more
//! are answered "busy" at once instead of piling up (100 concurrent
//! requests used to start 100 agent processes).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use muster_protocol::ddl::Ddl;
use muster_protocol::{Envelope, Request, StatusCode};
use muster_server::agent::ActionFuture;
use muster_server::node::Outcome;
use muster_server::{Agent, Node, ServerConfig};
use muster_testkit::TestPki;

const DDL: &str = r#"{
  "metadata": {"name": "work", "description": "Takes a while", "timeout": 5},
  "actions": [{"action": "work", "description": "Sleep for a moment", "input": {}, "output": {}}]
}"#;

#[derive(Default)]
struct Concurrency {
    now: AtomicUsize,
    max: AtomicUsize,
}

struct WorkAgent {
    ddl: Ddl,
    seen: Arc<Concurrency>,
}

impl Agent for WorkAgent {
    fn ddl(&self) -> &Ddl {
        &self.ddl
    }

    fn call(&self, _node: &Node, _action: &str, _request: &Request) -> ActionFuture {
        let seen = self.seen.clone();
        Box::pin(async move {
            let now = seen.now.fetch_add(1, Ordering::SeqCst) + 1;
            seen.max.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(300)).await;
            seen.now.fetch_sub(1, Ordering::SeqCst);
            Ok(serde_json::json!({}))
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_actions_beyond_the_cap_are_answered_busy() {
    let pki = TestPki::shared();
    let config = muster_protocol::config::Config::parse(&format!(
        "identity = node01\nmax_agent_processes = 2\nplugin.security.ssldir = {}\n",
        pki.ssldir().root().display()
    ))
    .unwrap();
    let config = ServerConfig::from_config(&config).unwrap();
    assert_eq!(config.max_agent_processes, 2);
    let mut node = Node::from_config(&config, pki.authority()).unwrap();
    let seen = Arc::new(Concurrency::default());
    node.add_agent(Arc::new(WorkAgent {
        ddl: Ddl::from_json(DDL).unwrap(),
        seen: seen.clone(),
    }));
    let node = Arc::new(node);
    let caller = pki.credential("alice.mcollective");
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let request = Request::new("c", "alice.mcollective", "mcollective", "work", "work");
        let bytes = Envelope::seal(&request, &caller).unwrap().to_bytes();
        let node = node.clone();
        tasks.push(tokio::spawn(async move { node.handle(&bytes).await }));
    }
    let (mut ok, mut busy) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Outcome::Reply { reply, .. } if reply.statuscode == StatusCode::Ok => ok += 1,
            Outcome::Reply { reply, .. } => {
                assert_eq!(reply.statuscode, StatusCode::Aborted, "{reply:?}");
                assert!(reply.statusmsg.contains("max_agent_processes"), "{reply:?}");
                busy += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(ok + busy, 20, "every request is answered");
    assert!(busy >= 1, "some were over the cap");
    assert!(ok >= 2, "the cap's worth ran");
    assert!(
        seen.max.load(Ordering::SeqCst) <= 2,
        "more than 2 ran at once"
    );
    // rpcutil answers from memory and is never capped.
    let request = Request::new("c", "alice.mcollective", "mcollective", "rpcutil", "ping");
    let bytes = Envelope::seal(&request, &caller).unwrap().to_bytes();
    assert!(
        matches!(node.handle(&bytes).await, Outcome::Reply { reply, .. } if reply.statuscode.is_ok())
    );
}
