//! The `registry` agent: how the collector answers `--dm registry`.
//!
//! It runs on the collector's own [`Node`], so a query goes through
//! everything a request to a node goes through (a caller's certificate
//! from the CA, a valid signature, ttl, replay, action policy) and its
//! answer is signed with the collector's certificate.

use std::sync::{Arc, Mutex};

use muster_protocol::ddl::Ddl;
use muster_protocol::{Filter, Request, StatusCode};
use muster_server::agent::{ready, ActionError, ActionFuture, Agent};
use muster_server::Node;
use serde_json::{json, Value};

use crate::{QueryError, Registry};

/// The registry agent, sharing the collector's [`Registry`].
pub struct RegistryAgent {
    registry: Arc<Mutex<Registry>>,
}

impl RegistryAgent {
    /// The agent answering from `registry`.
    pub fn new(registry: Arc<Mutex<Registry>>) -> RegistryAgent {
        RegistryAgent { registry }
    }
}

/// The agent's DDL.
pub fn ddl() -> &'static Ddl {
    static DDL: std::sync::OnceLock<Ddl> = std::sync::OnceLock::new();
    DDL.get_or_init(|| {
        // A unit test checks it parses.
        Ddl::from_json(include_str!("registry.json")).unwrap_or_else(|e| {
            panic!("the registry DDL does not parse: {e}");
        })
    })
}

impl Agent for RegistryAgent {
    fn ddl(&self) -> &Ddl {
        ddl()
    }

    fn call(&self, node: &Node, action: &str, request: &Request) -> ActionFuture {
        let registry = match self.registry.lock() {
            Ok(registry) => registry,
            Err(poisoned) => poisoned.into_inner(),
        };
        ready(match action {
            "discover" => discover(&registry, node, request),
            "status" => Ok(json!({
                "known": registry.len(),
                "store": registry.store_error().map_or_else(|| "ok".to_string(), |e| format!("unavailable: {e}")),
                "accepted": registry.counters().accepted,
                "refused": {
                    "total": registry.counters().refused(),
                    "oversized": registry.counters().oversized,
                    "malformed": registry.counters().malformed,
                    "forged": registry.counters().forged,
                    "unknown_node": registry.counters().unknown_node,
                },
                "expired": registry.counters().expired,
            })),
            other => Err(ActionError::new(
                StatusCode::UnknownAction,
                format!("unknown action {other}"),
            )),
        })
    }
}

fn discover(registry: &Registry, node: &Node, request: &Request) -> Result<Value, ActionError> {
    let filter: Filter = match request.data.get("filter") {
        None | Some(Value::Null) => Filter::default(),
        Some(value) => serde_json::from_value(value.clone())
            .map_err(|e| ActionError::invalid(format!("not a filter: {e}")))?,
    };
    let collective = request
        .data
        .get("collective")
        .and_then(Value::as_str)
        .unwrap_or(node.main_collective());
    match registry.select(&filter, collective) {
        Ok(nodes) => Ok(json!({"nodes": nodes, "known": registry.len()})),
        Err(e @ QueryError::DataPlugins) => Err(ActionError::invalid(e.to_string())),
        Err(e @ QueryError::StoreUnavailable(_)) => {
            Err(ActionError::new(StatusCode::Aborted, e.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_ddl_parses() {
        assert_eq!(super::ddl().metadata.name, "registry");
    }
}
