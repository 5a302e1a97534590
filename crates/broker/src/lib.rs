//! An embedded broker speaking the NATS client protocol.
//!
//! muster sends all its traffic over the NATS client protocol. On one machine
//! (`mco broker`, a laptop, a fleet simulator) and in every test, this crate is
//! the broker: it accepts plain TCP clients such as `async-nats`, routes PUB and
//! HPUB to matching subscriptions (`*` and `>` wildcards, queue groups,
//! auto-unsubscribe), answers requests nobody listens to with a "no responders"
//! status, and drops slow consumers rather than slowing everyone down.
//!
//! It is not nats-server. Production fleets use a nats-server cluster; this
//! broker has no clustering, no JetStream, no TLS and no authentication (yet).
//! It routes bytes and knows nothing about muster's messages.
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

mod client;
mod connection;
mod index;
mod json;
mod parser;
mod router;
mod stats;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::router::Router;
pub use crate::stats::BrokerStats;

/// How the broker listens and what it allows.
#[derive(Debug, Clone, PartialEq, Eq)]
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
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 4222)),
            max_payload: 1024 * 1024,
            max_pending: 64 * 1024 * 1024,
            max_control_line: 4096,
            server_name: "muster".to_string(),
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
    loop {
        tokio::select! {
            biased;
            _ = raised(&mut stopped) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(connection::serve(router.clone(), stream, peer, for_clients.clone()));
                }
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
