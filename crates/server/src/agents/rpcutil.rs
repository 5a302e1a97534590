//! `rpcutil`: what a node knows about itself.
//!
//! `get_config_item` answers a `server.cfg` setting as the daemon runs
//! with it: the value set, else its default. Secrets (the keys of kind
//! [`Kind::Secret`], and passwords in broker URLs) are masked as
//! check-config masks them, never sent.

use muster_protocol::config::{Config, ConfigFile, Kind, KEYS};
use muster_protocol::Request;
use serde_json::{json, Map, Value};

use muster_protocol::ddl::Ddl;

use crate::agent::{ready, ActionError, ActionFuture, Agent};
use crate::facts::lookup;
use crate::Node;

/// MCollective's rpcutil agent, on a node built without a configuration
/// file: `get_config_item` answers the defaults.
pub struct Rpcutil;

/// rpcutil on a node started from `server.cfg`, which `get_config_item`
/// reads.
pub(crate) struct ConfiguredRpcutil {
    settings: Config,
}

impl ConfiguredRpcutil {
    pub(crate) fn new(settings: Config) -> ConfiguredRpcutil {
        ConfiguredRpcutil { settings }
    }
}

fn ddl() -> &'static Ddl {
    muster_protocol::ddl::builtin("rpcutil").expect("the rpcutil DDL is built in")
}

impl Agent for Rpcutil {
    fn ddl(&self) -> &Ddl {
        ddl()
    }

    fn call(&self, node: &Node, action: &str, request: &Request) -> ActionFuture {
        ready(answer(node, action, request, &Config::default()))
    }
}

impl Agent for ConfiguredRpcutil {
    fn ddl(&self) -> &Ddl {
        ddl()
    }

    fn call(&self, node: &Node, action: &str, request: &Request) -> ActionFuture {
        ready(answer(node, action, request, &self.settings))
    }
}

fn answer(
    node: &Node,
    action: &str,
    request: &Request,
    settings: &Config,
) -> Result<Value, ActionError> {
    match action {
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
        "get_config_item" => get_config_item(node, &request.data, settings),
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
    }
}

/// `get_config_item item=collectives`: one server setting as the daemon
/// uses it, typed by its kind (numbers, flags and lists as JSON ones).
/// Keys the daemon does not read are refused, as Choria refuses them;
/// secrets are masked.
fn get_config_item(
    node: &Node,
    data: &Map<String, Value>,
    settings: &Config,
) -> Result<Value, ActionError> {
    let item = string_input(data, "item")?;
    let Some(setting) = settings
        .effective(ConfigFile::Server)
        .into_iter()
        .find(|s| s.key.name == item)
    else {
        let why = match KEYS.iter().find(|k| k.name == item) {
            Some(_) => "a client.cfg setting, which the server does not read",
            None => "not a setting muster reads (docs/configuration.md lists them)",
        };
        return Err(ActionError::new(
            muster_protocol::StatusCode::Aborted,
            format!("unknown config item {item:?}: {why}"),
        ));
    };
    // Settings whose defaults the node works out itself.
    let value = match (item, setting.line) {
        ("identity", None) => json!(node.identity()),
        ("main_collective", None) => json!(node.main_collective()),
        ("collectives", _) => json!(node.collectives()),
        ("max_in_flight", _) => json!(node.max_in_flight()),
        // `effective` has masked the secrets already.
        _ => typed(setting.key.kind, &setting.value),
    };
    Ok(json!({ "item": item, "value": value }))
}

/// A setting's text as the JSON value of its kind; text when it does not
/// parse (the daemon refused to start on such a value anyway).
fn typed(kind: Kind, value: &str) -> Value {
    let list = || {
        Value::from(
            value
                .split(',')
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .collect::<Vec<_>>(),
        )
    };
    match kind {
        Kind::Number => value
            .parse::<u64>()
            .map_or_else(|_| json!(value), |n| json!(n)),
        Kind::Flag => match value.to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" | "on" | "y" => json!(true),
            "false" | "no" | "0" | "off" | "n" => json!(false),
            _ => json!(value),
        },
        Kind::List | Kind::Paths | Kind::AbsPaths => list(),
        _ => json!(value),
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
