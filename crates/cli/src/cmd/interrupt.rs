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

/// Clears the progress bar after Ctrl-C stopped the wait. The bar fills its
/// line to the terminal's width, so the "^C" the terminal echoes wraps to
/// the next line, and clearing "the bar" would clear only that echo: the
/// line above, the bar's, is cleared too.
pub(crate) fn clear_bar(bar: &indicatif::ProgressBar, interrupted: bool) {
    let drawn = !bar.is_hidden();
    bar.finish_and_clear();
    if drawn && interrupted {
        let mut err = std::io::stderr();
        let _ = std::io::Write::write_all(&mut err, b"\x1b[1A\r\x1b[2K");
        let _ = std::io::Write::flush(&mut err);
    }
}
