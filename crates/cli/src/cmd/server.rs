//! `mco server`: the node daemon.
//!
//! SIGTERM and SIGINT stop it gracefully (see `muster_server::daemon`);
//! SIGHUP, what `systemctl reload` and logrotate send, re-reads server.cfg
//! and reopens the log file. Lines are text (in colour only at a terminal)
//! or, with `log_format = json`, one JSON object each.

use std::fs::File;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::Context;
use muster_server::daemon::Control;
use muster_server::{LogFormat, ServerConfig};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc::UnboundedSender;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

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
    /// Check FILE as server.cfg without starting: list every error with its line (exit 2), or print the effective settings (exit 0)
    #[arg(long, value_name = "FILE")]
    pub check_config: Option<PathBuf>,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<u8> {
    if let Some(file) = &args.check_config {
        return super::check_config::server(file);
    }
    // As --check-config does: every mistake at once, each with its line.
    let config = ServerConfig::check(&args.config)?;
    let logging = Logging::init(&config)?;
    let _metrics = match &config.prometheus_listen {
        Some(listen) => Some(super::metrics::serve(listen).await?),
        None => None,
    };
    let (orders, control) = tokio::sync::mpsc::unbounded_channel();
    forward_signals(orders)?;
    muster_server::daemon::run(config, control, move |config| logging.reload(config)).await?;
    Ok(super::EXIT_OK)
}

/// Turns SIGTERM and SIGINT into [`Control::Stop`] and SIGHUP into
/// [`Control::Reload`], from now until the daemon returns.
fn forward_signals(orders: UnboundedSender<Control>) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    tokio::spawn(async move {
        loop {
            let order = tokio::select! {
                _ = term.recv() => Control::Stop,
                _ = int.recv() => Control::Stop,
                _ = hup.recv() => Control::Reload,
            };
            if orders.send(order).is_err() {
                return;
            }
        }
    });
    Ok(())
}

/// The daemon's logging, which a reload changes: its level and its file.
struct Logging {
    filter: reload::Handle<EnvFilter, Registry>,
    target: LogTarget,
    /// `RUST_LOG` overrides `loglevel`, then and after a reload.
    from_env: bool,
    /// The `log_format` lines are written in until a restart.
    format: LogFormat,
}

impl Logging {
    /// Logs at `loglevel` to `logfile`, or to stderr when none is set.
    fn init(config: &ServerConfig) -> anyhow::Result<Logging> {
        let (filter, from_env) = match EnvFilter::try_from_default_env() {
            Ok(filter) => (filter, true),
            Err(_) => (EnvFilter::new(level(config)), false),
        };
        let target = LogTarget::default();
        target.open(config)?;
        let (filter, handle) = reload::Layer::new(filter);
        // Colour only for a person at a terminal; never in a file.
        let ansi = config.logfile.is_none() && std::io::stderr().is_terminal();
        let lines = tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .with_writer(target.clone());
        let lines = match config.log_format {
            LogFormat::Text => lines.boxed(),
            LogFormat::Json => lines.json().boxed(),
        };
        let _ = tracing_subscriber::registry()
            .with(filter)
            .with(lines)
            .try_init();
        Ok(Logging {
            filter: handle,
            target,
            from_env,
            format: config.log_format,
        })
    }

    /// Applies a reloaded config: reopens the log file (logrotate moved
    /// it) and sets the level.
    fn reload(&self, config: &ServerConfig) {
        if let Err(e) = self.target.open(config) {
            tracing::error!(
                error = format!("{e:#}"),
                "keeping the log file open before the reload"
            );
        }
        if !self.from_env {
            if let Err(e) = self.filter.reload(EnvFilter::new(level(config))) {
                tracing::error!(error = %e, "cannot change the log level");
            }
        }
        if config.log_format != self.format {
            tracing::warn!(
                settings = ?["log_format"],
                "changed settings that need a restart of mco server; until then the running values stay"
            );
        }
        tracing::info!(loglevel = %config.loglevel, "logging reloaded");
    }
}

fn level(config: &ServerConfig) -> &str {
    match config.loglevel.as_str() {
        "fatal" => "error",
        other => other,
    }
}

/// Where log lines go: the log file, or stderr when there is none.
#[derive(Clone, Default)]
struct LogTarget(Arc<Mutex<Option<File>>>);

impl LogTarget {
    /// (Re)opens `logfile` for appending; none set means stderr.
    fn open(&self, config: &ServerConfig) -> anyhow::Result<()> {
        let file = match &config.logfile {
            Some(path) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("cannot open logfile {}", path.display()))?,
            ),
            None => None,
        };
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = file;
        Ok(())
    }
}

/// One log line's access to the target.
struct LogWriter<'a>(MutexGuard<'a, Option<File>>);

impl Write for LogWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        match &mut *self.0 {
            Some(file) => file.write(bytes),
            None => std::io::stderr().write(bytes),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &mut *self.0 {
            Some(file) => file.flush(),
            None => std::io::stderr().flush(),
        }
    }
}

impl<'a> MakeWriter<'a> for LogTarget {
    type Writer = LogWriter<'a>;

    fn make_writer(&'a self) -> LogWriter<'a> {
        LogWriter(self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}
