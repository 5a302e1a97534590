//! `mco uptime`: how long each matching node has been up, as a custom
//! application written against the client library.
//!
//! ```text
//! cargo build -p muster-client --example mco-uptime
//! cp target/debug/examples/mco-uptime ~/.local/bin/    # any directory on PATH
//! mco uptime -F os.family=Debian
//! ```
//!
//! It discovers the nodes the selectors match, asks each for the fact
//! `system_uptime.seconds` (`rpcutil get_fact`), and prints a table sorted
//! by identity, then a summary with the nodes that did not answer. The
//! config comes from `--config FILE`, else `MCO_CONFIG` (which `mco` sets
//! for the applications it runs), else the default file.
//!
//! The work is in [`run`], which writes to any `Write`, so a test can call
//! it on a simulated fleet (crates/client/tests/it/uptime.rs includes this
//! file as a module); `main` only parses arguments and connects.
// Its items are `pub` for the test that includes this file as a module.
#![allow(unreachable_pub)]

use std::error::Error;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use muster_client::{Call, Client, ClientConfig, Outcome, Response};
use muster_protocol::Filter;
use serde_json::{Map, Value};

/// The fact asked for; native fact gathering fills it on every real node.
pub const FACT: &str = "system_uptime.seconds";

/// Exit codes, as `mco` uses them (README, "Exit codes").
pub const EXIT_OK: u8 = 0;
/// Some node answered with a failure.
pub const EXIT_FAILED: u8 = 1;
/// The command line was wrong.
pub const EXIT_USAGE: u8 = 2;
/// Some node that should have answered did not.
pub const EXIT_NO_ANSWER: u8 = 3;
/// No node matched the filter.
pub const EXIT_NO_MATCH: u8 = 4;

/// The `--help` text.
pub const USAGE: &str = "Show how long each matching node has been up.

Usage: mco uptime [-I IDENTITY] [-F FACT] [-C CLASS] [-t SECONDS] [--config FILE]

Examples:
  mco uptime
  mco uptime -F os.family=Debian -C httpd
  mco uptime -I '/^web/' -t 5
";

/// What the command line asked for.
#[derive(Debug, Default, PartialEq)]
pub struct Options {
    /// `--config FILE`; the default client config when `None`.
    pub config: Option<PathBuf>,
    /// The node filter from `-I`, `-F` and `-C`.
    pub filter: Filter,
    /// How long to wait for replies; the library's default when `None`.
    pub timeout: Option<Duration>,
    /// `-h`/`--help`: print [`USAGE`] and stop.
    pub help: bool,
}

/// Parses `-I`, `-F`, `-C` (repeatable), `-t SECONDS`, `--config FILE`
/// and `--help`; anything else is an error.
pub fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut options = Options::default();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| {
            args.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        let bad = |e: muster_protocol::FilterError| e.to_string();
        match arg.as_str() {
            "-h" | "--help" => options.help = true,
            "-c" | "--config" => options.config = Some(PathBuf::from(value(arg)?)),
            "-I" | "--with-identity" => {
                options.filter = options.filter.identity(&value(arg)?).map_err(bad)?
            }
            "-F" | "--with-fact" => {
                options.filter = options.filter.fact(&value(arg)?).map_err(bad)?
            }
            "-C" | "--with-class" => {
                options.filter = options.filter.class(&value(arg)?).map_err(bad)?
            }
            "-t" | "--timeout" => {
                let text = value(arg)?;
                let seconds: f64 = text
                    .parse()
                    .map_err(|_| format!("-t wants seconds, got {text:?}"))?;
                if !(seconds > 0.0 && seconds <= 86_400.0) {
                    return Err(format!("-t wants 0 to 86400 seconds, got {text}"));
                }
                options.timeout = Some(Duration::from_secs_f64(seconds));
            }
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    Ok(options)
}

/// Discovers, asks every node for its uptime, prints the table and the
/// summary; returns the exit code.
pub async fn run(
    client: &Client,
    options: &Options,
    out: &mut dyn Write,
) -> Result<u8, Box<dyn Error>> {
    let mut data = Map::new();
    data.insert("fact".into(), Value::String(FACT.into()));
    let mut call = Call::new("rpcutil", "get_fact")
        .with_filter(options.filter.clone())
        .with_data(data);
    if let Some(timeout) = options.timeout {
        call = call.with_timeout(timeout);
    }
    // Replies stream in through the callback; a terminal application
    // would move a progress bar here.
    let mut arrived = 0;
    let outcome = client.call(&call, |_| arrived += 1).await?;
    if outcome.expected.as_ref().is_some_and(Vec::is_empty) {
        eprintln!("No request sent, we did not discover any nodes.");
        return Ok(EXIT_NO_MATCH);
    }
    render(&outcome, out)?;
    Ok(if outcome.failed().next().is_some() {
        EXIT_FAILED
    } else if !outcome.missing.is_empty() || arrived == 0 {
        EXIT_NO_ANSWER
    } else {
        EXIT_OK
    })
}

/// One node's uptime, as the table shows it.
pub fn uptime(response: &Response) -> String {
    if !response.reply.statuscode.is_ok() {
        return format!("error: {}", response.reply.statusmsg);
    }
    match response.reply.data.get("value").and_then(Value::as_u64) {
        Some(seconds) => days_hours(seconds),
        None => "unknown".into(),
    }
}

/// `3d 4h`: whole days and hours.
pub fn days_hours(seconds: u64) -> String {
    format!("{}d {:>2}h", seconds / 86_400, seconds % 86_400 / 3600)
}

/// The table, sorted by identity, then the statistics.
pub fn render(outcome: &Outcome, out: &mut dyn Write) -> std::io::Result<()> {
    let mut rows: Vec<(&str, String)> = outcome
        .responses
        .iter()
        .map(|r| (r.identity(), uptime(r)))
        .collect();
    rows.sort();
    let width = rows
        .iter()
        .map(|(identity, _)| identity.len())
        .chain(["IDENTITY".len()])
        .max()
        .unwrap_or(0);
    writeln!(out, "{:width$}  UPTIME", "IDENTITY")?;
    for (identity, uptime) in &rows {
        writeln!(out, "{identity:width$}  {uptime}")?;
    }
    let expected = outcome
        .expected
        .as_ref()
        .map_or(outcome.responses.len(), Vec::len);
    writeln!(out)?;
    writeln!(
        out,
        "Finished processing {} / {} hosts in {} ms",
        outcome.responses.len(),
        expected,
        outcome.elapsed.as_millis()
    )?;
    let known: Vec<(u64, &str)> = outcome
        .responses
        .iter()
        .filter_map(|r| {
            let seconds = r.reply.data.get("value").and_then(Value::as_u64)?;
            Some((seconds, r.identity()))
        })
        .collect();
    if let (Some(longest), Some(shortest)) = (known.iter().max(), known.iter().min()) {
        writeln!(
            out,
            "Longest up: {} ({}); shortest: {} ({})",
            longest.1,
            days_hours(longest.0).replace("  ", " "),
            shortest.1,
            days_hours(shortest.0).replace("  ", " ")
        )?;
    }
    if !outcome.missing.is_empty() {
        writeln!(out, "No response from: {}", outcome.missing.join(", "))?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match parse_args(&args) {
        Ok(options) if options.help => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(options) => options,
        Err(e) => {
            eprintln!("mco uptime: {e}\n\n{USAGE}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let result = async {
        let config = ClientConfig::load(options.config.as_deref())?;
        let client = Client::connect(config).await?;
        let code = run(&client, &options, &mut std::io::stdout()).await?;
        client.close().await;
        Ok::<u8, Box<dyn Error>>(code)
    };
    match result.await {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("mco uptime: {e}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}
