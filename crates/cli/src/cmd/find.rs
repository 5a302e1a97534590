//! `mco find`: the matching identities, one per line, for pipes.

use std::io::Write;

use muster_client::{ClientConfig, Discovery};

use crate::args::Common;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    #[command(flatten)]
    pub common: Common,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<u8> {
    super::init_logging("warn");
    let common = &args.common;
    let (filter, discovery) = common.plan()?;
    let nodes = match &discovery {
        // Only broadcast needs the fleet; the others work offline.
        Discovery::Broadcast | Discovery::Registry => {
            let client = common.connect().await?;
            common.discover(&client, &filter, &discovery).await?
        }
        other => {
            let config = ClientConfig::load(common.config.as_deref())?;
            let collective = common
                .selectors
                .target
                .as_deref()
                .unwrap_or(&config.main_collective);
            other
                .known_nodes(&filter, collective, common.discovery_timeout()?)
                .await?
        }
    };
    let mut out = std::io::stdout().lock();
    if common.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&nodes)?)?;
    } else {
        for node in &nodes {
            writeln!(out, "{node}")?;
        }
    }
    out.flush()?;
    Ok(if nodes.is_empty() {
        super::EXIT_NO_NODES
    } else {
        super::EXIT_OK
    })
}
