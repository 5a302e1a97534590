//! How long a call to the whole fleet takes until every node has answered,
//! by discovery method (docs/discovery.md#the-discovery-benchmark).
//!
//! For each fleet size, this starts a simulated fleet in-process on a fresh
//! embedded broker and runs `rpcutil ping` on every node the ways `mco` can:
//!
//! - **broadcast ping**: `mco ping`, one broadcast, ends when replies go
//!   quiet (the adaptive window, floor 100 ms);
//! - **broadcast rpc**: `mco rpc` with broadcast discovery: a discovery
//!   broadcast that ends at quiet, then the request to each found node,
//!   ending at the last reply;
//! - **flatfile** / **inventory**: the node list from a file (identities;
//!   node records filtered here), then the request to each node, ending at
//!   the last reply: no quiet window anywhere.
//!
//! A cell is "time to a complete answer": from the start (discovery
//! included) until the call ended with every node's reply, median / min.
//! A bare NATS fan-out (N plain subscribers answering one publish) on the
//! same broker is the floor. Methods that need a service (registry,
//! PuppetDB) join the table by adding a column to `methods()`.
//!
//! ```text
//! cargo bench -p muster-cli --bench discovery [-- --nodes 1000,10000 --runs 3]
//! ```

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::StreamExt;
use muster_client::{Call, Client, ClientConfig, Discovery, NodeList, NodeRecord, Targets};
use muster_server::fleet::{Fleet, FleetSpec};
use muster_testkit::{BrokerKind, Caller, TestBroker, TestPki};
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

const RERUN: &str = "cargo bench -p muster-cli --bench discovery [-- --nodes 1000,10000 --runs 3]";
/// How the fleet simulator groups nodes on connections; the baseline does the same.
const PER_CONNECTION: usize = 100;
/// Generous: 10 000 simulated nodes share the machine with the client.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(10);

struct Options {
    nodes: Vec<usize>,
    runs: usize,
}

impl Options {
    fn parse() -> anyhow::Result<Options> {
        let mut options = Options {
            nodes: vec![1000, 10_000],
            runs: 3,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--nodes" => {
                    let list = args
                        .next()
                        .context("--nodes needs a list, e.g. 1000,10000")?;
                    options.nodes = list
                        .split(',')
                        .map(|n| n.trim().replace('_', "").parse::<usize>())
                        .collect::<Result<_, _>>()
                        .with_context(|| {
                            format!("--nodes {list:?}: expected numbers separated by commas")
                        })?;
                }
                "--runs" => {
                    let runs = args.next().context("--runs needs a number")?;
                    options.runs = runs.parse().with_context(|| format!("--runs {runs:?}"))?;
                }
                // cargo passes `--bench` to every bench target.
                "--bench" => {}
                other => bail!("unknown argument {other:?}; usage: {RERUN}"),
            }
        }
        if options.runs == 0 || options.nodes.contains(&0) {
            bail!("--runs and every --nodes size must be at least 1");
        }
        Ok(options)
    }
}

/// Median and minimum of some timings.
#[derive(Clone, Copy)]
struct Spread {
    median: Duration,
    min: Duration,
}

impl Spread {
    fn of(mut samples: Vec<Duration>) -> Option<Spread> {
        samples.sort();
        Some(Spread {
            median: *samples.get(samples.len() / 2)?,
            min: *samples.first()?,
        })
    }
}

impl std::fmt::Display for Spread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(&format!("{} / {}", ms(self.median), ms(self.min)))
    }
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// How a column finds the nodes.
enum How {
    /// `mco ping`: one broadcast, collection ends at quiet.
    BroadcastPing,
    /// Discover with this method, then call each node directly.
    Discover(Discovery),
    /// Not measurable here yet (the method or its service is missing).
    Absent(&'static str),
}

/// The table's columns. The fleet's node list and inventory are in `files`.
fn methods(files: &Path) -> Vec<(&'static str, How)> {
    vec![
        ("broadcast ping", How::BroadcastPing),
        ("broadcast rpc", How::Discover(Discovery::Broadcast)),
        (
            "flatfile",
            How::Discover(Discovery::Flatfile(NodeList::File(files.join("nodes.txt")))),
        ),
        (
            "inventory",
            How::Discover(Discovery::Inventory(files.join("inventory.json"))),
        ),
        ("registry", How::Absent("not in this build")),
        ("puppetdb", How::Absent("not in this build")),
    ]
}

/// Where each part runs: broker, fleet and client on their own runtimes,
/// as they would be separate processes.
struct Runtimes {
    broker: Arc<Runtime>,
    fleet: Arc<Runtime>,
    client: Arc<Runtime>,
}

impl Runtimes {
    fn new() -> anyhow::Result<Runtimes> {
        let build = || -> anyhow::Result<Arc<Runtime>> {
            Ok(Arc::new(
                tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .build()
                    .context("cannot build a tokio runtime")?,
            ))
        };
        Ok(Runtimes {
            broker: build()?,
            fleet: build()?,
            client: build()?,
        })
    }
}

fn main() -> anyhow::Result<()> {
    let options = Options::parse()?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let runtimes = Runtimes::new()?;
    let files = tempfile::tempdir().context("temp dir")?;
    let columns = methods(files.path());
    println!("muster discovery benchmark ({cores} cores) — re-run: {RERUN}");
    println!(
        "time to a complete answer (rpcutil ping on every node, discovery included), median / min of {} runs after one warm-up; embedded broker, security on",
        options.runs
    );
    println!();
    let mut header = format!("{:>6}  {:<20}", "nodes", "bare fan-out");
    for (name, _) in &columns {
        header.push_str(&format!("  {name:<20}"));
    }
    println!("{}", header.trim_end());
    let mut notes = Vec::new();
    for &nodes in &options.nodes {
        match measure(&runtimes, files.path(), &columns, nodes, options.runs) {
            Ok((cells, mut row_notes)) => {
                println!("{}", cells.trim_end());
                notes.append(&mut row_notes);
            }
            Err(e) => println!("{nodes:>6}  failed: {e:#}"),
        }
    }
    println!();
    println!(
        "broadcast ping = `mco ping` (ends when replies go quiet); broadcast rpc = discovery \
         broadcast (ends at quiet) + the request to each found node; flatfile, inventory = the \
         node list from a file + the request to each node, ending at the last reply. \
         registry, puppetdb: columns for the methods of issue 14's other parts."
    );
    for (name, how) in &columns {
        if let How::Absent(why) = how {
            println!("{name}: {why}");
        }
    }
    for note in notes {
        println!("note: {note}");
    }
    Ok(())
}

/// One row: a fresh broker and fleet of `nodes`, every column measured on it.
fn measure(
    runtimes: &Runtimes,
    files: &Path,
    columns: &[(&'static str, How)],
    nodes: usize,
    runs: usize,
) -> anyhow::Result<(String, Vec<String>)> {
    for name in ["bench.mcollective", "node.fleet"] {
        TestPki::shared().issue(name);
    }
    let mut broker = runtimes
        .broker
        .block_on(TestBroker::start(BrokerKind::Embedded));
    let url = broker.url();
    let caller = Caller::new("bench");
    let mut spec = FleetSpec::new(
        vec![url.clone()],
        nodes,
        caller.pki().identity("node.fleet"),
    );
    spec.transport = TestPki::shared().transport("node.fleet");
    let fleet = runtimes
        .fleet
        .block_on(Fleet::start(spec))
        .with_context(|| format!("starting {nodes} simulated nodes"))?;
    let identities: Vec<String> = fleet
        .nodes()
        .iter()
        .map(|n| n.identity().to_string())
        .collect();
    let mut notes = Vec::new();
    let bare = bare_fan_out(runtimes, &url, nodes, runs);
    let mut row = format!(
        "{nodes:>6}  {:<20}",
        match &bare {
            Ok(spread) => spread.to_string(),
            Err(e) => {
                notes.push(format!("{nodes} bare fan-out: {e:#}"));
                "-".to_string()
            }
        }
    );
    let measured = runtimes.client.block_on(async {
        let config = ClientConfig::load(Some(&caller.client_config(&url)))
            .context("loading the client config")?;
        let client = Client::connect(config)
            .await
            .context("connecting the client")?;
        write_files(&client, files, &identities).await?;
        let mut cells = Vec::new();
        for (name, how) in columns {
            let cell = match time_method(&client, how, nodes, runs).await {
                Ok(Timed { spread, fewest }) => {
                    if fewest < nodes {
                        notes.push(format!(
                            "{nodes} {name}: a run got only {fewest} of {nodes} replies"
                        ));
                    }
                    spread.map_or_else(|| "-".to_string(), |s| s.to_string())
                }
                Err(e) => {
                    notes.push(format!("{nodes} {name}: {e:#}"));
                    "-".to_string()
                }
            };
            cells.push(cell);
        }
        client.close().await;
        anyhow::Ok(cells)
    });
    runtimes.fleet.block_on(fleet.stop());
    runtimes.broker.block_on(broker.stop());
    for cell in measured? {
        row.push_str(&format!("  {cell:<20}"));
    }
    Ok((row, notes))
}

/// The fleet's identities as a node list, and its records as the
/// inventory `mco inventory --json` would write (asked of each node).
async fn write_files(client: &Client, files: &Path, identities: &[String]) -> anyhow::Result<()> {
    std::fs::write(files.join("nodes.txt"), identities.join("\n") + "\n")
        .context("writing the node list")?;
    let call = Call::new("rpcutil", "inventory")
        .with_targets(Targets::Nodes(identities.to_vec()))
        .with_timeout(CALL_TIMEOUT);
    let outcome = client.call(&call, |_| {}).await.context("inventory")?;
    if !outcome.missing.is_empty() {
        bail!(
            "{} nodes did not answer the inventory",
            outcome.missing.len()
        );
    }
    let records: Vec<NodeRecord> = outcome
        .responses
        .iter()
        .map(|r| NodeRecord::from_inventory(r.identity(), &r.reply.data))
        .collect();
    std::fs::write(
        files.join("inventory.json"),
        serde_json::to_vec(&records).context("encoding the inventory")?,
    )
    .context("writing the inventory")
}

struct Timed {
    spread: Option<Spread>,
    /// Fewest replies any timed run got.
    fewest: usize,
}

/// A warm-up, then `runs` timed calls to every node the column's way.
async fn time_method(
    client: &Client,
    how: &How,
    nodes: usize,
    runs: usize,
) -> anyhow::Result<Timed> {
    let call = match how {
        How::Absent(_) => {
            return Ok(Timed {
                spread: None,
                fewest: nodes,
            })
        }
        How::BroadcastPing => {
            let mut call = Call::new("rpcutil", "ping").with_targets(Targets::Broadcast);
            // What `mco ping` uses by default (the test config's is wider).
            call.window = Some(muster_client::QuietWindow::default());
            call
        }
        How::Discover(discovery) => {
            let mut call = Call::new("rpcutil", "ping").with_discovery(discovery.clone());
            call.window = Some(muster_client::QuietWindow::default());
            call.discovery_timeout = DISCOVERY_TIMEOUT;
            call
        }
    }
    .with_timeout(CALL_TIMEOUT);
    client.call(&call, |_| {}).await.context("warm-up")?;
    let mut times = Vec::new();
    let mut fewest = usize::MAX;
    for _ in 0..runs {
        let started = Instant::now();
        let outcome = client.call(&call, |_| {}).await?;
        times.push(started.elapsed());
        fewest = fewest.min(outcome.responses.len());
    }
    Ok(Timed {
        spread: Spread::of(times),
        fewest,
    })
}

/// The bare fan-out runs on the same secured broker, on a subject the
/// fleet and bench credentials may use.
const BARE_SUBJECT: &str = "mcollective.broadcast.agent.bare";

/// The baseline, as the ping bench measures it: N plain subscribers on
/// connections of 100, one publish, time until N replies are in.
fn bare_fan_out(
    runtimes: &Runtimes,
    url: &str,
    nodes: usize,
    runs: usize,
) -> anyhow::Result<Spread> {
    let servers = vec![url.to_string()];
    let mut tasks: Vec<JoinHandle<()>> = Vec::new();
    let mut connections = Vec::new();
    let started = runtimes.fleet.block_on(async {
        for (group, start) in (0..nodes).step_by(PER_CONNECTION).enumerate() {
            let connection = muster_connector::connect_client(
                &servers,
                &format!("bare responders {group}"),
                Duration::from_secs(10),
                &TestPki::shared().transport("node.fleet"),
            )
            .await?;
            connections.push(connection.clone());
            for _ in start..(start + PER_CONNECTION).min(nodes) {
                let mut subscription = connection.subscribe(BARE_SUBJECT).await?;
                let connection = connection.clone();
                tasks.push(tokio::spawn(async move {
                    let payload = bytes::Bytes::from_static(&[b'x'; 64]);
                    while let Some(message) = subscription.next().await {
                        if let Some(reply) = message.reply {
                            let _ = connection.publish(reply, payload.clone()).await;
                        }
                    }
                }));
            }
            connection.flush().await?;
        }
        anyhow::Ok(())
    });
    let result = started
        .context("starting the bare responders")
        .and_then(|()| {
            runtimes.client.block_on(async {
                let client = muster_connector::connect_client(
                    &servers,
                    "bare requester",
                    Duration::from_secs(5),
                    &TestPki::shared().transport("bench.mcollective"),
                )
                .await?;
                let token = muster_protocol::identity::caller_token("bench.mcollective");
                let mut samples = Vec::new();
                for round in 0..=runs {
                    let id = format!("bare{round}");
                    let inbox = muster_protocol::subject::reply("mcollective", &token, &id, "node");
                    let mut replies = client
                        .subscribe(muster_protocol::subject::replies(
                            "mcollective",
                            &token,
                            &id,
                        ))
                        .await?;
                    client.flush().await?;
                    let sent = Instant::now();
                    client
                        .publish_with_reply(BARE_SUBJECT, inbox, "ping".into())
                        .await?;
                    client.flush().await?;
                    let mut got = 0;
                    let deadline = tokio::time::Instant::from_std(sent + CALL_TIMEOUT);
                    while got < nodes {
                        match tokio::time::timeout_at(deadline, replies.next()).await {
                            Ok(Some(_)) => got += 1,
                            Ok(None) | Err(_) => break,
                        }
                    }
                    let took = sent.elapsed();
                    let _ = replies.unsubscribe().await;
                    if got < nodes {
                        bail!("only {got} of {nodes} replies within {CALL_TIMEOUT:?}");
                    }
                    if round > 0 {
                        samples.push(took);
                    }
                }
                Spread::of(samples).context("no runs")
            })
        });
    runtimes.fleet.block_on(async {
        for task in &tasks {
            task.abort();
        }
        for connection in connections {
            let _ = connection.drain().await;
        }
    });
    result
}
