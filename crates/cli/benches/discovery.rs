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
//! - **registry**: the node list from `mco registry` (its collector runs
//!   here, the simulated nodes register with it), then the request to each;
//! - **puppetdb** (with `--puppetdb`, where PuppetDB is installed): a real
//!   PuppetDB started for the run, every node's facts stored in it, asked in
//!   PQL, then the request to each node. Loading the facts takes about a
//!   minute per 1 000 nodes, so it runs for sizes up to 1 000.
//!
//! A cell is "time to a complete answer": from the start (discovery
//! included) until the call ended with every node's reply, median / min.
//! A bare NATS fan-out (N plain subscribers answering one publish) on the
//! same broker is the floor.
//!
//! ```text
//! cargo bench -p muster-cli --bench discovery [-- --nodes 1000,10000 --runs 3 --puppetdb]
//! ```

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::StreamExt;
use muster_client::{Call, Client, ClientConfig, Discovery, NodeList, NodeRecord, Targets};
use muster_server::daemon::Control;
use muster_server::fleet::{Fleet, FleetSpec};
use muster_testkit::{BrokerKind, Caller, TestBroker, TestPki, TestPuppetDb};
use tokio::runtime::Runtime;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;

const RERUN: &str =
    "cargo bench -p muster-cli --bench discovery [-- --nodes 1000,10000 --runs 3 --puppetdb]";
/// The largest fleet whose facts are loaded into PuppetDB (one stored
/// command per node).
const PUPPETDB_MAX_NODES: usize = 1000;
/// How often the simulated nodes register; the first registration comes
/// within one interval (splayed). Long enough that registrations are not
/// part of what is measured, and that a loaded machine's late ones do not
/// age nodes out (after 3 intervals).
const REGISTER_INTERVAL: Duration = Duration::from_secs(10);
/// How the fleet simulator groups nodes on connections; the baseline does the same.
const PER_CONNECTION: usize = 100;
/// Generous: 10 000 simulated nodes share the machine with the client.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(10);

struct Options {
    nodes: Vec<usize>,
    runs: usize,
    /// Start a PuppetDB for the puppetdb column.
    puppetdb: bool,
}

impl Options {
    fn parse() -> anyhow::Result<Options> {
        let mut options = Options {
            nodes: vec![1000, 10_000],
            runs: 3,
            puppetdb: false,
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
                "--puppetdb" => options.puppetdb = true,
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
    /// Not measured in this run, and why.
    Absent(String),
}

/// The table's columns. The fleet's node list and inventory are in `files`;
/// `puppetdb` is the PuppetDB holding the fleet's facts, if one runs.
fn methods(files: &Path, puppetdb: Result<&str, &str>) -> Vec<(&'static str, How)> {
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
        ("registry", How::Discover(Discovery::Registry)),
        (
            "puppetdb",
            match puppetdb {
                Ok(url) => How::Discover(Discovery::PuppetDb(muster_client::puppetdb::PuppetDb {
                    url: url.to_string(),
                    // The simulated nodes' facts have no collectives fact.
                    collectives_fact: None,
                    ..Default::default()
                })),
                Err(why) => How::Absent(why.to_string()),
            },
        ),
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
    let mut options = Options::parse()?;
    // Smallest first, so a PuppetDB row never follows a larger one.
    options.nodes.sort_unstable();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let runtimes = Runtimes::new()?;
    let files = tempfile::tempdir().context("temp dir")?;
    println!("muster discovery benchmark ({cores} cores) — re-run: {RERUN}");
    println!(
        "time to a complete answer (rpcutil ping on every node, discovery included), median / min of {} runs after one warm-up; embedded broker, security on",
        options.runs
    );
    let puppetdb = if !options.puppetdb {
        Err("add --puppetdb to measure it (starts a PuppetDB; about a minute per 1 000 nodes)")
    } else if !muster_testkit::puppetdb_installed() {
        Err("PuppetDB and PostgreSQL 15 are not installed (see .ci/run)")
    } else {
        let started = Instant::now();
        let db = TestPuppetDb::start();
        println!(
            "PuppetDB started in {:.0} s",
            started.elapsed().as_secs_f64()
        );
        Ok(db)
    };
    println!();
    let mut header = format!("{:>6}  {:<20}", "nodes", "bare fan-out");
    for (name, _) in methods(files.path(), Err("")) {
        header.push_str(&format!("  {name:<20}"));
    }
    println!("{}", header.trim_end());
    let mut notes = Vec::new();
    for &nodes in &options.nodes {
        let puppetdb = match &puppetdb {
            Ok(_) if nodes > PUPPETDB_MAX_NODES => Err(format!(
                "loading {nodes} nodes' facts into PuppetDB would take too long"
            )),
            Ok(db) => Ok(db),
            Err(why) => Err(why.to_string()),
        };
        match measure(&runtimes, files.path(), puppetdb, nodes, options.runs) {
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
         node list from a file, registry = from `mco registry`, puppetdb = from PuppetDB in PQL; \
         each + the request to each node, ending at the last reply."
    );
    for note in notes {
        println!("note: {note}");
    }
    Ok(())
}

/// One row: a fresh broker, registry collector and fleet of `nodes`, every
/// column measured on it.
fn measure(
    runtimes: &Runtimes,
    files: &Path,
    puppetdb: Result<&TestPuppetDb, String>,
    nodes: usize,
    runs: usize,
) -> anyhow::Result<(String, Vec<String>)> {
    for name in ["bench.mcollective", "node.fleet", "registry"] {
        TestPki::shared().issue(name);
    }
    let mut broker = runtimes
        .broker
        .block_on(TestBroker::start(BrokerKind::Embedded));
    let url = broker.url();
    let (stop_registry, registry) = start_registry(runtimes, files, &url, nodes)?;
    let caller = Caller::new("bench");
    let mut spec = FleetSpec::new(
        vec![url.clone()],
        nodes,
        caller.pki().identity("node.fleet"),
    );
    spec.transport = TestPki::shared().transport("node.fleet");
    spec.register = Some(REGISTER_INTERVAL);
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
    let measured = (|| {
        let config = ClientConfig::load(Some(&caller.client_config(&url)))
            .context("loading the client config")?;
        let client = runtimes
            .client
            .block_on(Client::connect(config))
            .context("connecting the client")?;
        let records = runtimes
            .client
            .block_on(write_files(&client, files, &identities))?;
        let puppetdb = match &puppetdb {
            Ok(db) => {
                load_puppetdb(db, &records).context("loading the facts into PuppetDB")?;
                Ok(db.url())
            }
            Err(why) => Err(why.as_str()),
        };
        runtimes.client.block_on(registered(&client, nodes))?;
        let columns = methods(files, puppetdb);
        let cells = runtimes.client.block_on(async {
            let mut cells = Vec::new();
            for (name, how) in &columns {
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
            cells
        });
        for (name, how) in &columns {
            if let How::Absent(why) = how {
                notes.push(format!("{nodes} {name}: {why}"));
            }
        }
        runtimes.client.block_on(client.close());
        anyhow::Ok((cells, records))
    })();
    runtimes.fleet.block_on(fleet.stop());
    let _ = stop_registry.send(Control::Stop);
    let _ = runtimes.broker.block_on(registry);
    runtimes.broker.block_on(broker.stop());
    let (cells, records) = measured?;
    if let Ok(db) = puppetdb {
        // Deactivated, so the next row's PQL finds only its own fleet.
        unload_puppetdb(db, &records).context("deactivating the nodes in PuppetDB")?;
    }
    for cell in cells {
        row.push_str(&format!("  {cell:<20}"));
    }
    Ok((row, notes))
}

/// The fleet's identities as a node list, and its records as the
/// inventory `mco inventory --json` would write (asked of each node).
async fn write_files(
    client: &Client,
    files: &Path,
    identities: &[String],
) -> anyhow::Result<Vec<NodeRecord>> {
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
    .context("writing the inventory")?;
    Ok(records)
}

/// The running collector.
type Collector = JoinHandle<Result<(), muster_registry::collector::CollectorError>>;

/// Starts `mco registry`'s collector for this row (a fresh store) on the
/// broker's runtime; send [`Control::Stop`] to end it.
fn start_registry(
    runtimes: &Runtimes,
    files: &Path,
    url: &str,
    nodes: usize,
) -> anyhow::Result<(UnboundedSender<Control>, Collector)> {
    let path = files.join(format!("registry-{nodes}.cfg"));
    std::fs::write(
        &path,
        format!(
            "identity = registry\ncollectives = mcollective\nplugin.nats.servers = {url}\n\
             plugin.security.ssldir = {}\nplugin.registry.store = {}\n",
            TestPki::shared().ssldir().root().display(),
            files.join(format!("registry-{nodes}.db")).display(),
        ),
    )
    .context("writing the registry config")?;
    let config = muster_server::ServerConfig::load(&path)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("loading the registry config")?;
    let (stop, control) = tokio::sync::mpsc::unbounded_channel();
    let task = runtimes
        .broker
        .spawn(muster_registry::collector::run(config, control));
    Ok((stop, task))
}

/// Waits (at most two intervals and a minute) until the registry knows
/// every node.
async fn registered(client: &Client, nodes: usize) -> anyhow::Result<()> {
    let status = Call::new("registry", "status")
        .with_targets(Targets::Nodes(vec!["registry".to_string()]))
        .with_timeout(Duration::from_secs(5));
    let deadline = Instant::now() + 2 * REGISTER_INTERVAL + Duration::from_secs(60);
    let mut known = 0;
    while Instant::now() < deadline {
        let outcome = client
            .call(&status, |_| {})
            .await
            .context("registry status")?;
        known = outcome
            .responses
            .first()
            .and_then(|r| r.reply.data.get("known"))
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0) as usize;
        if known >= nodes {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bail!("the registry knows {known} of {nodes} nodes after a minute")
}

/// Stores every node's facts in PuppetDB, four commands at a time.
fn load_puppetdb(db: &TestPuppetDb, records: &[NodeRecord]) -> anyhow::Result<()> {
    in_parallel(records, |record| {
        db.replace_facts(&record.identity, &record.facts)
    })
}

/// Deactivates every node in PuppetDB, four commands at a time.
fn unload_puppetdb(db: &TestPuppetDb, records: &[NodeRecord]) -> anyhow::Result<()> {
    in_parallel(records, |record| db.deactivate(&record.identity))
}

fn in_parallel(records: &[NodeRecord], each: impl Fn(&NodeRecord) + Sync) -> anyhow::Result<()> {
    let chunk = records.len().div_ceil(4).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = records
            .chunks(chunk)
            .map(|part| scope.spawn(|| part.iter().for_each(&each)))
            .collect();
        for worker in workers {
            if worker.join().is_err() {
                bail!("a PuppetDB command failed (its message is above)");
            }
        }
        Ok(())
    })
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
