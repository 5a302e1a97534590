//! `mco registry`: the registration collector (muster-registry), which
//! `--dm registry` asks. SIGTERM and SIGINT stop it.

use std::path::PathBuf;

use anyhow::Context;
use muster_server::daemon::Control;
use muster_server::ServerConfig;
use tokio::signal::unix::{signal, SignalKind};

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The collector's config: a server.cfg naming its identity and certificate, plus plugin.registry.*
    #[arg(
        long,
        short = 'c',
        value_name = "FILE",
        default_value = "/etc/muster/registry.cfg"
    )]
    pub config: PathBuf,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<u8> {
    let config = ServerConfig::check(&args.config)?;
    super::init_logging(&config.loglevel);
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let (orders, control) = tokio::sync::mpsc::unbounded_channel();
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        let _ = orders.send(Control::Stop);
    });
    muster_registry::collector::run(config, control)
        .await
        .with_context(|| format!("mco registry --config {}", args.config.display()))?;
    Ok(super::EXIT_OK)
}
