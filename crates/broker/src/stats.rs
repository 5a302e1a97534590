//! Broker-wide counters.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A snapshot of the broker's counters, from [`BrokerHandle::stats`](crate::BrokerHandle::stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BrokerStats {
    /// Clients connected now (with security: past TLS and admission).
    pub connections: u64,
    /// Clients served since start (with security: past TLS and admission;
    /// refused connections are counted below instead).
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
    /// Connections to a TLS broker whose first bytes were not a TLS
    /// handshake (answered with `-ERR 'Secure Connection - TLS Required'`).
    pub tls_required_refused: u64,
    /// TLS handshakes that failed: no client certificate, one the verifier
    /// rejects (unknown CA, expired, revoked), or bytes that are not TLS.
    pub tls_handshake_failed: u64,
    /// Connections refused with `-ERR 'Authorization Violation'`: the admission
    /// function said no, or the client sent something other than CONNECT or
    /// PING before its CONNECT.
    pub authorization_refused: u64,
    /// Connections closed because they had not finished TLS and sent CONNECT
    /// within `auth_timeout` (answered with `-ERR 'Authentication Timeout'`
    /// where the connection can still carry it).
    pub auth_timeouts: u64,
    /// Connections refused because `max_connections` were open
    /// (answered with `-ERR 'maximum connections exceeded'`).
    pub max_connections_refused: u64,
    /// PUB, HPUB and SUB refused by a client's permissions (each answered with
    /// `-ERR 'Permissions Violation ...'`; the connection stays open).
    pub permission_violations: u64,
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
    tls_required_refused: AtomicU64,
    tls_handshake_failed: AtomicU64,
    authorization_refused: AtomicU64,
    auth_timeouts: AtomicU64,
    max_connections_refused: AtomicU64,
    permission_violations: AtomicU64,
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

    pub(crate) fn tls_required_refused(&self) {
        self.tls_required_refused.fetch_add(1, Relaxed);
    }

    pub(crate) fn tls_handshake_failed(&self) {
        self.tls_handshake_failed.fetch_add(1, Relaxed);
    }

    pub(crate) fn authorization_refused(&self) {
        self.authorization_refused.fetch_add(1, Relaxed);
    }

    pub(crate) fn auth_timeout(&self) {
        self.auth_timeouts.fetch_add(1, Relaxed);
    }

    pub(crate) fn max_connections_refused(&self) {
        self.max_connections_refused.fetch_add(1, Relaxed);
    }

    pub(crate) fn permission_violation(&self) {
        self.permission_violations.fetch_add(1, Relaxed);
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
            tls_required_refused: self.tls_required_refused.load(Relaxed),
            tls_handshake_failed: self.tls_handshake_failed.load(Relaxed),
            authorization_refused: self.authorization_refused.load(Relaxed),
            auth_timeouts: self.auth_timeouts.load(Relaxed),
            max_connections_refused: self.max_connections_refused.load(Relaxed),
            permission_violations: self.permission_violations.load(Relaxed),
        }
    }
}
