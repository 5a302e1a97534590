//! Serving nodes over the broker.

use std::sync::Arc;

use async_nats::Client;
use futures::StreamExt;
use tokio::task::JoinHandle;

use crate::node::Outcome;
use crate::{Node, ServerConfig};
use muster_pki::Credential;
use muster_protocol::SignedReply;

/// Why a daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{0}")]
    Node(String),
    #[error(transparent)]
    Pki(#[from] muster_pki::PkiError),
    #[error(transparent)]
    Connect(#[from] muster_connector::ConnectError),
    #[error("cannot subscribe to {subject}: {reason}")]
    Subscribe { subject: String, reason: String },
}

/// Subscribes `node` to its subjects on `client` and answers requests in
/// a background task until the connection closes. Returns once the
/// subscriptions are sent; flush the client to know the broker has them.
/// Every reply is signed with `signer`, the node's certificate (a fleet
/// simulator's, for its nodes).
pub async fn serve(
    node: Arc<Node>,
    client: Client,
    signer: Arc<Credential>,
) -> Result<JoinHandle<()>, DaemonError> {
    let mut subscriptions = Vec::new();
    for subject in node.subjects() {
        let subscription =
            client
                .subscribe(subject.clone())
                .await
                .map_err(|e| DaemonError::Subscribe {
                    subject,
                    reason: e.to_string(),
                })?;
        subscriptions.push(subscription);
    }
    let mut messages = futures::stream::select_all(subscriptions);
    let in_flight = Arc::new(tokio::sync::Semaphore::new(node.max_in_flight()));
    Ok(tokio::spawn(async move {
        while let Some(message) = messages.next().await {
            // The cheap checks here, one message at a time: a flood of
            // garbage or forgeries never becomes a pile of tasks.
            let Ok(admitted) = node.admit_on(Some(&message.subject), &message.payload) else {
                continue;
            };
            match in_flight.clone().try_acquire_owned() {
                Ok(permit) => {
                    let node = node.clone();
                    let client = client.clone();
                    let signer = signer.clone();
                    tokio::spawn(async move {
                        let outcome = node.run(admitted).await;
                        drop(permit);
                        publish(&client, &signer, outcome).await;
                    });
                }
                Err(_) => {
                    let why = format!(
                        "{} requests in flight (max_in_flight)",
                        node.max_in_flight()
                    );
                    publish(&client, &signer, node.busy(&admitted, &why)).await;
                }
            }
        }
    }))
}

async fn publish(client: &Client, signer: &Credential, outcome: Outcome) {
    if let Outcome::Reply { subject, reply } = outcome {
        let bytes = match SignedReply::seal(&reply, signer) {
            Ok(signed) => signed.to_bytes(),
            Err(e) => {
                tracing::error!(error = %e, "cannot sign a reply; not sent");
                return;
            }
        };
        if let Err(e) = client.publish(subject, bytes.into()).await {
            tracing::warn!(error = %e, "could not send a reply");
        }
    }
}

/// Runs `mco server` until `shutdown` completes.
pub async fn run(
    config: ServerConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), DaemonError> {
    let identity = config.security.load()?;
    let transport = muster_connector::Transport {
        tls: Some(identity.client_tls()?),
        auth: config.nats_auth.clone(),
    };
    let node = Arc::new(
        Node::from_config(&config, identity.authority.clone()).map_err(DaemonError::Node)?,
    );
    let client = muster_connector::connect_daemon(
        &config.servers,
        &format!("mco server {}", config.identity),
        &transport,
    )
    .await?;
    crate::stats::metrics().watch_broker(client.clone());
    let task = serve(
        node.clone(),
        client.clone(),
        Arc::new(identity.credential.clone()),
    )
    .await?;
    tracing::info!(
        identity = %config.identity,
        certname = %identity.credential.name(),
        collectives = ?config.collectives,
        agents = ?node.agent_names(),
        "serving"
    );
    shutdown.await;
    tracing::info!("shutting down");
    task.abort();
    let _ = client.flush().await;
    Ok(())
}
