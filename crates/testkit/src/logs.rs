//! What code under test logs, captured while a [`Logs`] is the thread's
//! tracing subscriber.

use std::sync::{Arc, Mutex};

/// Every event logged while it is the thread's subscriber
/// (`tracing::subscriber::set_default(logs.clone())`).
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<(tracing::Level, String)>>>);

impl Logs {
    /// Runs `f` with what it logs on this thread captured.
    pub fn capturing<T>(f: impl FnOnce() -> T) -> (T, Logs) {
        let logs = Logs::default();
        let result = tracing::subscriber::with_default(logs.clone(), f);
        (result, logs)
    }

    /// Takes every event so far, each as `LEVEL field=value …`.
    pub fn take(&self) -> Vec<String> {
        let events = std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()));
        events
            .into_iter()
            .map(|(level, fields)| format!("{level}{fields}"))
            .collect()
    }

    /// The events at `level`, each as ` field=value …`.
    pub fn at(&self, level: tracing::Level) -> Vec<String> {
        let events = self.0.lock().unwrap_or_else(|p| p.into_inner());
        events
            .iter()
            .filter(|(l, _)| *l == level)
            .map(|(_, fields)| fields.clone())
            .collect()
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
        let mut text = Text(String::new());
        event.record(&mut text);
        let level = *event.metadata().level();
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((level, text.0));
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}
