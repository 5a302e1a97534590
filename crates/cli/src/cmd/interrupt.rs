//! Ctrl-C while an RPC application waits for replies: the first stops the
//! wait (the client keeps what arrived, and the application prints it);
//! any later one, or one after the wait ended, exits at once.

/// Ctrl-C before a request was sent (during discovery): there is nothing
/// to show, so `mco` says so and exits with [`super::EXIT_INTERRUPTED`].
#[derive(Debug, thiserror::Error)]
#[error("interrupted during {0}; no request was sent")]
pub(crate) struct Interrupted(pub(crate) &'static str);

/// Runs `work` unless Ctrl-C comes first, which is [`Interrupted`].
pub(crate) async fn unless_interrupted<T>(
    during: &'static str,
    work: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::select! {
        result = work => result,
        () = ctrl_c() => Err(Interrupted(during).into()),
    }
}

/// Ctrl-Cs seen, and whether the wait they would stop is over. One watcher
/// for the whole process, so no Ctrl-C falls between two listeners.
struct Watcher {
    pressed: tokio::sync::watch::Receiver<u32>,
    waiting_over: std::sync::atomic::AtomicBool,
}

static WATCHER: std::sync::OnceLock<Option<Watcher>> = std::sync::OnceLock::new();

/// Starts watching SIGINT on first use; `None` where it cannot be watched.
fn watcher() -> Option<&'static Watcher> {
    WATCHER
        .get_or_init(|| {
            use tokio::signal::unix::{signal, SignalKind};
            let mut interrupts = signal(SignalKind::interrupt()).ok()?;
            let (pressed, receiver) = tokio::sync::watch::channel(0u32);
            tokio::spawn(async move {
                while interrupts.recv().await.is_some() {
                    let over = WATCHER
                        .get()
                        .and_then(Option::as_ref)
                        .is_some_and(|w| w.waiting_over.load(std::sync::atomic::Ordering::SeqCst));
                    if over || *pressed.borrow() > 0 {
                        std::process::exit(super::EXIT_INTERRUPTED.into());
                    }
                    pressed.send_modify(|n| *n += 1);
                }
            });
            Some(Watcher {
                pressed: receiver,
                waiting_over: std::sync::atomic::AtomicBool::new(false),
            })
        })
        .as_ref()
}

/// The stop handed to [`muster_client::Client::call_until`]: the first
/// Ctrl-C. Never fires where the signal cannot be watched.
pub(crate) async fn ctrl_c() {
    let Some(watcher) = watcher() else {
        return std::future::pending().await;
    };
    let mut pressed = watcher.pressed.clone();
    if pressed.wait_for(|n| *n > 0).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Once the wait is over, Ctrl-C no longer stops anything softly: the next
/// one (a second, or the first after the wait ended) exits with
/// [`super::EXIT_INTERRUPTED`] at once, even while output is still being
/// written to a slow reader.
pub(crate) fn exit_on_next() {
    if let Some(watcher) = watcher() {
        watcher
            .waiting_over
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
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
