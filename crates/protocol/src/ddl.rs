//! Agent descriptions (DDL), in Choria's JSON DDL layout.
//!
//! A DDL says what an agent's actions take and give: each input's type,
//! whether it is optional, its default and how it is validated; each
//! output's display name and default; and the aggregate summaries a client
//! computes across replies. Clients validate inputs before sending and
//! nodes validate again, both with [`Ddl::validate`].
//!
//! ```
//! use muster_protocol::ddl::Ddl;
//! let ddl: Ddl = serde_json::from_str(r#"{
//!   "metadata": {"name": "echo", "description": "Echoes", "author": "ops", "version": "1.0",
//!                "license": "Apache-2.0", "timeout": 5},
//!   "actions": [{"action": "say", "description": "Say it",
//!                "input": {"text": {"prompt": "Text", "description": "What to say", "type": "string",
//!                                   "validation": "shellsafe", "maxlength": 20, "optional": false}},
//!                "output": {"text": {"description": "What was said", "display_as": "Text"}}}]
//! }"#).unwrap();
//! assert_eq!(ddl.action("say").unwrap().input["text"].maxlength, Some(20));
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A whole agent DDL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ddl {
    #[serde(rename = "$schema", default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    pub metadata: Metadata,
    #[serde(default)]
    pub actions: Vec<Action>,
}

/// Who made an agent and how long its actions may run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub author: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub license: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub url: String,
    /// Seconds an action may run before it is killed.
    #[serde(default = "default_timeout")]
    pub timeout: u64,
}

fn default_timeout() -> u64 {
    10
}

/// When the client shows a node's reply to an action.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Display {
    #[default]
    Always,
    Ok,
    Failed,
}

/// One action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    pub action: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub display: Display,
    #[serde(default)]
    pub input: BTreeMap<String, Input>,
    #[serde(default)]
    pub output: BTreeMap<String, Output>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aggregate: Vec<Aggregate>,
}

/// The type of an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputType {
    String,
    Integer,
    Float,
    Number,
    Boolean,
    List,
    Hash,
    /// A choice from `list`.
    Enum,
}

/// One input of an action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Input {
    #[serde(default)]
    pub prompt: String,
    #[serde(default)]
    pub description: String,
    #[serde(rename = "type")]
    pub kind: InputType,
    #[serde(default)]
    pub optional: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    /// A regular expression, or a named validator (shellsafe,
    /// ipv4address, ipv6address, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maxlength: Option<usize>,
    /// Allowed values (for `enum`, and optionally for strings).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub list: Vec<Value>,
}

/// One output of an action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Output {
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub display_as: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// An aggregate summary the client computes over replies, e.g.
/// `{"function": "summary", "args": ["ensure"]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Aggregate {
    pub function: String,
    #[serde(default)]
    pub args: Vec<Value>,
}

impl Ddl {
    /// Parses a DDL, with the agent's name in errors.
    pub fn from_json(text: &str) -> Result<Ddl, String> {
        serde_json::from_str(text).map_err(|e| format!("invalid DDL: {e}"))
    }

    pub fn action(&self, name: &str) -> Option<&Action> {
        self.actions.iter().find(|a| a.action == name)
    }

    pub fn action_names(&self) -> Vec<String> {
        self.actions.iter().map(|a| a.action.clone()).collect()
    }
}

/// The DDLs of the agents built into every node, so clients know them
/// without asking and nodes serve exactly what they describe.
const BUILTIN: &[(&str, &str)] = &[
    ("filemgr", include_str!("../ddl/filemgr.json")),
    ("package", include_str!("../ddl/package.json")),
    ("puppet", include_str!("../ddl/puppet.json")),
    ("rpcutil", include_str!("../ddl/rpcutil.json")),
    ("service", include_str!("../ddl/service.json")),
];

/// The DDL of a built-in agent.
pub fn builtin(name: &str) -> Option<&'static Ddl> {
    static PARSED: std::sync::OnceLock<Vec<Ddl>> = std::sync::OnceLock::new();
    PARSED
        .get_or_init(|| {
            BUILTIN
                .iter()
                .filter_map(|(name, text)| match Ddl::from_json(text) {
                    Ok(ddl) => Some(ddl),
                    // A test checks every built-in DDL parses.
                    Err(e) => {
                        eprintln!("built-in DDL {name}: {e}");
                        None
                    }
                })
                .collect()
        })
        .iter()
        .find(|ddl| ddl.metadata.name == name)
}

/// The names of the built-in agents' DDLs.
pub fn builtin_names() -> Vec<&'static str> {
    BUILTIN.iter().map(|(name, _)| *name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_ddl_parses_and_is_named_after_its_file() {
        for (name, text) in BUILTIN {
            let ddl = Ddl::from_json(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(ddl.metadata.name, *name);
            assert!(builtin(name).is_some());
        }
        assert!(builtin("nosuch").is_none());
    }
}
