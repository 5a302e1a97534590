//! `--dm registry`: discovery answered by `mco registry`.
//!
//! The query is a signed, directed request to the collector's `registry`
//! agent (its identity is `plugin.registry.identity`, default
//! [`DEFAULT_REGISTRY`]), so only callers the broker lets send requests
//! can ask, and the answer is verified like any node's reply.

use std::time::Duration;

use muster_protocol::Filter;
use serde_json::{Map, Value};

use crate::discovery::DiscoveryError;
use crate::{Call, Client, ClientError, Targets};

/// The collector's identity when client.cfg names none.
pub const DEFAULT_REGISTRY: &str = "registry";

/// Asks the registry for the nodes of `collective` that `filter`
/// selects, waiting at most `timeout` for its answer.
pub(crate) async fn discover(
    client: &Client,
    filter: &Filter,
    collective: &str,
    timeout: Duration,
) -> Result<Vec<String>, ClientError> {
    let registry = client
        .config()
        .settings
        .get("plugin.registry.identity")
        .unwrap_or(DEFAULT_REGISTRY)
        .to_string();
    let failed = |reason: String| DiscoveryError::Read {
        source_name: format!("the registry {registry}"),
        reason,
    };
    if filter.uses_data() {
        return Err(DiscoveryError::DataPlugins { method: "registry" }.into());
    }
    let mut data = Map::new();
    data.insert(
        "filter".into(),
        serde_json::to_value(filter)
            .map_err(|e| failed(format!("cannot encode the filter: {e}")))?,
    );
    data.insert("collective".into(), Value::from(collective));
    let mut call = Call::new("registry", "discover")
        .with_data(data)
        .with_targets(Targets::Nodes(vec![registry.clone()]))
        .with_timeout(timeout);
    call.collective = Some(collective.to_string());
    let outcome = client.call(&call, |_| {}).await?;
    let Some(response) = outcome.responses.into_iter().next() else {
        return Err(failed(format!(
            "no answer within {} s (is mco registry running, and is plugin.registry.identity its certificate name?)",
            timeout.as_secs_f64()
        ))
        .into());
    };
    let reply = response.reply;
    if !reply.statuscode.is_ok() {
        return Err(failed(reply.statusmsg).into());
    }
    let nodes = reply
        .data
        .get("nodes")
        .and_then(Value::as_array)
        .ok_or_else(|| failed("its answer has no node list".into()))?;
    let mut identities = Vec::with_capacity(nodes.len());
    for node in nodes {
        match node.as_str() {
            Some(name) if muster_protocol::subject::is_valid_name(name) => {
                identities.push(name.to_string())
            }
            _ => return Err(failed(format!("its answer lists {node}, not an identity")).into()),
        }
    }
    identities.sort();
    identities.dedup();
    Ok(identities)
}
