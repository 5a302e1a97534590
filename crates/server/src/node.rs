//! One node: the checks every request passes and the dispatch to agents.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use muster_pki::Authority;
use muster_protocol::identity::{caller_token, Role};
use muster_protocol::{subject, Envelope, EnvelopeError, NodeView, Reply, Request, StatusCode};
use serde_json::{json, Map, Value};

use crate::agent::Agent;
use crate::agents::{AgentsError, ConfiguredRpcutil, Rpcutil};
use crate::audit::{self, AuditLog, OpenError};
use crate::data::DataError;
use crate::facts::{lookup, Classes, Facts, FactsError};
use crate::policy::{self, Policies};
use crate::replay::{Refusal, ReplayGuard};
use crate::stats::{Rejection, Stats};
use crate::ServerConfig;

/// How many (reason, signer) pairs of refusals are remembered to log the
/// first of each at warn.
const MAX_LOGGED_REFUSERS: usize = 1024;

/// A request that passed the cheap checks, ready for [`Node::run`].
#[derive(Debug)]
pub struct Admitted {
    request: Request,
    claimed: String,
}

impl Admitted {
    /// The request, its `caller` the verified certificate name.
    pub fn request(&self) -> &Request {
        &self.request
    }
}

/// How far in the future a request may be dated (clock skew between hosts).
pub const MAX_CLOCK_SKEW_MS: u64 = 60_000;

/// What became of one incoming message.
#[derive(Debug)]
pub enum Outcome {
    /// Publish `reply` on `subject`.
    Reply {
        /// The requester's reply subject.
        subject: String,
        /// The signed-off answer.
        reply: Reply,
    },
    /// A valid request whose filter does not select this node.
    Filtered,
    /// Refused without a reply; counted and logged.
    Rejected(Rejection, String),
}

/// Why a node could not be built from its config.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Facts or classes could not be read.
    #[error(transparent)]
    Facts(#[from] FactsError),
    /// An agent's settings are wrong, or its directory cannot be read.
    #[error(transparent)]
    Agents(#[from] AgentsError),
    /// The audit log could not be opened.
    #[error(transparent)]
    Audit(#[from] OpenError),
}

/// A node: who it is, what it knows, which agents it runs, which CA it trusts.
pub struct Node {
    identity: String,
    collectives: Vec<String>,
    main_collective: String,
    facts: Facts,
    classes: Classes,
    agents: BTreeMap<String, Arc<dyn Agent>>,
    authority: Arc<Authority>,
    /// Shared with the node a reload replaces: see [`Node::succeeding`].
    replay: Arc<Mutex<ReplayGuard>>,
    stats: Arc<Stats>,
    max_ttl: u64,
    /// When this node started (Unix ms): requests made before are refused.
    started_ms: u64,
    config_file: Option<PathBuf>,
    policies: Policies,
    audit: Option<AuditLog>,
    /// (reason, signer) of refusals already logged at warn.
    refusals: Arc<Mutex<std::collections::HashSet<(Rejection, String)>>>,
    max_in_flight: usize,
    /// Actions of agents other than rpcutil (they run processes) at once.
    agent_slots: tokio::sync::Semaphore,
    max_agent_processes: usize,
}

/// Requests a node handles at once unless `max_in_flight` says otherwise.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 64;
/// Agent actions (processes) a node runs at once unless `max_agent_processes` says otherwise.
pub const DEFAULT_MAX_AGENT_PROCESSES: usize = 8;

impl Node {
    /// This node, built from a reloaded config, taking over from
    /// `running`: the ids it has seen (so nothing it answered replays after
    /// a reload), its counters, its start time and the refusals it has
    /// logged carry over. The replay store keeps its size until a restart.
    pub fn succeeding(mut self, running: &Node) -> Node {
        self.replay = running.replay.clone();
        self.stats = running.stats.clone();
        self.started_ms = running.started_ms;
        self.refusals = running.refusals.clone();
        self
    }

    /// A node with the built-in agents. `collectives` must include
    /// `main_collective`.
    pub fn new(
        identity: &str,
        collectives: Vec<String>,
        main_collective: &str,
        facts: Facts,
        classes: Classes,
        authority: Arc<Authority>,
    ) -> Node {
        let mut node = Node {
            identity: identity.to_string(),
            collectives,
            main_collective: main_collective.to_string(),
            facts,
            classes,
            agents: BTreeMap::new(),
            authority,
            replay: Arc::new(Mutex::new(ReplayGuard::default())),
            stats: Arc::new(Stats::default()),
            max_ttl: crate::config::DEFAULT_MAX_TTL,
            started_ms: muster_protocol::now_ms(),
            config_file: None,
            policies: Policies::none(),
            audit: None,
            refusals: Arc::new(Mutex::new(std::collections::HashSet::new())),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            agent_slots: tokio::sync::Semaphore::new(DEFAULT_MAX_AGENT_PROCESSES),
            max_agent_processes: DEFAULT_MAX_AGENT_PROCESSES,
        };
        node.add_agent(Arc::new(Rpcutil));
        node
    }

    /// A node as `server.cfg` describes it, trusting `authority`.
    pub fn from_config(
        config: &ServerConfig,
        authority: Arc<Authority>,
    ) -> Result<Node, NodeError> {
        let facts = match &config.factsource {
            crate::FactSource::Native => {
                Facts::system_and_files(&config.identity, config.fact_files.clone())?
            }
            crate::FactSource::Facter { command, refresh } => Facts::facter_and_files(
                crate::sysfacts::FacterSource::with_command(
                    command.clone(),
                    vec!["-j".into()],
                    *refresh,
                ),
                *refresh,
                config.fact_files.clone(),
            )?,
        };
        let classes = crate::facts::classes_file(config.classes_file.clone())?;
        let mut node = Node::new(
            &config.identity,
            config.collectives.clone(),
            &config.main_collective,
            facts,
            classes,
            authority,
        );
        node.add_agent(Arc::new(ConfiguredRpcutil::new(config.settings.clone())));
        for agent in crate::agents::for_config(config)? {
            node.add_agent(agent);
        }
        node.max_ttl = config.max_ttl;
        node.replay = Arc::new(Mutex::new(ReplayGuard::new(config.replay_cache_size)));
        node.max_in_flight = config.max_in_flight;
        node.agent_slots = tokio::sync::Semaphore::new(config.max_agent_processes);
        node.max_agent_processes = config.max_agent_processes;
        node.config_file = config.file.clone();
        let agents = node.agent_names();
        node.policies = Policies::new(
            config.actionpolicy.clone(),
            agents.iter().map(String::as_str),
        );
        node.audit = config.rpcaudit.as_ref().map(AuditLog::open).transpose()?;
        Ok(node)
    }

    /// Hosts `agent`, replacing one of the same name.
    pub fn add_agent(&mut self, agent: Arc<dyn Agent>) {
        self.agents.insert(agent.ddl().metadata.name.clone(), agent);
    }

    /// The node's name, as `-I` filters and replies see it.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// How many requests it handles at once.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }

    /// The collectives the node answers in.
    pub fn collectives(&self) -> &[String] {
        &self.collectives
    }

    /// The collective it answers in when a request names none.
    pub fn main_collective(&self) -> &str {
        &self.main_collective
    }

    /// The merged facts, re-read first if a fact file changed.
    pub fn facts(&self) -> Arc<Value> {
        self.facts.get()
    }

    /// The classes, re-read first if the classes file changed.
    pub fn classes(&self) -> Arc<Vec<String>> {
        self.classes.get()
    }

    /// The node's request counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The config file it was built from, if any (`inventory` reports it).
    pub fn config_file(&self) -> Option<&std::path::Path> {
        self.config_file.as_deref()
    }

    /// The names of the agents it hosts, sorted.
    pub fn agent_names(&self) -> Vec<String> {
        self.agents.keys().cloned().collect()
    }

    /// What `rpcutil agent_inventory` answers: each agent's DDL metadata,
    /// its `agent` name and `provider` (`builtin` or `external`), and for
    /// an external agent its `executable` and `ddl` files.
    pub fn agent_inventory(&self) -> Vec<Value> {
        self.agents
            .iter()
            .map(|(name, agent)| {
                let mut entry = serde_json::to_value(&agent.ddl().metadata)
                    .unwrap_or_else(|_| Value::Object(Default::default()));
                if let Value::Object(map) = &mut entry {
                    map.insert("agent".into(), Value::from(name.as_str()));
                    match agent.origin() {
                        crate::agent::Origin::Builtin => {
                            map.insert("provider".into(), "builtin".into());
                        }
                        crate::agent::Origin::External { executable, ddl } => {
                            map.insert("provider".into(), "external".into());
                            map.insert(
                                "executable".into(),
                                executable.display().to_string().into(),
                            );
                            map.insert("ddl".into(), ddl.display().to_string().into());
                        }
                    }
                }
                entry
            })
            .collect()
    }

    /// The subjects this node listens on: its own, and a broadcast
    /// subject per agent, in each of its collectives.
    pub fn subjects(&self) -> Vec<String> {
        let mut subjects = Vec::new();
        for collective in &self.collectives {
            subjects.push(subject::node(collective, &self.identity));
            for agent in self.agents.keys() {
                subjects.push(subject::broadcast(collective, agent));
            }
        }
        subjects
    }

    /// [`Node::handle`] for a message that arrived on `subject`: a
    /// directed request must come on this node's own subject and a
    /// broadcast on a broadcast subject, so a copy moved from one to the
    /// other is refused.
    pub async fn handle_on(&self, subject: &str, payload: &[u8]) -> Outcome {
        match self.admit_on(Some(subject), payload) {
            Ok(admitted) => self.run(admitted).await,
            Err((reason, message)) => Outcome::Rejected(reason, message),
        }
    }

    /// Checks one message and runs the action it asks for.
    pub async fn handle(&self, payload: &[u8]) -> Outcome {
        match self.admit_on(None, payload) {
            Ok(admitted) => self.run(admitted).await,
            Err((reason, message)) => Outcome::Rejected(reason, message),
        }
    }

    /// The cheap checks, in order of cost: envelope, certificate and
    /// signature, addressing, age, replay. What passes may be queued for
    /// [`Node::run`]; what does not is counted and logged here.
    pub fn admit_on(
        &self,
        subject: Option<&str>,
        payload: &[u8],
    ) -> Result<Admitted, (Rejection, String)> {
        Stats::count(&self.stats.total);
        let (request, claimed) = self
            .admit(payload)
            .map_err(|(reason, signer, message)| self.refuse(reason, &signer, message))?;
        if let Some(subject) = subject {
            let directed = self
                .collectives
                .iter()
                .any(|c| subject == muster_protocol::subject::node(c, &self.identity));
            if directed != request.targets.is_some() {
                let message = format!(
                    "request {} sent as {} arrived on a {} subject",
                    request.id,
                    if directed {
                        "a broadcast"
                    } else {
                        "a directed request"
                    },
                    if directed { "directed" } else { "broadcast" }
                );
                return Err(self.refuse(Rejection::Misaddressed, &request.caller, message));
            }
        }
        Ok(Admitted { request, claimed })
    }

    /// Counts and logs a refusal: the first of each reason from each signer
    /// at warn (a bounded set, so a flood of new names cannot grow it), the
    /// rest at debug.
    fn refuse(&self, reason: Rejection, signer: &str, message: String) -> (Rejection, String) {
        self.stats.reject(reason);
        let first = {
            let mut seen = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
            // Full: a flood of new names is logged at debug, not at warn.
            seen.len() < MAX_LOGGED_REFUSERS && seen.insert((reason, signer.to_string()))
        };
        if first {
            tracing::warn!(reason = reason.as_str(), signer, %message, "refused a request (more like it are logged at debug)");
        } else {
            tracing::debug!(reason = reason.as_str(), signer, %message, "refused a request");
        }
        (reason, message)
    }

    /// The answer to an admitted request the node has no room for.
    pub fn busy(&self, admitted: &Admitted, why: &str) -> Outcome {
        let request = &admitted.request;
        self.stats.reject(Rejection::Busy);
        tracing::warn!(caller = %request.caller, agent = %request.agent, why, "answered busy");
        Outcome::Reply {
            subject: subject::reply(
                &request.collective,
                &caller_token(&request.caller),
                &request.id,
                &self.identity,
            ),
            reply: Reply::error(
                &request.id,
                &self.identity,
                StatusCode::Aborted,
                format!("node busy: {why}; try again later"),
            ),
        }
    }

    /// Authorizes, filters and runs an admitted request.
    pub async fn run(&self, admitted: Admitted) -> Outcome {
        let Admitted { request, claimed } = admitted;
        // Authorization before anything costly: a caller the policy denies
        // never makes this node evaluate a data plugin, and is not told
        // whether the node would have matched one.
        let denied = self.agents.get(&request.agent).and_then(|_| {
            let decision =
                self.policies
                    .check(&request.agent, &request.caller, &request.action, self);
            (!decision.allowed).then_some(decision)
        });
        if denied.is_some() && request.filter.uses_data() {
            Stats::count(&self.stats.unauthorized);
            let message = format!(
                "{} may not run {}.{} here; its data-plugin filter was not evaluated",
                request.caller, request.agent, request.action
            );
            self.stats.reject(Rejection::Denied);
            tracing::debug!(%message, "refused a request");
            return Outcome::Rejected(Rejection::Denied, message);
        }
        if !self.selected_by(&request.filter) {
            Stats::count(&self.stats.filtered);
            return Outcome::Filtered;
        }
        Stats::count(&self.stats.passed);
        let started = std::time::Instant::now();
        let mut request = request;
        let caller = request.caller.clone();
        // The inputs as received, before the DDL converts them.
        let inputs = self.audit.as_ref().map(|_| request.data.clone());
        // Set once the accepted line is written, right before the agent runs.
        let mut accepted = None;
        let mut unaudited = false;
        let (reply, outcome) = match self.agents.get(&request.agent) {
            None => (
                Reply::error(
                    &request.id,
                    &self.identity,
                    StatusCode::UnknownAction,
                    format!("unknown agent {:?}", request.agent),
                ),
                audit::Outcome::Invalid,
            ),
            Some(agent) => {
                if let Some(decision) = denied {
                    Stats::count(&self.stats.unauthorized);
                    tracing::warn!(
                        caller,
                        agent = request.agent,
                        action = request.action,
                        by = decision.reason,
                        "denied by the action policy"
                    );
                    let reply = Reply::error(
                        &request.id,
                        &self.identity,
                        StatusCode::Aborted,
                        policy::DENIED,
                    );
                    (reply, audit::Outcome::Denied)
                } else {
                    // The agent sees only inputs its DDL allows, converted to
                    // the declared types, whatever the client checked.
                    let mut data = std::mem::take(&mut request.data);
                    match agent.ddl().validate(&request.action, &mut data) {
                        Err(e) => (
                            Reply::error(&request.id, &self.identity, e.code, e.message),
                            audit::Outcome::Invalid,
                        ),
                        Ok(()) => {
                            request.data = data;
                            // rpcutil answers from memory; other agents run processes.
                            let slot = match request.agent.as_str() {
                                "rpcutil" => None,
                                _ => Some(self.agent_slots.try_acquire()),
                            };
                            let result = match slot {
                                Some(Err(_)) => Err(crate::agent::ActionError::new(
                                    StatusCode::Aborted,
                                    format!(
                                        "node busy: {} agent actions are running (max_agent_processes); try again later",
                                        self.max_agent_processes
                                    ),
                                )),
                                _ => match (&self.audit, &inputs) {
                                    (Some(log), Some(inputs)) => {
                                        match log.accepted(&request, &caller, &claimed, inputs) {
                                            Ok(entry) => {
                                                accepted = Some(entry);
                                                agent.call(self, &request.action, &request).await
                                            }
                                            Err(e) => {
                                                tracing::debug!(error = %e, "refused a request it cannot audit");
                                                unaudited = true;
                                                Err(crate::agent::ActionError::new(
                                                    StatusCode::Aborted,
                                                    e.reply_message(),
                                                ))
                                            }
                                        }
                                    }
                                    _ => agent.call(self, &request.action, &request).await,
                                },
                            };
                            match result {
                                Ok(data) => (
                                    Reply::ok(&request.id, &self.identity, data),
                                    audit::Outcome::Ok,
                                ),
                                Err(e) => (
                                    Reply {
                                        data: e.data,
                                        ..Reply::error(
                                            &request.id,
                                            &self.identity,
                                            e.code,
                                            e.message,
                                        )
                                    },
                                    audit::Outcome::Failed,
                                ),
                            }
                        }
                    }
                }
            }
        };
        if let Some(entry) = accepted {
            entry.finished(outcome, reply.statuscode);
        } else if let (Some(log), Some(inputs), false) = (&self.audit, &inputs, unaudited) {
            log.refused(
                &request,
                &caller,
                &claimed,
                inputs,
                outcome,
                reply.statuscode,
            );
        }
        Stats::count(&self.stats.replies);
        let (agent, action, status) = (&request.agent, &request.action, reply.statuscode);
        self.stats
            .finished(agent, action, status, started.elapsed());
        Outcome::Reply {
            // The reply subject comes from the verified signer, never from
            // the unsigned NATS reply field: only that caller can read it.
            subject: subject::reply(
                &request.collective,
                &caller_token(&caller),
                &request.id,
                &self.identity,
            ),
            reply,
        }
    }

    /// Evaluates a filter. Data plugins read files and /proc, so with
    /// them the evaluation leaves the async worker thread.
    fn selected_by(&self, filter: &muster_protocol::Filter) -> bool {
        let evaluate = || match filter.evaluate(self) {
            Ok(selected) => selected,
            Err(e) => {
                tracing::debug!(error = %e, "a data plugin failed; not selected");
                false
            }
        };
        let multi_thread = tokio::runtime::Handle::try_current()
            .map(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
            .unwrap_or(false);
        if filter.uses_data() && multi_thread {
            tokio::task::block_in_place(evaluate)
        } else {
            evaluate()
        }
    }

    /// A data plugin's answer, as `-S` queries and `rpcutil get_data` see it.
    pub fn query_data(
        &self,
        plugin: &str,
        argument: &str,
    ) -> Result<Map<String, Value>, DataError> {
        let result = match plugin {
            "fact" => Ok(object(
                json!({ "value": lookup(&self.facts.get(), argument) }),
            )),
            "collective" => Ok(object(
                json!({ "member": self.collectives.iter().any(|c| c == argument) }),
            )),
            "agent" => Ok(self
                .agents
                .get(argument)
                .map(|agent| {
                    let meta = &agent.ddl().metadata;
                    object(json!({
                        "agent": meta.name,
                        "name": meta.name,
                        "author": meta.author,
                        "description": meta.description,
                        "license": meta.license,
                        "timeout": meta.timeout,
                        "url": meta.url,
                        "version": meta.version,
                        "actions": agent.ddl().action_names(),
                    }))
                })
                .unwrap_or_default()),
            "fstat" => crate::data::fstat(argument),
            "process" => crate::data::process(argument),
            "sysctl" => crate::data::sysctl(argument),
            // Data plugins that come with an agent (`puppet`).
            other => match self.agents.get(other).and_then(|a| a.data(argument)) {
                Some(result) => result,
                None => Err(DataError::UnknownPlugin(other.to_string())),
            },
        };
        if result.is_err() {
            Stats::count(&self.stats.data_errors);
        }
        result
    }

    /// The security checks, in order of cost. Returns the request, whose
    /// `caller` is now the verified certificate name, and what it claimed.
    fn admit(&self, payload: &[u8]) -> Result<(Request, String), (Rejection, String, String)> {
        let mut signer = String::new();
        self.admit_inner(payload, &mut signer)
            .map_err(|(reason, message)| (reason, signer, message))
    }

    /// `signer` is set to the certificate name once it verified.
    fn admit_inner(
        &self,
        payload: &[u8],
        signer_name: &mut String,
    ) -> Result<(Request, String), (Rejection, String)> {
        let envelope = Envelope::from_bytes(payload).map_err(|e| match e {
            EnvelopeError::Version(_) => (Rejection::Version, e.to_string()),
            _ => (Rejection::Malformed, e.to_string()),
        })?;
        let decoded = envelope
            .certificate_der()
            .and_then(|cert| Ok((cert, envelope.signature_bytes()?)));
        let (certificate, signature) =
            decoded.map_err(|e| (Rejection::Signature, e.to_string()))?;
        // Who it claims to be, until the chain says so.
        *signer_name = muster_pki::certificate_name(&certificate).unwrap_or_default();
        let signer = self
            .authority
            .verify_signature(
                &certificate,
                &envelope.scheme,
                envelope.request.as_bytes(),
                &signature,
            )
            .map_err(|e| match e {
                muster_pki::PkiError::BadSignature(m) => (Rejection::Signature, m),
                other => (Rejection::Untrusted, other.to_string()),
            })?;
        if signer.role != Role::Caller {
            return Err((
                Rejection::Untrusted,
                format!(
                    "{:?} may not send requests: only callers' certificates ({}) may",
                    signer.name, "<user>.mcollective"
                ),
            ));
        }
        let caller = signer.name;
        signer_name.clone_from(&caller);
        let mut request = envelope.request().map_err(|e| match e {
            EnvelopeError::Version(_) => (Rejection::Version, e.to_string()),
            _ => (Rejection::Malformed, e.to_string()),
        })?;
        let claimed = std::mem::replace(&mut request.caller, caller.clone());
        // One fixed shape: it becomes a subject token and a replay-store key.
        if !muster_protocol::is_valid_id(&request.id) {
            return Err((
                Rejection::Malformed,
                format!(
                    "request id {:?} is not 32 hex digits",
                    request.id.chars().take(40).collect::<String>()
                ),
            ));
        }
        if let Some(targets) = &request.targets {
            if targets.len() > muster_protocol::MAX_TARGETS {
                return Err((
                    Rejection::Malformed,
                    format!(
                        "request names {} targets, more than {}",
                        targets.len(),
                        muster_protocol::MAX_TARGETS
                    ),
                ));
            }
            if !targets.contains(&self.identity) {
                return Err((
                    Rejection::Misaddressed,
                    format!(
                        "request {} from {caller} is addressed to {} other node(s), not to {}",
                        request.id,
                        targets.len(),
                        self.identity
                    ),
                ));
            }
        }
        if !self.collectives.contains(&request.collective) {
            return Err((
                Rejection::Collective,
                format!("request for collective {:?}", request.collective),
            ));
        }
        if request.ttl > self.max_ttl {
            return Err((
                Rejection::TtlTooLong,
                format!(
                    "ttl {}s is longer than the {}s this node accepts",
                    request.ttl, self.max_ttl
                ),
            ));
        }
        let now = muster_protocol::now_ms();
        if now > request.expires_at() {
            return Err((
                Rejection::Expired,
                format!(
                    "request {} from {caller} expired {} ms ago",
                    request.id,
                    now - request.expires_at()
                ),
            ));
        }
        if request.time > now + MAX_CLOCK_SKEW_MS {
            return Err((
                Rejection::Expired,
                format!(
                    "request {} from {caller} is dated {} ms in the future",
                    request.id,
                    request.time - now
                ),
            ));
        }
        if request.time < self.started_ms {
            return Err((
                Rejection::Replay,
                format!(
                    "request {} from {caller} was made {} ms before this node started; \
                     it may have run before the restart (or the caller's clock is behind)",
                    request.id,
                    self.started_ms - request.time
                ),
            ));
        }
        let mut replay = self.replay.lock().unwrap_or_else(|p| p.into_inner());
        match replay.first_sighting(&request.id, request.expires_at(), now) {
            Ok(()) => Ok((request, claimed)),
            Err(Refusal::Seen) => Err((
                Rejection::Replay,
                format!("request id {} from {caller} was already seen", request.id),
            )),
            Err(Refusal::Full) => Err((
                Rejection::Busy,
                format!(
                    "refused request {} from {caller}: {} requests are in the replay window \
                     (plugin.security.replay_cache_size)",
                    request.id,
                    replay.capacity()
                ),
            )),
            Err(Refusal::Malformed) => Err((
                Rejection::Malformed,
                format!("request id {:?} is not 32 hex digits", request.id),
            )),
        }
    }
}

impl NodeView for Node {
    fn identity(&self) -> &str {
        &self.identity
    }

    fn has_class(&self, matches: &dyn Fn(&str) -> bool) -> bool {
        self.classes.get().iter().any(|c| matches(c))
    }

    fn has_agent(&self, matches: &dyn Fn(&str) -> bool) -> bool {
        self.agents.keys().any(|a| matches(a))
    }

    fn fact(&self, path: &str) -> Option<Value> {
        lookup(&self.facts.get(), path)
    }

    fn data(
        &self,
        plugin: &str,
        argument: &str,
    ) -> Result<Map<String, Value>, muster_protocol::DataError> {
        self.query_data(plugin, argument)
            .map_err(|e| muster_protocol::DataError::new(plugin, e.to_string()))
    }
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}
