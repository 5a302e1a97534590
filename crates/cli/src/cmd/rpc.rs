//! `mco rpc AGENT ACTION key=value ...`: run one action on matching nodes.

use std::io::Write;

use anyhow::Context;
use muster_client::{Call, Client, Outcome, Targets};
use serde_json::{Map, Value};

use crate::args::Common;
use crate::render;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The agent, e.g. rpcutil
    pub agent: String,
    /// The action, e.g. inventory
    pub action: String,
    /// Inputs as key=value
    pub inputs: Vec<String>,
    #[command(flatten)]
    pub common: Common,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<u8> {
    super::init_logging("warn");
    let (filter, _) = args.common.plan()?;
    let mut data = parse_inputs(&args.inputs)?;
    let config = muster_client::ClientConfig::load(args.common.config.as_deref())?;
    validate(&config, &args.agent, &args.action, &mut data)?;
    let client = crate::args::connect(config).await?;
    let call = Call::new(&args.agent, &args.action)
        .with_filter(filter)
        .with_data(data);
    rpc(&client, &args.common, call, &mut std::io::stdout()).await
}

/// Discovers, runs the call, and prints the kept replies (`--display`
/// picks whose), the DDL's summaries and the statistics; or the `--json`
/// document, or `--jsonl` lines.
pub(crate) async fn rpc(
    client: &Client,
    common: &Common,
    call: Call,
    out: &mut dyn Write,
) -> anyhow::Result<u8> {
    let filter = common.reply_filter()?;
    let Some(outcome) = discover_and_call(client, common, call.clone()).await? else {
        render::machine_output(
            out,
            common,
            &call.agent,
            &call.action,
            &render::nothing_sent(),
            &[],
        )?;
        return Ok(super::EXIT_NO_NODES);
    };
    trust_hint(client.config(), &outcome);
    let kept = render::kept(&outcome, &call.agent, &call.action, filter.as_ref());
    if render::machine_output(out, common, &call.agent, &call.action, &outcome, &kept)? {
        return Ok(exit_code(&outcome));
    }
    let style = render::Style::for_stdout();
    let ddl = muster_client::ddls::ddl_for(client.config(), &call.agent)
        .ok()
        .flatten();
    let action = ddl.as_ref().and_then(|d| d.action(&call.action));
    writeln!(out)?;
    for response in kept
        .iter()
        .filter(|r| render::shown(common.display, action, r))
    {
        render::rpc_result(out, response, action, style)?;
    }
    if let Some(action) = action {
        render::summaries(out, &call.agent, action, &kept, style)?;
    }
    let matched = filter.is_some().then_some(kept.len());
    render::rpc_stats(out, &outcome, matched, common.verbose, style)?;
    Ok(exit_code(&outcome))
}

/// When every addressed node is silent, the likeliest cause is that they
/// do not trust this caller: say so on stderr, naming its certificate and CA.
fn trust_hint(config: &muster_client::ClientConfig, outcome: &Outcome) {
    if !outcome.responses.is_empty() || outcome.missing.is_empty() {
        return;
    }
    let security = &config.security;
    eprintln!(
        "mco: none of the {} addressed nodes answered; they may not trust this caller: \
         certificate {} ({}), CA {}",
        outcome.missing.len(),
        security.ssldir.cert_file(&security.certname).display(),
        security.certname,
        security.ssldir.ca_file().display()
    );
}

/// Checks and converts inputs against the agent's DDL, when the client has
/// one, so a mistake is an error before anything is sent.
pub(crate) fn validate(
    config: &muster_client::ClientConfig,
    agent: &str,
    action: &str,
    data: &mut Map<String, Value>,
) -> anyhow::Result<()> {
    let ddl = muster_client::ddls::ddl_for(config, agent).map_err(anyhow::Error::msg)?;
    if ddl.is_none() {
        // A near miss of a known agent is a typo; a name far from all of
        // them may be an agent only the nodes have, so it goes out.
        let known = muster_client::ddls::all_ddls(config);
        let names = known.iter().map(|d| d.metadata.name.as_str());
        if let Some(near) = muster_protocol::suggest::closest(agent, names, 2) {
            anyhow::bail!("unknown agent {agent:?}: did you mean {near}?");
        }
    }
    if let Some(ddl) = ddl {
        ddl.validate(action, data).map_err(|e| match e.code {
            muster_protocol::StatusCode::UnknownAction => anyhow::anyhow!("{e}"),
            _ => anyhow::anyhow!("{agent} {action}: {e}"),
        })?;
    }
    Ok(())
}

/// The exit code for everyone who answered (whatever `--filter-replies`
/// kept): failures win over missing replies; Ctrl-C wins over all.
pub(crate) fn exit_code(outcome: &Outcome) -> u8 {
    if outcome.interrupted {
        super::EXIT_INTERRUPTED
    } else if outcome.failed().next().is_some() {
        super::EXIT_FAILED
    } else if !outcome.missing.is_empty() {
        super::EXIT_NO_REPLY
    } else if outcome.responses.is_empty() {
        super::EXIT_NO_NODES
    } else {
        super::EXIT_OK
    }
}

/// Finds the nodes with the chosen discovery method (unless the filter
/// names exact identities and discovery is broadcast), keeps the random
/// subset `--limit-nodes`/`--one` ask for, then runs `call` on exactly those,
/// `--batch` nodes at a time if asked, showing progress on a terminal.
/// `None` when nothing was discovered, which has been said on stderr.
pub(crate) async fn discover_and_call(
    client: &Client,
    common: &Common,
    mut call: Call,
) -> anyhow::Result<Option<Outcome>> {
    let discovery = common.discovery.discovery(&client.config().discovery)?;
    call.collective = common.selectors.target.clone();
    call.timeout = common.timeout()?;
    call.discovery_timeout = common.discovery_timeout()?;
    let started = std::time::Instant::now();
    let mut discovered = None;
    let expect = expected_nodes(client, common, &call.filter, &discovery).await?;
    let nodes = match (call.filter.exact_identities(), &expect) {
        (Some(nodes), None) if discovery.is_broadcast() => nodes,
        (_, Some((_, expect))) => {
            // Broadcast discovery that waits for the expected nodes.
            let found = client.discover_expecting(
                &call.filter,
                common.selectors.target.as_deref(),
                call.discovery_timeout,
                client.config().window,
                Some(expect),
            );
            let found = async { found.await.context("broadcast discovery failed") };
            let nodes = super::interrupt::unless_interrupted("discovery", found).await?;
            discovered = Some(started.elapsed());
            nodes
        }
        _ => {
            let nodes = common.discover(client, &call.filter, &discovery).await?;
            discovered = Some(started.elapsed());
            nodes
        }
    };
    let method = discovered.map(|_| discovery.name().to_string());
    if nodes.is_empty() {
        if let Some((source, expect)) = &expect {
            eprintln!(
                "No request sent, we did not discover any nodes; {} expected from {source}: {}",
                expect.len(),
                expect.join(", ")
            );
            return Ok(None);
        }
    }
    if nodes.is_empty() {
        eprintln!("No request sent, we did not discover any nodes.");
        return Ok(None);
    }
    // --limit-nodes/--one: the request goes to, and the statistics count,
    // only the chosen nodes.
    let nodes = common.batching.choose(nodes);
    call.batch = common.batching.batch();
    call.targets = Targets::Nodes(nodes);
    let expected = match &call.targets {
        Targets::Nodes(nodes) => Some(nodes.len()),
        _ => None,
    };
    let bar = render::replies(expected, common, &call);
    let outcome = client
        .call_until(
            &call,
            |response| bar.reply(response),
            super::interrupt::ctrl_c(),
        )
        .await;
    let interrupted = outcome.as_ref().is_ok_and(|o| o.interrupted);
    super::interrupt::clear_bar(&bar, interrupted);
    super::interrupt::exit_on_next();
    let mut outcome = outcome?;
    outcome.discovery = outcome.discovery.or(discovered);
    outcome.discovery_method = outcome.discovery_method.or(method);
    if let Some((_, expect)) = &expect {
        outcome.cross_check(expect);
    }
    Ok(Some(outcome))
}

/// The nodes `--expect SOURCE` says should answer a broadcast, and where
/// they came from (the method's name); `None` without `--expect`. SOURCE is
/// a method set up in client.cfg (`registry`, `inventory`), `METHOD:INPUT`
/// (`inventory:fleet.json`), or else a file of identities (flatfile). The
/// filter applies as the method applies it.
pub(crate) async fn expected_nodes(
    client: &Client,
    common: &Common,
    filter: &muster_protocol::Filter,
    discovery: &muster_client::Discovery,
) -> anyhow::Result<Option<(String, Vec<String>)>> {
    let Some(source) = &common.discovery.expect else {
        return Ok(None);
    };
    if !discovery.is_broadcast() {
        anyhow::bail!(
            "--expect cross-checks broadcast discovery; --dm {} already knows which nodes should answer",
            discovery.name()
        );
    }
    let method = expect_source(source, &client.config().discovery)?;
    let nodes = common
        .discover(client, filter, &method)
        .await
        .with_context(|| format!("--expect {source}"))?;
    Ok(Some((method.name().to_string(), nodes)))
}

/// Reads `--expect SOURCE` (see [`expected_nodes`]).
pub(crate) fn expect_source(
    source: &str,
    settings: &muster_client::DiscoverySettings,
) -> anyhow::Result<muster_client::Discovery> {
    use muster_client::{Discovery, DiscoveryError, NodeList};
    let chosen = match source.split_once(':') {
        Some((method, input)) if !method.is_empty() && !input.is_empty() => {
            settings.choose(Some(method), Some(std::path::Path::new(input)))
        }
        _ => settings.choose(Some(source), None),
    };
    let method = match chosen {
        Ok(method) => method,
        // Not a method's name: a file of identities.
        Err(DiscoveryError::UnknownMethod { .. }) => {
            Discovery::Flatfile(NodeList::from_arg(std::path::Path::new(source)))
        }
        Err(e) => return Err(anyhow::anyhow!(e).context(format!("--expect {source}"))),
    };
    if method.is_broadcast() {
        anyhow::bail!("--expect {source}: broadcast cannot say which nodes should answer; name a method that knows them (registry, inventory, flatfile) or a file");
    }
    Ok(method)
}

/// `key=value` inputs, each value kept as its literal text: the DDL types
/// it (as Choria's client does), so `config={"a":"b"}` stays a string for
/// a string input and becomes an object for a hash input. Without a DDL on
/// the client, the node's DDL types it.
pub(crate) fn parse_inputs(inputs: &[String]) -> anyhow::Result<Map<String, Value>> {
    let mut data = Map::new();
    for input in inputs {
        let (key, value) = input
            .split_once('=')
            .with_context(|| format!("input {input:?} is not key=value"))?;
        let key = key.trim();
        if key.is_empty() {
            anyhow::bail!("input {input:?} has an empty key");
        }
        data.insert(key.to_string(), Value::String(value.to_string()));
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_keep_their_literal_text() {
        let data = parse_inputs(&[
            "fact=os.family".into(),
            "n=3".into(),
            "flag=true".into(),
            "s=a=b".into(),
            r#"config={"a":"b"}"#.into(),
        ])
        .unwrap();
        assert_eq!(data["fact"], "os.family");
        assert_eq!(data["n"], "3");
        assert_eq!(data["flag"], "true");
        assert_eq!(data["s"], "a=b");
        assert_eq!(data["config"], r#"{"a":"b"}"#);
        assert!(parse_inputs(&["novalue".into()]).is_err());
        assert!(parse_inputs(&["=x".into()]).is_err());
    }
}
