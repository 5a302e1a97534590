//! `mco ping`: who is there, and how quickly they answer.

use std::io::Write;
use std::time::Duration;

use muster_client::{Call, Client, Targets};

use crate::args::Common;
use crate::render;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    #[command(flatten)]
    pub common: Common,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<u8> {
    super::init_logging("warn");
    let (filter, _) = args.common.plan()?;
    let client = args.common.connect().await?;
    ping(&client, &args.common, filter, &mut std::io::stdout()).await
}

/// Pings with a broadcast and stops when the replies go quiet (or at
/// `-t`, 2 s by default, like MCollective's discovery). When the nodes are
/// known (exact `-I` names, or another discovery method such as
/// `--nodes`), pings exactly those, directly, stops at the last reply,
/// and lists those that do not answer. With `--expect`, the broadcast
/// waits for the expected nodes (up to `-t`), then for quiet, and names
/// both the silent expected nodes and the unexpected ones that answered.
/// Lines (or `--jsonl` objects) print as replies arrive.
pub(crate) async fn ping(
    client: &Client,
    common: &Common,
    filter: muster_protocol::Filter,
    out: &mut dyn Write,
) -> anyhow::Result<u8> {
    let discovery = common.discovery.discovery(&client.config().discovery)?;
    let reply_filter = common.reply_filter()?;
    let started = std::time::Instant::now();
    let expect = super::rpc::expected_nodes(client, common, &filter, &discovery).await?;
    let targets = if discovery.is_broadcast() {
        Targets::Broadcast
    } else {
        let nodes = common.discover(client, &filter, &discovery).await?;
        if nodes.is_empty() {
            eprintln!("No request sent, we did not discover any nodes.");
            render::machine_output(out, common, "rpcutil", "ping", &render::nothing_sent(), &[])?;
            return Ok(super::EXIT_NO_NODES);
        }
        Targets::Nodes(nodes)
    };
    // The time to learn the node list (or, with --expect, the expected set).
    let discovered = (expect.is_some() || !discovery.is_broadcast()).then(|| started.elapsed());
    // A broadcast is a discovery: 2 s at most, as MCollective's. A known
    // set waits as the DDL says, and ends when the last node answers.
    let timeout = match targets {
        Targets::Broadcast => Some(common.timeout_or(Duration::from_secs(2))?),
        _ => common.timeout()?,
    };
    let named = matches!(targets, Targets::Broadcast) && filter.exact_identities().is_some();
    let mut call = Call::new("rpcutil", "ping")
        .with_filter(filter)
        .with_targets(targets);
    call.timeout = timeout;
    call.collective = common.selectors.target.clone();
    call.expect = expect.map(|(_, nodes)| nodes);
    let text = !common.json && !common.jsonl;
    let outcome = client
        .call_until(
            &call,
            |response| {
                let reply = render::reply_json("rpcutil", "ping", response);
                if !reply_filter
                    .as_ref()
                    .is_none_or(|f| f.keeps(&reply).unwrap_or(false))
                {
                    return;
                }
                if text {
                    let _ = render::ping_line(out, response);
                } else if common.jsonl {
                    let _ = writeln!(out, "{reply}").and_then(|_| out.flush());
                }
            },
            super::interrupt::ctrl_c(),
        )
        .await?;
    super::interrupt::exit_on_next();
    let mut outcome = outcome;
    outcome.discovery = outcome.discovery.or(discovered);
    if !named {
        outcome.discovery_method = Some(discovery.name().to_string());
    }
    let kept = render::kept(&outcome, "rpcutil", "ping", reply_filter.as_ref());
    if common.json {
        render::machine_output(out, common, "rpcutil", "ping", &outcome, &kept)?;
    } else if common.jsonl {
        // The reply lines went out as they arrived.
        let statistics =
            serde_json::json!({"statistics": render::statistics_json(&outcome, kept.len())});
        writeln!(out, "{statistics}")?;
    } else {
        let style = render::Style::for_stdout();
        render::ping_summary(out, &outcome, &kept, common.verbose, style)?;
    }
    Ok(exit_code(&outcome, named))
}

/// Ping's exit code: nobody answering a broadcast, or any of the `-I`
/// names, means no node matched; a ping of discovered nodes with silent
/// ones is "some did not answer".
fn exit_code(outcome: &muster_client::Outcome, named: bool) -> u8 {
    if outcome.interrupted {
        super::EXIT_INTERRUPTED
    } else if outcome.responses.is_empty() && (outcome.expected.is_none() || named) {
        super::EXIT_NO_NODES
    } else {
        super::rpc::exit_code(outcome)
    }
}
