//! `mco server`: the node daemon.

use std::path::PathBuf;

use anyhow::Context;
use muster_server::ServerConfig;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Server config file
    #[arg(
        long,
        short = 'c',
        value_name = "FILE",
        default_value = "/etc/muster/server.cfg"
    )]
    pub config: PathBuf,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<u8> {
    let config = ServerConfig::load(&args.config)?;
    init_logging(&config)?;
    let _metrics = match &config.prometheus_listen {
        Some(listen) => Some(super::metrics::serve(listen).await?),
        None => None,
    };
    muster_server::daemon::run(config, super::shutdown_signal()).await?;
    Ok(super::EXIT_OK)
}

/// Logs at `loglevel` to `logfile`, or to stderr when none is set.
fn init_logging(config: &ServerConfig) -> anyhow::Result<()> {
    let level = match config.loglevel.as_str() {
        "fatal" => "error",
        other => other,
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match &config.logfile {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open logfile {}", path.display()))?;
            let _ = builder
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .try_init();
        }
        None => {
            let _ = builder.with_writer(std::io::stderr).try_init();
        }
    }
    Ok(())
}
