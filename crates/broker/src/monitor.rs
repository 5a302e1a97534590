//! What the broker shows a monitoring port: nats-server's `/varz`, `/connz`
//! and `/subsz` documents (same field names, so NATS tooling and test
//! suites that read them work unchanged) and Prometheus metrics.
//!
//! Everything here is a snapshot taken when asked; nothing is kept for it
//! beyond the counters the broker keeps anyway. The HTTP side is someone
//! else's (`mco broker --monitor` serves these with `muster-monitor`).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;

use crate::client::{lock, Client};
use crate::router::{Router, ANNOUNCED_VERSION};
use crate::stats::unix_nanos;

/// nats-server's default page size for `/connz` and `/subsz`.
const DEFAULT_LIMIT: usize = 1024;

/// A read-only view of a running broker for monitoring pages; cheap to clone
/// and usable after the broker has stopped (it then reports no clients).
#[derive(Debug, Clone)]
pub struct BrokerMonitor {
    router: Arc<Router>,
}

/// Why a monitoring query was refused (served as `400 Bad Request`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// A parameter that must be a number was not.
    #[error("{name} must be a non-negative integer, not {value:?}")]
    NotANumber {
        /// The parameter.
        name: &'static str,
        /// What was given.
        value: String,
    },
    /// A `sort` this broker does not support.
    #[error("invalid sorting option {0:?} (supported: cid)")]
    Sort(String),
}

/// The `/connz` query parameters nats-server takes that this broker honours.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnzQuery {
    /// Skip this many connections (in client id order).
    pub offset: usize,
    /// Show at most this many (default 1 024).
    pub limit: Option<usize>,
    /// Include each connection's subscribed subjects.
    pub subs: bool,
    /// Only this connection.
    pub cid: Option<u64>,
}

impl ConnzQuery {
    /// Reads `offset`, `limit`, `subs`, `cid` and `sort` from a query string
    /// lookup (`get("offset")` → `Some("10")`).
    pub fn from_params<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<Self, QueryError> {
        if let Some(sort) = get("sort").filter(|s| !s.is_empty() && *s != "cid") {
            return Err(QueryError::Sort(sort.to_string()));
        }
        Ok(ConnzQuery {
            offset: number(&get, "offset")?.unwrap_or(0) as usize,
            limit: number(&get, "limit")?.map(|n| n as usize),
            subs: flag(get("subs")),
            cid: number(&get, "cid")?,
        })
    }
}

/// The `/subsz` query parameters honoured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubszQuery {
    /// Skip this many subscriptions.
    pub offset: usize,
    /// Show at most this many (default 1 024).
    pub limit: Option<usize>,
    /// List the subscriptions themselves, not only the counts.
    pub subs: bool,
}

impl SubszQuery {
    /// Reads `offset`, `limit` and `subs` from a query string lookup.
    pub fn from_params<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<Self, QueryError> {
        Ok(SubszQuery {
            offset: number(&get, "offset")?.unwrap_or(0) as usize,
            limit: number(&get, "limit")?.map(|n| n as usize),
            subs: flag(get("subs")),
        })
    }
}

fn number<'a>(
    get: &impl Fn(&str) -> Option<&'a str>,
    name: &'static str,
) -> Result<Option<u64>, QueryError> {
    match get(name) {
        None | Some("") => Ok(None),
        Some(value) => value.parse().map(Some).map_err(|_| QueryError::NotANumber {
            name,
            value: value.to_string(),
        }),
    }
}

/// nats-server treats `subs=1`, `subs=true` and `subs=detail` as yes.
fn flag(value: Option<&str>) -> bool {
    matches!(value, Some("1" | "true" | "detail"))
}

/// `/varz`: the server and its totals, in nats-server's field names.
#[derive(Debug, Clone, Serialize)]
#[allow(missing_docs)] // the fields are nats-server's, documented there
pub struct Varz {
    pub server_id: String,
    pub server_name: String,
    pub version: String,
    pub proto: u32,
    pub go: String,
    pub host: String,
    pub port: u16,
    pub auth_required: bool,
    pub tls_required: bool,
    pub tls_verify: bool,
    pub max_connections: usize,
    /// Nanoseconds, as Go encodes a duration.
    pub ping_interval: u64,
    pub ping_max: u32,
    /// Seconds.
    pub auth_timeout: f64,
    pub max_control_line: usize,
    pub max_payload: usize,
    pub max_pending: usize,
    pub start: String,
    pub now: String,
    pub uptime: String,
    pub mem: u64,
    pub cores: usize,
    pub connections: u64,
    pub total_connections: u64,
    pub routes: u64,
    pub remotes: u64,
    pub leafnodes: u64,
    pub in_msgs: u64,
    pub out_msgs: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
    pub slow_consumers: u64,
    pub subscriptions: u64,
}

/// `/connz`: one page of the connections open now.
#[derive(Debug, Clone, Serialize)]
#[allow(missing_docs)] // the fields are nats-server's, documented there
pub struct Connz {
    pub server_id: String,
    pub now: String,
    pub num_connections: usize,
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
    pub connections: Vec<ConnInfo>,
}

/// One connection in `/connz`.
#[derive(Debug, Clone, Serialize)]
#[allow(missing_docs)] // the fields are nats-server's, documented there
pub struct ConnInfo {
    pub cid: u64,
    pub kind: &'static str,
    #[serde(rename = "type")]
    pub kind_type: &'static str,
    pub ip: String,
    pub port: u16,
    pub start: String,
    pub last_activity: String,
    pub uptime: String,
    pub idle: String,
    pub pending_bytes: usize,
    pub in_msgs: u64,
    pub out_msgs: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
    pub subscriptions: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cipher_suite: Option<String>,
    /// The client certificate's name, as admitted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorized_user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscriptions_list: Option<Vec<String>>,
}

/// `/subsz`: the subscription index.
#[derive(Debug, Clone, Serialize)]
#[allow(missing_docs)] // the fields are nats-server's, documented there
pub struct Subsz {
    pub server_id: String,
    pub now: String,
    pub num_subscriptions: u64,
    /// This broker keeps no match cache: always 0.
    pub num_cache: u64,
    pub num_inserts: u64,
    pub num_removes: u64,
    pub num_matches: u64,
    pub cache_hit_rate: f64,
    pub max_fanout: u64,
    pub avg_fanout: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscriptions_list: Option<Vec<SubDetail>>,
}

/// One subscription in `/subsz?subs=1`.
#[derive(Debug, Clone, Serialize)]
#[allow(missing_docs)] // the fields are nats-server's, documented there
pub struct SubDetail {
    pub subject: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qgroup: Option<String>,
    pub sid: String,
    pub cid: u64,
}

impl BrokerMonitor {
    pub(crate) fn new(router: Arc<Router>) -> Self {
        BrokerMonitor { router }
    }

    /// The `/varz` document now.
    pub fn varz(&self) -> Varz {
        let r = &self.router;
        let stats = r.counters.snapshot();
        let now = SystemTime::now();
        Varz {
            server_id: r.server_id().to_string(),
            server_name: r.config.server_name.clone(),
            version: ANNOUNCED_VERSION.to_string(),
            proto: 1,
            go: "muster-broker".to_string(),
            host: r.local_addr.ip().to_string(),
            port: r.local_addr.port(),
            auth_required: false,
            tls_required: r.config.security.is_some(),
            tls_verify: r.config.security.is_some(),
            max_connections: r.config.max_connections,
            ping_interval: crate::connection::PING_INTERVAL.as_nanos() as u64,
            ping_max: crate::connection::MAX_PINGS_OUT,
            auth_timeout: r.config.auth_timeout.as_secs_f64(),
            max_control_line: r.config.max_control_line,
            max_payload: r.config.max_payload,
            max_pending: r.config.max_pending,
            start: rfc3339(unix_nanos(r.started)),
            now: rfc3339(unix_nanos(now)),
            uptime: go_duration(now.duration_since(r.started).unwrap_or_default()),
            mem: resident_bytes(),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            connections: stats.connections,
            total_connections: stats.total_connections,
            routes: 0,
            remotes: 0,
            leafnodes: 0,
            in_msgs: stats.msgs_in,
            out_msgs: stats.msgs_out,
            in_bytes: stats.bytes_in,
            out_bytes: stats.bytes_out,
            slow_consumers: stats.slow_consumers,
            subscriptions: r.subscription_count(),
        }
    }

    /// The `/connz` document now, for `query`.
    pub fn connz(&self, query: &ConnzQuery) -> Connz {
        let now = SystemTime::now();
        let now_nanos = unix_nanos(now);
        let mut clients = self.router.clients();
        if let Some(cid) = query.cid {
            clients.retain(|c| c.id == cid);
        }
        let total = clients.len();
        let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
        let connections: Vec<ConnInfo> = clients
            .iter()
            .skip(query.offset)
            .take(limit)
            .map(|c| conn_info(c, now, now_nanos, query.subs))
            .collect();
        Connz {
            server_id: self.router.server_id().to_string(),
            now: rfc3339(now_nanos),
            num_connections: connections.len(),
            total,
            offset: query.offset,
            limit,
            connections,
        }
    }

    /// The `/subsz` document now, for `query`.
    pub fn subsz(&self, query: &SubszQuery) -> Subsz {
        let index = self.router.counters.index();
        let mut subsz = Subsz {
            server_id: self.router.server_id().to_string(),
            now: rfc3339(unix_nanos(SystemTime::now())),
            num_subscriptions: self.router.subscription_count(),
            num_cache: 0,
            num_inserts: index.inserts,
            num_removes: index.removes,
            num_matches: index.matches,
            cache_hit_rate: 0.0,
            max_fanout: index.max_fanout,
            avg_fanout: if index.matches == 0 {
                0.0
            } else {
                index.fanout_total as f64 / index.matches as f64
            },
            total: None,
            offset: None,
            limit: None,
            subscriptions_list: None,
        };
        if query.subs {
            let mut all: Vec<SubDetail> = Vec::new();
            for client in self.router.clients() {
                let subs = lock(&client.subs);
                let mut mine: Vec<_> = subs.values().collect();
                mine.sort_by_key(|s| s.id);
                all.extend(mine.into_iter().map(|s| {
                    SubDetail {
                        subject: String::from_utf8_lossy(&s.subject).into_owned(),
                        qgroup: s
                            .queue
                            .as_ref()
                            .map(|q| String::from_utf8_lossy(q).into_owned()),
                        sid: String::from_utf8_lossy(&s.sid).into_owned(),
                        cid: client.id,
                    }
                }));
            }
            let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
            subsz.total = Some(all.len());
            subsz.offset = Some(query.offset);
            subsz.limit = Some(limit);
            subsz.subscriptions_list =
                Some(all.into_iter().skip(query.offset).take(limit).collect());
        }
        subsz
    }

    /// The broker's counters as a Prometheus registry (`muster_broker_*`).
    pub fn metrics(&self) -> Registry {
        let stats = self.router.counters.snapshot();
        let mut registry = Registry::with_prefix("muster_broker");
        let gauge = |registry: &mut Registry, name: &str, help: &str, value: u64| {
            let g = Gauge::<i64>::default();
            g.set(value as i64);
            registry.register(name, help, g);
        };
        let counter = |registry: &mut Registry, name: &str, help: &str, value: u64| {
            let c = Counter::<u64>::default();
            c.inc_by(value);
            registry.register(name, help, c);
        };
        gauge(
            &mut registry,
            "connections",
            "Clients connected now",
            stats.connections,
        );
        counter(
            &mut registry,
            "connections_accepted",
            "Clients admitted since start",
            stats.total_connections,
        );
        gauge(
            &mut registry,
            "subscriptions",
            "Subscriptions now",
            self.router.subscription_count(),
        );
        counter(
            &mut registry,
            "messages_in",
            "Messages published by clients",
            stats.msgs_in,
        );
        counter(
            &mut registry,
            "messages_out",
            "Messages delivered to subscriptions",
            stats.msgs_out,
        );
        counter(
            &mut registry,
            "bytes_in",
            "Message bytes published by clients",
            stats.bytes_in,
        );
        counter(
            &mut registry,
            "bytes_out",
            "Message bytes delivered to subscriptions",
            stats.bytes_out,
        );
        counter(
            &mut registry,
            "slow_consumers",
            "Clients dropped for falling behind",
            stats.slow_consumers,
        );
        let refusals = Family::<Vec<(String, String)>, Counter>::default();
        for (reason, value) in [
            ("tls_required", stats.tls_required_refused),
            ("tls_handshake_failed", stats.tls_handshake_failed),
            ("authorization", stats.authorization_refused),
            ("auth_timeout", stats.auth_timeouts),
            ("max_connections", stats.max_connections_refused),
            ("permission_violation", stats.permission_violations),
            ("protocol_error", stats.protocol_errors),
        ] {
            refusals
                .get_or_create(&vec![("reason".to_string(), reason.to_string())])
                .inc_by(value);
        }
        registry.register(
            "refusals",
            "Connections and operations refused, by reason",
            refusals,
        );
        registry
    }
}

fn conn_info(c: &Client, now: SystemTime, now_nanos: u64, subs: bool) -> ConnInfo {
    let traffic = c.stats.traffic();
    let origin = c.stats.origin.get();
    let name = lock(&c.stats.name).clone();
    let subscriptions_list = subs.then(|| {
        let subs = lock(&c.subs);
        let mut list: Vec<_> = subs.values().collect();
        list.sort_by_key(|s| s.id);
        list.iter()
            .map(|s| String::from_utf8_lossy(&s.subject).into_owned())
            .collect()
    });
    let idle = Duration::from_nanos(now_nanos.saturating_sub(traffic.last_activity));
    ConnInfo {
        cid: c.id,
        kind: "Client",
        kind_type: "nats",
        ip: origin.map(|o| o.peer.ip().to_string()).unwrap_or_default(),
        port: origin.map_or(0, |o| o.peer.port()),
        start: rfc3339(unix_nanos(c.stats.start)),
        last_activity: rfc3339(traffic.last_activity),
        uptime: go_duration(now.duration_since(c.stats.start).unwrap_or_default()),
        idle: go_duration(idle),
        pending_bytes: c.pending(),
        in_msgs: traffic.in_msgs,
        out_msgs: traffic.out_msgs,
        in_bytes: traffic.in_bytes,
        out_bytes: traffic.out_bytes,
        subscriptions: lock(&c.subs).len(),
        name: name.name.filter(|s| !s.is_empty()),
        lang: name.lang.filter(|s| !s.is_empty()),
        version: name.version.filter(|s| !s.is_empty()),
        tls_version: origin.and_then(|o| o.tls.as_ref()).map(|t| t.0.clone()),
        tls_cipher_suite: origin.and_then(|o| o.tls.as_ref()).map(|t| t.1.clone()),
        authorized_user: origin.and_then(|o| o.user.clone()),
        subscriptions_list,
    }
}

/// Resident memory of this process in bytes (0 where /proc is not there).
fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// A duration as nats-server prints uptimes: `1d2h3m4s`, `5m0s`, `7s`.
pub(crate) fn go_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (days, hours, mins, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if days > 0 {
        format!("{days}d{hours}h{mins}m{s}s")
    } else if hours > 0 {
        format!("{hours}h{mins}m{s}s")
    } else if mins > 0 {
        format!("{mins}m{s}s")
    } else {
        format!("{s}s")
    }
}

/// RFC 3339 in UTC with nanoseconds, as Go marshals a `time.Time`.
pub(crate) fn rfc3339(unix_nanos: u64) -> String {
    let secs = unix_nanos / 1_000_000_000;
    let nanos = unix_nanos % 1_000_000_000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_as_go_prints_them() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            rfc3339(1_709_251_199_123_456_789),
            "2024-02-29T23:59:59.123456789Z"
        );
        assert_eq!(
            rfc3339(951_782_400_000_000_000),
            "2000-02-29T00:00:00.000000000Z"
        );
        assert_eq!(go_duration(Duration::from_secs(7)), "7s");
        assert_eq!(go_duration(Duration::from_secs(300)), "5m0s");
        assert_eq!(
            go_duration(Duration::from_secs(3 * 86_400 + 3661)),
            "3d1h1m1s"
        );
    }

    #[test]
    fn queries() {
        let params = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| *v)
        };
        let q = ConnzQuery::from_params(params(&[("offset", "2"), ("limit", "5"), ("subs", "1")]))
            .unwrap();
        assert_eq!(
            q,
            ConnzQuery {
                offset: 2,
                limit: Some(5),
                subs: true,
                cid: None
            }
        );
        assert!(matches!(
            ConnzQuery::from_params(params(&[("limit", "-1")])),
            Err(QueryError::NotANumber { name: "limit", .. })
        ));
        assert!(matches!(
            ConnzQuery::from_params(params(&[("sort", "bogus")])),
            Err(QueryError::Sort(_))
        ));
        assert!(
            !SubszQuery::from_params(params(&[("subs", "0")]))
                .unwrap()
                .subs
        );
    }
}
