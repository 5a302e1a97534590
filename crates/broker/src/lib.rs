//! An embedded broker speaking the NATS client protocol.
//!
//! muster sends all its traffic over the NATS client protocol. On one machine
//! (`mco broker`, a laptop, a fleet simulator) and in every test, this crate is
//! the broker: it accepts clients such as `async-nats` over TCP or TLS, routes
//! PUB and HPUB to matching subscriptions (`*` and `>` wildcards, queue groups,
//! auto-unsubscribe), answers requests nobody listens to with a "no responders"
//! status, and drops slow consumers rather than slowing everyone down.
//!
//! It is not nats-server. Production fleets use a nats-server cluster; this
//! broker has no clustering and no JetStream. It routes bytes and knows
//! nothing about muster's messages.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use futures::StreamExt;
//! use muster_broker::{Broker, BrokerConfig};
//!
//! let broker = Broker::start(BrokerConfig {
//!     listen: "127.0.0.1:0".parse()?,
//!     ..BrokerConfig::default()
//! })
//! .await?;
//!
//! let client = async_nats::connect(broker.url()).await?;
//! let mut sub = client.subscribe("mcollective.node.web1").await?;
//! client.publish("mcollective.node.web1", "ping".into()).await?;
//! let msg = sub.next().await.expect("a message");
//! assert_eq!(&msg.payload[..], b"ping");
//!
//! broker.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! Inside, each connection has a reader task (an incremental parser over its
//! read buffer) and a writer task. Routing appends to the receivers' outbound
//! queues and never waits on another client's socket; writers send whole
//! queues in one write.
//!
//! ## Security
//!
//! With [`BrokerConfig::security`] set, the broker speaks NATS over TLS and
//! requires client certificates. The caller injects both halves of the policy
//! in a [`Security`]: the `rustls` server config (whose client verifier
//! decides which certificate chains are valid) and an `admit` function that
//! maps a verified chain to an [`Admission`]: a name for the logs and the
//! [`Permissions`] (subject allow-lists for publishing and subscribing) of
//! that connection. A connection then goes:
//!
//! 1. past `max_connections` open, `-ERR 'maximum connections exceeded'`;
//! 2. INFO in plain text with `tls_required`, as nats-server does; a client
//!    that answers in plain text gets `-ERR 'Secure Connection - TLS Required'`;
//! 3. the TLS handshake, within `auth_timeout` of the accept; without an
//!    acceptable certificate it fails (rustls sends the client the alert);
//! 4. `admit`; a refusal gets `-ERR 'Authorization Violation'`;
//! 5. CONNECT, before anything but PING, within the same `auth_timeout`
//!    (else `-ERR 'Authentication Timeout'`);
//! 6. the protocol, where a PUB or SUB outside the permissions gets
//!    `-ERR 'Permissions Violation for ...'` and is dropped, the connection
//!    staying open.
//!
//! Each refusal is counted in [`BrokerStats`]. Without `security` (tests, a
//! laptop) clients connect over plain TCP and may do anything; the connection
//! cap and the CONNECT deadline still apply.

mod client;
mod connect;
mod connection;
mod index;
mod monitor;
mod parser;
mod permissions;
mod router;
mod security;
mod stats;

use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::connection::Slot;
pub use crate::monitor::{
    BrokerMonitor, ConnInfo, Connz, ConnzQuery, QueryError, SubDetail, Subsz, SubszQuery, Varz,
};
use crate::parser::ProtoError;
pub use crate::permissions::Permissions;
use crate::router::Router;
pub use crate::security::{Admission, Refusal, Security};
pub use crate::stats::BrokerStats;

/// How the broker listens and what it allows.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Address to listen on; port 0 picks a free one (see [`BrokerHandle::local_addr`]).
    pub listen: SocketAddr,
    /// Largest message (headers and payload) a client may publish; announced in INFO.
    pub max_payload: usize,
    /// Outbound bytes queued for one client before it is dropped as a slow consumer.
    pub max_pending: usize,
    /// Longest control line (a command without its payload) accepted.
    pub max_control_line: usize,
    /// Name announced in INFO.
    pub server_name: String,
    /// TLS and admission; `None` serves plain TCP with no authentication (tests, a laptop).
    pub security: Option<Security>,
    /// Most connections served at once (nats-server's `max_connections`),
    /// counting those still in their TLS handshake; past it a new client gets
    /// `-ERR 'maximum connections exceeded'` and is closed. Default 65 536.
    pub max_connections: usize,
    /// How long a new client has to finish TLS and send CONNECT (nats-server's
    /// authorization timeout, default 2 s). Applies with and without TLS: a
    /// client that has not sent CONNECT by then gets `-ERR 'Authentication
    /// Timeout'` and is closed.
    pub auth_timeout: Duration,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 4222)),
            max_payload: 1024 * 1024,
            max_pending: 64 * 1024 * 1024,
            max_control_line: 4096,
            server_name: "muster".to_string(),
            security: None,
            max_connections: 65_536,
            auth_timeout: Duration::from_secs(2),
        }
    }
}

/// The broker. Start one with [`Broker::start`].
#[derive(Debug)]
pub struct Broker;

impl Broker {
    /// Binds `config.listen` and serves in background tokio tasks. Returns once
    /// the socket is listening.
    pub async fn start(config: BrokerConfig) -> std::io::Result<BrokerHandle> {
        let listener = TcpListener::bind(config.listen).await?;
        let local_addr = listener.local_addr()?;
        let router = Arc::new(Router::new(config, local_addr));
        let (stop, stopped) = watch::channel(false);
        let accept = tokio::spawn(accept_loop(listener, router.clone(), stopped));
        tracing::info!(%local_addr, "broker listening");
        Ok(BrokerHandle {
            router,
            stop,
            accept: Some(accept),
        })
    }
}

/// A running broker. Dropping it stops the broker too; [`shutdown`](Self::shutdown)
/// also waits until every connection is closed.
#[derive(Debug)]
pub struct BrokerHandle {
    router: Arc<Router>,
    stop: watch::Sender<bool>,
    accept: Option<JoinHandle<()>>,
}

impl BrokerHandle {
    /// The address the broker listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.router.local_addr
    }

    /// The URL clients connect to, e.g. `nats://127.0.0.1:4222`.
    pub fn url(&self) -> String {
        format!("nats://{}", self.router.local_addr)
    }

    /// A snapshot of the broker's counters.
    pub fn stats(&self) -> BrokerStats {
        self.router.counters.snapshot()
    }

    /// A view for monitoring pages (`/varz`, `/connz`, `/subsz`, metrics)
    /// that can be handed to another task.
    pub fn monitor(&self) -> BrokerMonitor {
        BrokerMonitor::new(self.router.clone())
    }

    /// Stops accepting, closes every client connection, and returns when done.
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        if let Some(accept) = self.accept.take() {
            let _ = accept.await;
        }
    }
}

impl Drop for BrokerHandle {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// Resolves once the flag is set, or its sender is gone. Returns nothing, so
/// no watch guard lives across an await in a `select!`.
pub(crate) async fn raised(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|set| *set).await;
}

async fn accept_loop(
    listener: TcpListener,
    router: Arc<Router>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    let for_clients = stopped.clone();
    let open = Arc::new(AtomicUsize::new(0));
    let max = router.config.max_connections;
    // Whether the last connection was refused, so a full broker warns once per episode.
    let mut full = false;
    loop {
        tokio::select! {
            biased;
            _ = raised(&mut stopped) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => match Slot::take(&open, max) {
                    Some(slot) => {
                        full = false;
                        connections.spawn(connection::serve(
                            router.clone(),
                            stream,
                            peer,
                            for_clients.clone(),
                            slot,
                        ));
                    }
                    None => {
                        router.counters.max_connections_refused();
                        if !full {
                            tracing::warn!(max_connections = max, "maximum connections reached, refusing new clients");
                            full = true;
                        }
                        tracing::debug!(%peer, "refused: maximum connections exceeded");
                        connections.spawn(connection::refuse(stream, ProtoError::MaxConnections));
                    }
                },
                Err(err) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    tracing::warn!(%err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
    tracing::info!(local_addr = %router.local_addr, "broker stopped");
}
