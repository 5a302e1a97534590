//! muster's connection to the broker.
//!
//! All muster traffic goes through the `async-nats` client, so the same
//! code talks to the embedded `mco broker` and to a nats-server cluster.
//! This crate holds the few decisions about *how* to connect: daemons
//! retry forever and say so in the log, clients give up after a timeout
//! and name the URLs they tried.
//!
//! ```no_run
//! # async fn run() -> Result<(), muster_connector::ConnectError> {
//! use std::time::Duration;
//! let servers = vec!["nats://127.0.0.1:4222".to_string()];
//! let client = muster_connector::connect_client(&servers, "mco ping", Duration::from_secs(2)).await?;
//! # Ok(()) }
//! ```

use std::str::FromStr;
use std::time::Duration;

use async_nats::{Client, ConnectOptions, Event, ServerAddr};

/// The broker URL used when a config names none.
pub const DEFAULT_SERVER: &str = "nats://127.0.0.1:4222";

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("invalid broker URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("no broker URL configured")]
    NoServers,
    #[error("cannot reach the broker at {urls} within {timeout:?}: {reason}")]
    Unreachable {
        urls: String,
        timeout: Duration,
        reason: String,
    },
}

/// Parses `nats://host:port` URLs (a bare `host:port` is accepted too).
pub fn parse_servers(urls: &[String]) -> Result<Vec<ServerAddr>, ConnectError> {
    if urls.is_empty() {
        return Err(ConnectError::NoServers);
    }
    urls.iter()
        .map(|url| {
            ServerAddr::from_str(url.trim()).map_err(|e| ConnectError::Url {
                url: url.clone(),
                reason: e.to_string(),
            })
        })
        .collect()
}

fn options(name: &str) -> ConnectOptions {
    let name = name.to_string();
    let for_events = name.clone();
    ConnectOptions::new()
        .name(name)
        // Replies to a broadcast can outnumber the default buffer on big fleets.
        .subscription_capacity(1 << 18)
        .event_callback(move |event| {
            let name = for_events.clone();
            async move {
                match event {
                    Event::Connected => tracing::info!(client = %name, "connected to the broker"),
                    Event::Disconnected => {
                        tracing::warn!(client = %name, "lost the broker; reconnecting")
                    }
                    Event::SlowConsumer(sid) => {
                        tracing::warn!(client = %name, sid, "subscription is falling behind; messages dropped")
                    }
                    other => tracing::debug!(client = %name, event = %other, "broker event"),
                }
            }
        })
}

/// Connects a long-running daemon: it keeps retrying until the broker is
/// there, and reconnects for ever when it goes away. Returns at once.
pub async fn connect_daemon(urls: &[String], name: &str) -> Result<Client, ConnectError> {
    let servers = parse_servers(urls)?;
    tracing::info!(servers = %urls.join(","), "connecting to the broker (retrying until it answers)");
    options(name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connect(servers)
        .await
        .map_err(|e| ConnectError::Unreachable {
            urls: urls.join(","),
            timeout: Duration::ZERO,
            reason: e.to_string(),
        })
}

/// Connects a short-lived client, failing after `timeout`.
pub async fn connect_client(
    urls: &[String],
    name: &str,
    timeout: Duration,
) -> Result<Client, ConnectError> {
    let servers = parse_servers(urls)?;
    let unreachable = |reason: String| ConnectError::Unreachable {
        urls: urls.join(","),
        timeout,
        reason,
    };
    let connect = options(name).connection_timeout(timeout).connect(servers);
    match tokio::time::timeout(timeout, connect).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(e)) => Err(unreachable(e.to_string())),
        Err(_) => Err(unreachable("timed out".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        assert!(matches!(parse_servers(&[]), Err(ConnectError::NoServers)));
        assert!(parse_servers(&["nats://127.0.0.1:4222".into(), "127.0.0.1:4223".into()]).is_ok());
        let err = parse_servers(&["http://[::1".into()]).unwrap_err();
        assert!(err.to_string().contains("http://[::1"), "{err}");
    }

    #[tokio::test]
    async fn an_unreachable_broker_is_named_in_the_error() {
        // Bind then drop a listener to get a port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("nats://127.0.0.1:{port}");
        let err = connect_client(
            std::slice::from_ref(&url),
            "test",
            Duration::from_millis(500),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains(&url), "{err}");
    }
}
