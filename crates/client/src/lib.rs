//! The muster client library: what `mco` and custom applications use to
//! find nodes and run actions on them.
//!
//! A [`Client`] holds one broker connection (TLS, with the caller's
//! certificate) and the caller's [`muster_pki::Credential`], which signs
//! every request.
//! A [`Call`] says which agent and action to run, with which inputs, on
//! which nodes; [`Client::call`] signs it, sends it, and collects the
//! replies into an [`Outcome`] that knows who answered, who did not, and
//! how long it took. This crate knows nothing about terminals: progress
//! bars, tables and colours are the application's business.
//!
//! # Writing an application
//!
//! 1. **Connect.** [`ClientConfig::load`] reads `--config FILE` when given,
//!    else `$MCO_CONFIG` (which `mco` sets for the `mco-NAME` programs it
//!    runs), else `~/.config/muster/client.cfg`. [`Client::connect`] loads
//!    the caller's certificate (`plugin.security.ssldir`, `.certname`) and
//!    connects to the broker over TLS.
//! 2. **Select nodes.** A [`muster_protocol::Filter`] is built from the
//!    same texts as `mco`'s `-I`, `-F`, `-C`, `-A` and `-S` flags; a text
//!    that does not parse is an error before anything is sent.
//! 3. **Discover** (optional): [`Client::discover`] returns the sorted
//!    identities that match. [`Client::call`] discovers by itself when the
//!    call's targets are [`Targets::Discover`] (the default), and skips
//!    discovery when the filter names exact identities.
//! 4. **Call an action** with inputs as a JSON map. The client does not
//!    check them against the DDL; [`ddls::ddl_for`] gives the DDL, whose
//!    `validate` does, as `mco rpc` does.
//! 5. **Stream replies**: the callback passed to [`Client::call`] sees each
//!    [`Response`] as it arrives, for progress or streaming output.
//! 6. **Read the statistics** from the [`Outcome`]: `responses` (arrival
//!    order), `expected`, `missing` (sorted names of the nodes that did not
//!    answer), [`Outcome::failed`], [`Outcome::rtt_stats`], `discovery` and
//!    `elapsed`.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use muster_client::{Call, Client, ClientConfig};
//! use muster_protocol::Filter;
//! use serde_json::{json, Map, Value};
//!
//! // 1. Connect, with the config mco would use.
//! let config = ClientConfig::load(None)?;
//! let client = Client::connect(config).await?;
//!
//! // 2. and 3. The Debian web servers, as `-F os.family=Debian -C httpd`.
//! let filter = Filter::default().fact("os.family=Debian")?.class("httpd")?;
//! let window = client.config().window;
//! let nodes = client.discover(&filter, None, Duration::from_secs(2), window).await?;
//! println!("{} nodes match", nodes.len());
//!
//! // 4. and 5. Ask each for a fact, printing replies as they arrive.
//! let mut data = Map::new();
//! data.insert("fact".into(), json!("system_uptime.seconds"));
//! let call = Call::new("rpcutil", "get_fact")
//!     .with_filter(filter)
//!     .with_data(data)
//!     .with_timeout(Duration::from_secs(5));
//! let outcome = client
//!     .call(&call, |response| {
//!         let value = response.reply.data.get("value").unwrap_or(&Value::Null);
//!         println!("{:20} {value}", response.identity());
//!     })
//!     .await?;
//!
//! // 6. The statistics.
//! println!(
//!     "{} / {} answered, {} failed, in {:?}",
//!     outcome.responses.len(),
//!     outcome.expected.as_ref().map_or(0, Vec::len),
//!     outcome.failed().count(),
//!     outcome.elapsed,
//! );
//! if !outcome.missing.is_empty() {
//!     println!("No response from: {}", outcome.missing.join(", "));
//! }
//! if let Some((min, max, avg)) = outcome.rtt_stats() {
//!     println!("round trips: min {min:?}, max {max:?}, avg {avg:?}");
//! }
//! client.close().await;
//! # Ok(()) }
//! ```
//!
//! A whole application built this way, with a test against a simulated
//! fleet, is `examples/mco-uptime.rs`; `docs/applications.md` explains how
//! `mco` finds and runs such programs.

pub mod chain;
mod config;
pub mod ddls;
pub mod discovery;
pub mod limit;
pub mod puppetdb;
pub mod registry;
pub mod runall;
mod window;

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use futures::future::FusedFuture;
use futures::FutureExt;
use futures::StreamExt;
use muster_pki::{Credential, Identity, Signed};
use muster_protocol::identity::caller_token;
use muster_protocol::{subject, Envelope, Filter, Reply, Request, SignedReply};
use serde_json::{Map, Value};

pub use config::{default_dir, user_name, ClientConfig, CONFIG_ENV};
pub use discovery::{Discovery, DiscoveryError, DiscoverySettings, NodeList, NodeRecord};
pub use limit::{Limit, LimitError};
pub use window::{Arrivals, QuietWindow};

/// What went wrong talking to the fleet.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The broker could not be reached.
    #[error(transparent)]
    Connect(#[from] muster_connector::ConnectError),
    /// The client's certificate or CA could not be loaded.
    #[error(transparent)]
    Pki(#[from] muster_pki::PkiError),
    /// The request could not be signed.
    #[error("cannot sign the request: {0}")]
    Sign(#[source] muster_protocol::EnvelopeError),
    /// The broker refused or dropped something the client did.
    #[error("broker error while {doing}: {reason}")]
    Broker {
        /// What the client was doing (subscribing, publishing, ...).
        doing: String,
        /// What the broker or async-nats said.
        reason: String,
    },
    /// A name that cannot be part of a subject.
    #[error("{0:?} cannot be addressed: names must not contain spaces, '*' or '>'")]
    BadName(String),
    /// Discovery failed.
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
}

/// Which nodes a call goes to.
#[derive(Debug, Clone, PartialEq)]
pub enum Targets {
    /// Send once to every node matching the filter; collect replies until
    /// they go quiet. Used by ping and by discovery itself. A filter of
    /// exact identities only (`-I name`) is sent to those nodes directly
    /// and ends at the last one's reply, naming the silent ones.
    Broadcast,
    /// Discover the matching nodes first, then address each directly and
    /// wait for exactly those.
    Discover,
    /// Address these nodes directly.
    Nodes(Vec<String>),
}

/// One action to run on many nodes.
#[derive(Debug, Clone)]
pub struct Call {
    /// The agent to run.
    pub agent: String,
    /// The action to run.
    pub action: String,
    /// The action's inputs.
    pub data: Map<String, Value>,
    /// Which nodes should act.
    pub filter: Filter,
    /// Defaults to the config's main collective.
    pub collective: Option<String>,
    /// How the nodes are addressed.
    pub targets: Targets,
    /// How long to wait for replies to the action; `None`: the action's
    /// DDL timeout plus [`ddls::NETWORK_MARGIN`] (see [`ddls::call_timeout`]).
    pub timeout: Option<Duration>,
    /// The upper bound for discovery.
    pub discovery_timeout: Duration,
    /// When discovery and broadcasts stop waiting; `None`: the client config's.
    pub window: Option<QuietWindow>,
    /// How [`Targets::Discover`] finds the nodes.
    pub discovery: Discovery,
    /// Send directed requests to a few nodes at a time; `None`: all at once.
    pub batch: Option<Batch>,
    /// The nodes that should answer, known from elsewhere (a registry, an
    /// inventory) while the request is still broadcast, as a cross-check:
    /// a broadcast waits for all of them (up to its timeout) and then for
    /// a quiet window, the silent ones are [`Outcome::missing`] and those
    /// that answer without being expected [`Outcome::unexpected`]. Directed
    /// calls already know their set and ignore it.
    pub expect: Option<Vec<String>>,
}

/// Sending a directed call to `size` nodes at a time, as MCollective's
/// `--batch`: each batch gets its own request and the call's full timeout,
/// and the next batch goes `sleep` after the last reply (or the timeout)
/// of the one before. Broadcast calls ignore it: nobody knows in advance
/// who will answer, so there is nothing to split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batch {
    /// Nodes per batch; 0 counts as 1.
    pub size: usize,
    /// The pause between batches.
    pub sleep: Duration,
}

impl Batch {
    /// MCollective's default pause between batches.
    pub const DEFAULT_SLEEP: Duration = Duration::from_secs(1);

    /// `size` nodes at a time, with [`Batch::DEFAULT_SLEEP`] between batches.
    pub fn new(size: usize) -> Batch {
        Batch {
            size,
            sleep: Batch::DEFAULT_SLEEP,
        }
    }

    /// Waits `sleep` between batches.
    pub fn with_sleep(mut self, sleep: Duration) -> Batch {
        self.sleep = sleep;
        self
    }
}

impl Call {
    /// A call to every node, discovering them first, with MCollective's
    /// default timeouts (the agent's DDL says how long the action may take,
    /// discovery gets 2 s).
    pub fn new(agent: &str, action: &str) -> Call {
        Call {
            agent: agent.to_string(),
            action: action.to_string(),
            data: Map::new(),
            filter: Filter::default(),
            collective: None,
            targets: Targets::Discover,
            timeout: None,
            discovery_timeout: Duration::from_secs(2),
            window: None,
            discovery: Discovery::Broadcast,
            batch: None,
            expect: None,
        }
    }

    /// Selects the nodes.
    pub fn with_filter(mut self, filter: Filter) -> Call {
        self.filter = filter;
        self
    }

    /// Sets the inputs.
    pub fn with_data(mut self, data: Map<String, Value>) -> Call {
        self.data = data;
        self
    }

    /// Sets how nodes are addressed.
    pub fn with_targets(mut self, targets: Targets) -> Call {
        self.targets = targets;
        self
    }

    /// Sets how long to wait for replies.
    pub fn with_timeout(mut self, timeout: Duration) -> Call {
        self.timeout = Some(timeout);
        self
    }

    /// Sets how nodes are discovered.
    pub fn with_discovery(mut self, discovery: Discovery) -> Call {
        self.discovery = discovery;
        self
    }

    /// Sends to `batch.size` nodes at a time (directed calls only).
    ///
    /// ```
    /// use std::time::Duration;
    /// use muster_client::{Batch, Call};
    ///
    /// let call = Call::new("service", "restart")
    ///     .with_batch(Batch::new(10).with_sleep(Duration::from_secs(5)));
    /// assert_eq!(call.batch.unwrap().size, 10);
    /// ```
    pub fn with_batch(mut self, batch: Batch) -> Call {
        self.batch = Some(batch);
        self
    }

    /// Cross-checks a broadcast against the nodes that should answer
    /// (see [`Call::expect`]).
    pub fn expecting(mut self, nodes: Vec<String>) -> Call {
        self.expect = Some(nodes);
        self
    }
}

/// One node's reply and how long it took.
#[derive(Debug, Clone)]
pub struct Response {
    /// The node's reply.
    pub reply: Reply,
    /// How long after sending the request it arrived.
    pub rtt: Duration,
}

impl Response {
    /// The identity of the node that replied.
    pub fn identity(&self) -> &str {
        &self.reply.sender
    }
}

/// Everything a call produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The request's id (with batches: the first batch's; each batch is
    /// its own request).
    pub request_id: String,
    /// Replies in arrival order, one per node.
    pub responses: Vec<Response>,
    /// The nodes that should have answered, when known.
    pub expected: Option<Vec<String>>,
    /// Expected nodes that did not answer, sorted.
    pub missing: Vec<String>,
    /// Nodes that answered but were not expected, sorted: a broadcast
    /// cross-checked with [`Call::expect`] finds nodes the other source
    /// does not know (their replies are in `responses` all the same).
    pub unexpected: Vec<String>,
    /// Messages on the reply subject that were not valid replies.
    pub bad_replies: usize,
    /// Replies whose sender is not the node the broker delivered them
    /// for (a node speaking for another); never shown as results.
    pub impostors: Vec<String>,
    /// How long discovery took, when there was one.
    pub discovery: Option<Duration>,
    /// The discovery method that chose the nodes ([`Discovery::name`]),
    /// when the client ran one; applications that discover by themselves
    /// set it, so the statistics can say.
    pub discovery_method: Option<String>,
    /// From sending the request to the end of collection (with batches:
    /// from the first send to the end of the last batch, sleeps included).
    pub elapsed: Duration,
    /// The stop given to [`Client::call_until`] fired before the call
    /// ended: `responses` and `missing` are what was known at that moment.
    pub interrupted: bool,
    /// The quiet period after the last reply that ended a broadcast, when
    /// silence ended it (not a timeout, a known set, or a stop): how far
    /// the adaptive [`QuietWindow`] had widened.
    pub quiet_window: Option<Duration>,
}

impl Outcome {
    /// Replies whose status is not OK.
    pub fn failed(&self) -> impl Iterator<Item = &Response> {
        self.responses
            .iter()
            .filter(|r| !r.reply.statuscode.is_ok())
    }

    /// Compares who answered with `expect`, the nodes that should have:
    /// they become [`Outcome::expected`], those of them that stayed silent
    /// [`Outcome::missing`], and those who answered without being in it
    /// [`Outcome::unexpected`].
    pub fn cross_check(&mut self, expect: &[String]) {
        let answered: HashSet<&str> = self.responses.iter().map(Response::identity).collect();
        let wanted: HashSet<&str> = expect.iter().map(String::as_str).collect();
        let mut missing: Vec<String> = wanted
            .iter()
            .filter(|n| !answered.contains(*n))
            .map(|n| n.to_string())
            .collect();
        missing.sort();
        let mut unexpected: Vec<String> = answered
            .iter()
            .filter(|n| !wanted.contains(*n))
            .map(|n| n.to_string())
            .collect();
        unexpected.sort();
        let mut expected: Vec<String> = wanted.into_iter().map(str::to_string).collect();
        expected.sort();
        self.expected = Some(expected);
        self.missing = missing;
        self.unexpected = unexpected;
    }

    /// Min, max and average round trip, if anyone answered.
    pub fn rtt_stats(&self) -> Option<(Duration, Duration, Duration)> {
        let rtts: Vec<Duration> = self.responses.iter().map(|r| r.rtt).collect();
        let min = *rtts.iter().min()?;
        let max = *rtts.iter().max()?;
        let avg = rtts.iter().sum::<Duration>() / rtts.len() as u32;
        Some((min, max, avg))
    }
}

/// Most replies verified together (more wait for the next batch).
const MAX_REPLY_BATCH: usize = 1024;

/// Why a reply was not taken.
enum Opened {
    Malformed(String),
    Forged { claimed: String, why: String },
}

/// A connected client.
pub struct Client {
    nats: async_nats::Client,
    credential: Credential,
    /// The CA that replies' certificates must come from.
    authority: std::sync::Arc<muster_pki::Authority>,
    /// The caller's token in reply subjects.
    token: String,
    config: ClientConfig,
    id: String,
}

impl Client {
    /// Loads the caller's certificate and the CA, and connects within 5 seconds.
    pub async fn connect(config: ClientConfig) -> Result<Client, ClientError> {
        let identity = config.security.load()?;
        Client::connect_with(config, identity, Duration::from_secs(5)).await
    }

    /// Connects as `identity` (over TLS with its certificate) with an
    /// explicit connect timeout.
    pub async fn connect_with(
        config: ClientConfig,
        identity: Identity,
        timeout: Duration,
    ) -> Result<Client, ClientError> {
        let transport = muster_connector::Transport {
            tls: Some(identity.client_tls()?),
            auth: config.nats_auth.clone(),
        };
        Client::connect_over(config, identity, &transport, timeout).await
    }

    /// Connects with an explicit transport (a plain-text test broker, say).
    pub async fn connect_over(
        config: ClientConfig,
        identity: Identity,
        transport: &muster_connector::Transport,
        timeout: Duration,
    ) -> Result<Client, ClientError> {
        let id = format!("{}-{}", user_name(), &muster_protocol::new_id()[..12]);
        let nats = muster_connector::connect_client(
            &config.servers,
            &format!("mco {id}"),
            timeout,
            transport,
        )
        .await?;
        Ok(Client {
            nats,
            token: caller_token(identity.credential.name()),
            credential: identity.credential,
            authority: identity.authority,
            config,
            id,
        })
    }

    /// The certificate name requests are signed as.
    pub fn caller(&self) -> &str {
        self.credential.name()
    }

    /// Verifies signed replies: each needs a certificate from our CA, a
    /// signature that matches, and a certificate name that may answer as
    /// the reply's sender. One answer per message, in order.
    fn open_replies<'m>(
        &self,
        messages: impl Iterator<Item = &'m async_nats::Message>,
    ) -> Vec<Result<Reply, Opened>> {
        struct Parsed {
            reply: Reply,
            signed: SignedReply,
            cert: Vec<u8>,
            signature: Vec<u8>,
        }
        let parsed: Vec<Result<Parsed, Opened>> = messages
            .map(|message| {
                let signed = SignedReply::from_bytes(&message.payload)
                    .map_err(|e| Opened::Malformed(e.to_string()))?;
                let reply = signed
                    .reply()
                    .map_err(|e| Opened::Malformed(e.to_string()))?;
                let forged = |e: muster_protocol::EnvelopeError| Opened::Forged {
                    claimed: reply.sender.clone(),
                    why: e.to_string(),
                };
                let cert = signed.certificate_der().map_err(forged)?;
                let signature = signed.signature_bytes().map_err(forged)?;
                Ok(Parsed {
                    reply,
                    signed,
                    cert,
                    signature,
                })
            })
            .collect();
        if !self.config.verify_replies {
            return parsed.into_iter().map(|p| p.map(|p| p.reply)).collect();
        }
        let items: Vec<Signed<'_>> = parsed
            .iter()
            .filter_map(|p| p.as_ref().ok())
            .map(|p| Signed {
                cert: &p.cert,
                scheme: &p.signed.scheme,
                message: p.signed.reply.as_bytes(),
                signature: &p.signature,
            })
            .collect();
        let mut verdicts = self.authority.verify_many(&items).into_iter();
        parsed
            .into_iter()
            .map(|p| {
                let p = p?;
                let forged = |why: String| Opened::Forged {
                    claimed: p.reply.sender.clone(),
                    why,
                };
                let signer = verdicts
                    .next()
                    .unwrap_or_else(|| {
                        Err(muster_pki::PkiError::BadSignature("not verified".into()))
                    })
                    .map_err(|e| forged(e.to_string()))?;
                if !muster_protocol::identity::may_act_as(&signer.name, &p.reply.sender) {
                    return Err(forged(format!("signed by {}", signer.name)));
                }
                Ok(p.reply)
            })
            .collect()
    }

    /// Flushes and closes the connection.
    pub async fn close(self) {
        muster_connector::close(&self.nats).await;
    }

    /// The configuration this client was made with.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// This connection's id, the `sender` of its requests.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Finds the nodes matching `filter` (a broadcast rpcutil ping that
    /// stops when replies go quiet), sorted by identity.
    pub async fn discover(
        &self,
        filter: &Filter,
        collective: Option<&str>,
        timeout: Duration,
        window: QuietWindow,
    ) -> Result<Vec<String>, ClientError> {
        self.discover_expecting(filter, collective, timeout, window, None)
            .await
    }

    /// [`Client::discover`] that, given the nodes that should answer
    /// (see [`Call::expect`]), waits for all of them (up to `timeout`)
    /// before the quiet window may end it, so a slow expected node is
    /// found rather than missed.
    pub async fn discover_expecting(
        &self,
        filter: &Filter,
        collective: Option<&str>,
        timeout: Duration,
        window: QuietWindow,
        expect: Option<&[String]>,
    ) -> Result<Vec<String>, ClientError> {
        let mut ping = Call::new("rpcutil", "ping")
            .with_filter(filter.clone())
            .with_targets(Targets::Broadcast)
            .with_timeout(timeout);
        ping.collective = collective.map(str::to_string);
        ping.window = Some(window);
        ping.expect = expect.map(<[String]>::to_vec);
        let never = std::pin::pin!(std::future::pending::<()>().fuse());
        let outcome = self.send(&ping, &mut |_| {}, never).await?;
        let mut identities: Vec<String> = outcome
            .responses
            .into_iter()
            .map(|r| r.reply.sender)
            .collect();
        identities.sort();
        Ok(identities)
    }

    /// Runs `call`, reporting each reply to `on_reply` as it arrives.
    /// With [`Call::batch`], directed requests go out a batch at a time;
    /// replies still stream to `on_reply` and the [`Outcome`] covers them all.
    pub async fn call(
        &self,
        call: &Call,
        on_reply: impl FnMut(&Response),
    ) -> Result<Outcome, ClientError> {
        self.call_until(call, on_reply, std::future::pending::<()>())
            .await
    }

    /// [`Client::call`] that stops waiting when `stop` completes (a Ctrl-C,
    /// a deadline of the caller's): the [`Outcome`] then holds the replies
    /// so far, names the nodes that had not answered (and those of batches
    /// not yet sent) and is marked [`Outcome::interrupted`].
    pub async fn call_until<S: Future>(
        &self,
        call: &Call,
        mut on_reply: impl FnMut(&Response),
        stop: S,
    ) -> Result<Outcome, ClientError> {
        let stop = std::pin::pin!(stop.map(|_| ()).fuse());
        let mut stop: Pin<&mut dyn FusedFuture<Output = ()>> = stop;
        match &call.targets {
            Targets::Discover => {
                let started = Instant::now();
                let nodes = match call.filter.exact_identities() {
                    Some(nodes) if call.discovery.is_broadcast() => nodes,
                    _ => {
                        let found = async {
                            match (&call.discovery, &call.expect) {
                                (Discovery::Broadcast, Some(expect)) => {
                                    self.discover_expecting(
                                        &call.filter,
                                        call.collective.as_deref(),
                                        call.discovery_timeout,
                                        call.window.unwrap_or(self.config.window),
                                        Some(expect),
                                    )
                                    .await
                                }
                                _ => {
                                    self.discover_with(
                                        &call.discovery,
                                        &call.filter,
                                        call.collective.as_deref(),
                                        call.discovery_timeout,
                                        call.window.unwrap_or(self.config.window),
                                    )
                                    .await
                                }
                            }
                        };
                        tokio::select! {
                            found = found => found?,
                            () = stop.as_mut() => {
                                return Ok(Outcome::interrupted_before_sending(started.elapsed()));
                            }
                        }
                    }
                };
                let discovery = started.elapsed();
                let directed = call.clone().with_targets(Targets::Nodes(nodes));
                let mut outcome = self.send(&directed, &mut on_reply, stop).await?;
                outcome.discovery = Some(discovery);
                outcome.discovery_method = Some(call.discovery.name().to_string());
                // Broadcast discovery cross-checked: the expected nodes it did
                // not find are missing too.
                if let (true, Some(expect)) = (call.discovery.is_broadcast(), &call.expect) {
                    outcome.cross_check(expect);
                }
                Ok(outcome)
            }
            // The expected set is known: address it, and stop at its last reply.
            Targets::Broadcast => match call.filter.exact_identities() {
                Some(nodes) => {
                    let directed = call.clone().with_targets(Targets::Nodes(nodes));
                    self.send(&directed, &mut on_reply, stop).await
                }
                None => self.send(call, &mut on_reply, stop).await,
            },
            Targets::Nodes(_) => self.send(call, &mut on_reply, stop).await,
        }
    }

    /// Sends `call`, in batches when it has them and is directed to more
    /// nodes than one batch holds, and combines what the batches got.
    async fn send(
        &self,
        call: &Call,
        on_reply: &mut dyn FnMut(&Response),
        mut stop: Pin<&mut dyn FusedFuture<Output = ()>>,
    ) -> Result<Outcome, ClientError> {
        let (batch, nodes) = match (&call.batch, &call.targets) {
            (Some(batch), Targets::Nodes(nodes)) if nodes.len() > batch.size.max(1) => {
                (batch, nodes)
            }
            _ => return self.send_once(call, on_reply, stop).await,
        };
        let started = Instant::now();
        let mut combined: Option<Outcome> = None;
        let chunks: Vec<&[String]> = nodes.chunks(batch.size.max(1)).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            if i > 0 && !stop.is_terminated() {
                tokio::select! {
                    () = tokio::time::sleep(batch.sleep) => {}
                    () = stop.as_mut() => {}
                }
            }
            if stop.is_terminated() {
                // Batches never sent: their nodes did not answer either.
                if let Some(all) = &mut combined {
                    all.interrupted = true;
                    all.missing
                        .extend(chunks[i..].iter().flat_map(|c| c.iter().cloned()));
                }
                break;
            }
            let part = call.clone().with_targets(Targets::Nodes(chunk.to_vec()));
            let outcome = self.send_once(&part, on_reply, stop.as_mut()).await?;
            match &mut combined {
                None => combined = Some(outcome),
                Some(all) => {
                    all.responses.extend(outcome.responses);
                    all.missing.extend(outcome.missing);
                    all.unexpected.extend(outcome.unexpected);
                    all.bad_replies += outcome.bad_replies;
                    all.impostors.extend(outcome.impostors);
                    all.interrupted |= outcome.interrupted;
                }
            }
        }
        let mut outcome = combined.expect("more nodes than one batch holds");
        outcome.expected = Some(nodes.clone());
        outcome.missing.sort();
        outcome.unexpected.sort();
        outcome.elapsed = started.elapsed();
        Ok(outcome)
    }

    /// Signs and publishes one request, then collects its replies.
    async fn send_once(
        &self,
        call: &Call,
        on_reply: &mut dyn FnMut(&Response),
        mut stop: Pin<&mut dyn FusedFuture<Output = ()>>,
    ) -> Result<Outcome, ClientError> {
        let collective = call
            .collective
            .clone()
            .unwrap_or_else(|| self.config.main_collective.clone());
        for name in [&collective, &call.agent] {
            if !subject::is_valid_name(name) || name.contains('.') {
                return Err(ClientError::BadName(name.clone()));
            }
        }
        let request = Request::new(
            &self.id,
            self.credential.name(),
            &collective,
            &call.agent,
            &call.action,
        )
        .with_filter(call.filter.clone())
        .with_data(call.data.clone())
        .with_ttl(self.config.ttl);
        let seal = |request: &Request| -> Result<bytes::Bytes, ClientError> {
            Ok(Envelope::seal(request, &self.credential)
                .map_err(ClientError::Sign)?
                .to_bytes()
                .into())
        };
        let reply_to = subject::no_responders(&collective, &self.token, &request.id);
        let broker = |doing: &str| {
            let doing = doing.to_string();
            move |e: &dyn std::fmt::Display| ClientError::Broker {
                doing,
                reason: e.to_string(),
            }
        };
        let mut replies = self
            .nats
            .subscribe(subject::replies(&collective, &self.token, &request.id))
            .await
            .map_err(|e| broker("subscribing for replies")(&e))?;

        let expected = match &call.targets {
            Targets::Nodes(nodes) => Some(nodes.clone()),
            _ => None,
        };
        let sent = Instant::now();
        match &expected {
            Some(nodes) => {
                if let Some(bad) = nodes.iter().find(|n| !subject::is_valid_name(n)) {
                    return Err(ClientError::BadName(bad.clone()));
                }
                // Each copy names its targets, so a node refuses a copy meant
                // for another; one id for all, so the replies are one call's.
                for chunk in nodes.chunks(muster_protocol::MAX_TARGETS) {
                    let payload = seal(&request.clone().with_targets(chunk.to_vec()))?;
                    for node in chunk {
                        self.nats
                            .publish_with_reply(
                                subject::node(&collective, node),
                                reply_to.clone(),
                                payload.clone(),
                            )
                            .await
                            .map_err(|e| broker("sending the request")(&e))?;
                    }
                }
            }
            None => {
                self.nats
                    .publish_with_reply(
                        subject::broadcast(&collective, &call.agent),
                        reply_to.clone(),
                        seal(&request)?,
                    )
                    .await
                    .map_err(|e| broker("sending the request")(&e))?;
            }
        }
        self.nats
            .flush()
            .await
            .map_err(|e| broker("sending the request")(&e))?;

        let hard = sent
            + call
                .timeout
                .unwrap_or_else(|| ddls::call_timeout(&self.config, &call.agent));
        // Directed: ends when every addressed node has answered. Broadcast
        // with an expected set: waits for those, then for a quiet window.
        let directed = expected.is_some();
        let cross_check = match (&expected, &call.expect) {
            (None, Some(expect)) => Some(expect),
            _ => None,
        };
        let wanted: Option<HashSet<&str>> = expected
            .as_ref()
            .or(cross_check)
            .map(|n| n.iter().map(String::as_str).collect());
        let mut answered = 0;
        let mut arrivals = Arrivals::new(sent);
        let mut seen: HashSet<String> = HashSet::new();
        let mut responses = Vec::new();
        let mut bad_replies = 0;
        let mut impostors = Vec::new();
        let mut no_responders = 0;
        let mut interrupted = false;
        let mut quiet_window = None;
        'collect: loop {
            let all_in = wanted
                .as_ref()
                .is_some_and(|w| answered + no_responders >= w.len());
            if directed && all_in {
                break;
            }
            let (deadline, quiet) = if directed || (wanted.is_some() && !all_in) {
                (hard, None)
            } else {
                let window = call.window.unwrap_or(self.config.window);
                (window.deadline(&arrivals, hard), window.quiet(&arrivals))
            };
            let next = tokio::time::timeout_at(deadline.into(), replies.next());
            let first = tokio::select! {
                next = next => match next {
                    Ok(Some(message)) => message,
                    Ok(None) => break,
                    Err(_) => {
                        // Silence ended it only if the window closed before -t.
                        quiet_window = quiet.filter(|_| deadline < hard);
                        break;
                    }
                },
                () = stop.as_mut() => {
                    interrupted = true;
                    break;
                }
            };
            // What has arrived meanwhile is verified together, in batches
            // spread over the cores: 10 000 replies come in a burst.
            let mut batch = vec![(Instant::now(), first)];
            while batch.len() < MAX_REPLY_BATCH {
                match replies.next().now_or_never() {
                    Some(Some(message)) => batch.push((Instant::now(), message)),
                    _ => break,
                }
            }
            let opened = self.open_replies(batch.iter().map(|(_, m)| m));
            for ((now, message), opened) in batch.into_iter().zip(opened) {
                if message.status == Some(async_nats::StatusCode::NO_RESPONDERS) {
                    // Nobody listens on that subject: for a broadcast, nobody
                    // at all; for directed requests, one absent node.
                    if directed {
                        no_responders += 1;
                    } else if responses.is_empty() {
                        break 'collect;
                    }
                    continue;
                }
                let reply = match opened {
                    Ok(reply) => reply,
                    Err(Opened::Malformed(e)) => {
                        bad_replies += 1;
                        tracing::warn!(error = %e, "ignoring a malformed reply");
                        continue;
                    }
                    Err(Opened::Forged { claimed, why }) => {
                        tracing::warn!(%claimed, %why, "ignored a reply that is not from the node it names");
                        impostors.push(claimed);
                        continue;
                    }
                };
                // The broker lets a node publish only on subjects with its own
                // name, so the subject says who really sent this.
                let from = subject::reply_identity(
                    &message.subject,
                    &collective,
                    &self.token,
                    &request.id,
                );
                if from != Some(reply.sender.as_str()) {
                    tracing::warn!(
                        claimed = %reply.sender,
                        subject = %message.subject,
                        "ignored a reply claiming to be from another node"
                    );
                    impostors.push(reply.sender);
                    continue;
                }
                if reply.request_id != request.id || !seen.insert(reply.sender.clone()) {
                    bad_replies += 1;
                    continue;
                }
                if let Some(wanted) = &wanted {
                    if wanted.contains(reply.sender.as_str()) {
                        answered += 1;
                    } else {
                        tracing::debug!(node = %reply.sender, "reply from a node that was not expected");
                    }
                }
                arrivals.record(now);
                let response = Response {
                    reply,
                    rtt: now.saturating_duration_since(sent),
                };
                on_reply(&response);
                responses.push(response);
            }
        }
        let elapsed = sent.elapsed();
        let _ = replies.unsubscribe().await;
        let mut outcome = Outcome {
            request_id: request.id,
            responses,
            expected: None,
            missing: Vec::new(),
            unexpected: Vec::new(),
            bad_replies,
            impostors,
            discovery: None,
            discovery_method: None,
            elapsed,
            interrupted,
            quiet_window,
        };
        if let Some(nodes) = expected.as_ref().or(cross_check) {
            outcome.cross_check(nodes);
        }
        // A directed call keeps its addressing order.
        outcome.expected = expected.or(outcome.expected);
        Ok(outcome)
    }
}

impl Outcome {
    /// A call stopped during discovery: nothing was sent, nobody is known.
    fn interrupted_before_sending(discovery: Duration) -> Outcome {
        Outcome {
            request_id: String::new(),
            responses: Vec::new(),
            expected: None,
            missing: Vec::new(),
            bad_replies: 0,
            unexpected: Vec::new(),
            impostors: Vec::new(),
            discovery: Some(discovery),
            discovery_method: None,
            elapsed: Duration::ZERO,
            interrupted: true,
            quiet_window: None,
        }
    }
}
