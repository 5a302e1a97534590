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
    let filter = args.common.selectors.filter()?;
    let client = args.common.connect().await?;
    ping(&client, &args.common, filter, &mut std::io::stdout()).await
}

/// Pings with a broadcast and stops when the replies go quiet (or at
/// `-t`, 2 s by default, like MCollective's discovery).
pub async fn ping(
    client: &Client,
    common: &Common,
    filter: muster_protocol::Filter,
    out: &mut dyn Write,
) -> anyhow::Result<u8> {
    let mut call = Call::new("rpcutil", "ping")
        .with_filter(filter)
        .with_targets(Targets::Broadcast)
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
    Ok(if outcome.responses.is_empty() {
        super::EXIT_PARTIAL
    } else {
        super::EXIT_OK
    })
}
