//! Counters reported by `rpcutil daemon_stats`, and the same counters for
//! Prometheus (`plugin.prometheus.listen`).
//!
//! Each [`Node`](crate::Node) keeps its own [`Stats`] for `daemon_stats`.
//! Every count also goes to one process-wide [`ServerMetrics`] ([`metrics`]):
//! a scrape describes the process, whichever node (a reloaded one, or the
//! thousands of a fleet simulator) did the work.

use std::collections::{BTreeMap, HashSet};
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use muster_protocol::StatusCode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use serde_json::{json, Value};

/// Why a request was refused without a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rejection {
    /// Not an envelope, or not a request inside.
    Malformed,
    /// A protocol version this build does not speak.
    Version,
    /// Signed by a key this node does not trust.
    Untrusted,
    /// The signature does not match.
    Signature,
    /// Older than its ttl, or dated too far in the future.
    Expired,
    /// A ttl longer than the node accepts.
    TtlTooLong,
    /// An id already seen.
    Replay,
    /// For a collective this node is not in.
    Collective,
    /// A directed request for other nodes, or moved between directed and
    /// broadcast subjects.
    Misaddressed,
    /// More than the node takes at once (replay window, queue, in flight).
    Busy,
    /// Denied by the action policy, and its filter needed data plugins: no reply.
    Denied,
}

impl Rejection {
    /// The reason's name in `daemon_stats` and in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::Malformed => "malformed",
            Rejection::Version => "version",
            Rejection::Untrusted => "untrusted",
            Rejection::Signature => "signature",
            Rejection::Expired => "expired",
            Rejection::TtlTooLong => "ttl_too_long",
            Rejection::Replay => "replay",
            Rejection::Collective => "collective",
            Rejection::Misaddressed => "misaddressed",
            Rejection::Busy => "busy",
            Rejection::Denied => "denied",
        }
    }
}

/// One of a node's counters, also counted process-wide for Prometheus.
/// Reads like the `AtomicU64` it wraps.
#[derive(Debug, Default)]
pub struct Tally {
    value: AtomicU64,
    global: Counter,
}

impl Tally {
    fn new(global: Counter) -> Tally {
        Tally {
            value: AtomicU64::new(0),
            global,
        }
    }
}

impl Deref for Tally {
    type Target = AtomicU64;

    fn deref(&self) -> &AtomicU64 {
        &self.value
    }
}

/// A node's request counters.
pub struct Stats {
    started: Instant,
    started_unix: u64,
    /// Every message received.
    pub total: Tally,
    /// Accepted and matched by the filter.
    pub passed: Tally,
    /// Accepted but not for this node.
    pub filtered: Tally,
    /// Replies sent.
    pub replies: Tally,
    /// Data plugin queries in filters that failed on this node.
    pub data_errors: Tally,
    /// Refused by the action policy (answered with status 1).
    pub unauthorized: Tally,
    rejected: Mutex<BTreeMap<Rejection, u64>>,
}

impl Default for Stats {
    fn default() -> Self {
        let m = metrics();
        Stats {
            started: Instant::now(),
            started_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            total: Tally::new(m.requests.clone()),
            passed: Tally::new(m.passed.clone()),
            filtered: Tally::new(m.filtered.clone()),
            replies: Tally::new(m.replies.clone()),
            data_errors: Tally::new(m.data_errors.clone()),
            unauthorized: Tally::new(m.refusal("unauthorized")),
            rejected: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Stats {
    /// Counts one on `counter`, for this node and for the process.
    pub fn count(counter: &Tally) {
        counter.value.fetch_add(1, Ordering::Relaxed);
        counter.global.inc();
    }

    /// An action (or a refusal to run one) answered with `status` after `took`.
    pub fn finished(&self, agent: &str, action: &str, status: StatusCode, took: Duration) {
        metrics().finished(agent, action, status, took);
    }

    /// Counts a request refused without a reply.
    pub fn reject(&self, reason: Rejection) {
        metrics().refusal(reason.as_str()).inc();
        let mut rejected = self.rejected.lock().unwrap_or_else(|p| p.into_inner());
        *rejected.entry(reason).or_default() += 1;
    }

    /// Requests this node refused for `reason`.
    pub fn rejected(&self, reason: Rejection) -> u64 {
        let rejected = self.rejected.lock().unwrap_or_else(|p| p.into_inner());
        rejected.get(&reason).copied().unwrap_or(0)
    }

    /// The `daemon_stats` output, with MCollective's names where it has one.
    pub fn to_json(&self) -> Value {
        let rejected = self.rejected.lock().unwrap_or_else(|p| p.into_inner());
        let by_reason: serde_json::Map<String, Value> = rejected
            .iter()
            .map(|(reason, count)| (reason.as_str().to_string(), json!(count)))
            .collect();
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let unvalidated: u64 = rejected
            .iter()
            .filter(|(r, _)| {
                matches!(
                    r,
                    Rejection::Untrusted
                        | Rejection::Signature
                        | Rejection::Malformed
                        | Rejection::Version
                )
            })
            .map(|(_, c)| c)
            .sum();
        json!({
            "starttime": self.started_unix,
            "uptime": self.started.elapsed().as_secs(),
            "total": get(&self.total),
            "passed": get(&self.passed),
            "filtered": get(&self.filtered),
            "replies": get(&self.replies),
            "data_errors": get(&self.data_errors),
            "unauthorized": get(&self.unauthorized),
            "validated": get(&self.passed) + get(&self.filtered),
            "unvalidated": unvalidated,
            "ttlexpired": rejected.get(&Rejection::Expired).copied().unwrap_or(0),
            "rejected": by_reason,
        })
    }
}

/// Distinct (agent, action) label pairs kept before the rest are counted as
/// `other`: requests name them, and a scrape must stay small.
const MAX_ACTION_LABELS: usize = 512;

type Labels = Vec<(&'static str, String)>;

/// The process-wide metrics `mco server` serves on `plugin.prometheus.listen`.
pub struct ServerMetrics {
    requests: Counter,
    passed: Counter,
    filtered: Counter,
    replies: Counter,
    data_errors: Counter,
    refusals: Family<Labels, Counter>,
    calls: Family<Labels, Counter>,
    durations: Family<Labels, Histogram, fn() -> Histogram>,
    actions_seen: Mutex<HashSet<(String, String)>>,
    broker: Mutex<Option<async_nats::Client>>,
}

/// The process's metrics.
pub fn metrics() -> &'static ServerMetrics {
    static METRICS: OnceLock<ServerMetrics> = OnceLock::new();
    METRICS.get_or_init(|| ServerMetrics {
        requests: Counter::default(),
        passed: Counter::default(),
        filtered: Counter::default(),
        replies: Counter::default(),
        data_errors: Counter::default(),
        refusals: Family::default(),
        calls: Family::default(),
        durations: Family::new_with_constructor(|| {
            // 1 ms to about 65 s: rpcutil answers from memory, puppet runs take a minute.
            Histogram::new(exponential_buckets(0.001, 2.0, 17))
        }),
        actions_seen: Mutex::new(HashSet::new()),
        broker: Mutex::new(None),
    })
}

fn status_label(status: StatusCode) -> &'static str {
    match status {
        StatusCode::Ok => "ok",
        StatusCode::Aborted => "aborted",
        StatusCode::UnknownAction => "unknown_action",
        StatusCode::MissingData => "missing_data",
        StatusCode::InvalidData => "invalid_data",
        StatusCode::UnknownError => "unknown_error",
    }
}

impl ServerMetrics {
    fn refusal(&self, reason: &str) -> Counter {
        self.refusals
            .get_or_create(&vec![("reason", reason.to_string())])
            .clone()
    }

    fn finished(&self, agent: &str, action: &str, status: StatusCode, took: Duration) {
        let (agent, action) = {
            let mut seen = self.actions_seen.lock().unwrap_or_else(|p| p.into_inner());
            let key = (agent.to_string(), action.to_string());
            if seen.contains(&key) || seen.len() < MAX_ACTION_LABELS {
                seen.insert(key.clone());
                key
            } else {
                ("other".to_string(), "other".to_string())
            }
        };
        let labels = vec![("agent", agent), ("action", action)];
        self.durations
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        let mut labels = labels;
        labels.push(("status", status_label(status).to_string()));
        self.calls.get_or_create(&labels).inc();
    }

    /// Reports this broker connection's state (`muster_server_broker_*`).
    pub fn watch_broker(&self, client: async_nats::Client) {
        *self.broker.lock().unwrap_or_else(|p| p.into_inner()) = Some(client);
    }

    /// Everything, as a registry to encode for a scrape (`muster_server_*`).
    pub fn registry(&self) -> Registry {
        let mut r = Registry::with_prefix("muster_server");
        r.register(
            "requests",
            "Messages received on the node's subjects",
            self.requests.clone(),
        );
        r.register(
            "requests_passed",
            "Requests accepted and selected by their filter",
            self.passed.clone(),
        );
        r.register(
            "requests_filtered",
            "Requests accepted but not for this node",
            self.filtered.clone(),
        );
        r.register("replies", "Replies sent", self.replies.clone());
        r.register(
            "data_errors",
            "Data plugin queries in filters that failed",
            self.data_errors.clone(),
        );
        r.register(
            "refusals",
            "Requests refused, by reason",
            self.refusals.clone(),
        );
        r.register(
            "action_calls",
            "Actions answered, by agent, action and reply status",
            self.calls.clone(),
        );
        r.register(
            "action_duration_seconds",
            "Time from a request passing its filter to its reply, by agent and action",
            self.durations.clone(),
        );
        let broker = self
            .broker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let connected = Gauge::<i64>::default();
        let reconnects = Counter::<u64>::default();
        if let Some(client) = broker {
            let up = client.connection_state() == async_nats::connection::State::Connected;
            connected.set(i64::from(up));
            let connects = client.statistics().connects.load(Ordering::Relaxed);
            reconnects.inc_by(connects.saturating_sub(1));
        }
        r.register(
            "broker_connected",
            "1 while connected to the broker",
            connected,
        );
        r.register(
            "broker_reconnects",
            "Connections to the broker after the first",
            reconnects,
        );
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded() -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &metrics().registry()).unwrap();
        text
    }

    fn sample(text: &str, name: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    #[test]
    fn refusals_and_counts_reach_the_process_metrics() {
        // The metrics are process-wide and other tests count too: compare deltas.
        let before = encoded();
        let stats = Stats::default();
        stats.reject(Rejection::Replay);
        stats.reject(Rejection::Replay);
        stats.reject(Rejection::Untrusted);
        Stats::count(&stats.unauthorized);
        Stats::count(&stats.total);
        assert_eq!(stats.total.load(Ordering::Relaxed), 1);
        assert_eq!(stats.rejected(Rejection::Replay), 2);
        let after = encoded();
        let delta = |name: &str| sample(&after, name) - sample(&before, name);
        assert!(delta("muster_server_refusals_total{reason=\"replay\"}") >= 2.0);
        assert!(delta("muster_server_refusals_total{reason=\"untrusted\"}") >= 1.0);
        assert!(delta("muster_server_refusals_total{reason=\"unauthorized\"}") >= 1.0);
        assert!(delta("muster_server_requests_total") >= 1.0);
        // Not connected to a broker here.
        assert_eq!(sample(&after, "muster_server_broker_connected"), 0.0);
    }

    #[test]
    fn action_labels_are_bounded() {
        for i in 0..MAX_ACTION_LABELS + 50 {
            metrics().finished(
                "flood",
                &format!("action{i}"),
                StatusCode::Ok,
                Duration::from_millis(1),
            );
        }
        let text = encoded();
        let series = text
            .lines()
            .filter(|l| l.starts_with("muster_server_action_calls_total{"))
            .count();
        assert!(series <= MAX_ACTION_LABELS + 6 * 2, "{series} series");
        assert!(text.contains("agent=\"other\",action=\"other\""));
    }
}
