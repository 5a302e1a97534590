//! Requests and replies.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::Filter;

/// The protocol version this build speaks. Every message carries it.
pub const PROTOCOL_VERSION: u32 = 1;

/// A request for one action of one agent, as every addressed node sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// The protocol version the sender speaks.
    pub protocol: u32,
    /// Unique per request; nodes refuse an id they have already seen.
    pub id: String,
    /// The client connection that sent it; replies go to its reply subject.
    pub sender: String,
    /// Who asked: the certificate name of the signer. A node replaces
    /// whatever arrives here with the name of the certificate that really
    /// signed the request before anything else sees it.
    pub caller: String,
    /// The collective (subject namespace) it travels in.
    pub collective: String,
    /// The agent to run.
    pub agent: String,
    /// The agent's action to run.
    pub action: String,
    /// The action's inputs.
    #[serde(default)]
    pub data: Map<String, Value>,
    /// Which nodes should act; each node evaluates it itself.
    #[serde(default)]
    pub filter: Filter,
    /// When the request was made, in milliseconds since the Unix epoch.
    pub time: u64,
    /// Seconds after `time` during which nodes accept the request.
    pub ttl: u64,
    /// The identities a directed request is for; `None` for a broadcast.
    /// Signed with the rest, so a copy replayed to another node is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<Vec<String>>,
}

/// How many identities one signed directed request may name; a call to
/// more nodes is sent as several signed requests with the same id.
pub const MAX_TARGETS: usize = 256;

impl Request {
    /// A request made now with a fresh id, an empty filter and a 60 s ttl.
    pub fn new(sender: &str, caller: &str, collective: &str, agent: &str, action: &str) -> Self {
        Request {
            protocol: PROTOCOL_VERSION,
            id: new_id(),
            sender: sender.to_string(),
            caller: caller.to_string(),
            collective: collective.to_string(),
            agent: agent.to_string(),
            action: action.to_string(),
            data: Map::new(),
            filter: Filter::default(),
            time: now_ms(),
            ttl: 60,
            targets: None,
        }
    }

    /// Addresses the request to exactly these identities.
    pub fn with_targets(mut self, targets: Vec<String>) -> Self {
        self.targets = Some(targets);
        self
    }

    /// Selects the nodes that should act.
    pub fn with_filter(mut self, filter: Filter) -> Self {
        self.filter = filter;
        self
    }

    /// Sets the action's inputs.
    pub fn with_data(mut self, data: Map<String, Value>) -> Self {
        self.data = data;
        self
    }

    /// Sets how many seconds the request stays valid.
    pub fn with_ttl(mut self, ttl: u64) -> Self {
        self.ttl = ttl;
        self
    }

    /// The last moment (Unix ms) a node may act on this request.
    pub fn expires_at(&self) -> u64 {
        self.time.saturating_add(self.ttl.saturating_mul(1000))
    }
}

/// MCollective's reply status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "u8", try_from = "u8")]
pub enum StatusCode {
    /// The action succeeded.
    Ok = 0,
    /// The action ran and failed.
    Aborted = 1,
    /// The agent has no such action.
    UnknownAction = 2,
    /// A required input is missing.
    MissingData = 3,
    /// An input is invalid.
    InvalidData = 4,
    /// Anything else went wrong.
    UnknownError = 5,
}

impl StatusCode {
    /// Whether the action succeeded.
    pub fn is_ok(self) -> bool {
        self == StatusCode::Ok
    }
}

impl From<StatusCode> for u8 {
    fn from(code: StatusCode) -> u8 {
        code as u8
    }
}

/// A status byte no MCollective version defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown status code {0}")]
pub struct UnknownStatusCode(pub u8);

impl TryFrom<u8> for StatusCode {
    type Error = UnknownStatusCode;
    fn try_from(code: u8) -> Result<Self, UnknownStatusCode> {
        Ok(match code {
            0 => StatusCode::Ok,
            1 => StatusCode::Aborted,
            2 => StatusCode::UnknownAction,
            3 => StatusCode::MissingData,
            4 => StatusCode::InvalidData,
            5 => StatusCode::UnknownError,
            other => return Err(UnknownStatusCode(other)),
        })
    }
}

/// One node's answer to a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// The protocol version the node speaks.
    pub protocol: u32,
    /// The id of the request answered.
    pub request_id: String,
    /// The identity of the node that answered.
    pub sender: String,
    /// How the action went.
    pub statuscode: StatusCode,
    /// A human-readable status; `OK` on success.
    pub statusmsg: String,
    /// The action's outputs.
    #[serde(default)]
    pub data: Value,
    /// When the reply was made, Unix ms.
    pub time: u64,
}

impl Reply {
    /// A successful reply carrying the action's outputs.
    pub fn ok(request_id: &str, sender: &str, data: Value) -> Self {
        Reply::new(request_id, sender, StatusCode::Ok, "OK", data)
    }

    /// A failed reply with the status code and message.
    pub fn error(
        request_id: &str,
        sender: &str,
        code: StatusCode,
        message: impl Into<String>,
    ) -> Self {
        Reply::new(request_id, sender, code, message, Value::Object(Map::new()))
    }

    fn new(
        request_id: &str,
        sender: &str,
        code: StatusCode,
        message: impl Into<String>,
        data: Value,
    ) -> Self {
        Reply {
            protocol: PROTOCOL_VERSION,
            request_id: request_id.to_string(),
            sender: sender.to_string(),
            statuscode: code,
            statusmsg: message.into(),
            data,
            time: now_ms(),
        }
    }
}

/// Whether `id` is a request id as [`new_id`] makes them: 32 lowercase hex
/// digits. Nodes refuse any other, so an id costs a fixed amount to remember.
///
/// ```
/// use muster_protocol::{is_valid_id, new_id};
/// assert!(is_valid_id(&new_id()));
/// assert!(!is_valid_id("short"));
/// assert!(!is_valid_id(&"A".repeat(32)));
/// ```
pub fn is_valid_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A random 128-bit id as 32 hex digits.
pub fn new_id() -> String {
    use rand_core::RngCore;
    let mut bytes = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut bytes);
    crate::envelope::hex_encode(&bytes)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_travel_as_numbers() {
        let reply = Reply::error("r1", "node1", StatusCode::UnknownAction, "no such action");
        let json = serde_json::to_value(&reply).unwrap();
        assert_eq!(json["statuscode"], 2);
        let back: Reply = serde_json::from_value(json).unwrap();
        assert_eq!(back.statuscode, StatusCode::UnknownAction);
    }

    #[test]
    fn unknown_status_code_is_an_error() {
        let text = r#"{"protocol":1,"request_id":"r","sender":"n","statuscode":9,"statusmsg":"","time":0}"#;
        let err = serde_json::from_str::<Reply>(text).unwrap_err();
        assert!(err.to_string().contains("unknown status code 9"), "{err}");
    }

    #[test]
    fn ids_are_unique_hex() {
        let a = new_id();
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, new_id());
    }

    #[test]
    fn expiry_does_not_overflow() {
        let request = Request::new("c", "u", "m", "a", "b").with_ttl(u64::MAX);
        assert_eq!(request.expires_at(), u64::MAX);
    }
}
