//! Aggregate summaries: what a DDL's `aggregate` list asks the client to
//! compute across the replies to one action.
//!
//! MCollective's functions: `summary` (how many nodes gave each value),
//! `boolean_summary` (true/false counts under labels the DDL chooses),
//! `sum` and `average`. They run over the `data` of each successful reply,
//! so a node that failed does not skew a count. A function this build
//! does not know is skipped, so a newer DDL still works with an older
//! client.
//!
//! ```
//! use muster_protocol::{aggregate, ddl::Action};
//! use serde_json::json;
//! let action: Action = serde_json::from_value(json!({
//!     "action": "status",
//!     "output": {"version": {"display_as": "Version"}},
//!     "aggregate": [{"function": "summary", "args": ["version"]}]
//! })).unwrap();
//! let replies = [json!({"version": "1.2.3"}), json!({"version": "1.2.3"}), json!({"version": "1.2.4"})];
//! let replies: Vec<_> = replies.iter().collect();
//! let summaries = aggregate::compute(&action, &replies);
//! assert_eq!(summaries[0].render(), "Summary of Version:\n\n   1.2.3 = 2\n   1.2.4 = 1");
//! ```

use std::collections::BTreeMap;

use serde_json::Value;

use crate::ddl::{parse_bool, parse_float, scalar_text, Action, Aggregate};

/// One computed summary.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// The aggregate function, e.g. `summary`.
    pub function: String,
    /// The output it summarises, e.g. `version`.
    pub output: String,
    /// The output's display name from the DDL, or its name.
    pub display_as: String,
    /// The summary itself.
    pub result: SummaryResult,
}

/// What an aggregate function came to.
#[derive(Debug, Clone, PartialEq)]
pub enum SummaryResult {
    /// Each value and how many times it was seen, most common first, then
    /// by value (`summary`, `boolean_summary`).
    Counts(Vec<(String, usize)>),
    /// A single number (`sum`, `average`).
    Number(f64),
}

/// Computes every aggregate `action` declares over the data of its
/// successful replies. Aggregates with an unknown function or without an
/// output name are skipped, as is an `average` of no numbers.
pub fn compute(action: &Action, replies: &[&Value]) -> Vec<Summary> {
    action
        .aggregate
        .iter()
        .filter_map(|aggregate| summarise(action, aggregate, replies))
        .collect()
}

fn summarise(action: &Action, aggregate: &Aggregate, replies: &[&Value]) -> Option<Summary> {
    let output = aggregate.args.first()?.as_str()?.to_string();
    let values = || {
        replies
            .iter()
            .filter_map(|reply| reply.get(&output))
            .filter(|value| !value.is_null())
    };
    let result = match aggregate.function.as_str() {
        "summary" => {
            let mut counts = BTreeMap::new();
            for value in values() {
                let items = match value {
                    Value::Array(items) => items.iter().collect(),
                    other => vec![other],
                };
                // An empty value (an absent package's arch) says nothing.
                for item in items.into_iter().filter(|i| i.as_str() != Some("")) {
                    *counts.entry(text(item)).or_insert(0) += 1;
                }
            }
            SummaryResult::Counts(sorted(counts))
        }
        "boolean_summary" => {
            let labels = aggregate.args.get(1);
            let label = |which: bool| {
                let key = if which { "true" } else { "false" };
                labels
                    .and_then(|l| l.get(key))
                    .and_then(Value::as_str)
                    .unwrap_or(key)
                    .to_string()
            };
            let mut counts = BTreeMap::from([(label(true), 0), (label(false), 0)]);
            for value in values() {
                let truth = match value {
                    Value::Bool(b) => Some(*b),
                    Value::String(s) => parse_bool(s),
                    _ => None,
                };
                if let Some(truth) = truth {
                    *counts.entry(label(truth)).or_insert(0) += 1;
                }
            }
            SummaryResult::Counts(sorted(counts))
        }
        "sum" => SummaryResult::Number(values().filter_map(number).sum()),
        "average" => {
            let numbers: Vec<f64> = values().filter_map(number).collect();
            if numbers.is_empty() {
                return None;
            }
            SummaryResult::Number(numbers.iter().sum::<f64>() / numbers.len() as f64)
        }
        _ => return None,
    };
    let display_as = action
        .output
        .get(&output)
        .map(|o| o.display_as.clone())
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| output.clone());
    Some(Summary {
        function: aggregate.function.clone(),
        output,
        display_as,
        result,
    })
}

/// A number, or a string holding one; anything else is skipped.
fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => parse_float(s),
        _ => None,
    }
}

fn text(value: &Value) -> String {
    scalar_text(value).unwrap_or_else(|| value.to_string())
}

fn sorted(counts: BTreeMap<String, usize>) -> Vec<(String, usize)> {
    let mut counts: Vec<(String, usize)> = counts.into_iter().collect();
    // The map is ordered by value already; a stable sort keeps that for ties.
    counts.sort_by_key(|(_, count)| std::cmp::Reverse(*count));
    counts
}

impl Summary {
    /// The summary as MCollective prints it after the results: counts
    /// right-aligned under a heading, a number on the heading's line.
    /// No trailing newline.
    pub fn render(&self) -> String {
        match &self.result {
            SummaryResult::Number(n) => {
                format!("Summary of {}: {}", self.display_as, format_number(*n))
            }
            SummaryResult::Counts(counts) if counts.is_empty() => format!(
                "Summary of {}:\n\n   No aggregate summary could be computed",
                self.display_as
            ),
            SummaryResult::Counts(counts) => {
                let width = counts
                    .iter()
                    .map(|(value, _)| value.chars().count())
                    .max()
                    .unwrap_or(0);
                let lines: Vec<String> = counts
                    .iter()
                    .map(|(value, count)| format!("   {value:>width$} = {count}"))
                    .collect();
                format!("Summary of {}:\n\n{}", self.display_as, lines.join("\n"))
            }
        }
    }
}

/// Whole numbers without a fraction; others to at most two decimals, or
/// two significant digits when two decimals would show a small number as 0.
fn format_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        return format!("{n:.0}");
    }
    let mut decimals = 2;
    if n != 0.0 && n.abs() < 0.005 {
        // 0.0048: log10 is -2.3, so four decimals keep two digits.
        decimals = (1 - n.abs().log10().floor() as i64).clamp(2, 20) as usize;
    }
    let text = format!("{n:.decimals$}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}
