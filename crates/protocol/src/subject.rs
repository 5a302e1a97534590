//! The NATS subjects muster uses (DESIGN §2).
//!
//! ```
//! use muster_protocol::subject;
//! assert_eq!(subject::broadcast("mcollective", "rpcutil"), "mcollective.broadcast.agent.rpcutil");
//! assert_eq!(subject::node("mcollective", "web1"), "mcollective.node.web1");
//! ```

/// A request to every node of `collective` that runs `agent`.
pub fn broadcast(collective: &str, agent: &str) -> String {
    format!("{collective}.broadcast.agent.{agent}")
}

/// A request to one node.
pub fn node(collective: &str, identity: &str) -> String {
    format!("{collective}.node.{identity}")
}

/// Where the replies to one request go.
pub fn reply(collective: &str, client_id: &str, request_id: &str) -> String {
    format!("{collective}.reply.{client_id}.{request_id}")
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
