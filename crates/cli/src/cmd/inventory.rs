//! `mco inventory NODE`: everything a node knows about itself, laid out
//! as MCollective does; `mco inventory --json [selectors]`: node records
//! for every matching node, the file `--dm inventory` reads.

use std::collections::HashMap;
use std::io::Write;

use anyhow::Context;
use muster_client::{Call, NodeRecord, Targets};
use serde_json::Value;

use crate::args::Common;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The node; without it, every node the selectors match
    pub node: Option<String>,
    #[command(flatten)]
    pub common: Common,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<u8> {
    super::init_logging("warn");
    let (mut filter, _) = args.common.plan()?;
    if let Some(node) = &args.node {
        filter = filter.identity(node).context("bad NODE")?;
    }
    let client = args.common.connect().await?;
    let call = Call::new("rpcutil", "inventory").with_filter(filter.clone());
    let Some(outcome) = super::rpc::discover_and_call(&client, &args.common, call).await? else {
        return Ok(super::EXIT_NO_NODES);
    };
    let reply_filter = args.common.reply_filter()?;
    let kept = crate::render::kept(&outcome, "rpcutil", "inventory", reply_filter.as_ref());
    let mut answered: Vec<(NodeRecord, &Value)> = kept
        .iter()
        .filter(|r| r.reply.statuscode.is_ok())
        .map(|r| {
            (
                NodeRecord::from_inventory(r.identity(), &r.reply.data),
                &r.reply.data,
            )
        })
        .collect();
    answered.sort_by(|(a, _), (b, _)| a.identity.cmp(&b.identity));
    let mut out = std::io::stdout().lock();
    if args.common.jsonl {
        crate::render::machine_output(
            &mut out,
            &args.common,
            "rpcutil",
            "inventory",
            &outcome,
            &kept,
        )?;
    } else if args.common.json {
        let records: Vec<&NodeRecord> = answered.iter().map(|(record, _)| record).collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&records)?)?;
    } else {
        let nodes: Vec<String> = answered
            .iter()
            .map(|(record, _)| record.identity.clone())
            .collect();
        let mut stats: HashMap<String, Value> = HashMap::new();
        // After Ctrl-C, no second wait: show what the first one got.
        if !nodes.is_empty() && !outcome.interrupted {
            let mut call = Call::new("rpcutil", "daemon_stats")
                .with_filter(filter)
                .with_targets(Targets::Nodes(nodes));
            call.timeout = args.common.timeout()?;
            call.collective = args.common.selectors.target.clone();
            let replies = client.call(&call, |_| {}).await?;
            for response in replies.responses {
                if response.reply.statuscode.is_ok() {
                    stats.insert(response.reply.sender.clone(), response.reply.data);
                }
            }
        }
        for (record, data) in &answered {
            render(&mut out, record, data, stats.get(&record.identity))?;
        }
        let style = crate::render::Style::for_stdout();
        for failed in kept.iter().filter(|r| !r.reply.statuscode.is_ok()) {
            let line = format!("{}: {}", failed.identity(), failed.reply.statusmsg);
            writeln!(out, "{}", style.failed(&line))?;
        }
        let matched = reply_filter.is_some().then_some(kept.len());
        crate::render::rpc_stats(&mut out, &outcome, matched, args.common.verbose, style)?;
    }
    Ok(super::rpc::exit_code(&outcome))
}

/// One node's inventory in MCollective's layout.
pub(crate) fn render(
    out: &mut dyn Write,
    record: &NodeRecord,
    data: &Value,
    stats: Option<&Value>,
) -> std::io::Result<()> {
    writeln!(out, "Inventory for {}:\n", record.identity)?;
    writeln!(out, "   Server Statistics:")?;
    let text = |v: Option<&Value>| v.map(scalar).unwrap_or_else(|| "unknown".to_string());
    let stat = |key: &str| text(stats.and_then(|s| s.get(key)));
    let lines: Vec<(&str, String)> = vec![
        (
            "Version",
            text(stats.and_then(|s| s.get("version")).or(data.get("version"))),
        ),
        (
            "Start Time",
            stats
                .and_then(|s| s.get("starttime"))
                .and_then(Value::as_u64)
                .map_or_else(|| "unknown".to_string(), utc_time),
        ),
        (
            "Uptime",
            stats
                .and_then(|s| s.get("uptime"))
                .and_then(Value::as_u64)
                .map_or_else(|| "unknown".to_string(), span),
        ),
        (
            "Config File",
            match stats.and_then(|s| s.get("configfile")) {
                None | Some(Value::Null) => "(none)".to_string(),
                Some(v) => scalar(v),
            },
        ),
        ("Collectives", record.collectives.join(", ")),
        ("Main Collective", text(data.get("main_collective"))),
        ("Process ID", stat("pid")),
        ("Total Messages", stat("total")),
        ("Messages Passed Filters", stat("passed")),
        ("Messages Filtered", stat("filtered")),
        ("Expired Messages", stat("ttlexpired")),
        ("Replies Sent", stat("replies")),
    ];
    for (label, value) in lines {
        writeln!(out, "{label:>29}: {value}")?;
    }
    writeln!(out, "\n   Agents:")?;
    columns(out, &record.agents, 3, 15)?;
    writeln!(out, "\n   Data Plugins:")?;
    let plugins: Vec<String> = data
        .get("data_plugins")
        .and_then(Value::as_array)
        .map(|items| items.iter().map(scalar).collect())
        .unwrap_or_default();
    columns(out, &plugins, 3, 15)?;
    writeln!(out, "\n   Configuration Management Classes:")?;
    columns(out, &record.classes, 2, 30)?;
    writeln!(out, "\n   Facts:")?;
    let mut facts = Vec::new();
    flatten("", &record.facts, &mut facts);
    facts.sort();
    if facts.is_empty() {
        writeln!(out, "      none")?;
    }
    for (key, value) in facts {
        writeln!(out, "      {key} => {value}")?;
    }
    writeln!(out)
}

/// Sorted names, `per_row` to a line, each at least `width` wide.
fn columns(
    out: &mut dyn Write,
    names: &[String],
    per_row: usize,
    width: usize,
) -> std::io::Result<()> {
    if names.is_empty() {
        return writeln!(out, "      none");
    }
    let mut names = names.to_vec();
    names.sort();
    let width = names
        .iter()
        .map(|n| n.chars().count())
        .max()
        .unwrap_or(0)
        .max(width);
    for row in names.chunks(per_row) {
        let line: Vec<String> = row.iter().map(|n| format!("{n:<width$}")).collect();
        writeln!(out, "      {}", line.join(" ").trim_end())?;
    }
    Ok(())
}

/// Nested facts as `dotted.key => value` pairs; list items by index.
pub(crate) fn flatten(prefix: &str, value: &Value, into: &mut Vec<(String, String)>) {
    let key = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                flatten(&key(k), v, into);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (i, v) in items.iter().enumerate() {
                flatten(&key(&i.to_string()), v, into);
            }
        }
        other if !prefix.is_empty() => into.push((prefix.to_string(), scalar(other))),
        _ => {}
    }
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Seconds since the epoch as `YYYY-MM-DD HH:MM:SS UTC`.
fn utc_time(unix: u64) -> String {
    format!(
        "{} UTC",
        muster_protocol::time::utc(i64::try_from(unix).unwrap_or(i64::MAX))
    )
}

/// `1d 2h 3m 4s`, leading zero units left out.
fn span(seconds: u64) -> String {
    let parts = [(86_400, "d"), (3600, "h"), (60, "m"), (1, "s")];
    let mut left = seconds;
    let mut text = Vec::new();
    for (size, unit) in parts {
        let n = left / size;
        left %= size;
        if n > 0 || (!text.is_empty()) || size == 1 {
            text.push(format!("{n}{unit}"));
        }
    }
    text.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_facts_flatten_to_dotted_keys() {
        let mut pairs = Vec::new();
        flatten(
            "",
            &json!({"os": {"family": "Debian", "release": {"major": "12"}}, "ips": ["a", "b"], "n": 2, "e": {}}),
            &mut pairs,
        );
        pairs.sort();
        let keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            ["e", "ips.0", "ips.1", "n", "os.family", "os.release.major"]
        );
        assert_eq!(pairs[0].1, "{}");
    }

    #[test]
    fn times_read_like_dates() {
        assert_eq!(utc_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_time(1_709_210_096), "2024-02-29 12:34:56 UTC");
        assert_eq!(span(3_725), "1h 2m 5s");
        assert_eq!(span(5), "5s");
    }

    #[test]
    fn layout_has_every_section() {
        let data = json!({"agents": ["rpcutil"], "classes": ["base", "httpd", "role::web"], "collectives": ["mcollective"], "facts": {"os": {"family": "Debian"}}, "main_collective": "mcollective", "version": "0.1.0", "data_plugins": []});
        let record = NodeRecord::from_inventory("node07", &data);
        let mut out = Vec::new();
        render(
            &mut out,
            &record,
            &data,
            Some(&json!({"pid": 7, "starttime": 0, "uptime": 3})),
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        for expected in [
            "Inventory for node07:",
            "   Server Statistics:\n                      Version: 0.1.0",
            "                   Process ID: 7",
            "   Agents:\n      rpcutil\n",
            "   Data Plugins:\n      none\n",
            "      base                           httpd\n      role::web\n",
            "   Facts:\n      os.family => Debian\n",
        ] {
            assert!(text.contains(expected), "{expected:?} not in\n{text}");
        }
    }
}
