//! One node: the checks every request passes and the dispatch to agents.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use muster_pki::Authority;
use muster_protocol::identity::{caller_token, Role};
use muster_protocol::{subject, Envelope, EnvelopeError, NodeView, Reply, Request, StatusCode};
use serde_json::{json, Map, Value};

use crate::agent::Agent;
use crate::agents::Rpcutil;
use crate::audit::{self, AuditLog};
use crate::facts::{lookup, Classes, Facts};
use crate::policy::{self, Policies};
use crate::replay::ReplayGuard;
use crate::stats::{Rejection, Stats};
use crate::ServerConfig;
use muster_protocol::ddl::Metadata;

/// How far in the future a request may be dated (clock skew between hosts).
pub const MAX_CLOCK_SKEW_MS: u64 = 60_000;

/// What became of one incoming message.
#[derive(Debug)]
pub enum Outcome {
    /// Publish `reply` on `subject`.
    Reply { subject: String, reply: Reply },
    /// A valid request whose filter does not select this node.
    Filtered,
    /// Refused without a reply; counted and logged.
    Rejected(Rejection, String),
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
    replay: Mutex<ReplayGuard>,
    stats: Stats,
    max_ttl: u64,
    config_file: Option<PathBuf>,
    policies: Policies,
    audit: Option<AuditLog>,
}

impl Node {
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
            replay: Mutex::new(ReplayGuard::default()),
            stats: Stats::default(),
            max_ttl: 86_400,
            config_file: None,
            policies: Policies::none(),
            audit: None,
        };
        node.add_agent(Arc::new(Rpcutil));
        node
    }

    /// A node as `server.cfg` describes it, trusting `authority`.
    pub fn from_config(config: &ServerConfig, authority: Arc<Authority>) -> Result<Node, String> {
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
        for agent in crate::agents::for_config(config)? {
            node.add_agent(agent);
        }
        node.max_ttl = config.max_ttl;
        node.config_file = config.file.clone();
        let agents = node.agent_names();
        node.policies = Policies::new(
            config.actionpolicy.clone(),
            agents.iter().map(String::as_str),
        );
        node.audit = config.rpcaudit.as_ref().map(AuditLog::open).transpose()?;
        Ok(node)
    }

    pub fn add_agent(&mut self, agent: Arc<dyn Agent>) {
        self.agents.insert(agent.ddl().metadata.name.clone(), agent);
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    pub fn collectives(&self) -> &[String] {
        &self.collectives
    }

    pub fn main_collective(&self) -> &str {
        &self.main_collective
    }

    pub fn facts(&self) -> Arc<Value> {
        self.facts.get()
    }

    pub fn classes(&self) -> Arc<Vec<String>> {
        self.classes.get()
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn config_file(&self) -> Option<&std::path::Path> {
        self.config_file.as_deref()
    }

    pub fn agent_names(&self) -> Vec<String> {
        self.agents.keys().cloned().collect()
    }

    pub fn agent_metadata(&self) -> Vec<Metadata> {
        self.agents
            .values()
            .map(|a| a.ddl().metadata.clone())
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

    /// Checks one message and runs the action it asks for.
    pub async fn handle(&self, payload: &[u8]) -> Outcome {
        Stats::count(&self.stats.total);
        let (request, claimed) = match self.admit(payload) {
            Ok(admitted) => admitted,
            Err((reason, message)) => {
                let first = self.stats.rejected(reason) == 0;
                self.stats.reject(reason);
                if first {
                    tracing::warn!(reason = reason.as_str(), %message, "refused a request (further ones of this kind are logged at debug)");
                } else {
                    tracing::debug!(reason = reason.as_str(), %message, "refused a request");
                }
                return Outcome::Rejected(reason, message);
            }
        };
        if !self.selected_by(&request.filter) {
            Stats::count(&self.stats.filtered);
            return Outcome::Filtered;
        }
        Stats::count(&self.stats.passed);
        let mut request = request;
        let caller = request.caller.clone();
        // The inputs as received, before the DDL converts them.
        let inputs = self.audit.as_ref().map(|_| request.data.clone());
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
                let decision = self
                    .policies
                    .check(&request.agent, &caller, &request.action, self);
                if !decision.allowed {
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
                            match agent.call(self, &request.action, &request).await {
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
        if let (Some(log), Some(inputs)) = (&self.audit, &inputs) {
            log.record(
                &request,
                &caller,
                &claimed,
                inputs,
                outcome,
                reply.statuscode,
            );
        }
        Stats::count(&self.stats.replies);
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
    pub fn query_data(&self, plugin: &str, argument: &str) -> Result<Map<String, Value>, String> {
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
            other => Err(format!("unknown data plugin {other:?}")),
        };
        if result.is_err() {
            Stats::count(&self.stats.data_errors);
        }
        result
    }

    /// The security checks, in order of cost. Returns the request, whose
    /// `caller` is now the verified certificate name, and what it claimed.
    fn admit(&self, payload: &[u8]) -> Result<(Request, String), (Rejection, String)> {
        let envelope = Envelope::from_bytes(payload).map_err(|e| match e {
            EnvelopeError::Version(_) => (Rejection::Version, e.to_string()),
            _ => (Rejection::Malformed, e.to_string()),
        })?;
        let decoded = envelope
            .certificate_der()
            .and_then(|cert| Ok((cert, envelope.signature_bytes()?)));
        let (certificate, signature) =
            decoded.map_err(|e| (Rejection::Signature, e.to_string()))?;
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
        let mut request = envelope.request().map_err(|e| match e {
            EnvelopeError::Version(_) => (Rejection::Version, e.to_string()),
            _ => (Rejection::Malformed, e.to_string()),
        })?;
        let claimed = std::mem::replace(&mut request.caller, caller.clone());
        // It becomes one token of the reply subject.
        if !subject::is_valid_name(&request.id) || request.id.contains('.') {
            return Err((
                Rejection::Malformed,
                format!("request id {:?} cannot be a subject token", request.id),
            ));
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
        let mut replay = self.replay.lock().unwrap_or_else(|p| p.into_inner());
        if !replay.first_sighting(&request.id, request.expires_at(), now) {
            return Err((
                Rejection::Replay,
                format!("request id {} from {caller} was already seen", request.id),
            ));
        }
        Ok((request, claimed))
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

    fn data(&self, plugin: &str, argument: &str) -> Result<Map<String, Value>, String> {
        self.query_data(plugin, argument)
    }
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}
