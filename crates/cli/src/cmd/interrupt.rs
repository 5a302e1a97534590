//! Ctrl-C while an RPC application waits for replies: the first stops the
//! wait (the client keeps what arrived, and the application prints it);
//! any later one, or one after the wait ended, exits at once.

/// The stop handed to [`muster_client::Client::call_until`]: the first
/// Ctrl-C. Never fires where the signal cannot be watched.
pub(crate) async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Once the wait is over, Ctrl-C no longer stops anything softly: it exits
/// with [`super::EXIT_INTERRUPTED`] (the watch installed for the wait would
/// otherwise swallow it).
pub(crate) fn exit_on_next() {
    tokio::spawn(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            std::process::exit(super::EXIT_INTERRUPTED.into());
        }
    });
}
