//! `mco fleet`: many simulated nodes in one process, for trying muster
//! out and for measuring it at scale against any broker.

use std::path::PathBuf;
use std::sync::Arc;

use muster_server::fleet::{Fleet, FleetSpec};
use muster_server::TrustStore;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// How many nodes
    #[arg(long, short = 'n', default_value_t = 50)]
    pub nodes: usize,
    /// Broker URL
    #[arg(long, default_value = muster_connector::DEFAULT_SERVER)]
    pub server: String,
    /// Directory of trusted caller public keys
    #[arg(long, value_name = "DIR")]
    pub trusted_keys: PathBuf,
    /// Identity prefix; nodes are PREFIX01, PREFIX02, ...
    #[arg(long, default_value = "node")]
    pub prefix: String,
}

pub async fn run(args: Args) -> anyhow::Result<u8> {
    super::init_logging("warn");
    let trust = Arc::new(TrustStore::from_dir(args.trusted_keys).map_err(anyhow::Error::msg)?);
    let mut spec = FleetSpec::new(vec![args.server.clone()], args.nodes, trust);
    spec.prefix = args.prefix;
    let fleet = Fleet::start(spec).await?;
    println!(
        "{} simulated nodes serving on {}",
        fleet.nodes().len(),
        args.server
    );
    super::shutdown_signal().await;
    fleet.stop().await;
    Ok(super::EXIT_OK)
}
