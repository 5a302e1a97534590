//! The NATS subjects muster uses.
//!
//! A reply's subject names the caller it is for and the node it is from,
//! so the broker can let each node publish only its own replies and each
//! caller read only its own ([`crate::identity::Grants`]).
//!
//! ```
//! use muster_protocol::subject;
//! assert_eq!(subject::broadcast("mcollective", "rpcutil"), "mcollective.broadcast.agent.rpcutil");
//! assert_eq!(subject::node("mcollective", "web1"), "mcollective.node.web1");
//! assert_eq!(subject::reply("mcollective", "c0ffee", "42", "web1.example.net"),
//!            "mcollective.reply.c0ffee.42.web1.example.net");
//! assert_eq!(subject::replies("mcollective", "c0ffee", "42"), "mcollective.reply.c0ffee.42.>");
//! ```

/// A request to every node of `collective` that runs `agent`.
pub fn broadcast(collective: &str, agent: &str) -> String {
    format!("{collective}.broadcast.agent.{agent}")
}

/// A request to one node.
pub fn node(collective: &str, identity: &str) -> String {
    format!("{collective}.node.{identity}")
}

/// Where node `identity` publishes its reply to request `request_id` of
/// the caller whose [`caller_token`](crate::identity::caller_token) is `caller`.
pub fn reply(collective: &str, caller: &str, request_id: &str, identity: &str) -> String {
    format!("{collective}.reply.{caller}.{request_id}.{identity}")
}

/// What a caller subscribes to for every reply to one request.
pub fn replies(collective: &str, caller: &str, request_id: &str) -> String {
    format!("{collective}.reply.{caller}.{request_id}.>")
}

/// The NATS reply field of a request: only the broker uses it, to tell
/// the caller at once when nobody listens ("no responders").
pub fn no_responders(collective: &str, caller: &str, request_id: &str) -> String {
    format!("{collective}.reply.{caller}.{request_id}._")
}

/// The identity a reply subject names, if it is a reply subject for
/// `collective`, `caller` and `request_id`.
///
/// ```
/// use muster_protocol::subject::{reply, reply_identity};
/// let s = reply("mc", "t", "r1", "web1.example.net");
/// assert_eq!(reply_identity(&s, "mc", "t", "r1"), Some("web1.example.net"));
/// assert_eq!(reply_identity(&s, "mc", "t", "r2"), None);
/// ```
pub fn reply_identity<'a>(
    subject: &'a str,
    collective: &str,
    caller: &str,
    request_id: &str,
) -> Option<&'a str> {
    let rest = subject.strip_prefix(collective)?.strip_prefix(".reply.")?;
    let rest = rest.strip_prefix(caller)?.strip_prefix('.')?;
    let identity = rest.strip_prefix(request_id)?.strip_prefix('.')?;
    Some(identity).filter(|i| !i.is_empty())
}

/// Registration messages of a collective.
pub fn registration(collective: &str) -> String {
    broadcast(collective, "registration")
}

/// Whether `name` can be one or more tokens of a subject: identities,
/// collectives and agent names travel inside subjects, so they must not
/// contain wildcards, whitespace or empty tokens.
///
/// ```
/// use muster_protocol::subject::is_valid_name;
/// assert!(is_valid_name("web1.example.com"));
/// assert!(!is_valid_name("web*"));
/// assert!(!is_valid_name("a..b"));
/// ```
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.split('.').all(|token| {
            !token.is_empty()
                && token != "*"
                && token != ">"
                && !token
                    .chars()
                    .any(|c| c.is_whitespace() || c == '*' || c == '>' || c.is_control())
        })
}
