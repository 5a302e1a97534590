//! How long `mco ping` takes until every reply is in (docs/architecture.md#the-ping-benchmark).
//!
//! For each broker (the embedded one, and a real `nats-server` when it is on
//! PATH) and each fleet size, this starts a simulated fleet in-process,
//! pings it the way `mco ping` does (one signed broadcast, collection ends
//! when replies go quiet) and reports two times: the last reply's arrival
//! and the end of collection. A bare NATS fan-out on the same broker — N
//! plain subscribers answering one publish — is the baseline the design
//! compares against.
//!
//! ```text
//! cargo bench -p muster-cli --bench ping [-- --nodes 100,1000,5000 --runs 5]
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::StreamExt;
use muster_client::{Call, Client, ClientConfig, Targets};
use muster_protocol::Request;
use muster_server::fleet::{Fleet, FleetSpec};
use muster_server::node::Outcome as NodeOutcome;
use muster_testkit::{nats_server_available, BrokerKind, Caller, TestBroker, TestPki};
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

const RERUN: &str =
    "cargo bench -p muster-cli --bench ping [-- --nodes 100,1000,5000 --runs 5 --discovery-nodes 1000 --plaintext --unverified]";
/// How the fleet simulator groups nodes on connections; the baseline does the same.
const PER_CONNECTION: usize = 100;
const PING_TIMEOUT: Duration = Duration::from_secs(10);

struct Options {
    nodes: Vec<usize>,
    runs: usize,
    /// Fleet size for the discovery table (0: skip it).
    discovery_nodes: usize,
    /// Run broker, fleet and client on one runtime (to show the difference).
    shared_runtime: bool,
    /// Also measure with security off (plain TCP, no admission), to show its cost.
    plaintext: bool,
    /// Also measure with reply verification off, to show its cost.
    unverified: bool,
}

/// Whether a row runs with security on (the default) or off.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Secure,
    /// Security on, but the client takes replies on the broker's word.
    Unverified,
    Plain,
}

impl Mode {
    /// How `name` connects: with its certificate, or in plain text.
    fn transport(self, name: &str) -> muster_connector::Transport {
        match self {
            Mode::Secure | Mode::Unverified => TestPki::shared().transport(name),
            Mode::Plain => muster_connector::Transport::default(),
        }
    }
}

impl Options {
    fn parse() -> anyhow::Result<Options> {
        let mut options = Options {
            nodes: vec![100, 1000, 5000],
            runs: 5,
            discovery_nodes: 1000,
            shared_runtime: false,
            plaintext: false,
            unverified: false,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--nodes" => {
                    let list = args.next().context("--nodes needs a list, e.g. 100,1000")?;
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
                "--discovery-nodes" => {
                    let n = args.next().context("--discovery-nodes needs a number")?;
                    options.discovery_nodes = n
                        .parse()
                        .with_context(|| format!("--discovery-nodes {n:?}"))?;
                }
                "--shared-runtime" => options.shared_runtime = true,
                "--plaintext" => options.plaintext = true,
                "--unverified" => options.unverified = true,
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
        let text = format!("{} / {}", ms(self.median), ms(self.min));
        f.pad(&text)
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// One table row: a broker and a fleet size.
struct Row {
    broker: String,
    nodes: usize,
    /// Fewest replies any timed run got.
    replies: usize,
    last_reply: Option<Spread>,
    finished: Option<Spread>,
    bare: Result<Spread, String>,
    node_cost: Option<Duration>,
    problem: Option<String>,
}

fn broker_name(kind: BrokerKind) -> &'static str {
    match kind {
        BrokerKind::Embedded => "embedded",
        BrokerKind::NatsServer => "nats-server",
    }
}

fn main() -> anyhow::Result<()> {
    let options = Options::parse()?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let runtimes = Runtimes::new(options.shared_runtime)?;

    let mut kinds = vec![BrokerKind::Embedded];
    if nats_server_available() {
        kinds.push(BrokerKind::NatsServer);
    } else {
        eprintln!("nats-server is not on PATH: measuring the embedded broker only");
    }

    println!("muster ping benchmark ({cores} cores) — re-run: {RERUN}");
    println!(
        "{} runs per row after one warm-up; times are median / min; broker, fleet and client on {}",
        options.runs,
        if options.shared_runtime {
            "one shared tokio runtime"
        } else {
            "separate tokio runtimes"
        }
    );
    println!(
        "security on: TLS with client certificates on every connection, per-certificate broker \
         permissions, requests signed with the caller's certificate key (ed25519); the bare fan-out \
         runs on the same TLS broker within the same permissions"
    );
    println!();
    println!(
        "{:<19} {:>6} {:>8}  {:<23}  {:<23}  {:<22}  {:>6}  {:>9}  notes",
        "broker",
        "nodes",
        "replies",
        "last reply (median/min)",
        "finished (median/min)",
        "bare fan-out (med/min)",
        "x bare",
        "node cost",
    );
    let mut modes = vec![Mode::Secure];
    if options.unverified {
        modes.push(Mode::Unverified);
    }
    if options.plaintext {
        modes.push(Mode::Plain);
    }
    for &kind in &kinds {
        for &mode in &modes {
            for &nodes in &options.nodes {
                let row = measure(&runtimes, kind, mode, nodes, options.runs);
                print_row(&row);
            }
        }
    }
    println!();
    println!(
        "last reply = when the Nth reply arrived; finished = when `mco ping` stopped collecting \
         (quiet window, floor 100 ms); x bare = last reply / bare fan-out median; \
         node cost = CPU one simulated node spends on one ping (x nodes / cores = the simulator's floor)."
    );
    if options.discovery_nodes > 0 {
        for &kind in &kinds {
            if let Err(e) = discovery_table(&runtimes, kind, options.discovery_nodes, options.runs)
            {
                println!("discovery on {}: {e:#}", broker_name(kind));
            }
        }
    }
    if let Some(peak) = peak_rss_kb() {
        println!(
            "peak resident memory of this process (client + fleet + embedded broker): {:.1} MB",
            peak as f64 / 1024.0
        );
    }
    Ok(())
}

fn print_row(row: &Row) {
    let dash = || "-".to_string();
    let last = row.last_reply.map_or_else(dash, |s| s.to_string());
    let finished = row.finished.map_or_else(dash, |s| s.to_string());
    let bare = match &row.bare {
        Ok(s) => s.to_string(),
        Err(_) => dash(),
    };
    let ratio = match (&row.last_reply, &row.bare) {
        // A run cut short is not comparable with a full fan-out.
        (Some(last), Ok(bare)) if row.replies == row.nodes && !bare.median.is_zero() => {
            format!(
                "{:.1}",
                last.median.as_secs_f64() / bare.median.as_secs_f64()
            )
        }
        _ => dash(),
    };
    let mut notes = Vec::new();
    if row.replies < row.nodes && row.problem.is_none() {
        notes.push(format!(
            "WARNING: only {} of {} replies",
            row.replies, row.nodes
        ));
    }
    notes.extend(row.problem.clone());
    if let Err(e) = &row.bare {
        notes.push(format!("bare: {e}"));
    }
    println!(
        "{:<19} {:>6} {:>8}  {:<23}  {:<23}  {:<22}  {:>6}  {:>9}  {}",
        row.broker,
        row.nodes,
        row.replies,
        last,
        finished,
        bare,
        ratio,
        row.node_cost
            .map_or_else(dash, |d| format!("{} µs", d.as_micros())),
        notes.join("; ")
    );
}

/// Where each part runs. By default the broker, the simulated fleet and the
/// client each get their own runtime, as they would be separate processes:
/// sharing one would let the fleet's CPU-bound work starve the client's
/// reading of replies, which is the simulator's cost, not the client's.
struct Runtimes {
    broker: Arc<Runtime>,
    fleet: Arc<Runtime>,
    client: Arc<Runtime>,
}

impl Runtimes {
    fn new(shared: bool) -> anyhow::Result<Runtimes> {
        let build = || -> anyhow::Result<Arc<Runtime>> {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot build a tokio runtime")?;
            Ok(Arc::new(runtime))
        };
        if shared {
            let one = build()?;
            return Ok(Runtimes {
                broker: one.clone(),
                fleet: one.clone(),
                client: one,
            });
        }
        Ok(Runtimes {
            broker: build()?,
            fleet: build()?,
            client: build()?,
        })
    }
}

/// Everything for one row, from a fresh broker to its teardown.
fn measure(runtimes: &Runtimes, kind: BrokerKind, mode: Mode, nodes: usize, runs: usize) -> Row {
    let mut row = Row {
        broker: match mode {
            Mode::Secure => broker_name(kind).to_string(),
            Mode::Unverified => format!("{} (unverified)", broker_name(kind)),
            Mode::Plain => format!("{} (plain)", broker_name(kind)),
        },
        nodes,
        replies: 0,
        last_reply: None,
        finished: None,
        bare: Err("not run".into()),
        node_cost: None,
        problem: None,
    };
    // nats-server knows the certificates issued before it starts.
    for name in ["bench.mcollective", "node.fleet"] {
        TestPki::shared().issue(name);
    }
    let mut broker = runtimes.broker.block_on(async {
        match mode {
            Mode::Secure => TestBroker::start(kind).await,
            Mode::Plain => TestBroker::start_plaintext(kind).await,
            Mode::Unverified => TestBroker::start(kind).await,
        }
    });
    let url = broker.url();
    match ping_fleet(runtimes, &url, mode, nodes, runs) {
        Ok(pinged) => {
            row.replies = pinged.replies;
            row.last_reply = Spread::of(pinged.last);
            row.finished = Spread::of(pinged.finished);
            row.node_cost = Some(pinged.node_cost);
        }
        Err(e) => row.problem = Some(format!("mco ping: {e:#}")),
    }
    row.bare = bare_fan_out(runtimes, &url, mode, nodes, runs).map_err(|e| format!("{e:#}"));
    runtimes.broker.block_on(broker.stop());
    row
}

/// What the timed pings of one fleet gave.
struct Pinged {
    /// Fewest replies any timed run got.
    replies: usize,
    last: Vec<Duration>,
    finished: Vec<Duration>,
    node_cost: Duration,
}

/// A caller and `nodes` simulated nodes on `url` that trust it.
fn trusting_fleet(
    runtimes: &Runtimes,
    url: &str,
    mode: Mode,
    nodes: usize,
) -> anyhow::Result<(Caller, Fleet)> {
    let caller = Caller::new("bench");
    let mut spec = FleetSpec::new(
        vec![url.to_string()],
        nodes,
        caller.pki().identity("node.fleet"),
    );
    spec.transport = mode.transport("node.fleet");
    let fleet = runtimes
        .fleet
        .block_on(Fleet::start(spec))
        .with_context(|| format!("starting {nodes} simulated nodes"))?;
    Ok((caller, fleet))
}

/// Starts the fleet, pings it once to warm up and `runs` times for real,
/// then measures what one request costs a node.
fn ping_fleet(
    runtimes: &Runtimes,
    url: &str,
    mode: Mode,
    nodes: usize,
    runs: usize,
) -> anyhow::Result<Pinged> {
    let (caller, fleet) = trusting_fleet(runtimes, url, mode, nodes)?;
    let pinged = runtimes.client.block_on(async {
        let mut config = ClientConfig::load(Some(&caller.client_config(url)))
            .context("loading the client config")?;
        config.verify_replies = mode != Mode::Unverified;
        let client = Client::connect_over(
            config,
            caller.pki().identity(&caller.name),
            &mode.transport(&caller.name),
            Duration::from_secs(5),
        )
        .await
        .context("connecting the client")?;
        let mut ping = Call::new("rpcutil", "ping")
            .with_targets(Targets::Broadcast)
            .with_timeout(PING_TIMEOUT);
        // What `mco ping` uses by default (the test config's is wider).
        ping.window = Some(muster_client::QuietWindow::default());
        client.call(&ping, |_| {}).await.context("warm-up ping")?;
        let mut fewest = usize::MAX;
        let (mut last, mut finished) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            let outcome = client.call(&ping, |_| {}).await.context("ping")?;
            fewest = fewest.min(outcome.responses.len());
            if let Some((_, max, _)) = outcome.rtt_stats() {
                last.push(max);
            }
            finished.push(outcome.elapsed);
        }
        anyhow::Ok((fewest, last, finished))
    });
    let cost = runtimes.fleet.block_on(node_cost(&fleet, &caller));
    runtimes.fleet.block_on(fleet.stop());
    let (replies, last, finished) = pinged?;
    Ok(Pinged {
        replies,
        last,
        finished,
        node_cost: cost?,
    })
}

/// CPU time one simulated node spends on one ping (check, run, encode the
/// reply), measured by handing a fresh signed request to each node in turn.
/// Times the node count over the cores, it is the floor under "last reply"
/// when the whole fleet shares this machine.
async fn node_cost(fleet: &Fleet, caller: &Caller) -> anyhow::Result<Duration> {
    let request = Request::new("bench-cost", &caller.name, "mcollective", "rpcutil", "ping");
    let payload = muster_protocol::Envelope::seal(&request, &caller.credential)
        .context("signing")?
        .to_bytes();
    let started = Instant::now();
    for node in fleet.nodes() {
        match node.handle(&payload).await {
            NodeOutcome::Reply { reply, .. } => {
                drop(std::hint::black_box(serde_json::to_vec(&reply)?))
            }
            other => bail!("node {} did not answer: {other:?}", node.identity()),
        }
    }
    Ok(started.elapsed() / fleet.nodes().len().max(1) as u32)
}

/// The bare fan-out runs on the same secured broker, on subjects the
/// fleet and bench credentials may use: TLS and permission checks are in
/// both columns, muster's envelopes, signatures and filters only in muster's.
const BARE_SUBJECT: &str = "mcollective.broadcast.agent.bare";

/// N plain subscribers, grouped on connections like the fleet, each
/// answering every message at once with a small payload.
struct Responders {
    mode: Mode,
    connections: Vec<async_nats::Client>,
    tasks: Vec<JoinHandle<()>>,
}

impl Responders {
    /// Connects and subscribes `nodes` responders; on error, those started
    /// so far stay in `self` for [`Responders::stop`].
    async fn add(&mut self, servers: &[String], nodes: usize) -> anyhow::Result<()> {
        for (group, start) in (0..nodes).step_by(PER_CONNECTION).enumerate() {
            let connection = muster_connector::connect_client(
                servers,
                &format!("bare responders {group}"),
                Duration::from_secs(10),
                &self.mode.transport("node.fleet"),
            )
            .await?;
            self.connections.push(connection.clone());
            for _ in start..(start + PER_CONNECTION).min(nodes) {
                let mut subscription = connection.subscribe(BARE_SUBJECT).await?;
                let connection = connection.clone();
                self.tasks.push(tokio::spawn(async move {
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
        Ok(())
    }

    async fn stop(self) {
        for task in &self.tasks {
            task.abort();
        }
        for connection in self.connections {
            let _ = connection.drain().await;
        }
    }
}

/// The baseline: one publish to the responders, then time until N replies
/// are in. The first round is a warm-up.
fn bare_fan_out(
    runtimes: &Runtimes,
    url: &str,
    mode: Mode,
    nodes: usize,
    runs: usize,
) -> anyhow::Result<Spread> {
    let servers = vec![url.to_string()];
    let mut responders = Responders {
        mode,
        connections: Vec::new(),
        tasks: Vec::new(),
    };
    let started = runtimes.fleet.block_on(responders.add(&servers, nodes));
    let result = started
        .context("starting the bare responders")
        .and_then(|()| {
            runtimes.client.block_on(async {
                let client = muster_connector::connect_client(
                    &servers,
                    "bare requester",
                    Duration::from_secs(5),
                    &mode.transport("bench.mcollective"),
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
                    let deadline = tokio::time::Instant::from_std(sent + PING_TIMEOUT);
                    while got < nodes {
                        match tokio::time::timeout_at(deadline, replies.next()).await {
                            Ok(Some(_)) => got += 1,
                            Ok(None) | Err(_) => break,
                        }
                    }
                    let took = sent.elapsed();
                    let _ = replies.unsubscribe().await;
                    if got < nodes {
                        bail!("only {got} of {nodes} replies within {PING_TIMEOUT:?}");
                    }
                    if round > 0 {
                        samples.push(took);
                    }
                }
                Spread::of(samples).context("no runs")
            })
        });
    runtimes.fleet.block_on(responders.stop());
    result
}

/// The process's peak resident set (VmHWM), in KiB, where /proc has it.
fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The filters the discovery table measures, as typed on the command line.
const DISCOVERY_FILTERS: &[(&str, &str)] = &[
    ("(none)", ""),
    ("-F role=web", "F:role=web"),
    (
        "-C redis -F memorysize_mb>=8192",
        "C:redis|F:memorysize_mb>=8192",
    ),
    (
        "-S \"(httpd or redis) and os.family=Debian\"",
        "S:(httpd or redis) and os.family=Debian",
    ),
    ("-S \"fact('role').value=db\"", "S:fact('role').value=db"),
];

fn discovery_filter(spec: &str) -> anyhow::Result<muster_protocol::Filter> {
    let mut filter = muster_protocol::Filter::default();
    for part in spec.split('|').filter(|p| !p.is_empty()) {
        filter = match part.split_once(':') {
            Some(("F", text)) => filter.fact(text)?,
            Some(("C", text)) => filter.class(text)?,
            Some(("S", text)) => filter.compound(text)?,
            _ => bail!("bad filter spec {part:?}"),
        };
    }
    Ok(filter)
}

/// Discovery of `nodes` simulated nodes with and without filters: the
/// adaptive window against MCollective's fixed two seconds.
fn discovery_table(
    runtimes: &Runtimes,
    kind: BrokerKind,
    nodes: usize,
    runs: usize,
) -> anyhow::Result<()> {
    // nats-server knows the certificates issued before it starts.
    for name in ["bench.mcollective", "node.fleet"] {
        TestPki::shared().issue(name);
    }
    let mut broker = runtimes.broker.block_on(TestBroker::start(kind));
    let url = broker.url();
    let (caller, fleet) = trusting_fleet(runtimes, &url, Mode::Secure, nodes)?;
    println!();
    println!(
        "discovery of {nodes} simulated nodes on {} (mco ping / mco find with a filter): adaptive window vs a fixed 2 s window",
        broker_name(kind)
    );
    println!(
        "{:<46} {:>6}  {:<22}  {:>16}",
        "filter", "found", "adaptive (median/min)", "fixed 2 s window"
    );
    let result = runtimes.client.block_on(async {
        let config = ClientConfig::load(Some(&caller.client_config(&url)))
            .context("loading the client config")?;
        let client = Client::connect(config)
            .await
            .context("connecting the client")?;
        let adaptive = muster_client::QuietWindow::default();
        let fixed = muster_client::QuietWindow {
            floor: Duration::from_secs(2),
            rtt_factor: 0,
            gap_factor: 0,
            spread_factor: 0,
        };
        let two_seconds = Duration::from_secs(2);
        client
            .discover(&Default::default(), None, two_seconds, adaptive)
            .await?;
        for (shown, spec) in DISCOVERY_FILTERS {
            let filter = discovery_filter(spec)?;
            let mut times = Vec::new();
            let mut found = usize::MAX;
            for _ in 0..runs {
                let started = Instant::now();
                let nodes = client
                    .discover(&filter, None, two_seconds, adaptive)
                    .await?;
                times.push(started.elapsed());
                found = found.min(nodes.len());
            }
            let started = Instant::now();
            let fixed_found = client
                .discover(&filter, None, two_seconds, fixed)
                .await?
                .len();
            let fixed_time = started.elapsed();
            let note = if fixed_found != found {
                format!("  (fixed window found {fixed_found})")
            } else {
                String::new()
            };
            println!(
                "{:<46} {:>6}  {:<22}  {:>16}{note}",
                shown,
                found,
                Spread::of(times).map_or_else(|| "-".to_string(), |s| s.to_string()),
                ms(fixed_time),
            );
        }
        anyhow::Ok(())
    });
    runtimes.fleet.block_on(fleet.stop());
    runtimes.broker.block_on(broker.stop());
    result
}
