//! Agent descriptions (DDL), in Choria's JSON DDL layout.
//!
//! A DDL says what an agent's actions take and give: each input's type,
//! whether it is optional, its default and how it is validated; each
//! output's display name and default; and the aggregate summaries a client
//! computes across replies. Clients validate inputs before sending and
//! nodes validate again, both with [`Ddl::validate`].
//!
//! Types and validators are Choria's (docs/ddl.md): `list` is an enum,
//! `hash` and `array` take JSON, command-line text is typed by the DDL
//! (Choria's `ValToDDLType`), named validators live in `validators`, and
//! Go and Ruby regexes are translated for the `regex` crate in `pattern`,
//! which keeps matching linear-time on nodes.
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
use serde_json::{Map, Number, Value};

use crate::StatusCode;

mod pattern;
mod validators;

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

/// The type of an input, as Choria's DDL schema names them.
///
/// Names are read case-insensitively (`Hash` and `Array` as MCollective
/// writes them); `int`, `bool` and muster's older `enum` are read too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputType {
    /// Text, kept literally.
    String,
    /// A whole number.
    Integer,
    /// A floating-point number.
    Float,
    /// Any number.
    Number,
    /// `true` or `false`.
    Boolean,
    /// One of the values in `list`, sent as that value (an enum).
    List,
    /// A JSON object; on the command line, its JSON text.
    Hash,
    /// A JSON array; on the command line, its JSON text.
    Array,
}

impl InputType {
    /// The name a DDL uses for the type.
    pub fn name(self) -> &'static str {
        match self {
            InputType::String => "string",
            InputType::Integer => "integer",
            InputType::Float => "float",
            InputType::Number => "number",
            InputType::Boolean => "boolean",
            InputType::List => "list",
            InputType::Hash => "hash",
            InputType::Array => "array",
        }
    }
}

impl Serialize for InputType {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for InputType {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Ok(match name.to_ascii_lowercase().as_str() {
            "string" => InputType::String,
            "integer" | "int" => InputType::Integer,
            "float" => InputType::Float,
            "number" => InputType::Number,
            "boolean" | "bool" => InputType::Boolean,
            "list" | "enum" => InputType::List,
            "hash" => InputType::Hash,
            "array" => InputType::Array,
            _ => {
                return Err(serde::de::Error::custom(format!(
                    "unknown input type {name:?} (known: string, integer, float, number, boolean, list, hash, array)"
                )))
            }
        })
    }
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
    /// A regular expression (Go or Ruby syntax), or a named validator
    /// such as `shellsafe`, `ipv4address` or `service_name`: see
    /// [`NAMED_VALIDATORS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<String>,
    /// The longest text accepted, in characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maxlength: Option<usize>,
    /// The allowed values of a `list` input (and, optionally, of a string).
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

/// The validators a DDL may name in `validation` instead of a regex
/// (a `validation` starting with a lowercase letter is a name, as in
/// Choria). A name not listed here is accepted with a warning.
pub const NAMED_VALIDATORS: &[&str] = validators::NAMES;

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
    /// command line gave `"3"`, and `"{\"a\":1}"` stays that text for a
    /// string input.
    ///
    /// Inputs the DDL does not list are refused. A missing input gets its
    /// default, unchecked, as Choria's client inserts it; a given value
    /// equal to the default is accepted as it is, so a default that fails
    /// its own validation never refuses a request. A missing required input
    /// without a default is [`StatusCode::MissingData`]; a wrong type, an
    /// over-long string, a value outside `list` or a failed `validation` is
    /// [`StatusCode::InvalidData`]. A JSON `null` counts as missing.
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
            let default = input.default.as_ref().filter(|d| !d.is_null());
            let value = match (given, default) {
                // The DDL's own default, as a Choria client sends it.
                (Some(value), Some(default)) if value == *default => value,
                (Some(value), _) => input.check(name, value)?,
                (None, Some(default)) => input
                    .convert(name, default.clone())
                    .unwrap_or_else(|_| default.clone()),
                (None, None) if input.optional => continue,
                (None, None) => return Err(InputError::missing(name)),
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
        // As in Choria and MCollective, length, list and validation apply
        // to strings; a list input was checked against its list already.
        let Value::String(text) = &value else {
            return Ok(value);
        };
        if self.kind != InputType::String {
            return Ok(value);
        }
        if let Some(max) = self.maxlength {
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
        if !self.list.is_empty()
            && !self
                .list
                .iter()
                .any(|allowed| scalar_text(allowed).as_deref() == Some(text.as_str()))
        {
            return Err(self.not_in_list(name, &value));
        }
        if let Some(validation) = self.validation.as_deref().filter(|v| !v.is_empty()) {
            validate_text(name, validation, text)?;
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
                    .ok_or_else(|| wrong("a boolean (true/false/yes/no/t/f/1/0)", &value))
            }
            InputType::List => {
                if self.list.is_empty() {
                    return Err(InputError::invalid(
                        name,
                        format!(
                            "input {name:?} is a list but the DDL lists no values to choose from"
                        ),
                    ));
                }
                let text = scalar_text(&value);
                self.list
                    .iter()
                    .find(|allowed| {
                        *allowed == &value || (text.is_some() && scalar_text(allowed) == text)
                    })
                    .cloned()
                    .ok_or_else(|| self.not_in_list(name, &value))
            }
            InputType::Hash => match value {
                Value::Object(_) => Ok(value),
                Value::String(s) => match serde_json::from_str::<Value>(&s) {
                    Ok(hash @ Value::Object(_)) => Ok(hash),
                    _ => Err(wrong(
                        "a hash (JSON object text such as {\"key\":\"value\"})",
                        &Value::String(s),
                    )),
                },
                other => Err(wrong("a hash (a JSON object)", &other)),
            },
            InputType::Array => match value {
                Value::Array(_) => Ok(value),
                Value::String(s) => match serde_json::from_str::<Value>(&s) {
                    Ok(array @ Value::Array(_)) => Ok(array),
                    _ => Err(wrong(
                        "an array (JSON array text such as [\"a\",\"b\"])",
                        &Value::String(s),
                    )),
                },
                other => Err(wrong("an array (a JSON array)", &other)),
            },
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

/// Runs a named validator or a regex over one string input.
fn validate_text(name: &str, validation: &str, text: &str) -> Result<(), InputError> {
    match validators::check(validation, text) {
        validators::Verdict::Pass => Ok(()),
        validators::Verdict::Fail(why) => Err(InputError::invalid(
            name,
            format!(
                "input {name:?} failed validation {validation}: {} {why}",
                shown(&Value::String(text.to_string()))
            ),
        )),
        validators::Verdict::BadRegex(why) => Err(InputError::invalid(
            name,
            format!(
                "input {name:?} has an invalid validation regex {validation:?} in the DDL: {why}"
            ),
        )),
    }
}

/// `true`/`false`, `yes`/`no`, `t`/`f` and `1`/`0`, in any case: Go's
/// `strconv.ParseBool` (Choria) and MCollective's words.
pub(crate) fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "t" | "1" => Some(true),
        "false" | "no" | "f" | "0" => Some(false),
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
    ("filemgr", include_str!("../../ddl/filemgr.json")),
    ("package", include_str!("../../ddl/package.json")),
    ("puppet", include_str!("../../ddl/puppet.json")),
    ("rpcutil", include_str!("../../ddl/rpcutil.json")),
    ("service", include_str!("../../ddl/service.json")),
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
