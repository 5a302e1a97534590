//! Request filters: which nodes should act on a request.
//!
//! The filter travels inside the request and every node evaluates it
//! against itself; a node that does not match stays silent. The semantics
//! are MCollective's: identities are OR-ed; facts, classes, agents and
//! compound expressions are AND-ed; every kind given must hold.
//!
//! ```
//! use muster_protocol::Filter;
//! let filter = Filter::default()
//!     .identity("/^web/").unwrap()
//!     .fact("os.family=Debian").unwrap()
//!     .class("httpd").unwrap()
//!     .compound("process('redis-server').exists=true or not redis").unwrap();
//! assert!(filter.uses_data());
//! ```

mod compound;
mod fact;
mod pattern;

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use compound::{parse_with, Compound, DataQuery, Expr, DATA_PLUGINS};
pub use fact::{Comparison, FactFilter, Op};
pub use pattern::Pattern;

/// What a filter can ask of a node.
pub trait NodeView {
    /// The node's identity.
    fn identity(&self) -> &str;
    /// Whether any of the node's classes satisfies `matches`.
    fn has_class(&self, matches: &dyn Fn(&str) -> bool) -> bool;
    /// Whether any of the node's agents satisfies `matches`.
    fn has_agent(&self, matches: &dyn Fn(&str) -> bool) -> bool;
    /// A fact by dotted path (`os.family`).
    fn fact(&self, path: &str) -> Option<Value>;
    /// A data plugin's answer for `argument`; an error when the plugin
    /// fails here (or cannot run here at all).
    fn data(&self, plugin: &str, _argument: &str) -> Result<Map<String, Value>, DataError> {
        Err(DataError::new(
            plugin,
            format!("data plugin {plugin} cannot be evaluated here"),
        ))
    }
}

/// A data plugin that could not answer on a node; the node then does not match.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DataError {
    /// The plugin that failed (`fstat`, `process`, ...).
    pub plugin: String,
    /// What went wrong, as the plugin says it.
    pub message: String,
}

impl DataError {
    /// A failure of `plugin`, described by `message`.
    pub fn new(plugin: &str, message: impl Into<String>) -> DataError {
        DataError {
            plugin: plugin.to_string(),
            message: message.into(),
        }
    }
}

/// Filter text that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// A `/regex/` or `=~` value that does not compile.
    #[error("invalid regular expression {pattern}: {reason}")]
    Regex {
        /// The expression as typed.
        pattern: String,
        /// What the regex compiler said.
        reason: String,
    },
    /// A selector with no text.
    #[error("empty {0} filter")]
    Empty(&'static str),
    /// Compound or `-W` text that does not parse; it points at the position.
    #[error(transparent)]
    Parse(ParseError),
}

/// Where filter text stopped making sense, and what was expected there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The text that was parsed.
    pub input: String,
    /// Byte offset into `input`.
    pub position: usize,
    /// What the parser wanted at `position`.
    pub expected: String,
}

impl ParseError {
    pub(crate) fn new(input: &str, position: usize, expected: &str) -> ParseError {
        ParseError {
            input: input.to_string(),
            position: position.min(input.len()),
            expected: expected.to_string(),
        }
    }
}

impl std::error::Error for ParseError {}

impl fmt::Display for ParseError {
    /// The expression with a caret under the offending position.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: String = self
            .input
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let column = self
            .input
            .get(..self.position)
            .map_or(0, |s| s.chars().count());
        write!(
            f,
            "cannot parse filter: expected {} at position {}\n    {}\n    {}^",
            self.expected,
            self.position,
            shown,
            " ".repeat(column)
        )
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
    /// Fact comparisons; all must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fact: Vec<FactFilter>,
    /// Classes; a node must have all of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub class: Vec<Pattern>,
    /// Agents; a node must run all of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agent: Vec<Pattern>,
    /// Compound expressions (`-S`); all must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compound: Vec<Compound>,
}

impl Filter {
    /// Adds an identity selector as typed on the command line (`-I`).
    pub fn identity(mut self, text: &str) -> Result<Filter, FilterError> {
        self.identity.push(non_empty(text, "identity")?);
        Ok(self)
    }

    /// Adds a fact comparison (`-F`).
    pub fn fact(mut self, text: &str) -> Result<Filter, FilterError> {
        self.fact.push(FactFilter::parse(text)?);
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

    /// Adds a combined selector (`-W`): fact comparisons and classes.
    pub fn with(mut self, text: &str) -> Result<Filter, FilterError> {
        let (facts, classes) = parse_with(text)?;
        self.fact.extend(facts);
        self.class.extend(classes);
        Ok(self)
    }

    /// Adds a compound expression (`-S`).
    pub fn compound(mut self, text: &str) -> Result<Filter, FilterError> {
        self.compound.push(Compound::parse(text)?);
        Ok(self)
    }

    /// Whether the filter selects every node.
    pub fn is_empty(&self) -> bool {
        self.identity.is_empty()
            && self.fact.is_empty()
            && self.class.is_empty()
            && self.agent.is_empty()
            && self.compound.is_empty()
    }

    /// Whether any part needs a data plugin, which only nodes can answer.
    pub fn uses_data(&self) -> bool {
        self.compound.iter().any(|c| c.expr.uses_data())
    }

    /// Whether `node` is selected. A data plugin that fails on the node
    /// makes it not match.
    pub fn matches(&self, node: &dyn NodeView) -> bool {
        self.evaluate(node).unwrap_or(false)
    }

    /// Like [`Filter::matches`], but says which data plugin failed.
    pub fn evaluate(&self, node: &dyn NodeView) -> Result<bool, DataError> {
        let simple = (self.identity.is_empty()
            || self.identity.iter().any(|p| p.matches(node.identity())))
            && self
                .fact
                .iter()
                .all(|f| f.matches(node.fact(&f.fact).as_ref()))
            && self.class.iter().all(|p| node.has_class(&|c| p.matches(c)))
            && self.agent.iter().all(|p| node.has_agent(&|a| p.matches(a)));
        if !simple {
            return Ok(false);
        }
        for compound in &self.compound {
            if !compound.expr.eval(node)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// When the filter names nodes only by exact identity, the nodes it
    /// can select are known without asking the fleet, so a client can
    /// address them directly and name any that do not answer.
    pub fn exact_identities(&self) -> Option<Vec<String>> {
        if self.identity.is_empty()
            || !self.fact.is_empty()
            || !self.class.is_empty()
            || !self.agent.is_empty()
            || !self.compound.is_empty()
        {
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

/// A dotted path (`os.release.major`) into nested facts. A literal key
/// that itself contains dots is tried first; numbers index into lists.
///
/// ```
/// let facts = serde_json::json!({"os": {"release": {"major": "12"}}, "a.b": 1});
/// assert_eq!(muster_protocol::lookup_fact(&facts, "os.release.major"), Some("12".into()));
/// assert_eq!(muster_protocol::lookup_fact(&facts, "a.b"), Some(1.into()));
/// ```
pub fn lookup_fact(facts: &Value, path: &str) -> Option<Value> {
    if let Some(value) = facts.get(path) {
        return Some(value.clone());
    }
    let mut current = facts;
    for part in path.split('.') {
        current = match current {
            Value::Object(map) => map.get(part)?,
            Value::Array(items) => items.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(current.clone())
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
    use serde_json::json;

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
        fn fact(&self, path: &str) -> Option<Value> {
            match path {
                "os.family" => Some(json!("Debian")),
                "memorysize_mb" => Some(json!(4096)),
                _ => None,
            }
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

    /// identities, classes, agents, whether WEB1 matches
    type Case = (
        &'static [&'static str],
        &'static [&'static str],
        &'static [&'static str],
        bool,
    );

    #[test]
    fn selectors_follow_mcollective_semantics() {
        let cases: &[Case] = &[
            (&[], &[], &[], true),
            (&["web1"], &[], &[], true),
            (&["web2"], &[], &[], false),
            (&["web2", "web1"], &[], &[], true),
            (&["/^web/"], &[], &[], true),
            (&["/eb/"], &[], &[], true),
            (&["/^db/"], &[], &[], false),
            (&["web"], &[], &[], false),
            (&["web*"], &[], &[], true),
            (&["web[12]"], &[], &[], true),
            (&["web[23]"], &[], &[], false),
            (&[], &["httpd"], &[], true),
            (&[], &["httpd", "base"], &[], true),
            (&[], &["httpd", "redis"], &[], false),
            (&[], &["/^ht/"], &[], true),
            (&[], &["ht*"], &[], true),
            (&[], &[], &["rpcutil"], true),
            (&[], &[], &["package"], false),
            (&["web1"], &["redis"], &[], false),
        ];
        for (identities, classes, agents, expected) in cases {
            let f = filter(identities, classes, agents);
            assert_eq!(
                f.matches(&WEB1),
                *expected,
                "{identities:?} {classes:?} {agents:?}"
            );
        }
    }

    #[test]
    fn every_kind_must_hold() {
        let base = Filter::default().identity("web1").unwrap();
        assert!(base
            .clone()
            .fact("os.family=Debian")
            .unwrap()
            .matches(&WEB1));
        assert!(!base
            .clone()
            .fact("os.family=RedHat")
            .unwrap()
            .matches(&WEB1));
        assert!(base
            .clone()
            .with("httpd memorysize_mb>=4096")
            .unwrap()
            .matches(&WEB1));
        assert!(!base
            .clone()
            .with("httpd memorysize_mb>4096")
            .unwrap()
            .matches(&WEB1));
        assert!(base
            .clone()
            .compound("httpd and not redis")
            .unwrap()
            .matches(&WEB1));
        assert!(!base.clone().compound("redis").unwrap().matches(&WEB1));
        // A data plugin this view cannot answer makes the node not match.
        let data = base.compound("fstat('/etc/hosts').present=1").unwrap();
        assert!(!data.matches(&WEB1));
        assert!(data.evaluate(&WEB1).is_err());
    }

    #[test]
    fn filters_round_trip_as_json() {
        let f = filter(&["web1", "/^db\\d+$/"], &["httpd"], &[])
            .fact("memorysize_mb>=4096")
            .unwrap()
            .compound("httpd or redis")
            .unwrap();
        let json = serde_json::to_string(&f).unwrap();
        assert_eq!(
            json,
            r#"{"identity":["web1","/^db\\d+$/"],"fact":["memorysize_mb>=4096"],"class":["httpd"],"compound":["httpd or redis"]}"#
        );
        let back: Filter = serde_json::from_str(&json).unwrap();
        assert_eq!(back, f);
        assert!(back.matches(&WEB1));
    }

    #[test]
    fn bad_filters_are_refused() {
        assert!(matches!(
            Filter::default().identity("/web(/"),
            Err(FilterError::Regex { .. })
        ));
        assert_eq!(
            Filter::default().identity(" "),
            Err(FilterError::Empty("identity"))
        );
        assert!(serde_json::from_str::<Filter>(r#"{"identity":["/(/"]}"#).is_err());
        assert!(serde_json::from_str::<Filter>(r#"{"future":["x"]}"#).is_err());
        assert!(serde_json::from_str::<Filter>(r#"{"compound":["httpd and"]}"#).is_err());
        assert!(serde_json::from_str::<Filter>(r#"{"fact":["nope"]}"#).is_err());
    }

    #[test]
    fn exact_identities_are_known_in_advance() {
        assert_eq!(
            filter(&["b", "a", "b"], &[], &[]).exact_identities(),
            Some(vec!["a".to_string(), "b".to_string()])
        );
        assert_eq!(filter(&["a", "/b/"], &[], &[]).exact_identities(), None);
        assert_eq!(filter(&["a*"], &[], &[]).exact_identities(), None);
        assert_eq!(filter(&["a"], &["httpd"], &[]).exact_identities(), None);
        assert_eq!(filter(&[], &[], &[]).exact_identities(), None);
    }
}
