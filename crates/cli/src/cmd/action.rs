//! The shared engine of the agent applications (`mco package`, `mco
//! service`, `mco filemgr`, `mco puppet`): validate the inputs against the
//! agent's DDL, discover, run one action, and print one line per node,
//! the DDL's aggregate summaries and the statistics block.

use std::io::Write;

use muster_client::{Call, Client, Outcome, Response};
use serde_json::{Map, Value};

use crate::args::Common;
use crate::render;

/// What a node's line shows.
pub(crate) enum Line<'a> {
    /// One output field, e.g. `ensure`.
    Field(&'a str),
    /// Text made from the reply's data.
    Format(fn(&Value) -> String),
}

/// Runs `agent action` with `data` on the nodes `common` selects and
/// prints the results.
pub(crate) async fn run(
    common: &Common,
    agent: &str,
    action: &str,
    data: Map<String, Value>,
    line: Line<'_>,
) -> anyhow::Result<u8> {
    let Some((client, outcome)) = call(common, agent, action, data).await? else {
        let mut out = std::io::stdout();
        render::machine_output(
            &mut out,
            common,
            agent,
            action,
            &render::nothing_sent(),
            &[],
        )?;
        return Ok(super::EXIT_NO_NODES);
    };
    print(&client, common, agent, action, &outcome, line)?;
    Ok(super::rpc::exit_code(&outcome))
}

/// Validates the inputs, discovers and runs the action. `None` when no
/// node matched (which has been said on stderr).
pub(crate) async fn call(
    common: &Common,
    agent: &str,
    action: &str,
    mut data: Map<String, Value>,
) -> anyhow::Result<Option<(Client, Outcome)>> {
    super::init_logging("warn");
    let (filter, _) = common.plan()?;
    let config = muster_client::ClientConfig::load(common.config.as_deref())?;
    super::rpc::validate(&config, agent, action, &mut data)?;
    let client = crate::args::connect(config).await?;
    let call = Call::new(agent, action).with_filter(filter).with_data(data);
    let outcome = super::rpc::discover_and_call(&client, common, call).await?;
    Ok(outcome.map(|outcome| (client, outcome)))
}

/// One line per node (sorted; `--display` picks whose), the DDL's
/// summaries and the statistics; or the `--json` document or `--jsonl`.
pub(crate) fn print(
    client: &Client,
    common: &Common,
    agent: &str,
    action: &str,
    outcome: &Outcome,
    line: Line<'_>,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout();
    let filter = common.reply_filter()?;
    let kept = render::kept(outcome, agent, action, filter.as_ref());
    if render::machine_output(&mut out, common, agent, action, outcome, &kept)? {
        return Ok(());
    }
    let style = render::Style::for_stdout();
    let ddl = muster_client::ddls::ddl_for(client.config(), agent)
        .ok()
        .flatten();
    let ddl_action = ddl.as_ref().and_then(|d| d.action(action));
    let mut responses: Vec<&Response> = kept
        .iter()
        .copied()
        .filter(|r| render::shown(common.display, ddl_action, r))
        .collect();
    responses.sort_by(|a, b| a.identity().cmp(b.identity()));
    let width = responses
        .iter()
        .map(|r| r.identity().len())
        .max()
        .unwrap_or(0);
    writeln!(out)?;
    for response in responses {
        let reply = &response.reply;
        let text = match (&line, reply.statuscode.is_ok()) {
            (Line::Field(field), true) => match reply.data.get(*field) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => reply.statusmsg.clone(),
                Some(other) => other.to_string(),
            },
            (Line::Format(format), true) => format(&reply.data),
            _ => reply.statusmsg.clone(),
        };
        let text = format!("   {:>width$}: {text}", response.identity());
        if reply.statuscode.is_ok() {
            writeln!(out, "{text}")?;
        } else {
            writeln!(out, "{}", style.failed(&text))?;
        }
    }
    writeln!(out)?;
    if let Some(ddl_action) = ddl_action {
        render::summaries(&mut out, agent, ddl_action, &kept, style)?;
    }
    let matched = filter.is_some().then_some(kept.len());
    render::rpc_stats(&mut out, outcome, matched, common.verbose, style)?;
    Ok(())
}

/// MCollective lets operators write `mco package rsync status` and
/// `mco package status rsync`: whichever word is an action is the action.
pub(crate) fn action_and_target(
    first: &str,
    second: &str,
    actions: &[&str],
) -> anyhow::Result<(String, String)> {
    match (actions.contains(&first), actions.contains(&second)) {
        (true, false) => Ok((first.to_string(), second.to_string())),
        (false, true) => Ok((second.to_string(), first.to_string())),
        (true, true) => Ok((first.to_string(), second.to_string())),
        (false, false) => anyhow::bail!(
            "neither {first:?} nor {second:?} is an action; the actions are: {}",
            actions.join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn either_word_order_works() {
        let actions = ["status", "install"];
        assert_eq!(
            action_and_target("rsync", "status", &actions).unwrap(),
            ("status".to_string(), "rsync".to_string())
        );
        assert_eq!(
            action_and_target("install", "rsync", &actions).unwrap(),
            ("install".to_string(), "rsync".to_string())
        );
        assert!(action_and_target("rsync", "vim", &actions)
            .unwrap_err()
            .to_string()
            .contains("status, install"));
    }
}
