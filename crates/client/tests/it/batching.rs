//! Batching and node limits against real nodes on an embedded broker: the
//! nodes count how many `work` actions run at once, so a test can see that
//! a batched call never has more than a batch in flight.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use muster_client::{Batch, Call, Client, ClientConfig, Limit, Outcome, QuietWindow, Targets};
use muster_protocol::ddl::Ddl;
use muster_protocol::{Filter, Request};
use muster_server::agent::{ActionFuture, Agent};
use muster_server::daemon::serve;
use muster_server::fleet::simulated_node;
use muster_server::Node;
use muster_testkit::{BrokerKind, Caller, TestBroker};

const NODES: usize = 10;
const WORK: Duration = Duration::from_millis(200);

const DDL: &str = r#"{
  "metadata": {"name": "work", "description": "Takes a while", "timeout": 5},
  "actions": [{"action": "work", "description": "Sleep for a moment", "input": {}, "output": {}}]
}"#;

/// How many `work` actions run right now, over all nodes, and the most seen.
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
            tokio::time::sleep(WORK).await;
            seen.now.fetch_sub(1, Ordering::SeqCst);
            Ok(serde_json::json!({}))
        })
    }
}

struct Setup {
    _broker: TestBroker,
    _caller: Caller,
    _nodes: async_nats::Client,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    client: Client,
    seen: Arc<Concurrency>,
    identities: Vec<String>,
}

impl Drop for Setup {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn setup() -> Setup {
    let broker = TestBroker::start(BrokerKind::Embedded).await;
    let caller = Caller::new("tester");
    let trust = caller.pki().authority();
    let signer = Arc::new(caller.pki().credential("node.fleet"));
    let seen = Arc::new(Concurrency::default());
    let ddl = Ddl::from_json(DDL).expect("the work DDL parses");
    let connection = muster_connector::connect_client(
        &[broker.url()],
        "batching nodes",
        Duration::from_secs(10),
        &caller.pki().transport("node.fleet"),
    )
    .await
    .expect("nodes connect");
    let mut tasks = Vec::new();
    let mut identities = Vec::new();
    for n in 1..=NODES {
        let identity = format!("node{n:02}");
        let mut node = simulated_node(&identity, n, trust.clone());
        node.add_agent(Arc::new(WorkAgent {
            ddl: ddl.clone(),
            seen: seen.clone(),
        }));
        tasks.push(
            serve(Arc::new(node), connection.clone(), signer.clone())
                .await
                .expect("serve"),
        );
        identities.push(identity);
    }
    // Once flushed, the broker has every subscription.
    connection.flush().await.expect("flush subscriptions");
    let config =
        ClientConfig::load(Some(&caller.client_config(&broker.url()))).expect("client config");
    let client = Client::connect(config).await.expect("connect");
    Setup {
        _broker: broker,
        _caller: caller,
        _nodes: connection,
        tasks,
        client,
        seen,
        identities,
    }
}

impl Setup {
    /// Runs `work` on `nodes`, returning the outcome, how many replies were
    /// streamed, and the most actions seen in flight at once.
    async fn work(&self, nodes: Vec<String>, batch: Option<Batch>) -> (Outcome, usize, usize) {
        self.seen.max.store(0, Ordering::SeqCst);
        let mut call = Call::new("work", "work")
            .with_targets(Targets::Nodes(nodes))
            .with_timeout(Duration::from_secs(5));
        call.batch = batch;
        let mut streamed = 0;
        let outcome = self
            .client
            .call(&call, |_| streamed += 1)
            .await
            .expect("call");
        (outcome, streamed, self.seen.max.load(Ordering::SeqCst))
    }

    async fn discover(&self) -> Vec<String> {
        let window = QuietWindow {
            floor: Duration::from_millis(300),
            ..QuietWindow::default()
        };
        self.client
            .discover(&Filter::default(), None, Duration::from_secs(5), window)
            .await
            .expect("discover")
    }
}

fn senders(outcome: &Outcome) -> Vec<String> {
    let mut senders: Vec<String> = outcome
        .responses
        .iter()
        .map(|r| r.identity().to_string())
        .collect();
    senders.sort();
    senders
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_batches_every_node_works_at_once() {
    let s = setup().await;
    let (outcome, streamed, max) = s.work(s.identities.clone(), None).await;
    assert_eq!(senders(&outcome), s.identities);
    assert_eq!(streamed, NODES);
    assert!(max > 3, "only {max} in flight at once without batching");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_bound_concurrency_and_sleep_between() {
    let s = setup().await;
    let sleep = Duration::from_millis(200);
    let started = Instant::now();
    let batch = Batch::new(3).with_sleep(sleep);
    let (outcome, streamed, max) = s.work(s.identities.clone(), Some(batch)).await;
    let wall = started.elapsed();
    assert!(max <= 3, "{max} in flight at once with --batch 3");
    assert!(max >= 1);
    assert_eq!(senders(&outcome), s.identities);
    assert_eq!(streamed, NODES, "every reply streams to on_reply");
    assert_eq!(outcome.expected.as_deref(), Some(&s.identities[..]));
    assert!(outcome.missing.is_empty(), "{:?}", outcome.missing);
    assert!(outcome.responses.iter().all(|r| r.reply.statuscode.is_ok()));
    // 10 nodes in batches of 3: four rounds of work and three sleeps.
    let least = 4 * WORK + 3 * sleep;
    assert!(
        outcome.elapsed >= least,
        "{:?} elapsed, less than {least:?}",
        outcome.elapsed
    );
    assert!(wall >= outcome.elapsed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absent_nodes_in_any_batch_are_listed_as_missing() {
    let s = setup().await;
    // Batches of four: ghost with node01-03, node04-07, then node08-10
    // with phantom.
    let mut nodes = vec!["ghost".to_string()];
    nodes.extend(s.identities.iter().cloned());
    nodes.push("phantom".into());
    let call = Call::new("work", "work")
        .with_targets(Targets::Nodes(nodes.clone()))
        .with_timeout(Duration::from_secs(1))
        .with_batch(Batch::new(4).with_sleep(Duration::ZERO));
    let outcome = s.client.call(&call, |_| {}).await.expect("call");
    assert_eq!(senders(&outcome), s.identities);
    assert_eq!(outcome.missing, ["ghost", "phantom"]);
    assert_eq!(outcome.expected.as_deref(), Some(&nodes[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasts_ignore_batches() {
    let s = setup().await;
    let call = Call::new("work", "work")
        .with_targets(Targets::Broadcast)
        .with_timeout(Duration::from_secs(5))
        .with_batch(Batch::new(2));
    let outcome = s.client.call(&call, |_| {}).await.expect("call");
    assert_eq!(senders(&outcome), s.identities);
    assert!(s.seen.max.load(Ordering::SeqCst) > 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_pick_a_seeded_subset_of_the_discovered_nodes() {
    let s = setup().await;
    let discovered = s.discover().await;
    assert_eq!(discovered, s.identities);

    for (limit, count) in [
        (Limit::Count(3), 3),
        (Limit::Count(1), 1),
        (Limit::Count(99), NODES),
        (Limit::Percent(25), 3),
        (Limit::Percent(50), 5),
        (Limit::Percent(1), 1),
    ] {
        let chosen = limit.choose(&discovered, 11);
        assert_eq!(chosen.len(), count, "{limit}");
        assert!(chosen.iter().all(|n| discovered.contains(n)), "{chosen:?}");
        assert_eq!(limit.choose(&discovered, 11), chosen, "{limit}: same seed");
    }
    let first = Limit::Count(3).choose(&discovered, 1);
    assert!(
        (2..30).any(|seed| Limit::Count(3).choose(&discovered, seed) != first),
        "different seeds can pick different nodes"
    );

    // The request then goes to exactly the chosen nodes.
    let (outcome, streamed, _) = s.work(first.clone(), None).await;
    assert_eq!(senders(&outcome), first);
    assert_eq!(streamed, 3);
    assert_eq!(outcome.expected.map(|e| e.len()), Some(3));
}
