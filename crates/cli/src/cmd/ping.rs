//! `mco ping`: who is there, and how quickly they answer.

use std::io::Write;
use std::time::Duration;

use muster_client::{Call, Client, Targets};

use crate::args::Common;
use crate::render;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
}

pub async fn run(args: Args) -> anyhow::Result<u8> {
    super::init_logging("warn");
    let (filter, _) = args.common.plan()?;
    let client = args.common.connect().await?;
    ping(&client, &args.common, filter, &mut std::io::stdout()).await
}

/// Pings with a broadcast and stops when the replies go quiet (or at
/// `-t`, 2 s by default, like MCollective's discovery). With another
/// discovery method, pings exactly the nodes it names, directly, and lists
/// those that do not answer.
pub async fn ping(
    client: &Client,
    common: &Common,
    filter: muster_protocol::Filter,
    out: &mut dyn Write,
) -> anyhow::Result<u8> {
    let discovery = common.discovery.discovery()?;
    let targets = if discovery.is_broadcast() {
        Targets::Broadcast
    } else {
        let nodes = common.discover(client, &filter, &discovery).await?;
        if nodes.is_empty() {
            eprintln!("No request sent, we did not discover any nodes.");
            return Ok(super::EXIT_PARTIAL);
        }
        Targets::Nodes(nodes)
    };
    let mut call = Call::new("rpcutil", "ping")
        .with_filter(filter)
        .with_targets(targets)
        .with_timeout(common.timeout_or(Duration::from_secs(2))?);
    call.collective = common.selectors.target.clone();
    let json = common.json;
    let outcome = client
        .call(&call, |response| {
            if !json {
                let _ = render::ping_line(out, response);
            }
        })
        .await?;
    if json {
        let nodes: Vec<_> = outcome
            .responses
            .iter()
            .map(|r| serde_json::json!({"sender": r.identity(), "rtt_ms": r.rtt.as_secs_f64() * 1000.0}))
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&nodes)?)?;
    } else {
        render::ping_summary(out, &outcome)?;
    }
    Ok(
        if outcome.responses.is_empty() || !outcome.missing.is_empty() {
            super::EXIT_PARTIAL
        } else {
            super::EXIT_OK
        },
    )
}
