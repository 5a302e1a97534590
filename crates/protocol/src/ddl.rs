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

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Mutex, OnceLock};

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};

use crate::StatusCode;

/// A whole agent DDL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ddl {
    /// The JSON schema the file names, kept so a DDL round-trips.
    #[serde(rename = "$schema", default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// Who wrote the agent, and its timeout.
    pub metadata: Metadata,
    /// The actions the agent offers.
    #[serde(default)]
    pub actions: Vec<Action>,
}

/// Who made an agent and how long its actions may run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// The agent name, as requests address it.
    pub name: String,
    /// What the agent is for.
    #[serde(default)]
    pub description: String,
    /// Who wrote it.
    #[serde(default)]
    pub author: String,
    /// Its version.
    #[serde(default)]
    pub version: String,
    /// Its licence.
    #[serde(default)]
    pub license: String,
    /// Where to read more.
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
    /// Every reply.
    #[default]
    Always,
    /// Only successful replies.
    Ok,
    /// Only failed replies.
    Failed,
}

/// One action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    /// The action name, as requests address it.
    pub action: String,
    /// What the action does.
    #[serde(default)]
    pub description: String,
    /// Which replies the client shows.
    #[serde(default)]
    pub display: Display,
    /// The inputs, by name.
    #[serde(default)]
    pub input: BTreeMap<String, Input>,
    /// The outputs, by name.
    #[serde(default)]
    pub output: BTreeMap<String, Output>,
    /// Summaries the client computes over all replies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aggregate: Vec<Aggregate>,
}

/// The type of an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputType {
    /// Text.
    String,
    /// A whole number.
    Integer,
    /// A floating-point number.
    Float,
    /// Any number.
    Number,
    /// `true` or `false`.
    Boolean,
    /// A list of values.
    List,
    /// A JSON object.
    Hash,
    /// A choice from `list`.
    Enum,
}

/// One input of an action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Input {
    /// What to ask a user for this input.
    #[serde(default)]
    pub prompt: String,
    /// What the input means.
    #[serde(default)]
    pub description: String,
    /// The type a value must have (or be converted to).
    #[serde(rename = "type")]
    pub kind: InputType,
    /// Whether a request may leave it out.
    #[serde(default)]
    pub optional: bool,
    /// The value used when a request leaves it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    /// A regular expression, or a named validator (shellsafe,
    /// ipv4address, ipv6address, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<String>,
    /// The longest text accepted, in characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maxlength: Option<usize>,
    /// Allowed values (for `enum`, and optionally for strings).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub list: Vec<Value>,
}

/// One output of an action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Output {
    /// What the output means.
    #[serde(default)]
    pub description: String,
    /// The heading the client shows it under.
    #[serde(default)]
    pub display_as: String,
    /// The value a node reports when the action sets none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    /// The type the output has, informational.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// An aggregate summary the client computes over replies, e.g.
/// `{"function": "summary", "args": ["ensure"]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Aggregate {
    /// The aggregate function: `summary`, `average`, `boolean_summary`, ...
    pub function: String,
    /// Its arguments, usually the output to summarise.
    #[serde(default)]
    pub args: Vec<Value>,
}

impl Ddl {
    /// Parses a DDL, with the agent's name in errors.
    pub fn from_json(text: &str) -> Result<Ddl, DdlError> {
        serde_json::from_str(text).map_err(DdlError)
    }

    /// The action called `name`, if the agent has one.
    pub fn action(&self, name: &str) -> Option<&Action> {
        self.actions.iter().find(|a| a.action == name)
    }

    /// The names of all actions, in DDL order.
    pub fn action_names(&self) -> Vec<String> {
        self.actions.iter().map(|a| a.action.clone()).collect()
    }
}

/// DDL text that is not a DDL; the JSON error says where.
#[derive(Debug, thiserror::Error)]
#[error("invalid DDL: {0}")]
pub struct DdlError(#[source] pub serde_json::Error);

/// Why a request's inputs were refused, with the status a node answers.
///
/// The message names the input, what was given and what is allowed, e.g.
/// `input "count" must be an integer, got "three"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InputError {
    /// The input at fault; empty when the action itself is unknown.
    pub input: String,
    /// [`StatusCode::MissingData`], [`StatusCode::InvalidData`] or
    /// [`StatusCode::UnknownAction`].
    pub code: StatusCode,
    /// What is wrong, for the reply's status message.
    pub message: String,
}

impl InputError {
    fn missing(input: &str) -> InputError {
        InputError {
            input: input.to_string(),
            code: StatusCode::MissingData,
            message: format!("missing required input {input:?}"),
        }
    }

    fn invalid(input: &str, message: String) -> InputError {
        InputError {
            input: input.to_string(),
            code: StatusCode::InvalidData,
            message,
        }
    }
}

/// The validators a DDL may name in `validation` instead of a regex.
pub const NAMED_VALIDATORS: &[&str] = &[
    "shellsafe",
    "ipv4address",
    "ipv6address",
    "ipaddress",
    "boolean",
    "integer",
    "float",
    "number",
    "hostname",
];

impl Ddl {
    /// Validates and converts the inputs of a request for `action`, as
    /// [`Action::validate`] does; an action the DDL does not list is
    /// [`StatusCode::UnknownAction`].
    ///
    /// ```
    /// use muster_protocol::{ddl, StatusCode};
    /// let rpcutil = ddl::builtin("rpcutil").unwrap();
    /// let mut data = serde_json::Map::new();
    /// let err = rpcutil.validate("reboot", &mut data).unwrap_err();
    /// assert_eq!(err.code, StatusCode::UnknownAction);
    /// ```
    pub fn validate(&self, action: &str, data: &mut Map<String, Value>) -> Result<(), InputError> {
        match self.action(action) {
            Some(found) => found.validate(data),
            None => Err(InputError {
                input: String::new(),
                code: StatusCode::UnknownAction,
                message: {
                    let known = self.action_names();
                    let guess =
                        crate::suggest::closest(action, known.iter().map(String::as_str), 2)
                            .map(|near| format!(": did you mean {near}?"))
                            .unwrap_or_default();
                    format!(
                        "unknown action {action:?} for agent {:?}{guess} (known: {})",
                        self.metadata.name,
                        known.join(", ")
                    )
                },
            }),
        }
    }
}

impl Action {
    /// Checks a request's inputs against this action and converts them in
    /// place to the types the DDL declares, so an agent sees `3` where the
    /// command line gave `"3"`.
    ///
    /// Inputs the DDL does not list are refused; a missing input gets its
    /// default; a missing required input is [`StatusCode::MissingData`];
    /// a wrong type, an over-long string, a value outside `list` or a
    /// failed `validation` is [`StatusCode::InvalidData`]. A JSON `null`
    /// counts as missing.
    ///
    /// ```
    /// use muster_protocol::ddl::Action;
    /// use serde_json::json;
    /// let action: Action = serde_json::from_value(json!({
    ///     "action": "runonce",
    ///     "input": {"splaylimit": {"type": "integer", "optional": true},
    ///               "noop": {"type": "boolean", "optional": true, "default": false}}
    /// })).unwrap();
    /// let mut data = json!({"splaylimit": "30"}).as_object().unwrap().clone();
    /// action.validate(&mut data).unwrap();
    /// assert_eq!(serde_json::Value::Object(data), json!({"splaylimit": 30, "noop": false}));
    /// ```
    pub fn validate(&self, data: &mut Map<String, Value>) -> Result<(), InputError> {
        if let Some(unknown) = data.keys().find(|k| !self.input.contains_key(*k)) {
            let known: Vec<&str> = self.input.keys().map(String::as_str).collect();
            let known = if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            };
            return Err(InputError::invalid(
                unknown,
                format!("unknown input {unknown:?} (known: {known})"),
            ));
        }
        for (name, input) in &self.input {
            let given = match data.remove(name) {
                None | Some(Value::Null) => None,
                Some(value) => Some(value),
            };
            let value = match (given, &input.default) {
                (Some(value), _) => input.check(name, value)?,
                (None, Some(default)) if !default.is_null() => {
                    input.check(name, default.clone()).map_err(|e| {
                        InputError::invalid(
                            name,
                            format!("the DDL's default for input {name:?} is invalid: {e}"),
                        )
                    })?
                }
                (None, _) if input.optional => continue,
                (None, _) => return Err(InputError::missing(name)),
            };
            data.insert(name.clone(), value);
        }
        Ok(())
    }
}

impl Input {
    /// Converts one given value to this input's type and checks it.
    fn check(&self, name: &str, value: Value) -> Result<Value, InputError> {
        let value = self.convert(name, value)?;
        if let (Value::String(text), Some(max)) = (&value, self.maxlength) {
            // MCollective treats a maxlength of 0 as no limit.
            let length = text.chars().count();
            if max > 0 && length > max {
                return Err(InputError::invalid(
                    name,
                    format!(
                        "input {name:?} is {length} characters long, more than the {max} allowed: {}",
                        shown(&value)
                    ),
                ));
            }
        }
        if self.kind == InputType::String && !self.list.is_empty() {
            let text = scalar_text(&value).unwrap_or_default();
            if !self
                .list
                .iter()
                .any(|allowed| scalar_text(allowed).as_deref() == Some(&text))
            {
                return Err(self.not_in_list(name, &value));
            }
        }
        if let Some(validation) = &self.validation {
            let texts: Vec<String> = match &value {
                Value::Array(items) => items.iter().filter_map(scalar_text).collect(),
                other => scalar_text(other).into_iter().collect(),
            };
            for text in texts {
                validate_text(name, validation, &text)?;
            }
        }
        Ok(value)
    }

    fn convert(&self, name: &str, value: Value) -> Result<Value, InputError> {
        let wrong = |what: &str, value: &Value| {
            InputError::invalid(
                name,
                format!("input {name:?} must be {what}, got {}", shown(value)),
            )
        };
        match self.kind {
            InputType::String => match value {
                Value::String(_) => Ok(value),
                Value::Number(_) | Value::Bool(_) => Ok(Value::String(value.to_string())),
                other => Err(wrong("a string", &other)),
            },
            InputType::Integer => {
                let parsed = match &value {
                    Value::Number(n) if n.is_i64() || n.is_u64() => Some(value.clone()),
                    Value::Number(n) => n.as_f64().and_then(whole_number),
                    Value::String(s) => parse_integer(s),
                    _ => None,
                };
                parsed.ok_or_else(|| wrong("an integer", &value))
            }
            InputType::Float => {
                let parsed = match &value {
                    Value::Number(n) => n.as_f64().and_then(Number::from_f64),
                    Value::String(s) => parse_float(s).and_then(Number::from_f64),
                    _ => None,
                };
                parsed
                    .map(Value::Number)
                    .ok_or_else(|| wrong("a float", &value))
            }
            InputType::Number => {
                let parsed = match &value {
                    Value::Number(_) => Some(value.clone()),
                    Value::String(s) => parse_integer(s)
                        .or_else(|| parse_float(s).and_then(Number::from_f64).map(Value::Number)),
                    _ => None,
                };
                parsed.ok_or_else(|| wrong("a number", &value))
            }
            InputType::Boolean => {
                let parsed = match &value {
                    Value::Bool(b) => Some(*b),
                    Value::String(s) => parse_bool(s),
                    Value::Number(n) => match n.as_u64() {
                        Some(1) => Some(true),
                        Some(0) => Some(false),
                        _ => None,
                    },
                    _ => None,
                };
                parsed
                    .map(Value::Bool)
                    .ok_or_else(|| wrong("a boolean (true/false/yes/no/1/0)", &value))
            }
            InputType::List => match value {
                Value::Array(_) => Ok(value),
                Value::String(s) if s.trim_start().starts_with('[') => {
                    match serde_json::from_str::<Value>(&s) {
                        Ok(list @ Value::Array(_)) => Ok(list),
                        _ => Err(wrong(
                            "a list (a JSON array or comma-separated values)",
                            &Value::String(s),
                        )),
                    }
                }
                Value::String(s) => Ok(Value::Array(
                    s.split(',')
                        .map(str::trim)
                        .filter(|item| !item.is_empty())
                        .map(|item| Value::String(item.to_string()))
                        .collect(),
                )),
                other => Err(wrong(
                    "a list (a JSON array or comma-separated values)",
                    &other,
                )),
            },
            InputType::Hash => match value {
                Value::Object(_) => Ok(value),
                Value::String(s) => match serde_json::from_str::<Value>(&s) {
                    Ok(hash @ Value::Object(_)) => Ok(hash),
                    _ => Err(wrong("a hash (a JSON object)", &Value::String(s))),
                },
                other => Err(wrong("a hash (a JSON object)", &other)),
            },
            InputType::Enum => {
                let text = scalar_text(&value);
                self.list
                    .iter()
                    .find(|allowed| {
                        *allowed == &value || (text.is_some() && scalar_text(allowed) == text)
                    })
                    .cloned()
                    .ok_or_else(|| self.not_in_list(name, &value))
            }
        }
    }

    fn not_in_list(&self, name: &str, value: &Value) -> InputError {
        let allowed: Vec<String> = self
            .list
            .iter()
            .map(|v| scalar_text(v).unwrap_or_else(|| v.to_string()))
            .collect();
        let allowed = if allowed.is_empty() {
            "nothing: the DDL lists no values".to_string()
        } else {
            allowed.join(", ")
        };
        InputError::invalid(
            name,
            format!(
                "input {name:?} must be one of {allowed}; got {}",
                shown(value)
            ),
        )
    }
}

/// Runs a named validator or a regex over one value's text.
fn validate_text(name: &str, validation: &str, text: &str) -> Result<(), InputError> {
    let valid = match validation {
        // MCollective's shellsafe, plus `&` on its own and line breaks.
        "shellsafe" => !text.contains(['`', '$', ';', '|', '&', '>', '<', '\n', '\r']),
        "ipv4address" => text.parse::<Ipv4Addr>().is_ok(),
        "ipv6address" => text.parse::<Ipv6Addr>().is_ok(),
        "ipaddress" => text.parse::<IpAddr>().is_ok(),
        "boolean" => parse_bool(text).is_some(),
        "integer" => parse_integer(text).is_some(),
        "float" | "number" => parse_float(text).is_some(),
        "hostname" => is_hostname(text),
        pattern => match cached_regex(pattern) {
            Ok(regex) => regex.is_match(text),
            Err(e) => {
                let e = regex_reason(&e);
                return Err(InputError::invalid(
                    name,
                    format!(
                    "input {name:?} has an invalid validation regex {pattern:?} in the DDL: {e}"
                ),
                ));
            }
        },
    };
    if valid {
        Ok(())
    } else {
        Err(InputError::invalid(
            name,
            format!(
                "input {name:?} failed validation {validation}: {}",
                shown(&Value::String(text.to_string()))
            ),
        ))
    }
}

/// The syntax error's last line says what is wrong; the lines above
/// draw the pattern with a caret, which does not fit a status message.
fn regex_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    let last = text.lines().last().unwrap_or_default().trim();
    last.strip_prefix("error: ").unwrap_or(last).to_string()
}

/// Compiled DDL regexes: every request to an action checks the same few.
fn cached_regex(pattern: &str) -> Result<Regex, regex::Error> {
    static CACHE: OnceLock<Mutex<HashMap<String, Result<Regex, regex::Error>>>> = OnceLock::new();
    let mut cache = CACHE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(found) = cache.get(pattern) {
        return found.clone();
    }
    // A bound on memory when DDLs (or hostile ones) bring many patterns.
    if cache.len() >= 256 {
        cache.clear();
    }
    let compiled = Regex::new(pattern);
    cache.insert(pattern.to_string(), compiled.clone());
    compiled
}

/// `true`/`false`, `yes`/`no` and `1`/`0`, in any case.
pub(crate) fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" => Some(true),
        "false" | "no" | "0" => Some(false),
        _ => None,
    }
}

fn parse_integer(text: &str) -> Option<Value> {
    let text = text.trim();
    text.parse::<i64>()
        .map(Value::from)
        .or_else(|_| text.parse::<u64>().map(Value::from))
        .ok()
}

/// A finite float; `inf` and `NaN` have no JSON form.
pub(crate) fn parse_float(text: &str) -> Option<f64> {
    text.trim().parse::<f64>().ok().filter(|f| f.is_finite())
}

fn whole_number(f: f64) -> Option<Value> {
    // The bounds keep the cast exact; `as` would saturate silently.
    (f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64).then(|| Value::from(f as i64))
}

/// An RFC 1123 host name: dot-separated labels of letters, digits and
/// inner hyphens, each at most 63 characters, 253 in all.
fn is_hostname(text: &str) -> bool {
    let name = text.strip_suffix('.').unwrap_or(text);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// A value's text as a validator or list sees it; `None` for lists, hashes
/// and null.
pub(crate) fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A value as JSON for an error message, cut short so a hostile megabyte
/// does not end up in every log line.
fn shown(value: &Value) -> String {
    const MAX: usize = 100;
    let text = value.to_string();
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
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
