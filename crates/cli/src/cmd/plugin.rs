//! `mco plugin doc [NAME]`: what agents, data plugins and discovery
//! methods this client knows, and each agent's actions, inputs and outputs.

use std::io::Write;

use muster_client::{Call, ClientConfig};
use muster_protocol::ddl::{Ddl, Display};
use serde_json::Value;

use crate::args::Common;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// What to do: `doc`, or `ddl2json` (a Ruby DDL to JSON)
    pub command: String,
    /// An agent or data plugin to document; all are listed without one
    pub name: Option<String>,
    /// With selectors (-I, -F, -C, -S ...), the matching nodes are asked
    /// which agent of that name they run
    #[command(flatten)]
    pub common: Common,
    /// ddl2json: where the JSON goes (`-`: stdout); FILE.json beside it without one
    pub output: Option<String>,
    /// ddl2json: replace an existing JSON file
    #[arg(long)]
    pub force: bool,
}

const DISCOVERY_METHODS: &[(&str, &str)] = &[
    (
        "broadcast",
        "Ask the fleet; matching nodes answer (the default)",
    ),
    (
        "flatfile",
        "Identities from a file, one per line (--nodes FILE)",
    ),
    (
        "inventory",
        "Node records written by mco inventory --json (--inventory FILE)",
    ),
    (
        "external",
        "Identities printed by a program (--discovery-program PROG)",
    ),
    (
        "registry",
        "Nodes' registrations, filtered by mco registry (plugin.registry.identity)",
    ),
];

pub(crate) async fn run(args: Args) -> anyhow::Result<u8> {
    super::init_logging("warn");
    if args.command == "ddl2json" {
        return super::ddl2json::run(args.name.as_deref(), args.output.as_deref(), args.force);
    }
    if args.command != "doc" {
        anyhow::bail!(
            "unknown plugin command {:?}; try: mco plugin doc [NAME] or mco plugin ddl2json FILE.ddl",
            args.command
        );
    }
    let config = ClientConfig::load(args.common.config.as_deref())?;
    let mut out = std::io::stdout();
    match args.name {
        None => list(&config, &mut out)?,
        Some(name) => {
            if let Some((ddl, file)) =
                muster_client::ddls::locate(&config, &name).map_err(anyhow::Error::msg)?
            {
                agent_doc(&ddl, &mut out)?;
                source_note(&name, file.as_deref(), &mut out)?;
                if !args.common.plan()?.0.is_empty() {
                    return nodes_running(&args.common, config, &name, &mut out).await;
                }
            } else if let Some((_, properties)) = muster_protocol::DATA_PLUGINS
                .iter()
                .find(|(plugin, _)| *plugin == name)
            {
                writeln!(out, "{name} data plugin\n\nUse in -S filters as {name}('ARGUMENT').PROPERTY=VALUE\n\nPROPERTIES:")?;
                for property in *properties {
                    writeln!(out, "   {property}")?;
                }
            } else {
                eprintln!("No agent or data plugin called {name:?}; `mco plugin doc` lists them.");
                return Ok(super::EXIT_PARTIAL);
            }
        }
    }
    Ok(super::EXIT_OK)
}

fn list(config: &ClientConfig, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(
        out,
        "Please specify a plugin. Available plugins are:\n\nAgents:"
    )?;
    for ddl in muster_client::ddls::all_ddls(config) {
        writeln!(
            out,
            "  {:<22} {}",
            ddl.metadata.name, ddl.metadata.description
        )?;
    }
    writeln!(out, "\nData Queries:")?;
    for (plugin, _) in muster_protocol::DATA_PLUGINS {
        writeln!(out, "  {plugin}")?;
    }
    writeln!(out, "\nDiscovery Methods:")?;
    for (method, description) in DISCOVERY_METHODS {
        writeln!(out, "  {method:<22} {description}")?;
    }
    Ok(())
}

/// Asks the selected nodes (`rpcutil agent_inventory`) which `agent`
/// each runs: muster's built-in one, or an external program (and where).
async fn nodes_running(
    common: &Common,
    config: ClientConfig,
    agent: &str,
    out: &mut dyn Write,
) -> anyhow::Result<u8> {
    let (filter, _) = common.plan()?;
    let client = crate::args::connect(config).await?;
    let call = Call::new("rpcutil", "agent_inventory").with_filter(filter);
    let Some(outcome) = super::rpc::discover_and_call(&client, common, call).await? else {
        return Ok(super::EXIT_NO_NODES);
    };
    writeln!(out, "\nNODES RUNNING {agent}:")?;
    let mut lines: Vec<String> = outcome
        .responses
        .iter()
        .map(|response| {
            let node = response.identity();
            if !response.reply.statuscode.is_ok() {
                return format!("   {node}: {}", response.reply.statusmsg);
            }
            let entry = response.reply.data["agents"]
                .as_array()
                .and_then(|agents| agents.iter().find(|a| a["agent"] == agent));
            format!("   {node}: {}", describe(entry))
        })
        .collect();
    lines.sort();
    for line in lines {
        writeln!(out, "{line}")?;
    }
    for node in &outcome.missing {
        writeln!(out, "   {node}: no answer")?;
    }
    Ok(super::rpc::exit_code(&outcome))
}

/// One node's `agent_inventory` entry for the agent, in words.
fn describe(entry: Option<&Value>) -> String {
    let Some(entry) = entry else {
        return "does not run it".to_string();
    };
    let text = |key: &str| entry[key].as_str().unwrap_or("").to_string();
    match text("provider").as_str() {
        "external" => format!(
            "external {} (DDL {}, version {})",
            text("executable"),
            text("ddl"),
            text("version")
        ),
        "builtin" => format!("built-in (version {})", text("version")),
        _ => format!(
            "version {} (the node does not say which kind)",
            text("version")
        ),
    }
}

/// Where this client's DDL came from, and how to see which agent a node
/// runs under that name (a built-in can be replaced by an external agent).
fn source_note(
    agent: &str,
    file: Option<&std::path::Path>,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    match file {
        Some(file) => writeln!(
            out,
            "DDL: {} (an external agent's, from plugin.external.agents_dir)",
            file.display()
        )?,
        None => writeln!(out, "DDL: built into muster")?,
    }
    writeln!(
        out,
        "Which {agent} agent a node runs (provider builtin or external, and the \
         external program): mco plugin doc {agent} -I NODE"
    )
}

/// An agent's documentation in MCollective's layout.
pub(crate) fn agent_doc(ddl: &Ddl, out: &mut dyn Write) -> std::io::Result<()> {
    let meta = &ddl.metadata;
    writeln!(
        out,
        "{}\n{}\n\n{}\n",
        meta.name,
        "=".repeat(meta.name.len()),
        meta.description
    )?;
    for (label, value) in [
        ("Author", meta.author.as_str()),
        ("Version", meta.version.as_str()),
        ("License", meta.license.as_str()),
        ("Timeout", &meta.timeout.to_string()),
        ("Home Page", meta.url.as_str()),
    ] {
        writeln!(out, "{label:>12}: {value}")?;
    }
    writeln!(
        out,
        "\nACTIONS:\n========\n   {}\n",
        ddl.action_names().join(", ")
    )?;
    for action in &ddl.actions {
        let title = format!("{} action:", action.action);
        writeln!(out, "   {title}\n   {}", "-".repeat(title.len()))?;
        writeln!(out, "       {}", action.description)?;
        if action.display != Display::Always {
            writeln!(out, "       (replies shown: {:?})", action.display)?;
        }
        writeln!(out, "\n       INPUT:")?;
        if action.input.is_empty() {
            writeln!(out, "           This action does not have any inputs")?;
        }
        for (name, input) in &action.input {
            writeln!(out, "           {name}:")?;
            writeln!(out, "              Description: {}", input.description)?;
            writeln!(out, "                   Prompt: {}", input.prompt)?;
            writeln!(
                out,
                "                     Type: {}",
                serde_json::to_value(input.kind)
                    .unwrap_or_default()
                    .as_str()
                    .unwrap_or("")
            )?;
            writeln!(out, "                 Optional: {}", input.optional)?;
            if let Some(validation) = &input.validation {
                writeln!(out, "               Validation: {validation}")?;
            }
            if let Some(length) = input.maxlength {
                writeln!(out, "                   Length: {length}")?;
            }
            if !input.list.is_empty() {
                let values: Vec<String> = input.list.iter().map(|v| v.to_string()).collect();
                writeln!(out, "                   Values: {}", values.join(", "))?;
            }
            if let Some(default) = &input.default {
                writeln!(out, "            Default Value: {default}")?;
            }
            writeln!(out)?;
        }
        writeln!(out, "\n       OUTPUT:")?;
        if action.output.is_empty() {
            writeln!(out, "           This action does not declare any outputs")?;
        }
        for (name, output) in &action.output {
            writeln!(out, "           {name}:")?;
            writeln!(out, "              Description: {}", output.description)?;
            writeln!(out, "               Display As: {}", output.display_as)?;
            if let Some(default) = &output.default {
                writeln!(out, "            Default Value: {default}")?;
            }
            writeln!(out)?;
        }
        if !action.aggregate.is_empty() {
            writeln!(out, "       SUMMARIES:")?;
            for aggregate in &action.aggregate {
                let args: Vec<String> = aggregate.args.iter().map(|a| a.to_string()).collect();
                writeln!(
                    out,
                    "           {}({})",
                    aggregate.function,
                    args.join(", ")
                )?;
            }
            writeln!(out)?;
        }
    }
    Ok(())
}
