//! Request filters: which nodes should act on a request.
//!
//! The filter travels inside the request and every node evaluates it
//! against itself; a node that does not match stays silent. The semantics
//! are MCollective's: identities are OR-ed, classes and agents are AND-ed,
//! and every kind given must hold.

use std::fmt;

use regex::Regex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// What a filter can ask of a node.
pub trait NodeView {
    fn identity(&self) -> &str;
    fn has_class(&self, matches: &dyn Fn(&str) -> bool) -> bool;
    fn has_agent(&self, matches: &dyn Fn(&str) -> bool) -> bool;
    /// A fact by dotted path (`os.family`).
    fn fact(&self, path: &str) -> Option<Value>;
}

/// Filter text that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("invalid regular expression {pattern}: {reason}")]
    Regex { pattern: String, reason: String },
    #[error("empty {0} filter")]
    Empty(&'static str),
}

/// An exact value or a `/regex/`, as operators type them.
#[derive(Clone)]
pub enum Pattern {
    Exact(String),
    Regex(Regex),
}

impl Pattern {
    /// `/.../` is a regular expression (unanchored, as in MCollective);
    /// anything else must match exactly.
    ///
    /// ```
    /// use muster_protocol::Pattern;
    /// assert!(Pattern::parse("/^web\\d+$/").unwrap().matches("web12"));
    /// assert!(!Pattern::parse("web1").unwrap().matches("web12"));
    /// assert!(Pattern::parse("/web(/").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<Pattern, FilterError> {
        if text.len() >= 2 && text.starts_with('/') && text.ends_with('/') {
            let body = &text[1..text.len() - 1];
            Regex::new(body).map(Pattern::Regex).map_err(|e| FilterError::Regex {
                pattern: text.to_string(),
                reason: e.to_string(),
            })
        } else {
            Ok(Pattern::Exact(text.to_string()))
        }
    }

    pub fn matches(&self, value: &str) -> bool {
        match self {
            Pattern::Exact(exact) => exact == value,
            Pattern::Regex(regex) => regex.is_match(value),
        }
    }

    /// The exact value, if this is not a regex.
    pub fn as_exact(&self) -> Option<&str> {
        match self {
            Pattern::Exact(exact) => Some(exact),
            Pattern::Regex(_) => None,
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Exact(exact) => f.write_str(exact),
            Pattern::Regex(regex) => write!(f, "/{}/", regex.as_str()),
        }
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({self})")
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Pattern) -> bool {
        self.to_string() == other.to_string()
    }
}

impl Serialize for Pattern {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Pattern::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Which nodes a request is for. The empty filter matches every node.
///
/// Unknown fields are refused rather than ignored: a node that does not
/// understand part of a filter must not act as if it matched.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// Identities; a node matches any one of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identity: Vec<Pattern>,
    /// Classes; a node must have all of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub class: Vec<Pattern>,
    /// Agents; a node must run all of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agent: Vec<Pattern>,
}

impl Filter {
    /// Adds an identity selector as typed on the command line (`-I`).
    pub fn identity(mut self, text: &str) -> Result<Filter, FilterError> {
        self.identity.push(non_empty(text, "identity")?);
        Ok(self)
    }

    /// Adds a class selector (`-C`).
    pub fn class(mut self, text: &str) -> Result<Filter, FilterError> {
        self.class.push(non_empty(text, "class")?);
        Ok(self)
    }

    /// Adds an agent selector (`-A`).
    pub fn agent(mut self, text: &str) -> Result<Filter, FilterError> {
        self.agent.push(non_empty(text, "agent")?);
        Ok(self)
    }

    pub fn is_empty(&self) -> bool {
        self.identity.is_empty() && self.class.is_empty() && self.agent.is_empty()
    }

    /// Whether `node` is selected.
    pub fn matches(&self, node: &dyn NodeView) -> bool {
        (self.identity.is_empty() || self.identity.iter().any(|p| p.matches(node.identity())))
            && self.class.iter().all(|p| node.has_class(&|c| p.matches(c)))
            && self.agent.iter().all(|p| node.has_agent(&|a| p.matches(a)))
    }

    /// When the filter names nodes only by exact identity, the nodes it
    /// can select are known without asking the fleet, so a client can
    /// address them directly and name any that do not answer.
    pub fn exact_identities(&self) -> Option<Vec<String>> {
        if self.identity.is_empty() || !self.class.is_empty() || !self.agent.is_empty() {
            return None;
        }
        let mut names: Vec<String> = self
            .identity
            .iter()
            .map(|p| p.as_exact().map(str::to_string))
            .collect::<Option<_>>()?;
        names.sort();
        names.dedup();
        Some(names)
    }
}

fn non_empty(text: &str, kind: &'static str) -> Result<Pattern, FilterError> {
    if text.trim().is_empty() {
        return Err(FilterError::Empty(kind));
    }
    Pattern::parse(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Node {
        identity: &'static str,
        classes: &'static [&'static str],
        agents: &'static [&'static str],
    }

    impl NodeView for Node {
        fn identity(&self) -> &str {
            self.identity
        }
        fn has_class(&self, matches: &dyn Fn(&str) -> bool) -> bool {
            self.classes.iter().any(|c| matches(c))
        }
        fn has_agent(&self, matches: &dyn Fn(&str) -> bool) -> bool {
            self.agents.iter().any(|a| matches(a))
        }
        fn fact(&self, _path: &str) -> Option<Value> {
            None
        }
    }

    const WEB1: Node = Node {
        identity: "web1",
        classes: &["httpd", "base"],
        agents: &["rpcutil"],
    };

    fn filter(identities: &[&str], classes: &[&str], agents: &[&str]) -> Filter {
        let mut f = Filter::default();
        for i in identities {
            f = f.identity(i).unwrap();
        }
        for c in classes {
            f = f.class(c).unwrap();
        }
        for a in agents {
            f = f.agent(a).unwrap();
        }
        f
    }

    #[test]
    fn selectors_follow_mcollective_semantics() {
        let cases: &[(&[&str], &[&str], &[&str], bool)] = &[
            (&[], &[], &[], true),
            (&["web1"], &[], &[], true),
            (&["web2"], &[], &[], false),
            (&["web2", "web1"], &[], &[], true),
            (&["/^web/"], &[], &[], true),
            (&["/eb/"], &[], &[], true),
            (&["/^db/"], &[], &[], false),
            (&["web"], &[], &[], false),
            (&[], &["httpd"], &[], true),
            (&[], &["httpd", "base"], &[], true),
            (&[], &["httpd", "redis"], &[], false),
            (&[], &["/^ht/"], &[], true),
            (&[], &[], &["rpcutil"], true),
            (&[], &[], &["package"], false),
            (&["web1"], &["redis"], &[], false),
        ];
        for (identities, classes, agents, expected) in cases {
            let f = filter(identities, classes, agents);
            assert_eq!(f.matches(&WEB1), *expected, "{identities:?} {classes:?} {agents:?}");
        }
    }

    #[test]
    fn filters_round_trip_as_json() {
        let f = filter(&["web1", "/^db\\d+$/"], &["httpd"], &[]);
        let json = serde_json::to_string(&f).unwrap();
        assert_eq!(json, r#"{"identity":["web1","/^db\\d+$/"],"class":["httpd"]}"#);
        let back: Filter = serde_json::from_str(&json).unwrap();
        assert_eq!(back, f);
        assert!(back.matches(&WEB1));
    }

    #[test]
    fn bad_filters_are_refused() {
        assert!(matches!(Filter::default().identity("/web(/"), Err(FilterError::Regex { .. })));
        assert_eq!(Filter::default().identity(" "), Err(FilterError::Empty("identity")));
        assert!(serde_json::from_str::<Filter>(r#"{"identity":["/(/"]}"#).is_err());
        assert!(serde_json::from_str::<Filter>(r#"{"future":["x"]}"#).is_err());
    }

    #[test]
    fn exact_identities_are_known_in_advance() {
        assert_eq!(
            filter(&["b", "a", "b"], &[], &[]).exact_identities(),
            Some(vec!["a".to_string(), "b".to_string()])
        );
        assert_eq!(filter(&["a", "/b/"], &[], &[]).exact_identities(), None);
        assert_eq!(filter(&["a"], &["httpd"], &[]).exact_identities(), None);
        assert_eq!(filter(&[], &[], &[]).exact_identities(), None);
    }
}
