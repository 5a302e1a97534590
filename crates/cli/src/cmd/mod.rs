//! One module per `mco` application.

pub(crate) mod action;
pub(crate) mod broker;
pub(crate) mod ca;
pub(crate) mod check_config;
pub(crate) mod completion;
pub(crate) mod ddl2json;
pub(crate) mod demo;
pub(crate) mod external;
pub(crate) mod facts;
pub(crate) mod filemgr;
pub(crate) mod find;
pub(crate) mod fleet;
pub(crate) mod help;
pub(crate) mod interrupt;
pub(crate) mod inventory;
pub(crate) mod metrics;
pub(crate) mod package;
pub(crate) mod ping;
pub(crate) mod plugin;
pub(crate) mod puppet;
pub(crate) mod registry;
pub(crate) mod rpc;
pub(crate) mod server;
pub(crate) mod service;

// Exit codes a script can rely on (README, docs/output.md). When some
// nodes failed and others did not answer, "failed" wins.

/// Every addressed node answered, and none failed.
pub(crate) const EXIT_OK: u8 = 0;
/// Some node answered with a failure (status not 0).
pub(crate) const EXIT_FAILED: u8 = 1;
/// Another name for [`EXIT_FAILED`], for applications that only tell OK from not.
pub(crate) const EXIT_PARTIAL: u8 = EXIT_FAILED;
/// Bad usage, validation or config, or no broker: nothing was done.
pub(crate) const EXIT_ERROR: u8 = 2;
/// Some addressed node did not answer (and none failed).
pub(crate) const EXIT_NO_REPLY: u8 = 3;
/// No node matched: nothing was sent.
pub(crate) const EXIT_NO_NODES: u8 = 4;
/// Ctrl-C stopped the wait for replies (128 + SIGINT, as a shell says).
pub(crate) const EXIT_INTERRUPTED: u8 = 130;

/// Waits for SIGINT (Ctrl-C) or SIGTERM. SIGHUP (logrotate, `systemctl
/// reload`), which would otherwise kill the process, is logged and survived:
/// these processes log to stderr and have nothing to reload.
pub(crate) async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangup = signal(SignalKind::hangup()).ok();
    let hangups = async {
        match &mut hangup {
            Some(hangup) => {
                while hangup.recv().await.is_some() {
                    tracing::info!("SIGHUP: nothing to reload; still running");
                }
            }
            None => std::future::pending().await,
        }
    };
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
                () = hangups => {}
            }
        }
        Err(_) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                () = hangups => {}
            }
        }
    }
}

/// Logs to stderr at `level` unless RUST_LOG says otherwise; in colour
/// only when stderr is a terminal.
pub(crate) fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}
