//! `rpcutil`: what a node knows about itself.

use muster_protocol::Request;
use serde_json::{json, Map, Value};

use muster_protocol::ddl::Ddl;

use crate::agent::{ready, ActionError, ActionFuture, Agent};
use crate::facts::lookup;
use crate::Node;

/// MCollective's rpcutil agent.
pub struct Rpcutil;

impl Agent for Rpcutil {
    fn ddl(&self) -> &Ddl {
        muster_protocol::ddl::builtin("rpcutil").expect("the rpcutil DDL is built in")
    }

    fn call(&self, node: &Node, action: &str, request: &Request) -> ActionFuture {
        ready(match action {
            "ping" => Ok(json!({ "pong": muster_protocol::now_ms() / 1000 })),
            "inventory" => Ok(json!({
                "agents": node.agent_names(),
                "facts": *node.facts(),
                "classes": *node.classes(),
                "collectives": node.collectives(),
                "main_collective": node.main_collective(),
                "version": crate::VERSION,
                "data_plugins": muster_protocol::DATA_PLUGINS.iter().map(|(name, _)| *name).collect::<Vec<_>>(),
            })),
            "get_fact" => get_fact(node, &request.data),
            "get_data" => get_data(node, &request.data),
            "get_facts" => get_facts(node, &request.data),
            "agent_inventory" => Ok(json!({ "agents": node.agent_inventory() })),
            "collective_info" => Ok(json!({
                "main_collective": node.main_collective(),
                "collectives": node.collectives(),
            })),
            "daemon_stats" => {
                let mut stats = node.stats().to_json();
                if let Value::Object(map) = &mut stats {
                    map.insert("version".into(), json!(crate::VERSION));
                    map.insert("pid".into(), json!(std::process::id()));
                    map.insert("agents".into(), json!(node.agent_names()));
                    map.insert("configfile".into(), json!(node.config_file()));
                }
                Ok(stats)
            }
            other => Err(ActionError::unknown_action("rpcutil", other)),
        })
    }
}

fn string_input<'a>(data: &'a Map<String, Value>, name: &str) -> Result<&'a str, ActionError> {
    match data.get(name) {
        None | Some(Value::Null) => Err(ActionError::missing(name)),
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
        Some(_) => Err(ActionError::invalid(format!(
            "input {name:?} must be a non-empty string"
        ))),
    }
}

fn get_fact(node: &Node, data: &Map<String, Value>) -> Result<Value, ActionError> {
    let fact = string_input(data, "fact")?;
    Ok(json!({ "fact": fact, "value": lookup(&node.facts(), fact) }))
}

fn get_facts(node: &Node, data: &Map<String, Value>) -> Result<Value, ActionError> {
    let wanted = string_input(data, "facts")?;
    let facts = node.facts();
    let values: Map<String, Value> = wanted
        .split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(|f| (f.to_string(), lookup(&facts, f).unwrap_or(Value::Null)))
        .collect();
    Ok(json!({ "values": values }))
}

/// `get_data source=fstat query=/etc/hosts`: a data plugin's whole answer.
fn get_data(node: &Node, data: &Map<String, Value>) -> Result<Value, ActionError> {
    let source = string_input(data, "source")?;
    if !muster_protocol::DATA_PLUGINS
        .iter()
        .any(|(name, _)| *name == source)
    {
        return Err(ActionError::invalid(format!(
            "unknown data plugin {source:?}"
        )));
    }
    let query = match data.get("query") {
        None | Some(Value::Null) => "",
        Some(Value::String(s)) => s,
        Some(_) => return Err(ActionError::invalid("input \"query\" must be a string")),
    };
    node.query_data(source, query)
        .map(Value::Object)
        .map_err(|e| ActionError::new(muster_protocol::StatusCode::Aborted, e.to_string()))
}
