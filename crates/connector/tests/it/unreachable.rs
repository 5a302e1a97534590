//! A broker that is not there: the error and the log lines name its URL,
//! with the password redacted, for clients (who give up) and daemons (who
//! keep trying).

use std::error::Error;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use muster_connector::{connect_client, connect_daemon, Transport};

/// Every event logged while it is the thread's subscriber, as
/// `LEVEL field=value …` lines.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<String>>>);

impl Logs {
    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl tracing::Subscriber for Logs {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        struct Text(String);
        impl tracing::field::Visit for Text {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.push_str(&format!(" {}={value:?}", field.name()));
            }
        }
        let mut text = Text(event.metadata().level().to_string());
        event.record(&mut text);
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(text.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("an ephemeral port")
        .port()
}

/// The error and every source under it, as one text.
fn chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(&format!(": {e}"));
        source = e.source();
    }
    text
}

// A current-thread runtime: async-nats's tasks run on this thread, so the
// thread's subscriber sees their events too.
#[tokio::test]
async fn a_client_names_the_broker_it_cannot_reach_without_the_password() {
    let logs = Logs::default();
    let _guard = tracing::subscriber::set_default(logs.clone());
    let port = closed_port();
    let url = format!("nats://ops:hunter2@127.0.0.1:{port}");
    let redacted = format!("nats://ops:***@127.0.0.1:{port}");
    let err = connect_client(
        &[url],
        "test",
        Duration::from_secs(2),
        &Transport::default(),
    )
    .await
    .expect_err("nothing listens there");
    let text = chain(&err);
    assert!(text.contains(&redacted), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    let lines = logs.lines();
    assert!(
        lines.iter().any(|l| l.contains(&redacted)),
        "no log line names {redacted}: {lines:#?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("hunter2")),
        "a log line shows the password: {lines:#?}"
    );
}

#[tokio::test]
async fn a_daemon_logs_the_broker_it_keeps_trying_without_the_password() {
    let logs = Logs::default();
    let _guard = tracing::subscriber::set_default(logs.clone());
    let port = closed_port();
    let urls = [
        format!("nats://ops:hunter2@127.0.0.1:{port}"),
        format!("nats://127.0.0.1:{}", closed_port()),
    ];
    let redacted = format!("nats://ops:***@127.0.0.1:{port}");
    // Returns at once: the daemon connects in the background, for ever.
    let client = connect_daemon(&urls, "test", &Transport::default())
        .await
        .expect("a daemon does not wait for the broker");
    let retrying = |lines: &[String]| {
        lines
            .iter()
            .any(|l| l.starts_with("WARN") && l.contains("retrying") && l.contains(&redacted))
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !retrying(&logs.lines()) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let lines = logs.lines();
    assert!(retrying(&lines), "no warning names {redacted}: {lines:#?}");
    assert!(
        !lines.iter().any(|l| l.contains("hunter2")),
        "a log line shows the password: {lines:#?}"
    );
    drop(client);
}
