//! Broker-wide counters.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A snapshot of the broker's counters, from [`BrokerHandle::stats`](crate::BrokerHandle::stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BrokerStats {
    /// Clients connected now.
    pub connections: u64,
    /// Clients accepted since start.
    pub total_connections: u64,
    /// Messages published by clients (PUB and HPUB).
    pub msgs_in: u64,
    /// Messages delivered to subscriptions (one per receiving subscription).
    pub msgs_out: u64,
    /// Message bytes (headers and payload) published.
    pub bytes_in: u64,
    /// Message bytes (headers and payload) delivered.
    pub bytes_out: u64,
    /// Clients dropped because their outbound queue exceeded `max_pending`.
    pub slow_consumers: u64,
    /// Protocol violations seen (each answered with `-ERR`).
    pub protocol_errors: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    connections: AtomicU64,
    total_connections: AtomicU64,
    msgs_in: AtomicU64,
    msgs_out: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    slow_consumers: AtomicU64,
    protocol_errors: AtomicU64,
}

impl Counters {
    pub(crate) fn connected(&self) {
        self.connections.fetch_add(1, Relaxed);
        self.total_connections.fetch_add(1, Relaxed);
    }

    pub(crate) fn disconnected(&self) {
        self.connections.fetch_sub(1, Relaxed);
    }

    pub(crate) fn received(&self, bytes: usize) {
        self.msgs_in.fetch_add(1, Relaxed);
        self.bytes_in.fetch_add(bytes as u64, Relaxed);
    }

    pub(crate) fn delivered(&self, msgs: u64, bytes: u64) {
        self.msgs_out.fetch_add(msgs, Relaxed);
        self.bytes_out.fetch_add(bytes, Relaxed);
    }

    pub(crate) fn slow_consumer(&self) {
        self.slow_consumers.fetch_add(1, Relaxed);
    }

    pub(crate) fn protocol_error(&self) {
        self.protocol_errors.fetch_add(1, Relaxed);
    }

    pub(crate) fn snapshot(&self) -> BrokerStats {
        BrokerStats {
            connections: self.connections.load(Relaxed),
            total_connections: self.total_connections.load(Relaxed),
            msgs_in: self.msgs_in.load(Relaxed),
            msgs_out: self.msgs_out.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            slow_consumers: self.slow_consumers.load(Relaxed),
            protocol_errors: self.protocol_errors.load(Relaxed),
        }
    }
}
