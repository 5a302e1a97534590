//! Broker-wide counters, and what the monitoring pages know of each client.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

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
    /// Subscriptions added to and removed from the index, lookups made,
    /// and what those lookups found (for `/subsz`).
    sub_inserts: AtomicU64,
    sub_removes: AtomicU64,
    matches: AtomicU64,
    fanout_total: AtomicU64,
    max_fanout: AtomicU64,
}

/// What `/subsz` reports about the subscription index.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct IndexStats {
    pub inserts: u64,
    pub removes: u64,
    pub matches: u64,
    pub fanout_total: u64,
    pub max_fanout: u64,
}

impl Counters {
    pub(crate) fn sub_inserted(&self) {
        self.sub_inserts.fetch_add(1, Relaxed);
    }

    pub(crate) fn sub_removed(&self, n: u64) {
        self.sub_removes.fetch_add(n, Relaxed);
    }

    /// One index lookup for a publish, which found `fanout` subscriptions.
    pub(crate) fn matched(&self, fanout: u64) {
        self.matches.fetch_add(1, Relaxed);
        self.fanout_total.fetch_add(fanout, Relaxed);
        self.max_fanout.fetch_max(fanout, Relaxed);
    }

    pub(crate) fn index(&self) -> IndexStats {
        IndexStats {
            inserts: self.sub_inserts.load(Relaxed),
            removes: self.sub_removes.load(Relaxed),
            matches: self.matches.load(Relaxed),
            fanout_total: self.fanout_total.load(Relaxed),
            max_fanout: self.max_fanout.load(Relaxed),
        }
    }

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

/// Nanoseconds since the Unix epoch.
pub(crate) fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Where a client connected from and how, set once when it is admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    pub peer: SocketAddr,
    /// TLS version and cipher suite (nats-server's spelling: `1.3`, the suite's name).
    pub tls: Option<(String, String)>,
    /// Who the certificate says the client is (the admission's name).
    pub user: Option<String>,
}

impl Origin {
    pub(crate) fn plain(peer: SocketAddr) -> Origin {
        Origin {
            peer,
            tls: None,
            user: None,
        }
    }

    pub(crate) fn tls(peer: SocketAddr, conn: &rustls::ServerConnection, user: &str) -> Origin {
        let version = conn.protocol_version().map(|v| match v {
            rustls::ProtocolVersion::TLSv1_2 => "1.2".to_string(),
            rustls::ProtocolVersion::TLSv1_3 => "1.3".to_string(),
            other => format!("{other:?}"),
        });
        let suite = conn
            .negotiated_cipher_suite()
            .map(|s| format!("{:?}", s.suite()));
        Origin {
            peer,
            tls: Some((version.unwrap_or_default(), suite.unwrap_or_default())),
            user: Some(user.to_string()),
        }
    }
}

/// What the client said about itself in CONNECT.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub(crate) struct ClientName {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub lang: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
}

/// Longest name, lang or version kept from a CONNECT: it is shown, not trusted.
const MAX_CLIENT_FIELD: usize = 256;

impl ClientName {
    /// The self-description in a CONNECT object; anything unreadable is left out.
    pub(crate) fn from_connect(json: &[u8]) -> ClientName {
        let mut name: ClientName = serde_json::from_slice(json).unwrap_or_default();
        for s in [&mut name.name, &mut name.lang, &mut name.version]
            .into_iter()
            .flatten()
        {
            if s.len() > MAX_CLIENT_FIELD {
                let mut end = MAX_CLIENT_FIELD;
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                s.truncate(end);
            }
        }
        name
    }
}

/// One client's traffic and description, for `/connz`.
#[derive(Debug)]
pub(crate) struct ClientStats {
    pub start: SystemTime,
    last_activity: AtomicU64,
    in_msgs: AtomicU64,
    in_bytes: AtomicU64,
    out_msgs: AtomicU64,
    out_bytes: AtomicU64,
    pub origin: OnceLock<Origin>,
    pub name: Mutex<ClientName>,
}

impl Default for ClientStats {
    fn default() -> Self {
        let start = SystemTime::now();
        ClientStats {
            start,
            last_activity: AtomicU64::new(unix_nanos(start)),
            in_msgs: AtomicU64::new(0),
            in_bytes: AtomicU64::new(0),
            out_msgs: AtomicU64::new(0),
            out_bytes: AtomicU64::new(0),
            origin: OnceLock::new(),
            name: Mutex::new(ClientName::default()),
        }
    }
}

/// A copy of one client's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Traffic {
    pub last_activity: u64,
    pub in_msgs: u64,
    pub in_bytes: u64,
    pub out_msgs: u64,
    pub out_bytes: u64,
}

impl ClientStats {
    pub(crate) fn touch(&self) {
        self.last_activity
            .store(unix_nanos(SystemTime::now()), Relaxed);
    }

    pub(crate) fn received(&self, bytes: usize) {
        self.in_msgs.fetch_add(1, Relaxed);
        self.in_bytes.fetch_add(bytes as u64, Relaxed);
        self.touch();
    }

    pub(crate) fn delivered(&self, bytes: usize) {
        self.out_msgs.fetch_add(1, Relaxed);
        self.out_bytes.fetch_add(bytes as u64, Relaxed);
    }

    pub(crate) fn traffic(&self) -> Traffic {
        Traffic {
            last_activity: self.last_activity.load(Relaxed),
            in_msgs: self.in_msgs.load(Relaxed),
            in_bytes: self.in_bytes.load(Relaxed),
            out_msgs: self.out_msgs.load(Relaxed),
            out_bytes: self.out_bytes.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_names_from_connect() {
        let named = ClientName::from_connect(
            br#"{"verbose":false,"name":"web1","lang":"python3","version":"2.9.0","jwt":null}"#,
        );
        assert_eq!(named.name.as_deref(), Some("web1"));
        assert_eq!(named.lang.as_deref(), Some("python3"));
        assert_eq!(named.version.as_deref(), Some("2.9.0"));
        // async-nats sends nulls; hostile clients send anything.
        assert_eq!(
            ClientName::from_connect(br#"{"name":null,"lang":"rust"}"#).name,
            None
        );
        assert_eq!(
            ClientName::from_connect(br#"{"name":7}"#),
            ClientName::default()
        );
        assert_eq!(ClientName::from_connect(b"not json"), ClientName::default());
        let long = format!(r#"{{"name":"{}"}}"#, r"\u00e9".repeat(1000));
        let name = ClientName::from_connect(long.as_bytes()).name.unwrap();
        assert!(name.len() <= MAX_CLIENT_FIELD && name.chars().all(|c| c == '\u{e9}'));
    }
}
