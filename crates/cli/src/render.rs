//! How results look on a terminal and as JSON: per-node results, the
//! DDL's summaries, the statistics block, the `--json` document and
//! `--jsonl` lines, the progress bar, and which replies are kept
//! (`--filter-replies`) and shown (`--display`).

mod reply_filter;

use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use muster_client::{Call, Outcome, Response};
use muster_protocol::ddl::{Action, Display};
use serde_json::{json, Value};

pub(crate) use reply_filter::ReplyFilter;

use crate::args::{Common, DisplayMode};

/// Milliseconds with two decimals, as MCollective prints them.
pub(crate) fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

fn ms_number(d: Duration) -> f64 {
    (d.as_secs_f64() * 100_000.0).round() / 100.0
}

/// Plain ANSI colour, only on a terminal and never with `NO_COLOR` set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Style {
    colour: bool,
}

impl Style {
    /// Colour when stdout is a terminal and `NO_COLOR` is unset or empty.
    pub(crate) fn for_stdout() -> Style {
        Style {
            colour: colour_wanted(
                std::io::stdout().is_terminal(),
                std::env::var_os("NO_COLOR"),
            ),
        }
    }

    /// A failed node's line: red.
    pub(crate) fn failed(&self, text: &str) -> String {
        self.paint("31", text)
    }

    /// A heading: bold.
    pub(crate) fn heading(&self, text: &str) -> String {
        self.paint("1", text)
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
}

/// <https://no-color.org>: any non-empty `NO_COLOR` turns colour off.
pub(crate) fn colour_wanted(terminal: bool, no_color: Option<OsString>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

/// One ping line: `node01                                   time=1.23 ms`.
pub(crate) fn ping_line(out: &mut dyn Write, response: &Response) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<40} time={} ms",
        response.identity(),
        ms(response.rtt)
    )
}

/// The statistics block after a ping.
pub(crate) fn ping_summary(
    out: &mut dyn Write,
    outcome: &Outcome,
    kept: &[&Response],
    verbose: bool,
    style: Style,
) -> std::io::Result<()> {
    writeln!(out, "\n\n{}", style.heading("---- ping statistics ----"))?;
    match rtt_stats(kept) {
        Some((min, max, avg)) => writeln!(
            out,
            "{} replies max: {} min: {} avg: {} (finished in {} ms)",
            kept.len(),
            ms(max),
            ms(min),
            ms(avg),
            ms(outcome.elapsed)
        )?,
        None => writeln!(out, "No responses received")?,
    }
    if verbose {
        if let Some(line) = discovery_line(outcome) {
            writeln!(out, "{line}")?;
        }
    }
    if verbose || outcome.interrupted {
        writeln!(out, "Request ID: {}", outcome.request_id)?;
    }
    interrupted(out, outcome)?;
    no_responses(out, &outcome.missing)?;
    unexpected(out, &outcome.unexpected)
}

/// `Discovery: flatfile, 3 ms` (`-v`), when the call ran a discovery.
fn discovery_line(outcome: &Outcome) -> Option<String> {
    let method = outcome.discovery_method.as_deref();
    match (method, outcome.discovery) {
        (None, None) => None,
        (method, time) => Some(format!(
            "Discovery: {}{}",
            method.unwrap_or("broadcast"),
            time.map(|t| format!(", {} ms", ms(t))).unwrap_or_default()
        )),
    }
}

/// The nodes that answered without being expected (a cross-checked broadcast).
pub(crate) fn unexpected(out: &mut dyn Write, unexpected: &[String]) -> std::io::Result<()> {
    node_columns(out, "Unexpected replies from:", unexpected)
}

/// The addressed nodes that did not answer, by name, in columns.
pub(crate) fn no_responses(out: &mut dyn Write, missing: &[String]) -> std::io::Result<()> {
    node_columns(out, "No response from:", missing)
}

/// Node names under a heading, in columns; nothing when there are none.
fn node_columns(out: &mut dyn Write, heading: &str, missing: &[String]) -> std::io::Result<()> {
    if missing.is_empty() {
        return Ok(());
    }
    writeln!(out, "\n{heading}\n")?;
    let width = missing.iter().map(|n| n.chars().count()).max().unwrap_or(0) + 3;
    let columns = (76 / width).max(1);
    for row in missing.chunks(columns) {
        let cells: Vec<String> = row.iter().map(|n| format!("{n:<width$}")).collect();
        writeln!(out, "    {}", cells.concat().trim_end())?;
    }
    Ok(())
}

/// Whether a reply's result prints. By default failures always do, and
/// OK results as the action's DDL `display` says; `--display` overrides.
pub(crate) fn shown(
    mode: Option<DisplayMode>,
    action: Option<&Action>,
    response: &Response,
) -> bool {
    let ok = response.reply.statuscode.is_ok();
    match mode {
        Some(DisplayMode::All) => true,
        Some(DisplayMode::Ok) => ok,
        Some(DisplayMode::Failed) => !ok,
        None => match action.map_or(Display::Always, |a| a.display) {
            Display::Always | Display::Ok => true,
            Display::Failed => !ok,
        },
    }
}

/// One node's rpc result: its name, then each output on its own line,
/// labelled by the DDL's `display_as` where the action has one.
pub(crate) fn rpc_result(
    out: &mut dyn Write,
    response: &Response,
    action: Option<&Action>,
    style: Style,
) -> std::io::Result<()> {
    let reply = &response.reply;
    if !reply.statuscode.is_ok() {
        let line = format!("{:<40} {}", reply.sender, reply.statusmsg);
        return writeln!(out, "{}\n", style.failed(&line));
    }
    writeln!(out, "{}", reply.sender)?;
    match &reply.data {
        Value::Object(map) if !map.is_empty() => {
            let label = |key: &str| -> String {
                action
                    .and_then(|a| a.output.get(key))
                    .map(|o| o.display_as.clone())
                    .filter(|d| !d.is_empty())
                    .unwrap_or_else(|| key.to_string())
            };
            let width = map
                .keys()
                .map(|k| label(k).chars().count())
                .max()
                .unwrap_or(0);
            let is_time = |key: &str| {
                action
                    .and_then(|a| a.output.get(key))
                    .is_some_and(|o| o.kind.as_deref() == Some("time"))
            };
            for (key, value) in map {
                let text = match value.as_i64() {
                    // An output typed `time` holds Unix seconds (daemon_stats' starttime).
                    Some(seconds) if is_time(key) => {
                        format!("{} UTC", muster_protocol::time::utc(seconds))
                    }
                    _ => value_text(value, width + 5),
                };
                writeln!(out, "   {:>width$}: {text}", label(key))?;
            }
        }
        Value::Object(_) | Value::Null => {}
        other => writeln!(out, "   {}", value_text(other, 3))?,
    }
    writeln!(out)
}

/// Strings bare, short values on one line, big ones pretty and indented;
/// a multi-line string's later lines are indented under its first.
fn value_text(value: &Value, indent: usize) -> String {
    match value {
        Value::String(s) => s
            .trim_end_matches('\n')
            .replace('\n', &format!("\n{}", " ".repeat(indent))),
        other => {
            let compact = other.to_string();
            if compact.len() <= 70 {
                return compact;
            }
            let pretty = serde_json::to_string_pretty(other).unwrap_or(compact);
            pretty.replace('\n', &format!("\n{}", " ".repeat(indent)))
        }
    }
}

/// The replies that `--filter-replies` keeps (all of them without one),
/// in arrival order. A reply the expression fails on is left out, and
/// the first such failure is reported on stderr.
pub(crate) fn kept<'a>(
    outcome: &'a Outcome,
    agent: &str,
    action: &str,
    filter: Option<&ReplyFilter>,
) -> Vec<&'a Response> {
    let Some(filter) = filter else {
        return outcome.responses.iter().collect();
    };
    let mut warned = false;
    outcome
        .responses
        .iter()
        .filter(|r| match filter.keeps(&reply_json(agent, action, r)) {
            Ok(keep) => keep,
            Err(e) => {
                if !warned {
                    eprintln!(
                        "mco: --filter-replies failed on {}'s reply ({e}); replies it fails on are left out",
                        r.identity()
                    );
                    warned = true;
                }
                false
            }
        })
        .collect()
}

/// `Finished processing`, then (with `-v`, as in MCollective) the
/// `rpc stats` block, then the nodes that failed and those that did not
/// answer, so neither scrolls away in a big fleet. `kept` is how many
/// replies `--filter-replies` kept, when there is one.
pub(crate) fn rpc_stats(
    out: &mut dyn Write,
    outcome: &Outcome,
    kept: Option<usize>,
    verbose: bool,
    style: Style,
) -> std::io::Result<()> {
    let responded = outcome.responses.len();
    let total = outcome.elapsed + outcome.discovery.unwrap_or_default();
    writeln!(
        out,
        "Finished processing {responded} / {} hosts in {} ms",
        discovered(outcome),
        ms(total)
    )?;
    if verbose {
        writeln!(out)?;
        stats_block(out, outcome, kept, style)?;
    } else if outcome.interrupted {
        // The id to look the request up by in the nodes' audit logs.
        writeln!(out, "{:>16}: {}", "Request ID", outcome.request_id)?;
    }
    interrupted(out, outcome)?;
    let mut failed_nodes: Vec<String> =
        outcome.failed().map(|r| r.identity().to_string()).collect();
    failed_nodes.sort();
    failed_nodes.dedup();
    node_columns(out, "Failed:", &failed_nodes)?;
    no_responses(out, &outcome.missing)?;
    unexpected(out, &outcome.unexpected)
}

/// MCollective's `---- rpc stats ----` block, shown with `-v`.
fn stats_block(
    out: &mut dyn Write,
    outcome: &Outcome,
    kept: Option<usize>,
    style: Style,
) -> std::io::Result<()> {
    let responded = outcome.responses.len();
    let failed = outcome.failed().count();
    let total = outcome.elapsed + outcome.discovery.unwrap_or_default();
    writeln!(out, "{}", style.heading("---- rpc stats ----"))?;
    let line =
        |out: &mut dyn Write, label: &str, value: String| writeln!(out, "{label:>16}: {value}");
    line(
        out,
        "Nodes",
        format!("{} / {responded}", discovered(outcome)),
    )?;
    line(
        out,
        "Pass / Fail",
        format!("{} / {failed}", responded - failed),
    )?;
    line(out, "No Replies", outcome.missing.len().to_string())?;
    if !outcome.unexpected.is_empty() {
        line(out, "Unexpected", outcome.unexpected.len().to_string())?;
    }
    if !outcome.impostors.is_empty() {
        let mut claimed = outcome.impostors.clone();
        claimed.sort();
        claimed.dedup();
        line(
            out,
            "Ignored",
            format!(
                "{} replies claiming to be from another node ({})",
                outcome.impostors.len(),
                claimed.join(", ")
            ),
        )?;
    }
    if let Some(kept) = kept {
        line(out, "Filter Matches", kept.to_string())?;
    }
    if let Some(discovery) = outcome.discovery {
        let method = outcome
            .discovery_method
            .as_ref()
            .map(|m| format!(" ({m})"))
            .unwrap_or_default();
        line(
            out,
            "Discovery Time",
            format!("{} ms{method}", ms(discovery)),
        )?;
    }
    line(out, "Agent Time", format!("{} ms", ms(outcome.elapsed)))?;
    line(out, "Total Time", format!("{} ms", ms(total)))?;
    if let Some((min, max, avg)) = outcome.rtt_stats() {
        line(
            out,
            "Round Trips",
            format!("min {} / avg {} / max {} ms", ms(min), ms(avg), ms(max)),
        )?;
    }
    line(out, "Request ID", outcome.request_id.clone())
}

/// Says that Ctrl-C ended the wait, so the counts are what had arrived.
fn interrupted(out: &mut dyn Write, outcome: &Outcome) -> std::io::Result<()> {
    if outcome.interrupted {
        writeln!(out, "\nInterrupted: stopped waiting for replies")?;
    }
    Ok(())
}

/// The nodes addressed: those discovered (or named), else those that answered.
fn discovered(outcome: &Outcome) -> usize {
    outcome
        .expected
        .as_ref()
        .map_or(outcome.responses.len(), Vec::len)
}

fn rtt_stats(responses: &[&Response]) -> Option<(Duration, Duration, Duration)> {
    let min = responses.iter().map(|r| r.rtt).min()?;
    let max = responses.iter().map(|r| r.rtt).max()?;
    let avg = responses.iter().map(|r| r.rtt).sum::<Duration>() / responses.len() as u32;
    Some((min, max, avg))
}

/// One reply in MCollective's `--json` field names.
pub(crate) fn reply_json(agent: &str, action: &str, response: &Response) -> Value {
    json!({
        "sender": response.reply.sender,
        "agent": agent,
        "action": action,
        "statuscode": response.reply.statuscode,
        "statusmsg": response.reply.statusmsg,
        "data": response.reply.data,
    })
}

/// The statistics of a call, for `--json` and `--jsonl`: everyone who
/// answered counts, `shown` is how many replies `--filter-replies` kept.
pub(crate) fn statistics_json(outcome: &Outcome, shown: usize) -> Value {
    let failed = outcome.failed().count();
    let rtt = outcome.rtt_stats().map(|(min, max, avg)| {
        json!({"min": ms_number(min), "avg": ms_number(avg), "max": ms_number(max)})
    });
    let mut statistics = json!({
        "discovered": discovered(outcome),
        "responded": outcome.responses.len(),
        "impostors": outcome.impostors.len(),
        "succeeded": outcome.responses.len() - failed,
        "failed": failed,
        "no_responses": outcome.missing,
        "unexpected": outcome.unexpected,
        "shown": shown,
        "discovery_method": outcome.discovery_method,
        "discovery_ms": outcome.discovery.map(ms_number),
        "quiet_window_ms": outcome.quiet_window.map(ms_number),
        "agent_ms": ms_number(outcome.elapsed),
        "total_ms": ms_number(outcome.elapsed + outcome.discovery.unwrap_or_default()),
        "rtt_ms": rtt,
        "request_id": outcome.request_id,
    });
    if outcome.interrupted {
        statistics["interrupted"] = json!(true);
    }
    statistics
}

/// The `--json` document: the kept replies and the statistics.
pub(crate) fn json_document(
    agent: &str,
    action: &str,
    outcome: &Outcome,
    kept: &[&Response],
) -> Value {
    let replies: Vec<Value> = kept.iter().map(|r| reply_json(agent, action, r)).collect();
    json!({"replies": replies, "statistics": statistics_json(outcome, kept.len())})
}

/// The outcome of a call that found no nodes and sent nothing.
pub(crate) fn nothing_sent() -> Outcome {
    Outcome {
        request_id: String::new(),
        responses: Vec::new(),
        expected: Some(Vec::new()),
        missing: Vec::new(),
        unexpected: Vec::new(),
        bad_replies: 0,
        impostors: Vec::new(),
        discovery: None,
        discovery_method: None,
        elapsed: Duration::ZERO,
        interrupted: false,
        quiet_window: None,
    }
}

/// What `--json` and `--jsonl` print after the replies: the document, or
/// the statistics line (the reply lines were streamed as they arrived).
/// Says whether it printed anything; text output is the caller's.
pub(crate) fn machine_output(
    out: &mut dyn Write,
    common: &Common,
    agent: &str,
    action: &str,
    outcome: &Outcome,
    kept: &[&Response],
) -> anyhow::Result<bool> {
    if common.json {
        let document = json_document(agent, action, outcome, kept);
        writeln!(out, "{}", serde_json::to_string_pretty(&document)?)?;
    } else if common.jsonl {
        // Lines not streamed (a caller that did not use `replies()`) come now.
        if STREAMED.swap(0, Ordering::Relaxed) == 0 {
            for response in kept {
                writeln!(out, "{}", reply_json(agent, action, response))?;
            }
        }
        let statistics = json!({"statistics": statistics_json(outcome, kept.len())});
        writeln!(out, "{statistics}")?;
    } else {
        return Ok(false);
    }
    out.flush()?;
    Ok(true)
}

/// Reply lines `--jsonl` has streamed to stdout in this process.
static STREAMED: AtomicUsize = AtomicUsize::new(0);

/// Watches replies arrive: moves the progress bar and, for `--jsonl`,
/// prints each kept reply at once. Derefs to the bar.
pub(crate) struct Progress {
    bar: indicatif::ProgressBar,
    stream: Option<(String, String, Option<ReplyFilter>)>,
}

impl Progress {
    /// Call for every reply as it arrives.
    pub(crate) fn reply(&self, response: &Response) {
        self.bar.inc(1);
        if let Some((agent, action, filter)) = &self.stream {
            let line = reply_json(agent, action, response);
            if filter
                .as_ref()
                .is_none_or(|f| f.keeps(&line).unwrap_or(false))
            {
                let mut out = std::io::stdout().lock();
                if writeln!(out, "{line}").and_then(|_| out.flush()).is_ok() {
                    STREAMED.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

impl std::ops::Deref for Progress {
    type Target = indicatif::ProgressBar;

    fn deref(&self) -> &indicatif::ProgressBar {
        &self.bar
    }
}

/// The progress bar (on a terminal, unless `--json`, `--jsonl` or
/// `--no-progress`) and the `--jsonl` stream for `call`'s replies.
pub(crate) fn replies(total: Option<usize>, common: &Common, call: &Call) -> Progress {
    let quiet = common.json || common.jsonl || common.no_progress;
    Progress {
        bar: progress(total, quiet),
        stream: common.jsonl.then(|| {
            (
                call.agent.clone(),
                call.action.clone(),
                common.reply_filter().ok().flatten(),
            )
        }),
    }
}

/// A progress bar on a terminal, nothing otherwise or when `quiet`.
pub(crate) fn progress(total: Option<usize>, quiet: bool) -> indicatif::ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    match total {
        Some(total) => indicatif::ProgressBar::new(total as u64).with_style(
            indicatif::ProgressStyle::with_template(" * [ {bar:60} ] {pos} / {len}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
        ),
        None => indicatif::ProgressBar::new_spinner(),
    }
}

/// The DDL's aggregate summaries over the kept OK replies, each followed
/// by a blank line, headings in bold. An aggregate function muster does
/// not compute is named on stderr rather than dropped without a word.
pub(crate) fn summaries(
    out: &mut dyn Write,
    agent: &str,
    action: &Action,
    kept: &[&Response],
    style: Style,
) -> std::io::Result<()> {
    for function in muster_protocol::aggregate::unknown_functions(action) {
        eprintln!("{}", unknown_aggregate(agent, &action.action, function));
    }
    let data: Vec<&Value> = kept
        .iter()
        .filter(|r| r.reply.statuscode.is_ok())
        .map(|r| &r.reply.data)
        .collect();
    for summary in muster_protocol::aggregate::compute(action, &data) {
        let text = summary.render();
        let (heading, rest) = match text.split_once('\n') {
            Some((heading, rest)) => (heading, format!("\n{rest}")),
            None => (text.as_str(), String::new()),
        };
        writeln!(out, "{}{rest}\n", style.heading(heading))?;
    }
    Ok(())
}

/// The warning for a DDL aggregate function muster does not compute.
fn unknown_aggregate(agent: &str, action: &str, function: &str) -> String {
    format!(
        "mco: warning: the DDL of agent {agent:?} asks for aggregate function {function:?} \
         in action {action:?}, which muster does not compute (it knows {}); that summary is not shown",
        muster_protocol::aggregate::FUNCTIONS.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use muster_protocol::{Reply, StatusCode};

    fn response(sender: &str, code: StatusCode, ms: u64) -> Response {
        Response {
            reply: if code.is_ok() {
                Reply::ok("r1", sender, json!({"value": sender}))
            } else {
                Reply::error("r1", sender, code, "msg")
            },
            rtt: Duration::from_millis(ms),
        }
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour_wanted(true, None));
        assert!(colour_wanted(true, Some("".into())));
        assert!(!colour_wanted(true, Some("1".into())));
        assert!(!colour_wanted(false, None));
        let on = Style { colour: true };
        assert_eq!(on.failed("x"), "\x1b[31mx\x1b[0m");
        assert_eq!(Style { colour: false }.heading("x"), "x");
    }

    #[test]
    fn silent_nodes_are_listed_in_columns() {
        let missing: Vec<String> = (1..=12).map(|n| format!("node{n:02}")).collect();
        let mut out = Vec::new();
        no_responses(&mut out, &missing).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("\nNo response from:\n\n    node01   node02"),
            "{text}"
        );
        assert!(text.lines().all(|l| l.len() <= 80), "{text}");
        assert_eq!(text.matches("node").count(), 12);
    }

    #[test]
    fn statistics_block_reads_like_mcollective() {
        let outcome = Outcome {
            request_id: "abc".into(),
            responses: vec![
                response("node01", StatusCode::Ok, 2),
                response("node02", StatusCode::Aborted, 4),
            ],
            expected: Some(vec!["node01".into(), "node02".into(), "node03".into()]),
            missing: vec!["node03".into()],
            unexpected: Vec::new(),
            bad_replies: 0,
            impostors: Vec::new(),
            discovery: Some(Duration::from_millis(100)),
            discovery_method: Some("flatfile".into()),
            elapsed: Duration::from_millis(35),
            interrupted: false,
            quiet_window: None,
        };
        let mut out = Vec::new();
        rpc_stats(&mut out, &outcome, None, true, Style { colour: false }).unwrap();
        let text = String::from_utf8(out).unwrap();
        let expected = "Finished processing 2 / 3 hosts in 135.00 ms\n\n\
                        ---- rpc stats ----\n\
                        \x20          Nodes: 3 / 2\n\
                        \x20    Pass / Fail: 1 / 1\n\
                        \x20     No Replies: 1\n\
                        \x20 Discovery Time: 100.00 ms (flatfile)\n\
                        \x20     Agent Time: 35.00 ms\n\
                        \x20     Total Time: 135.00 ms\n\
                        \x20    Round Trips: min 2.00 / avg 3.00 / max 4.00 ms\n\
                        \x20     Request ID: abc\n\
                        \nFailed:\n\n    node02\n\
                        \nNo response from:\n\n    node03\n";
        assert_eq!(text, expected);
        let mut out = Vec::new();
        rpc_stats(&mut out, &outcome, None, false, Style { colour: false }).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "Finished processing 2 / 3 hosts in 135.00 ms\n\
             \nFailed:\n\n    node02\n\
             \nNo response from:\n\n    node03\n"
        );
        let stats = statistics_json(&outcome, 1);
        assert_eq!(stats["succeeded"], 1);
        assert_eq!(stats["failed"], 1);
        assert_eq!(stats["no_responses"], json!(["node03"]));
        assert_eq!(stats["total_ms"], 135.0);
        assert_eq!(stats["discovery_method"], "flatfile");
        assert_eq!(stats["discovery_ms"], 100.0);
        assert_eq!(stats["unexpected"], json!([]));
    }

    #[test]
    fn unexpected_replies_are_named_and_counted() {
        let mut outcome = nothing_sent();
        outcome.responses = vec![
            response("node01", StatusCode::Ok, 2),
            response("stray", StatusCode::Ok, 3),
        ];
        outcome.cross_check(&["node01".into(), "node02".into()]);
        assert_eq!(outcome.missing, ["node02"]);
        assert_eq!(outcome.unexpected, ["stray"]);
        let mut out = Vec::new();
        rpc_stats(&mut out, &outcome, None, false, Style { colour: false }).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.ends_with(
                "\nNo response from:\n\n    node02\n\nUnexpected replies from:\n\n    stray\n"
            ),
            "{text}"
        );
        let kept: Vec<&Response> = outcome.responses.iter().collect();
        let mut out = Vec::new();
        ping_summary(&mut out, &outcome, &kept, true, Style { colour: false }).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("Unexpected replies from:\n\n    stray"),
            "{text}"
        );
        let stats = statistics_json(&outcome, 2);
        assert_eq!(stats["unexpected"], json!(["stray"]));
        assert_eq!(stats["discovered"], 2);
    }

    #[test]
    fn multi_line_output_is_indented_under_its_node() {
        let response = Response {
            reply: Reply::ok(
                "r1",
                "node01",
                json!({"output": "file { '/etc/motd':\n  ensure => file,\n}\n"}),
            ),
            rtt: Duration::from_millis(1),
        };
        let mut out = Vec::new();
        rpc_result(&mut out, &response, None, Style { colour: false }).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "node01\n   output: file { '/etc/motd':\n             ensure => file,\n           }\n\n"
        );
    }

    #[test]
    fn time_outputs_show_as_dates() {
        let ddl = muster_protocol::ddl::builtin("rpcutil").expect("rpcutil DDL");
        let action = ddl.action("daemon_stats");
        let response = Response {
            reply: Reply::ok(
                "r1",
                "node01",
                json!({"starttime": 951_782_400, "total": 3}),
            ),
            rtt: Duration::from_millis(1),
        };
        let mut out = Vec::new();
        rpc_result(&mut out, &response, action, Style { colour: false }).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("Start Time: 2000-02-29 00:00:00 UTC\n"),
            "{text}"
        );
        assert!(text.contains("Total Messages: 3\n"), "{text}");
    }

    #[test]
    fn failures_show_by_default_and_display_overrides() {
        let ok = response("a", StatusCode::Ok, 1);
        let failed = response("b", StatusCode::Aborted, 1);
        assert!(shown(None, None, &ok) && shown(None, None, &failed));
        assert!(!shown(Some(DisplayMode::Failed), None, &ok));
        assert!(shown(Some(DisplayMode::Failed), None, &failed));
        assert!(!shown(Some(DisplayMode::Ok), None, &failed));
        assert!(shown(Some(DisplayMode::All), None, &failed));
    }
}
