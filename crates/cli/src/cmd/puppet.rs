//! `mco puppet`: run Puppet across the fleet and see how it went.
//!
//! ```text
//! mco puppet status | count | summary | enable | disable "reason"
//! mco puppet runonce [--noop] [--tags a,b] [--splay --splaylimit 30] [--environment E] [--force]
//! mco puppet runall 5              # at most 5 nodes running at once
//! mco puppet resource file /etc/motd content="hello"
//! ```

use std::time::{Duration, Instant};

use muster_client::runall::{Progress, RunAll};
use serde_json::{json, Map, Value};

use super::action::{self, Line};
use crate::args::Common;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::Subcommand, Debug)]
pub(crate) enum Command {
    /// Whether Puppet is enabled, applying or idling, and when it last ran
    Status(Plain),
    /// How many nodes are enabled, disabled, applying, idling
    Count(Plain),
    /// The last run's resources, changes, failures and time, fleet-wide
    Summary(Plain),
    /// Enable Puppet
    Enable(Plain),
    /// Disable Puppet, with a message saying why
    Disable {
        /// Why Puppet is disabled
        message: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Start one Puppet run on every matching node
    Runonce {
        #[command(flatten)]
        run: RunOptions,
        #[command(flatten)]
        common: Common,
    },
    /// Run Puppet on every matching node, at most CONCURRENCY at a time
    Runall {
        /// How many nodes may run at once
        concurrency: usize,
        #[command(flatten)]
        run: RunOptions,
        #[command(flatten)]
        common: Common,
    },
    /// Manage one resource: mco puppet resource TYPE NAME key=value ...
    Resource {
        /// Resource type, e.g. file, package, service, exec
        kind: String,
        /// Resource title, e.g. /etc/motd
        name: String,
        /// Properties as key=value
        properties: Vec<String>,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(clap::Args, Debug)]
pub(crate) struct Plain {
    #[command(flatten)]
    pub common: Common,
}

#[derive(clap::Args, Debug, Clone)]
pub(crate) struct RunOptions {
    /// Do a no-op run
    #[arg(long)]
    pub noop: bool,
    /// Only apply resources with these tags (comma-separated)
    #[arg(long, value_name = "TAGS")]
    pub tags: Option<String>,
    /// Sleep a random time before running
    #[arg(long)]
    pub splay: bool,
    /// Longest splay, in seconds
    #[arg(long, value_name = "SECONDS")]
    pub splaylimit: Option<u64>,
    /// The Puppet environment to use
    #[arg(long, value_name = "ENV")]
    pub environment: Option<String>,
    /// Run even when Puppet is disabled
    #[arg(long)]
    pub force: bool,
}

impl RunOptions {
    fn data(&self) -> Map<String, Value> {
        let mut data = Map::new();
        if self.noop {
            data.insert("noop".into(), json!(true));
        }
        if let Some(tags) = &self.tags {
            data.insert("tags".into(), json!(tags));
        }
        if self.splay {
            data.insert("splay".into(), json!(true));
        }
        if let Some(limit) = self.splaylimit {
            data.insert("splaylimit".into(), json!(limit));
        }
        if let Some(environment) = &self.environment {
            data.insert("environment".into(), json!(environment));
        }
        if self.force {
            data.insert("force".into(), json!(true));
        }
        data
    }
}

pub(crate) async fn run(args: Args) -> anyhow::Result<u8> {
    match args.command {
        Command::Status(p) => {
            action::run(
                &p.common,
                "puppet",
                "status",
                Map::new(),
                Line::Field("message"),
            )
            .await
        }
        Command::Enable(p) => {
            action::run(
                &p.common,
                "puppet",
                "enable",
                Map::new(),
                Line::Field("status"),
            )
            .await
        }
        Command::Disable { message, common } => {
            let mut data = Map::new();
            if let Some(message) = message {
                data.insert("message".into(), json!(message));
            }
            action::run(&common, "puppet", "disable", data, Line::Field("status")).await
        }
        Command::Runonce { run, common } => {
            action::run(
                &common,
                "puppet",
                "runonce",
                run.data(),
                Line::Field("summary"),
            )
            .await
        }
        Command::Summary(p) => {
            action::run(
                &p.common,
                "puppet",
                "last_run_summary",
                Map::new(),
                Line::Format(run_line),
            )
            .await
        }
        Command::Count(p) => count(&p.common).await,
        Command::Resource {
            kind,
            name,
            properties,
            common,
        } => {
            let mut data = Map::new();
            data.insert("type".into(), json!(kind));
            data.insert("name".into(), json!(name));
            data.insert(
                "properties".into(),
                Value::Object(super::rpc::parse_inputs(&properties)?),
            );
            action::run(&common, "puppet", "resource", data, Line::Field("result")).await
        }
        Command::Runall {
            concurrency,
            run,
            common,
        } => runall(&common, concurrency, &run).await,
    }
}

/// `12 resources, 1 changed, 0 failed in 3.2 s`
fn run_line(data: &Value) -> String {
    let n = |key: &str| data.get(key).and_then(Value::as_f64).unwrap_or(0.0);
    format!(
        "{} resources, {} changed, {} failed in {:.1} s",
        n("total_resources"),
        n("changed_resources"),
        n("failed_resources"),
        n("total_time")
    )
}

/// MCollective's `mco puppet count`.
async fn count(common: &Common) -> anyhow::Result<u8> {
    let Some((_, outcome)) = action::call(common, "puppet", "status", Map::new()).await? else {
        return Ok(super::EXIT_NO_NODES);
    };
    let filter = common.reply_filter()?;
    let kept = crate::render::kept(&outcome, "puppet", "status", filter.as_ref());
    let ok: Vec<&Value> = kept
        .iter()
        .filter(|r| r.reply.statuscode.is_ok())
        .map(|r| &r.reply.data)
        .collect();
    let with = |key: &str, want: bool| {
        ok.iter()
            .filter(|d| d.get(key).and_then(Value::as_bool) == Some(want))
            .count()
    };
    if common.jsonl {
        let mut out = std::io::stdout();
        crate::render::machine_output(&mut out, common, "puppet", "status", &outcome, &kept)?;
    } else if common.json {
        let counts = json!({
            "total": ok.len(),
            "enabled": with("enabled", true),
            "disabled": with("enabled", false),
            "applying": with("applying", true),
            "idling": with("idling", true),
        });
        println!("{}", serde_json::to_string_pretty(&counts)?);
    } else {
        print!(
            "{}",
            count_text(
                ok.len(),
                [
                    with("enabled", true),
                    with("enabled", false),
                    with("applying", true),
                    with("idling", true),
                ]
            )
        );
        let failed = kept.len() - ok.len();
        if failed > 0 {
            println!("\n{failed} nodes could not report their Puppet status");
        }
        println!();
        let matched = filter.is_some().then_some(kept.len());
        let style = crate::render::Style::for_stdout();
        crate::render::rpc_stats(
            &mut std::io::stdout(),
            &outcome,
            matched,
            common.verbose,
            style,
        )?;
    }
    Ok(super::rpc::exit_code(&outcome))
}

/// `mco puppet count`'s table, every colon in one column: the total,
/// then enabled, disabled, applying and idling nodes.
fn count_text(total: usize, [enabled, disabled, applying, idling]: [usize; 4]) -> String {
    let row = |label: &str, n: usize| format!("{label:>33}: {n}\n");
    format!(
        "Total Puppet nodes: {total}\n\n{}{}\n{}{}",
        row("Nodes currently enabled", enabled),
        row("Nodes currently disabled", disabled),
        row("Nodes currently doing puppet runs", applying),
        row("Nodes currently idling", idling),
    )
}

/// Runs Puppet on every matching node with at most `concurrency` runs at
/// once (the window lives in `muster_client::runall`); this prints a line
/// as each node starts, finishes or fails, and the tally.
async fn runall(common: &Common, concurrency: usize, run: &RunOptions) -> anyhow::Result<u8> {
    if concurrency == 0 {
        anyhow::bail!("runall needs a concurrency of at least 1");
    }
    super::init_logging("warn");
    let (filter, discovery) = common.plan()?;
    let config = muster_client::ClientConfig::load(common.config.as_deref())?;
    let mut data = run.data();
    super::rpc::validate(&config, "puppet", "runonce", &mut data)?;
    let client = crate::args::connect(config).await?;
    let nodes = match filter.exact_identities() {
        Some(nodes) if discovery.is_broadcast() => nodes,
        _ => common.discover(&client, &filter, &discovery).await?,
    };
    if nodes.is_empty() {
        eprintln!("No request sent, we did not discover any nodes.");
        return Ok(super::EXIT_NO_NODES);
    }
    let mut runall = RunAll::new(concurrency);
    if let Some(splay) = run.splaylimit.filter(|_| run.splay) {
        runall.run_timeout += Duration::from_secs(splay);
    }
    runall.run_timeout = common.timeout_or(runall.run_timeout)?;
    runall.data = data;
    let total = nodes.len();
    println!("Running Puppet on {total} nodes, at most {concurrency} at a time");
    let started = Instant::now();
    let report = runall
        .run(&client, nodes, |progress| {
            let at = clock(started);
            match progress {
                Progress::Started(node) => println!("{at} {node}: starting a run"),
                Progress::Busy(node) => {
                    println!("{at} {node}: already applying a catalog; waiting for it")
                }
                Progress::Finished { node, summary } => println!("{at} {node}: {summary}"),
                Progress::Failed { node, reason } => println!("{at} {node}: failed: {reason}"),
            }
        })
        .await;
    println!(
        "\nFinished {} / {total} Puppet runs in {:.1} s",
        report.succeeded.len(),
        report.elapsed.as_secs_f64()
    );
    if !report.failed.is_empty() {
        println!("\nFailed runs:");
        for (node, reason) in &report.failed {
            println!("   {node}: {reason}");
        }
    }
    Ok(if report.failed.is_empty() {
        super::EXIT_OK
    } else {
        super::EXIT_FAILED
    })
}

fn clock(started: Instant) -> String {
    format!("[{:>6.1} s]", started.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_rows_line_up_on_the_colon() {
        let text = count_text(5, [4, 1, 2, 3]);
        assert!(text.starts_with("Total Puppet nodes: 5\n\n"), "{text}");
        let columns: Vec<usize> = text
            .lines()
            .skip(2)
            .filter(|l| !l.is_empty())
            .map(|l| l.find(':').expect("a colon"))
            .collect();
        assert_eq!(columns.len(), 4, "{text}");
        assert!(columns.iter().all(|c| *c == 33), "{text}");
        assert!(text.contains("Nodes currently idling: 3\n"), "{text}");
    }
}
