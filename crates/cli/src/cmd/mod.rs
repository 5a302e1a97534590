//! One module per `mco` application.

pub mod action;
pub mod broker;
pub mod ca;
pub mod completion;
pub mod demo;
pub mod external;
pub mod facts;
pub mod filemgr;
pub mod find;
pub mod fleet;
pub mod help;
pub mod inventory;
pub mod package;
pub mod ping;
pub mod plugin;
pub mod puppet;
pub mod rpc;
pub mod server;
pub mod service;

// Exit codes a script can rely on (README, docs/output.md). When some
// nodes failed and others did not answer, "failed" wins.

/// Every addressed node answered, and none failed.
pub const EXIT_OK: u8 = 0;
/// Some node answered with a failure (status not 0).
pub const EXIT_FAILED: u8 = 1;
/// Another name for [`EXIT_FAILED`], for applications that only tell OK from not.
pub const EXIT_PARTIAL: u8 = EXIT_FAILED;
/// Bad usage, validation or config, or no broker: nothing was done.
pub const EXIT_ERROR: u8 = 2;
/// Some addressed node did not answer (and none failed).
pub const EXIT_NO_REPLY: u8 = 3;
/// No node matched: nothing was sent.
pub const EXIT_NO_NODES: u8 = 4;

/// Waits for Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}

/// Logs to stderr at `level` unless RUST_LOG says otherwise.
pub fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
