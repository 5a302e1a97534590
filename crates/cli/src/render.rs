//! How results look on a terminal and as JSON.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use muster_client::{ClientConfig, Outcome, Response};
use muster_protocol::ddl::{Action, Display};
use serde_json::{json, Value};

/// Milliseconds with two decimals, as MCollective prints them.
pub fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// One ping line: `node01                                   time=1.23 ms`.
pub fn ping_line(out: &mut dyn Write, response: &Response) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<40} time={} ms",
        response.identity(),
        ms(response.rtt)
    )
}

/// The statistics block after a ping.
pub fn ping_summary(out: &mut dyn Write, outcome: &Outcome) -> std::io::Result<()> {
    writeln!(out, "\n\n---- ping statistics ----")?;
    match outcome.rtt_stats() {
        Some((min, max, avg)) => writeln!(
            out,
            "{} replies max: {} min: {} avg: {} (finished in {} ms)",
            outcome.responses.len(),
            ms(max),
            ms(min),
            ms(avg),
            ms(outcome.elapsed)
        )?,
        None => writeln!(out, "No responses received")?,
    }
    no_responses(out, &outcome.missing)
}

/// The addressed nodes that did not answer, by name.
pub fn no_responses(out: &mut dyn Write, missing: &[String]) -> std::io::Result<()> {
    if !missing.is_empty() {
        writeln!(out, "\nNo response from:\n")?;
        for node in missing {
            writeln!(out, "    {node}")?;
        }
    }
    Ok(())
}

/// Whether a reply is shown, by the action's DDL `display` rule.
pub fn shown(action: Option<&Action>, response: &Response) -> bool {
    match action.map_or(Display::Always, |a| a.display) {
        Display::Always => true,
        Display::Ok => response.reply.statuscode.is_ok(),
        Display::Failed => !response.reply.statuscode.is_ok(),
    }
}

/// One node's rpc result: its name, then each output on its own line,
/// labelled by the DDL's `display_as` where the action has one.
pub fn rpc_result(
    out: &mut dyn Write,
    response: &Response,
    action: Option<&Action>,
) -> std::io::Result<()> {
    let reply = &response.reply;
    if !reply.statuscode.is_ok() {
        return writeln!(out, "{:<40} {}\n", reply.sender, reply.statusmsg);
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
            for (key, value) in map {
                let text = value_text(value, width + 5);
                writeln!(out, "   {:>width$}: {text}", label(key))?;
            }
        }
        Value::Object(_) | Value::Null => {}
        other => writeln!(out, "   {}", value_text(other, 3))?,
    }
    writeln!(out)
}

/// Strings bare, short values on one line, big ones pretty and indented.
fn value_text(value: &Value, indent: usize) -> String {
    match value {
        Value::String(s) => s.clone(),
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

/// `Finished processing` and the nodes that did not answer.
pub fn rpc_summary(out: &mut dyn Write, outcome: &Outcome) -> std::io::Result<()> {
    let expected = outcome
        .expected
        .as_ref()
        .map_or(outcome.responses.len(), Vec::len);
    let failed = outcome.failed().count();
    writeln!(
        out,
        "Finished processing {} / {} hosts in {} ms",
        outcome.responses.len(),
        expected,
        ms(outcome.elapsed + outcome.discovery.unwrap_or_default())
    )?;
    if failed > 0 {
        writeln!(out, "{failed} of them failed")?;
    }
    no_responses(out, &outcome.missing)
}

/// MCollective's `--json` layout: one object per reply.
pub fn json_results(agent: &str, action: &str, outcome: &Outcome) -> Value {
    Value::Array(
        outcome
            .responses
            .iter()
            .map(|r| {
                json!({
                    "agent": agent,
                    "action": action,
                    "sender": r.reply.sender,
                    "statuscode": r.reply.statuscode,
                    "statusmsg": r.reply.statusmsg,
                    "data": r.reply.data,
                })
            })
            .collect(),
    )
}

/// A progress bar on a terminal, nothing otherwise.
pub fn progress(total: Option<usize>, json: bool) -> indicatif::ProgressBar {
    if json || !std::io::stderr().is_terminal() {
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

/// Tells the user where a newly created key is and how to trust it.
pub fn announce_new_key(config: &ClientConfig) {
    let public = muster_client::keys::public_key_path(&config.key_file);
    eprintln!(
        "Created a signing key for {caller}:\n  private: {private} (keep it secret)\n  public:  {public}\n\
         Servers act on your requests once they trust it: copy the public key into each\n\
         server's plugin.security.trusted_keys directory, e.g.\n  \
         scp {public} root@node:/etc/muster/trusted_keys/{name}.pub\n",
        caller = config.caller,
        private = config.key_file.display(),
        public = public.display(),
        name = muster_client::user_name(),
    );
}

/// The DDL's aggregate summaries over the OK replies, each followed by a blank line.
pub fn summaries(out: &mut dyn Write, action: &Action, outcome: &Outcome) -> std::io::Result<()> {
    let data: Vec<&Value> = outcome
        .responses
        .iter()
        .filter(|r| r.reply.statuscode.is_ok())
        .map(|r| &r.reply.data)
        .collect();
    for summary in muster_protocol::aggregate::compute(action, &data) {
        writeln!(out, "{}\n", summary.render())?;
    }
    Ok(())
}
