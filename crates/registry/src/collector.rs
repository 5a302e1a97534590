//! The collector daemon: `mco registry --config FILE`.
//!
//! Its config file is a server.cfg: `identity` and `plugin.security.*`
//! name its certificate (a node-style name such as `registry.example.net`:
//! the broker lets node certificates read registration subjects and
//! answer on their own reply subjects), `collectives` the collectives it
//! collects, plus `plugin.registry.store` and
//! `plugin.registry.expire_intervals`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use muster_pki::Credential;
use muster_protocol::{subject, SignedReply};
use muster_server::daemon::Control;
use muster_server::node::Outcome;
use muster_server::{Node, ServerConfig};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::agent::RegistryAgent;
use crate::{Registry, SqliteStore, Store, DEFAULT_EXPIRE_INTERVALS};

/// Why the collector could not start.
#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    /// Its certificate, key or CA could not be loaded.
    #[error(transparent)]
    Pki(#[from] muster_pki::PkiError),
    /// The broker settings are unusable.
    #[error(transparent)]
    Connect(#[from] muster_connector::ConnectError),
    /// A setting it reads is wrong.
    #[error("{0}")]
    Config(#[from] muster_protocol::config::ConfigError),
    /// The broker refused a subscription.
    #[error("cannot subscribe to {subject}: {reason}")]
    Subscribe {
        /// The subject.
        subject: String,
        /// Why.
        reason: String,
    },
}

/// The collector's own settings from its config file.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `plugin.registry.store`; default `registry.db` beside the config file.
    pub store: PathBuf,
    /// `plugin.registry.expire_intervals`.
    pub expire_intervals: u64,
}

impl Settings {
    /// Reads them from `config`.
    pub fn from_config(config: &ServerConfig) -> Result<Settings, CollectorError> {
        let store = config
            .settings
            .path("plugin.registry.store")
            .unwrap_or_else(|| {
                config
                    .file
                    .as_deref()
                    .and_then(|f| std::path::absolute(f).ok())
                    .and_then(|f| f.parent().map(|d| d.join("registry.db")))
                    .unwrap_or_else(|| PathBuf::from("registry.db"))
            });
        let expire_intervals = config
            .settings
            .number("plugin.registry.expire_intervals")?
            .unwrap_or(DEFAULT_EXPIRE_INTERVALS)
            .max(1);
        Ok(Settings {
            store,
            expire_intervals,
        })
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Runs the collector until `control` says stop (or closes).
pub async fn run(
    config: ServerConfig,
    mut control: UnboundedReceiver<Control>,
) -> Result<(), CollectorError> {
    let settings = Settings::from_config(&config)?;
    let identity = config.security.load()?;
    let transport = muster_connector::Transport {
        tls: Some(identity.client_tls()?),
        auth: config.nats_auth.clone(),
    };
    let authority = identity.authority.clone();
    let store_path = settings.store.clone();
    let registry = Arc::new(Mutex::new(Registry::with_store(
        settings.expire_intervals,
        move || SqliteStore::open(&store_path).map(|s| Box::new(s) as Box<dyn Store>),
    )));
    let mut node = Node::new(
        &config.identity,
        config.collectives.clone(),
        &config.main_collective,
        muster_server::facts::Facts::fixed(serde_json::json!({})),
        muster_server::watched::Source::fixed(Vec::new()),
        authority.clone(),
    );
    node.add_agent(Arc::new(RegistryAgent::new(registry.clone())));
    let node = Arc::new(node);
    let name = format!("mco registry {}", config.identity);
    let connect = muster_connector::connect_daemon(&config.servers, &name, &transport);
    let client = tokio::select! {
        client = connect => client?,
        () = stopped(&mut control) => return Ok(()),
    };
    let signer = Arc::new(identity.credential.clone());
    let subscribe = |subject: String| {
        let client = client.clone();
        async move {
            client
                .subscribe(subject.clone())
                .await
                .map_err(|e| CollectorError::Subscribe {
                    subject,
                    reason: e.to_string(),
                })
        }
    };
    let mut registrations = Vec::new();
    let mut queries = Vec::new();
    for collective in &config.collectives {
        registrations.push(subscribe(subject::registration(collective)).await?);
        queries.push(subscribe(subject::node(collective, &config.identity)).await?);
    }
    let mut registrations = futures::stream::select_all(registrations);
    let mut queries = futures::stream::select_all(queries);
    if let Err(e) = client.flush().await {
        tracing::warn!(error = %e, "could not flush the subscriptions");
    }
    tracing::info!(
        store = %settings.store.display(),
        expire_intervals = settings.expire_intervals,
        collectives = ?config.collectives,
        "collecting registrations; answering --dm registry as {}",
        config.identity
    );
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            message = registrations.next() => {
                let Some(message) = message else { break };
                let mut registry = lock(&registry);
                if let Err(refused) = registry.receive(&message.payload, &authority, now_secs()) {
                    let count = registry.counters().refused();
                    // Logged at 1, 2, 4, 8...: a flood cannot flood the log.
                    if count.is_power_of_two() {
                        tracing::warn!(%refused, refused_so_far = count, "registration refused");
                    }
                }
            }
            message = queries.next() => {
                let Some(message) = message else { break };
                let Ok(admitted) = node.admit_on(Some(&message.subject), &message.payload) else {
                    continue;
                };
                let outcome = node.run(admitted).await;
                publish(&client, &signer, outcome).await;
            }
            _ = ticks.tick() => {
                let gone = lock(&registry).expire(now_secs());
                if !gone.is_empty() {
                    tracing::info!(nodes = ?gone, "aged out: silent for {} of their intervals", settings.expire_intervals);
                }
            }
            order = control.recv() => match order {
                Some(Control::Reload) => tracing::info!("mco registry does not reload; restart it for new settings"),
                Some(Control::Stop) | None => break,
            },
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), client.flush()).await;
    tracing::info!("stopped");
    Ok(())
}

fn lock(registry: &Mutex<Registry>) -> std::sync::MutexGuard<'_, Registry> {
    match registry.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

async fn publish(client: &async_nats::Client, signer: &Credential, outcome: Outcome) {
    if let Outcome::Reply { subject, reply } = outcome {
        match SignedReply::seal(&reply, signer) {
            Ok(signed) => {
                if let Err(e) = client.publish(subject, signed.to_bytes().into()).await {
                    tracing::warn!(error = %e, "could not send an answer");
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot sign an answer; not sent"),
        }
    }
}

/// Completes at [`Control::Stop`] or when `control` closes.
async fn stopped(control: &mut UnboundedReceiver<Control>) {
    while let Some(Control::Reload) = control.recv().await {}
}
