//! One module per `mco` application.

pub mod action;
pub mod broker;
pub mod demo;
pub mod facts;
pub mod filemgr;
pub mod find;
pub mod fleet;
pub mod inventory;
pub mod package;
pub mod ping;
pub mod plugin;
pub mod puppet;
pub mod rpc;
pub mod server;
pub mod service;

/// Every addressed node answered and none failed.
pub const EXIT_OK: u8 = 0;
/// Some node failed, did not answer, or none matched.
pub const EXIT_PARTIAL: u8 = 1;
/// Bad usage, config, or no broker: nothing was done.
pub const EXIT_ERROR: u8 = 2;

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
