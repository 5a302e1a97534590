//! Registration: a node's periodic, signed "here I am" message.
//!
//! With `registerinterval` set (seconds, as in MCollective and Choria), a
//! node publishes a [`Registration`] on each collective's registration
//! subject ([`muster_protocol::subject::registration`]) every interval,
//! the first after a random delay up to the interval when
//! `registration_splay` is on. The record is signed like a reply: its JSON
//! text, a signature over those bytes and the node's certificate. A
//! collector ([`Registration::open`]) takes it only when the certificate
//! comes from the fleet's CA, the signature verifies and the certificate's
//! name may act as the identity the record claims.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use muster_pki::{Authority, Credential};
use muster_protocol::{identity::may_act_as, subject, Signer, PROTOCOL_VERSION};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Node, ServerConfig};

/// The largest registration message a collector reads: facts of a large
/// host are tens of KiB, and the broker's default payload limit is 1 MiB.
pub const MAX_REGISTRATION: usize = 512 * 1024;

/// What a node tells the registry about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    /// The node's identity.
    pub identity: String,
    /// Its merged facts.
    pub facts: Value,
    /// Its classes.
    pub classes: Vec<String>,
    /// The collectives it serves.
    pub collectives: Vec<String>,
    /// Its agents and their versions.
    pub agents: Vec<AgentVersion>,
    /// When it was sent, seconds since the Unix epoch.
    pub time: u64,
    /// Its `registerinterval`: the collector ages it out after a number of
    /// these without a new record.
    pub interval: u64,
}

/// One agent a node runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentVersion {
    /// The agent's name.
    pub name: String,
    /// Its DDL's version.
    pub version: String,
}

/// A registration on the wire, signed as [`muster_protocol::SignedReply`] is.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SignedRegistration {
    protocol: u32,
    registration: String,
    scheme: String,
    signature: String,
    certificate: String,
}

/// Why a collector refused a registration message.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// Bigger than [`MAX_REGISTRATION`].
    #[error("{0} bytes is more than the {MAX_REGISTRATION} byte limit")]
    Oversized(usize),
    /// Not a signed registration (including unsigned records).
    #[error("not a signed registration: {0}")]
    Malformed(String),
    /// The certificate is not the fleet's, or the signature does not verify.
    #[error("forged: {0}")]
    Forged(#[from] muster_pki::PkiError),
    /// Signed by a certificate whose name may not speak for the identity.
    #[error("signed by {certificate:?}, which may not register as {claimed:?}")]
    UnknownNode {
        /// The identity the record claims.
        claimed: String,
        /// The certificate name that signed it.
        certificate: String,
    },
    /// A protocol version this build does not speak.
    #[error("protocol version {0} (this build speaks {PROTOCOL_VERSION})")]
    Version(u32),
}

/// Why a registration could not be signed.
#[derive(Debug, thiserror::Error)]
#[error("cannot sign the registration: {0}")]
pub struct SealError(#[from] muster_protocol::SignError);

impl Registration {
    /// The record `node` sends now.
    pub fn of(node: &Node, interval: u64) -> Registration {
        let agents = node
            .agent_inventory()
            .iter()
            .map(|entry| AgentVersion {
                name: text(entry, "agent"),
                version: text(entry, "version"),
            })
            .collect();
        Registration {
            identity: node.identity().to_string(),
            facts: (*node.facts()).clone(),
            classes: (*node.classes()).clone(),
            collectives: node.collectives().to_vec(),
            agents,
            time: now_secs(),
            interval,
        }
    }

    /// The signed wire bytes.
    pub fn seal(&self, signer: &dyn Signer) -> Result<Vec<u8>, SealError> {
        // Serializing a struct of strings and JSON values cannot fail.
        let text = serde_json::to_string(self).unwrap_or_default();
        let signature = signer.sign(text.as_bytes())?;
        let signed = SignedRegistration {
            protocol: PROTOCOL_VERSION,
            registration: text,
            scheme: signer.scheme().to_string(),
            signature: BASE64.encode(signature),
            certificate: BASE64.encode(signer.certificate()),
        };
        Ok(serde_json::to_vec(&signed).unwrap_or_default())
    }

    /// Checks and reads a registration message: size, shape, certificate,
    /// signature, and that the signer may speak for the identity claimed.
    pub fn open(bytes: &[u8], authority: &Authority) -> Result<Registration, Refused> {
        if bytes.len() > MAX_REGISTRATION {
            return Err(Refused::Oversized(bytes.len()));
        }
        let signed: SignedRegistration =
            serde_json::from_slice(bytes).map_err(|e| Refused::Malformed(e.to_string()))?;
        if signed.protocol != PROTOCOL_VERSION {
            return Err(Refused::Version(signed.protocol));
        }
        let decode = |text: &str, what: &str| {
            BASE64
                .decode(text)
                .map_err(|e| Refused::Malformed(format!("{what} is not base64: {e}")))
        };
        let certificate = decode(&signed.certificate, "certificate")?;
        let signature = decode(&signed.signature, "signature")?;
        let verified = authority.verify_signature(
            &certificate,
            &signed.scheme,
            signed.registration.as_bytes(),
            &signature,
        )?;
        let record: Registration = serde_json::from_str(&signed.registration)
            .map_err(|e| Refused::Malformed(e.to_string()))?;
        if !subject::is_valid_name(&record.identity)
            || !may_act_as(&verified.name, &record.identity)
        {
            return Err(Refused::UnknownNode {
                claimed: record.identity,
                certificate: verified.name,
            });
        }
        Ok(record)
    }
}

fn text(entry: &Value, key: &str) -> String {
    entry
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `registerinterval` and `registration_splay` from server.cfg; `None`
/// when registration is off (unset or 0).
pub fn settings(config: &ServerConfig) -> Option<(Duration, bool)> {
    let interval = config
        .settings
        .number("registerinterval")
        .ok()
        .flatten()
        .filter(|&n| n > 0)?;
    let splay = config
        .settings
        .flag("registration_splay")
        .ok()
        .flatten()
        .unwrap_or(false);
    Some((Duration::from_secs(interval), splay))
}

/// Publishes `node`'s registration every `interval` in each of its
/// collectives until the task is aborted; the first after a random delay
/// up to `interval` when `splay` is set, else at once.
pub fn spawn(
    node: Arc<Node>,
    client: async_nats::Client,
    signer: Arc<Credential>,
    interval: Duration,
    splay: bool,
) -> tokio::task::JoinHandle<()> {
    spawn_many(vec![node], client, signer, interval, splay)
}

/// [`spawn`] for many nodes on one connection (the fleet simulator's).
pub fn spawn_many(
    nodes: Vec<Arc<Node>>,
    client: async_nats::Client,
    signer: Arc<Credential>,
    interval: Duration,
    splay: bool,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if splay {
            let nanos = interval.as_nanos().max(1) as u64;
            let mut seed = [0u8; 8];
            // A failed random source means no splay, not no registration.
            let _ = getrandom_fill(&mut seed);
            let delay = Duration::from_nanos(u64::from_le_bytes(seed) % nanos);
            tokio::time::sleep(delay).await;
        }
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut warned = false;
        loop {
            ticks.tick().await;
            for node in &nodes {
                let record = Registration::of(node, interval.as_secs());
                let bytes = match record.seal(signer.as_ref()) {
                    Ok(bytes) => bytes,
                    Err(e) => {
                        tracing::error!(error = %e, "registration not sent");
                        continue;
                    }
                };
                for collective in node.collectives() {
                    let sent = client
                        .publish(subject::registration(collective), bytes.clone().into())
                        .await;
                    match sent {
                        Err(e) if !warned => {
                            warned = true;
                            tracing::warn!(error = %e, "could not send a registration");
                        }
                        Ok(()) => warned = false,
                        Err(_) => {}
                    }
                }
            }
        }
    })
}

fn getrandom_fill(buf: &mut [u8]) -> std::io::Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(buf)
}
