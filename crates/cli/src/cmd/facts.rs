//! `mco facts FACT`: how a fact's values are spread over the matching
//! nodes, as MCollective's facts application reports it.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::io::Write;

use muster_client::{Call, Response};
use serde_json::{Map, Value};

use crate::args::Common;
use crate::render;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The fact, e.g. os.family (dots reach into structured facts)
    #[arg(value_name = "FACT")]
    pub fact_name: String,
    #[command(flatten)]
    pub common: Common,
}

/// How a node without the fact is counted.
const MISSING: &str = "(missing)";

pub(crate) async fn run(args: Args) -> anyhow::Result<u8> {
    super::init_logging("warn");
    let fact = args.fact_name.trim();
    if fact.is_empty() {
        anyhow::bail!("mco facts needs a fact name, e.g. mco facts os.family");
    }
    let (filter, _) = args.common.plan()?;
    let client = args.common.connect().await?;
    let mut data = Map::new();
    data.insert("fact".into(), Value::String(fact.to_string()));
    let call = Call::new("rpcutil", "get_fact")
        .with_filter(filter)
        .with_data(data);
    let Some(outcome) = super::rpc::discover_and_call(&client, &args.common, call).await? else {
        let mut out = std::io::stdout();
        render::machine_output(
            &mut out,
            &args.common,
            "rpcutil",
            "get_fact",
            &render::nothing_sent(),
            &[],
        )?;
        return Ok(super::EXIT_NO_NODES);
    };
    let filter = args.common.reply_filter()?;
    let kept = render::kept(&outcome, "rpcutil", "get_fact", filter.as_ref());
    let mut out = std::io::stdout().lock();
    let values = distribution(&kept);
    if args.common.json {
        // The common document, with the distribution as "values".
        let mut document = render::json_document("rpcutil", "get_fact", &outcome, &kept);
        let map: Map<String, Value> = values
            .iter()
            .map(|(value, nodes)| (value.clone(), Value::from(nodes.clone())))
            .collect();
        document["values"] = Value::Object(map);
        writeln!(out, "{}", serde_json::to_string_pretty(&document)?)?;
    } else if !render::machine_output(
        &mut out,
        &args.common,
        "rpcutil",
        "get_fact",
        &outcome,
        &kept,
    )? {
        let style = render::Style::for_stdout();
        report(&mut out, fact, &values)?;
        writeln!(out)?;
        for failed in kept.iter().filter(|r| !r.reply.statuscode.is_ok()) {
            let line = format!("    {}: {}", failed.identity(), failed.reply.statusmsg);
            writeln!(out, "{}", style.failed(&line))?;
        }
        let matched = filter.is_some().then_some(kept.len());
        render::rpc_stats(&mut out, &outcome, matched, args.common.verbose, style)?;
    }
    Ok(super::rpc::exit_code(&outcome))
}

/// Each value with the nodes that have it, sorted by value (numerically
/// when both are numbers), nodes sorted by name.
pub(crate) fn distribution(responses: &[&Response]) -> Vec<(String, Vec<String>)> {
    let mut by_value: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for response in responses.iter().filter(|r| r.reply.statuscode.is_ok()) {
        let value = match response.reply.data.get("value") {
            None | Some(Value::Null) => MISSING.to_string(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        };
        by_value
            .entry(value)
            .or_default()
            .push(response.identity().to_string());
    }
    let mut values: Vec<(String, Vec<String>)> = by_value.into_iter().collect();
    for (_, nodes) in &mut values {
        nodes.sort();
    }
    values.sort_by(|(a, _), (b, _)| by_number_then_text(a, b));
    values
}

/// Numbers first, in numeric order, then everything else as text: a
/// total order, whatever the values.
fn by_number_then_text(a: &str, b: &str) -> Ordering {
    let number = |s: &str| s.parse::<f64>().ok().filter(|n| n.is_finite());
    match (number(a), number(b)) {
        (Some(x), Some(y)) => x.total_cmp(&y).then_with(|| a.cmp(b)),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

/// `Report for fact: ...` and one line per value with its count.
pub(crate) fn report(
    out: &mut dyn Write,
    fact: &str,
    values: &[(String, Vec<String>)],
) -> std::io::Result<()> {
    writeln!(out, "Report for fact: {fact}\n")?;
    let width = values
        .iter()
        .map(|(v, _)| v.chars().count())
        .max()
        .unwrap_or(0)
        .max(40);
    for (value, nodes) in values {
        // "1 times" too, as MCollective prints it, for scripts that parse it.
        writeln!(out, "        {value:<width$} found {} times", nodes.len())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_lines_up_like_mcollective() {
        let mut out = Vec::new();
        let values = vec![
            ("Debian".to_string(), vec!["a".to_string(), "b".to_string()]),
            ("RedHat".to_string(), vec!["c".to_string()]),
        ];
        report(&mut out, "os.family", &values).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            format!(
                "Report for fact: os.family\n\n        Debian{}found 2 times\n        RedHat{}found 1 times\n",
                " ".repeat(35),
                " ".repeat(35)
            )
        );
    }

    #[test]
    fn numbers_sort_as_numbers() {
        let mut v = ["16384", "2048", "4096", "x"];
        v.sort_by(|a, b| by_number_then_text(a, b));
        assert_eq!(v, ["2048", "4096", "16384", "x"]);
    }
}
