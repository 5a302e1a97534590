//! Who a certificate name is, and what the broker lets it do.
//!
//! Every participant is named by its certificate. The name alone says its
//! role, so the embedded broker, a generated nats-server configuration and
//! every node agree without a second source of truth:
//!
//! | certificate name | role | may |
//! | --- | --- | --- |
//! | `<user>.mcollective` | [`Role::Caller`] (Choria's convention) | send requests, read its own replies |
//! | `<prefix>.fleet` | [`Role::Fleet`] (the simulator) | act as every node whose identity starts with `<prefix>` |
//! | anything else | [`Role::Node`] | read its own requests and broadcasts, reply as itself |
//!
//! ```
//! use muster_protocol::identity::{role_of, Role};
//! assert_eq!(role_of("alice.mcollective"), Role::Caller);
//! assert_eq!(role_of("web1.example.net"), Role::Node);
//! assert_eq!(role_of("node.fleet"), Role::Fleet { prefix: "node".into() });
//! ```

use sha2::{Digest, Sha256};

/// The name ending that makes a certificate a caller's (Choria's convention).
pub const CALLER_SUFFIX: &str = ".mcollective";
/// The name ending that makes a certificate a fleet simulator's.
pub const FLEET_SUFFIX: &str = ".fleet";

/// What a certificate name may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// A node daemon: its identity is the certificate name.
    Node,
    /// An operator or application: sends requests.
    Caller,
    /// A fleet simulator: speaks for every identity starting with `prefix`.
    Fleet {
        /// The identity prefix, e.g. `node` for `node01`, `node02`, ...
        prefix: String,
    },
}

/// The role a certificate name carries.
pub fn role_of(name: &str) -> Role {
    if name.len() > CALLER_SUFFIX.len() && name.ends_with(CALLER_SUFFIX) {
        Role::Caller
    } else if let Some(prefix) = name.strip_suffix(FLEET_SUFFIX).filter(|p| !p.is_empty()) {
        Role::Fleet {
            prefix: prefix.to_string(),
        }
    } else {
        Role::Node
    }
}

/// Whether a certificate `name` of some role may answer as node `identity`.
///
/// ```
/// use muster_protocol::identity::may_act_as;
/// assert!(may_act_as("web1", "web1"));
/// assert!(may_act_as("node.fleet", "node0042"));
/// assert!(!may_act_as("node.fleet", "web1"));
/// assert!(!may_act_as("alice.mcollective", "alice.mcollective"));
/// ```
pub fn may_act_as(name: &str, identity: &str) -> bool {
    match role_of(name) {
        Role::Node => name == identity,
        Role::Caller => false,
        Role::Fleet { prefix } => identity.starts_with(&prefix) && !identity.contains('.'),
    }
}

/// The single subject token that stands for a caller in its reply
/// subjects: certificate names contain dots, tokens cannot. 20 hex digits
/// of the name's SHA-256, so no caller can pick a name that reads another's replies.
///
/// ```
/// use muster_protocol::identity::caller_token;
/// let token = caller_token("alice.mcollective");
/// assert_eq!(token.len(), 20);
/// assert_ne!(token, caller_token("bob.mcollective"));
/// ```
pub fn caller_token(name: &str) -> String {
    let digest = Sha256::digest(name.as_bytes());
    crate::envelope::hex_encode(&digest[..10])
}

/// What one certificate name may publish and subscribe to, as NATS
/// subject patterns (`*` one token, `>` the rest). A token ending in `*`
/// after other characters (`node*`) is a prefix match, which only the
/// embedded broker understands; [`Grants::nats_server`] widens it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// Subjects it may publish on.
    pub publish: Vec<String>,
    /// Subjects it may subscribe to.
    pub subscribe: Vec<String>,
}

impl Grants {
    /// The grants of certificate `name`, in every collective.
    ///
    /// ```
    /// use muster_protocol::identity::Grants;
    /// let node = Grants::for_name("web1");
    /// assert!(node.subscribe.contains(&"*.node.web1".to_string()));
    /// assert!(node.publish.contains(&"*.reply.*.*.web1".to_string()));
    /// ```
    pub fn for_name(name: &str) -> Grants {
        let node = |identity: &str| Grants {
            publish: vec![
                format!("*.reply.*.*.{identity}"),
                "*.broadcast.agent.registration".to_string(),
            ],
            subscribe: vec![
                format!("*.node.{identity}"),
                "*.broadcast.agent.*".to_string(),
            ],
        };
        match role_of(name) {
            Role::Node => node(name),
            Role::Fleet { prefix } => node(&format!("{prefix}*")),
            Role::Caller => Grants {
                publish: vec!["*.broadcast.agent.*".to_string(), "*.node.>".to_string()],
                subscribe: vec![format!("*.reply.{}.>", caller_token(name))],
            },
        }
    }

    /// The same grants in what nats-server can express: a prefix token
    /// (`node*`) becomes `*`, so on nats-server a fleet credential may
    /// answer as any one-token identity. Signed replies close that gap.
    pub fn nats_server(&self) -> Grants {
        let widen = |patterns: &[String]| {
            patterns
                .iter()
                .map(|p| {
                    p.split('.')
                        .map(|t| {
                            if t.len() > 1 && t.ends_with('*') {
                                "*"
                            } else {
                                t
                            }
                        })
                        .collect::<Vec<_>>()
                        .join(".")
                })
                .collect()
        };
        Grants {
            publish: widen(&self.publish),
            subscribe: widen(&self.subscribe),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_by_name() {
        let cases = [
            ("alice.mcollective", Role::Caller),
            ("a.b.mcollective", Role::Caller),
            (".mcollective", Role::Node),
            ("mcollective", Role::Node),
            (
                "node.fleet",
                Role::Fleet {
                    prefix: "node".into(),
                },
            ),
            (".fleet", Role::Node),
            ("web1.example.net", Role::Node),
            ("node1", Role::Node),
        ];
        for (name, role) in cases {
            assert_eq!(role_of(name), role, "{name}");
        }
    }

    #[test]
    fn fleet_grants_widen_for_nats_server() {
        let fleet = Grants::for_name("sim.fleet");
        assert!(fleet.publish.contains(&"*.reply.*.*.sim*".to_string()));
        let wide = fleet.nats_server();
        assert!(wide.publish.contains(&"*.reply.*.*.*".to_string()));
        assert!(wide.subscribe.contains(&"*.node.*".to_string()));
        // Nothing else changes.
        assert_eq!(
            Grants::for_name("web1").nats_server(),
            Grants::for_name("web1")
        );
    }

    #[test]
    fn callers_read_only_their_own_replies() {
        let alice = Grants::for_name("alice.mcollective");
        assert_eq!(
            alice.subscribe,
            vec![format!("*.reply.{}.>", caller_token("alice.mcollective"))]
        );
        assert!(!alice
            .subscribe
            .iter()
            .any(|s| s == ">" || s.contains("node")));
    }
}
