//! `mco registry`: the fleet's registrations, collected and queried.
//!
//! Nodes with `registerinterval` set publish signed records
//! ([`muster_server::registration`]). The collector ([`collector::run`])
//! subscribes to them, keeps every node's last record in memory and in a
//! [`Store`] (SQLite by default), forgets nodes silent for
//! `plugin.registry.expire_intervals` of their intervals, and answers
//! discovery as the `registry` agent of a node named after its own
//! certificate: `--dm registry` is a directed, signed request to it, which
//! the broker lets only callers send and only the collector answer.
//!
//! ```
//! use muster_protocol::Filter;
//! use muster_registry::Registry;
//! use muster_server::registration::Registration;
//!
//! let mut registry = Registry::in_memory(3);
//! let record = Registration {
//!     identity: "web1".into(),
//!     facts: serde_json::json!({"role": "web"}),
//!     classes: vec!["httpd".into()],
//!     collectives: vec!["mcollective".into()],
//!     agents: vec![],
//!     time: 100,
//!     interval: 60,
//! };
//! registry.learn(record, 100);
//! let web = Filter::default().fact("role=web").unwrap();
//! assert_eq!(registry.select(&web, "mcollective").unwrap(), ["web1"]);
//! // Silent for 3 intervals of 60 s: forgotten.
//! assert_eq!(registry.expire(100 + 181), ["web1"]);
//! assert!(registry.select(&web, "mcollective").unwrap().is_empty());
//! ```

pub mod agent;
pub mod collector;
pub mod store;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use muster_pki::Authority;
use muster_protocol::{Filter, NodeView};
use muster_server::registration::{Refused, Registration};
use serde_json::Value;

pub use store::{SqliteStore, Store, StoreError, Stored};

/// How many of its intervals a node may stay silent unless
/// `plugin.registry.expire_intervals` says otherwise.
pub const DEFAULT_EXPIRE_INTERVALS: u64 = 3;

/// How often a collector without a working store tries to open it again.
const REOPEN_EVERY: Duration = Duration::from_secs(5);

/// Why the registry could not answer a query.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// Data plugins need the node itself.
    #[error("the registry cannot evaluate data plugins such as fstat(...): use --dm broadcast")]
    DataPlugins,
    /// The store failed; what is in memory may be stale or incomplete.
    #[error("the registry's store is unavailable: {0}")]
    StoreUnavailable(String),
}

/// Registrations taken and refused, by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    /// Records taken.
    pub accepted: u64,
    /// Larger than the limit.
    pub oversized: u64,
    /// Not a signed registration at all (unsigned, garbage).
    pub malformed: u64,
    /// A certificate not from the CA, or a signature that does not verify.
    pub forged: u64,
    /// Signed by a certificate that may not speak for the identity claimed.
    pub unknown_node: u64,
    /// Nodes aged out.
    pub expired: u64,
}

impl Counters {
    /// Every refusal.
    pub fn refused(&self) -> u64 {
        self.oversized + self.malformed + self.forged + self.unknown_node
    }
}

/// Opens the store again after a failure.
type Opener = Box<dyn FnMut() -> Result<Box<dyn Store>, StoreError> + Send>;

/// The nodes the registry knows, and its store.
pub struct Registry {
    nodes: HashMap<String, Stored>,
    store: Option<Box<dyn Store>>,
    opener: Option<Opener>,
    last_open: Option<Instant>,
    store_error: Option<String>,
    expire_intervals: u64,
    counters: Counters,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("nodes", &self.nodes.len())
            .field("store_error", &self.store_error)
            .field("counters", &self.counters)
            .finish()
    }
}

impl Registry {
    /// A registry that keeps nothing on disk (tests, benchmarks).
    pub fn in_memory(expire_intervals: u64) -> Registry {
        Registry {
            nodes: HashMap::new(),
            store: None,
            opener: None,
            last_open: None,
            store_error: None,
            expire_intervals: expire_intervals.max(1),
            counters: Counters::default(),
        }
    }

    /// A registry backed by the store `open` opens, loading what it holds.
    /// A store that does not open or load leaves the registry running
    /// from memory, saying so in every answer, and `open` is retried.
    pub fn with_store(
        expire_intervals: u64,
        open: impl FnMut() -> Result<Box<dyn Store>, StoreError> + Send + 'static,
    ) -> Registry {
        let mut registry = Registry::in_memory(expire_intervals);
        registry.opener = Some(Box::new(open));
        registry.reopen();
        registry
    }

    /// Tries to open the store, and loads it (or, if the registry
    /// learned nodes meanwhile, writes them) when it opens.
    fn reopen(&mut self) {
        let Some(open) = self.opener.as_mut() else {
            return;
        };
        self.last_open = Some(Instant::now());
        let opened = open().and_then(|mut store| {
            if self.nodes.is_empty() {
                for node in store.load()? {
                    self.nodes.insert(node.record.identity.clone(), node);
                }
            } else {
                let all: Vec<Stored> = self.nodes.values().cloned().collect();
                store.put(&all)?;
            }
            Ok(store)
        });
        match opened {
            Ok(store) => {
                if self.store_error.take().is_some() {
                    tracing::info!("the registry store is available again");
                }
                tracing::info!(nodes = self.nodes.len(), "registry store opened");
                self.store = Some(store);
            }
            Err(e) => self.store_failed(e),
        }
    }

    fn store_failed(&mut self, error: StoreError) {
        let message = error.to_string();
        if self.store_error.as_deref() != Some(message.as_str()) {
            tracing::error!(
                error = %message,
                "registry store unavailable: going on from memory; queries say so until it recovers"
            );
        }
        self.store_error = Some(message);
        // A locked or full database may recover on the same connection; a
        // corrupt one is reopened.
        if self.opener.is_some() && matches!(error, StoreError::Open { .. }) {
            self.store = None;
        }
    }

    /// Checks a registration message and learns the node; a refusal is
    /// counted and returned.
    pub fn receive(
        &mut self,
        bytes: &[u8],
        authority: &Authority,
        now: u64,
    ) -> Result<(), Refused> {
        match Registration::open(bytes, authority) {
            Ok(record) => {
                self.learn(record, now);
                Ok(())
            }
            Err(refused) => {
                match &refused {
                    Refused::Oversized(_) => self.counters.oversized += 1,
                    Refused::Malformed(_) | Refused::Version(_) => self.counters.malformed += 1,
                    Refused::Forged(_) => self.counters.forged += 1,
                    Refused::UnknownNode { .. } => self.counters.unknown_node += 1,
                }
                Err(refused)
            }
        }
    }

    /// Takes a record already checked, received at `now` (Unix seconds).
    pub fn learn(&mut self, record: Registration, now: u64) {
        self.counters.accepted += 1;
        let stored = Stored { record, seen: now };
        self.write(|store| store.put(std::slice::from_ref(&stored)));
        self.nodes.insert(stored.record.identity.clone(), stored);
    }

    /// Runs `op` on the store, noting a failure or a recovery.
    fn write(&mut self, op: impl FnOnce(&mut dyn Store) -> Result<(), StoreError>) {
        if self.store.is_none() {
            if self.opener.is_some() && self.last_open.is_none_or(|at| at.elapsed() >= REOPEN_EVERY)
            {
                self.reopen();
            }
            return;
        }
        let Some(store) = self.store.as_mut() else {
            return;
        };
        match op(store.as_mut()) {
            Ok(()) => {
                if self.store_error.take().is_some() {
                    tracing::info!("the registry store is available again");
                    // What was learned while it failed goes in now.
                    let all: Vec<Stored> = self.nodes.values().cloned().collect();
                    if let Some(store) = self.store.as_mut() {
                        if let Err(e) = store.put(&all) {
                            self.store_failed(e);
                        }
                    }
                }
            }
            Err(e) => self.store_failed(e),
        }
    }

    /// Forgets nodes silent for `expire_intervals` of their interval as
    /// of `now`; returns them, sorted.
    pub fn expire(&mut self, now: u64) -> Vec<String> {
        let intervals = self.expire_intervals;
        let mut gone: Vec<String> = self
            .nodes
            .values()
            .filter(|n| {
                let allowed = n.record.interval.max(1).saturating_mul(intervals);
                now.saturating_sub(n.seen) > allowed
            })
            .map(|n| n.record.identity.clone())
            .collect();
        if gone.is_empty() {
            return gone;
        }
        gone.sort();
        for identity in &gone {
            self.nodes.remove(identity);
        }
        self.counters.expired += gone.len() as u64;
        self.write(|store| store.remove(&gone));
        gone
    }

    /// The identities in `collective` that `filter` selects, sorted.
    pub fn select(&self, filter: &Filter, collective: &str) -> Result<Vec<String>, QueryError> {
        if filter.uses_data() {
            return Err(QueryError::DataPlugins);
        }
        if let Some(error) = &self.store_error {
            return Err(QueryError::StoreUnavailable(error.clone()));
        }
        let mut found: Vec<String> = self
            .nodes
            .values()
            .filter(|n| n.record.collectives.iter().any(|c| c == collective))
            .filter(|n| filter.evaluate(&View(&n.record)).unwrap_or(false))
            .map(|n| n.record.identity.clone())
            .collect();
        found.sort();
        Ok(found)
    }

    /// How many nodes it knows.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether it knows no node.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Registrations taken and refused.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Why the store is unavailable, if it is.
    pub fn store_error(&self) -> Option<&str> {
        self.store_error.as_deref()
    }
}

/// A stored record as the filter language sees a node.
struct View<'a>(&'a Registration);

impl NodeView for View<'_> {
    fn identity(&self) -> &str {
        &self.0.identity
    }

    fn has_class(&self, matches: &dyn Fn(&str) -> bool) -> bool {
        self.0.classes.iter().any(|c| matches(c))
    }

    fn has_agent(&self, matches: &dyn Fn(&str) -> bool) -> bool {
        self.0.agents.iter().any(|a| matches(&a.name))
    }

    fn fact(&self, path: &str) -> Option<Value> {
        muster_protocol::lookup_fact(&self.0.facts, path)
    }
}
