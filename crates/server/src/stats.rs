//! Counters reported by `rpcutil daemon_stats`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

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
    /// The reason's name in `daemon_stats` and logs.
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

/// A node's request counters.
pub struct Stats {
    started: Instant,
    started_unix: u64,
    /// Every message received.
    pub total: AtomicU64,
    /// Accepted and matched by the filter.
    pub passed: AtomicU64,
    /// Accepted but not for this node.
    pub filtered: AtomicU64,
    /// Replies sent.
    pub replies: AtomicU64,
    /// Data plugin queries in filters that failed on this node.
    pub data_errors: AtomicU64,
    /// Refused by the action policy (answered with status 1).
    pub unauthorized: AtomicU64,
    rejected: Mutex<BTreeMap<Rejection, u64>>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            started: Instant::now(),
            started_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            total: AtomicU64::new(0),
            passed: AtomicU64::new(0),
            filtered: AtomicU64::new(0),
            replies: AtomicU64::new(0),
            data_errors: AtomicU64::new(0),
            unauthorized: AtomicU64::new(0),
            rejected: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Stats {
    /// Adds one to `counter`.
    pub fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a message refused for `reason`.
    pub fn reject(&self, reason: Rejection) {
        let mut rejected = self.rejected.lock().unwrap_or_else(|p| p.into_inner());
        *rejected.entry(reason).or_default() += 1;
    }

    /// How many messages were refused for `reason`.
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
