//! Serving nodes over the broker.
//!
//! [`run`] is `mco server`: a receive loop that admits one message at a
//! time (the cheap checks) and runs each admitted request as a task it
//! keeps track of, at most `max_in_flight` at once. Told to stop, it
//! unsubscribes, gives running requests `soft_shutdown_timeout` to finish,
//! then stops the programs they still run (SIGTERM, SIGKILL
//! [`STOP_WAIT`](crate::agents) later); their replies still go out, then it
//! returns. Told to reload, it re-reads server.cfg and swaps in a fresh
//! [`Node`] between two messages; requests already running finish on the
//! node they started on.

use std::sync::Arc;
use std::time::Duration;

use async_nats::Client;
use futures::StreamExt;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::{JoinHandle, JoinSet};

use crate::agents::{stoppable, StopSignal};
use crate::node::Outcome;
use crate::{Node, ServerConfig};
use muster_pki::Credential;
use muster_protocol::SignedReply;

/// Why a reload kept the running settings.
#[derive(Debug, thiserror::Error)]
enum ReloadError {
    #[error(transparent)]
    Config(#[from] muster_protocol::config::ConfigErrors),
    #[error(transparent)]
    Node(#[from] crate::node::NodeError),
}

/// Why a daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The node could not be built from its config (facts, agents, audit log).
    #[error(transparent)]
    Node(#[from] crate::node::NodeError),
    /// Its certificate, key or CA could not be loaded.
    #[error(transparent)]
    Pki(#[from] muster_pki::PkiError),
    /// The broker settings are unusable.
    #[error(transparent)]
    Connect(#[from] muster_connector::ConnectError),
    /// The broker refused a subscription.
    #[error("cannot subscribe to {subject}: {reason}")]
    Subscribe {
        /// The subject.
        subject: String,
        /// Why.
        reason: String,
    },
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
    let mut messages = subscribe(&node, &client).await?;
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

/// Every subject `node` listens on, as one stream.
async fn subscribe(
    node: &Node,
    client: &Client,
) -> Result<futures::stream::SelectAll<async_nats::Subscriber>, DaemonError> {
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
    Ok(futures::stream::select_all(subscriptions))
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

/// What the process asks of a running daemon: its signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// SIGTERM or SIGINT: take no new requests, let running ones finish
    /// (within `soft_shutdown_timeout`), then return.
    Stop,
    /// SIGHUP: re-read server.cfg and apply what can be applied live.
    Reload,
}

/// How long replies still queued get to reach the broker on shutdown.
const FLUSH_WAIT: Duration = Duration::from_secs(5);

/// How long requests whose programs were told to stop get before their
/// tasks are abandoned: the programs' SIGKILL comes at `STOP_WAIT` (5 s).
const STOPPED_WAIT: Duration = Duration::from_secs(15);

/// Runs `mco server` until `control` says [`Control::Stop`] (or closes).
/// After a successful reload, `reloaded` gets the new settings to apply
/// what the daemon does not own (its logging).
pub async fn run(
    config: ServerConfig,
    mut control: UnboundedReceiver<Control>,
    mut reloaded: impl FnMut(&ServerConfig) + Send,
) -> Result<(), DaemonError> {
    let identity = config.security.load()?;
    let transport = muster_connector::Transport {
        tls: Some(identity.client_tls()?),
        auth: config.nats_auth.clone(),
    };
    let authority = identity.authority.clone();
    let mut node =
        Arc::new(Node::from_config(&config, authority.clone()).map_err(DaemonError::Node)?);
    let name = format!("mco server {}", config.identity);
    let connect = muster_connector::connect_daemon(&config.servers, &name, &transport);
    let client = tokio::select! {
        client = connect => client?,
        () = stopped(&mut control) => {
            tracing::info!("shutting down before the broker answered");
            return Ok(());
        }
    };
    crate::stats::metrics().watch_broker(client.clone());
    let signer = Arc::new(identity.credential.clone());
    let mut messages = subscribe(&node, &client).await?;
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    tracing::info!("serving: {}", config.summary(&node.agent_names()));
    let registration = crate::registration::settings(&config);
    let start_registering = |node: &Arc<Node>, splay: bool| {
        registration.map(|(interval, config_splay)| {
            let task = crate::registration::spawn(
                node.clone(),
                client.clone(),
                signer.clone(),
                interval,
                splay && config_splay,
            );
            AbortOnDrop(task)
        })
    };
    let mut registering = start_registering(&node, true);
    let stop = StopSignal::new();
    let mut soft_shutdown_timeout = config.soft_shutdown_timeout;
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            message = messages.next() => {
                let Some(message) = message else {
                    tracing::warn!("the broker connection closed");
                    break;
                };
                // The cheap checks here, one message at a time: a flood of
                // garbage or forgeries never becomes a pile of tasks.
                let Ok(admitted) = node.admit_on(Some(&message.subject), &message.payload) else {
                    continue;
                };
                while let Some(ended) = tasks.try_join_next() {
                    log_panic(ended);
                }
                if tasks.len() >= node.max_in_flight() {
                    let why = format!("{} requests in flight (max_in_flight)", node.max_in_flight());
                    publish(&client, &signer, node.busy(&admitted, &why)).await;
                    continue;
                }
                let (node, client, signer, stop) = (node.clone(), client.clone(), signer.clone(), stop.clone());
                tasks.spawn(async move {
                    let (mut outcome, stopped) = stoppable(&stop, node.run(admitted)).await;
                    if let (true, Outcome::Reply { reply, .. }) = (stopped, &mut outcome) {
                        reply.statusmsg = format!("{} (stopped: mco server was shutting down)", reply.statusmsg);
                    }
                    publish(&client, &signer, outcome).await;
                });
            }
            Some(ended) = tasks.join_next(), if !tasks.is_empty() => log_panic(ended),
            order = control.recv() => match order {
                Some(Control::Reload) => {
                    if let Some(fresh) = reload(&config, &authority).await {
                        node = Arc::new(fresh.0.succeeding(&node));
                        registering = start_registering(&node, false);
                        soft_shutdown_timeout = fresh.1.soft_shutdown_timeout;
                        reloaded(&fresh.1);
                    }
                }
                Some(Control::Stop) | None => break,
            },
        }
    }
    // Unsubscribes: nothing new is taken from here on.
    drop(messages);
    drop(registering);
    tracing::info!(
        running = tasks.len(),
        "shutting down: no new requests; running ones get {} s (soft_shutdown_timeout)",
        soft_shutdown_timeout.as_secs()
    );
    if !drain(&mut tasks, soft_shutdown_timeout, &mut control).await {
        tracing::warn!(
            running = tasks.len(),
            "requests still running after soft_shutdown_timeout: stopping their programs"
        );
        stop.fire();
        if !drain(&mut tasks, STOPPED_WAIT, &mut control).await {
            tracing::warn!(
                running = tasks.len(),
                "requests that did not end are abandoned"
            );
            tasks.abort_all();
        }
    }
    if client.connection_state() == async_nats::connection::State::Connected {
        match tokio::time::timeout(FLUSH_WAIT, client.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "could not flush the last replies"),
            Err(_) => tracing::warn!(
                "the last replies did not reach the broker within {} s",
                FLUSH_WAIT.as_secs()
            ),
        }
    } else {
        tracing::warn!("the broker is gone: replies not yet sent are lost");
    }
    tracing::info!("stopped");
    Ok(())
}

/// A task stopped when its handle goes (the registration publisher).
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Waits for every task, at most `wait`; a second stop stops waiting.
/// True when none is left.
async fn drain(
    tasks: &mut JoinSet<()>,
    wait: Duration,
    control: &mut UnboundedReceiver<Control>,
) -> bool {
    let deadline = tokio::time::sleep(wait);
    tokio::pin!(deadline);
    let mut closed = false;
    while !tasks.is_empty() {
        tokio::select! {
            Some(ended) = tasks.join_next() => log_panic(ended),
            () = &mut deadline => return false,
            order = control.recv(), if !closed => match order {
                Some(Control::Stop) => {
                    tracing::warn!("told to stop again: not waiting for running requests");
                    return false;
                }
                Some(Control::Reload) => tracing::info!("not reloading while shutting down"),
                None => closed = true,
            },
        }
    }
    true
}

/// Completes at [`Control::Stop`] or when `control` closes.
async fn stopped(control: &mut UnboundedReceiver<Control>) {
    while let Some(Control::Reload) = control.recv().await {
        tracing::info!("not reloading before the broker answered");
    }
}

fn log_panic(ended: Result<(), tokio::task::JoinError>) {
    if let Err(e) = ended {
        tracing::error!(error = %e, "a request's task failed");
    }
}

/// Settings a running daemon cannot change: its connection and subjects.
fn needs_restart(running: &ServerConfig, fresh: &ServerConfig) -> Vec<&'static str> {
    let mut changed = Vec::new();
    if running.identity != fresh.identity {
        changed.push("identity");
    }
    if running.collectives != fresh.collectives {
        changed.push("collectives");
    }
    if running.main_collective != fresh.main_collective {
        changed.push("main_collective");
    }
    if running.servers != fresh.servers {
        changed.push("plugin.nats.servers");
    }
    if running.nats_auth != fresh.nats_auth {
        changed.push("plugin.nats credentials");
    }
    if running.security != fresh.security {
        changed.push("plugin.security (ssldir, certname)");
    }
    changed
}

/// Re-reads `running.file` and builds a node from it, the settings that
/// need a restart kept as they run. `None` (logged) when it does not load.
async fn reload(
    running: &ServerConfig,
    authority: &Arc<muster_pki::Authority>,
) -> Option<(Node, ServerConfig)> {
    let Some(path) = running.file.clone() else {
        tracing::warn!("reload refused, the running settings stay: no config file to re-read");
        return None;
    };
    tracing::info!(file = %path.display(), "reloading");
    let built = tokio::task::spawn_blocking({
        let running = running.clone();
        let authority = authority.clone();
        move || -> Result<(Node, ServerConfig), ReloadError> {
            let mut fresh = ServerConfig::check(&path)?;
            let restart = needs_restart(&running, &fresh);
            if !restart.is_empty() {
                tracing::warn!(
                    settings = ?restart,
                    "changed settings that need a restart of mco server; until then the running values stay"
                );
            }
            fresh.identity = running.identity.clone();
            fresh.collectives = running.collectives.clone();
            fresh.main_collective = running.main_collective.clone();
            fresh.servers = running.servers.clone();
            fresh.nats_auth = running.nats_auth.clone();
            fresh.security = running.security.clone();
            let node = Node::from_config(&fresh, authority)?;
            Ok((node, fresh))
        }
    })
    .await;
    match built {
        Ok(Ok((node, fresh))) => {
            tracing::info!("reloaded: new requests run with the new settings");
            Some((node, fresh))
        }
        Ok(Err(error)) => {
            tracing::error!(%error, "reload refused, the running settings stay");
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "reload refused, the running settings stay");
            None
        }
    }
}
