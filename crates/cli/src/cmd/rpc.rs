//! `mco rpc AGENT ACTION key=value ...`: run one action on matching nodes.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use muster_client::{Call, Client};
use serde_json::{Map, Value};

use crate::args::Common;
use crate::render;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The agent, e.g. rpcutil
    pub agent: String,
    /// The action, e.g. inventory
    pub action: String,
    /// Inputs as key=value
    pub inputs: Vec<String>,
    #[command(flatten)]
    pub common: Common,
}

pub async fn run(args: Args) -> anyhow::Result<u8> {
    super::init_logging("warn");
    let filter = args.common.selectors.filter()?;
    let data = parse_inputs(&args.inputs)?;
    let client = args.common.connect().await?;
    let call = Call::new(&args.agent, &args.action).with_filter(filter).with_data(data);
    rpc(&client, &args.common, call, &mut std::io::stdout()).await
}

/// Discovers, runs the call, prints each result and the summary.
pub async fn rpc(client: &Client, common: &Common, mut call: Call, out: &mut dyn Write) -> anyhow::Result<u8> {
    call.collective = common.selectors.target.clone();
    call.timeout = common.timeout_or(Duration::from_secs(10))?;
    call.discovery_timeout = common.discovery_timeout()?;
    let started = std::time::Instant::now();
    let mut discovery = None;
    if call.filter.exact_identities().is_none() {
        let nodes = client
            .discover(&call.filter, call.collective.as_deref(), call.discovery_timeout, call.window)
            .await?;
        if nodes.is_empty() {
            eprintln!("No request sent, we did not discover any nodes.");
            return Ok(super::EXIT_PARTIAL);
        }
        call.targets = muster_client::Targets::Nodes(nodes);
        discovery = Some(started.elapsed());
    }
    let expected = match &call.targets {
        muster_client::Targets::Nodes(nodes) => Some(nodes.len()),
        _ => None,
    };
    let bar = render::progress(expected, common.json);
    let mut outcome = client.call(&call, |_| bar.inc(1)).await?;
    outcome.discovery = outcome.discovery.or(discovery);
    bar.finish_and_clear();
    if common.json {
        let results = render::json_results(&call.agent, &call.action, &outcome);
        writeln!(out, "{}", serde_json::to_string_pretty(&results)?)?;
    } else {
        writeln!(out)?;
        for response in &outcome.responses {
            render::rpc_result(out, response)?;
        }
        render::rpc_summary(out, &outcome)?;
    }
    Ok(if outcome.missing.is_empty() && outcome.failed().next().is_none() {
        super::EXIT_OK
    } else {
        super::EXIT_PARTIAL
    })
}

/// `key=value` inputs. Values that read as JSON numbers, booleans, arrays
/// or objects are sent typed; anything else is a string.
pub fn parse_inputs(inputs: &[String]) -> anyhow::Result<Map<String, Value>> {
    let mut data = Map::new();
    for input in inputs {
        let (key, value) = input
            .split_once('=')
            .with_context(|| format!("input {input:?} is not key=value"))?;
        let key = key.trim();
        if key.is_empty() {
            anyhow::bail!("input {input:?} has an empty key");
        }
        let typed = match serde_json::from_str::<Value>(value) {
            Ok(v @ (Value::Number(_) | Value::Bool(_) | Value::Array(_) | Value::Object(_))) => v,
            _ => Value::String(value.to_string()),
        };
        data.insert(key.to_string(), typed);
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_typed_where_they_look_typed() {
        let data = parse_inputs(&["fact=os.family".into(), "n=3".into(), "flag=true".into(), "s=a=b".into()]).unwrap();
        assert_eq!(data["fact"], "os.family");
        assert_eq!(data["n"], 3);
        assert_eq!(data["flag"], true);
        assert_eq!(data["s"], "a=b");
        assert!(parse_inputs(&["novalue".into()]).is_err());
        assert!(parse_inputs(&["=x".into()]).is_err());
    }
}
