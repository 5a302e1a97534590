//! Fact comparisons: `os.family=Debian`, `memorysize_mb>=4096`, `role=~^web`.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::pattern::{regex, Pattern};
use super::{FilterError, ParseError};

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `=` or `==`: equal; a `/regex/` or glob value matches as such.
    Eq,
    /// `=~`: the value is a regular expression.
    Match,
    /// `!=`: not equal.
    Ne,
    /// `<`: less than (numerically when both sides are numbers).
    Lt,
    /// `>`: greater than.
    Gt,
    /// `<=`: at most.
    Le,
    /// `>=`: at least.
    Ge,
}

impl Op {
    /// The operator at the start of `text`, and its length.
    pub(crate) fn at(text: &str) -> Option<(Op, usize)> {
        const OPS: &[(&str, Op)] = &[
            ("=~", Op::Match),
            ("==", Op::Eq),
            ("!=", Op::Ne),
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("=", Op::Eq),
            ("<", Op::Lt),
            (">", Op::Gt),
        ];
        OPS.iter()
            .find(|(s, _)| text.starts_with(s))
            .map(|(s, op)| (*op, s.len()))
    }

    /// The operator as typed.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Match => "=~",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Gt => ">",
            Op::Le => "<=",
            Op::Ge => ">=",
        }
    }
}

/// The right-hand side of a comparison, compiled once.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// The operator.
    pub op: Op,
    /// The right-hand side as typed.
    pub value: String,
    pattern: Pattern,
}

impl Comparison {
    /// Compiles `value` for `op` (a regular expression for `=~` and `/.../`).
    pub fn new(op: Op, value: &str) -> Result<Comparison, FilterError> {
        let pattern = match op {
            Op::Match => {
                let body = value
                    .strip_prefix('/')
                    .and_then(|v| v.strip_suffix('/'))
                    .filter(|_| value.len() >= 2)
                    .unwrap_or(value);
                Pattern::Regex(regex(body, value)?)
            }
            Op::Eq | Op::Ne => Pattern::parse(value)?,
            _ => Pattern::Exact(value.to_string()),
        };
        Ok(Comparison {
            op,
            value: value.to_string(),
            pattern,
        })
    }

    /// Whether `actual` satisfies this comparison. A missing value (`None`)
    /// or a structured one never does; a list does when any element does
    /// (for `!=`: when none is equal).
    pub fn holds(&self, actual: Option<&Value>) -> bool {
        let values: Vec<String> = match actual {
            None | Some(Value::Null) | Some(Value::Object(_)) => return false,
            Some(Value::Array(items)) => items.iter().filter_map(scalar_text).collect(),
            Some(other) => scalar_text(other).into_iter().collect(),
        };
        match self.op {
            Op::Ne => !values.iter().any(|v| self.pattern.matches(v)),
            Op::Eq | Op::Match => values.iter().any(|v| self.pattern.matches(v)),
            Op::Lt => values
                .iter()
                .any(|v| compare(v, &self.value) == Ordering::Less),
            Op::Gt => values
                .iter()
                .any(|v| compare(v, &self.value) == Ordering::Greater),
            Op::Le => values
                .iter()
                .any(|v| compare(v, &self.value) != Ordering::Greater),
            Op::Ge => values
                .iter()
                .any(|v| compare(v, &self.value) != Ordering::Less),
        }
    }
}

/// Facts travel as JSON but compare as MCollective's strings do.
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Numerically when both sides are numbers, else as strings (MCollective).
fn compare(actual: &str, expected: &str) -> Ordering {
    match (number(actual), number(expected)) {
        (Some(a), Some(b)) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
        _ => actual.cmp(expected),
    }
}

fn number(text: &str) -> Option<f64> {
    text.trim().parse::<f64>().ok().filter(|n| n.is_finite())
}

/// One `-F` fact filter.
#[derive(Debug, Clone, PartialEq)]
pub struct FactFilter {
    /// The fact's name; dots reach into structured facts.
    pub fact: String,
    /// How the fact's value is compared.
    pub comparison: Comparison,
}

impl FactFilter {
    /// Parses `fact<op>value`.
    ///
    /// ```
    /// use muster_protocol::FactFilter;
    /// let f = FactFilter::parse("memorysize_mb>=4096").unwrap();
    /// assert!(f.comparison.holds(Some(&serde_json::json!(8192))));
    /// assert!(FactFilter::parse("=x").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<FactFilter, FilterError> {
        let error = |position: usize, expected: &str| {
            FilterError::Parse(ParseError::new(text, position, expected))
        };
        let Some(start) = text.find(['=', '!', '<', '>']) else {
            return Err(error(
                text.len(),
                "a comparison operator (=, ==, =~, !=, <, >, <=, >=)",
            ));
        };
        let Some((op, len)) = Op::at(&text[start..]) else {
            return Err(error(
                start,
                "a comparison operator (=, ==, =~, !=, <, >, <=, >=)",
            ));
        };
        let fact = text[..start].trim();
        if fact.is_empty() {
            return Err(error(0, "a fact name before the operator"));
        }
        if let Some(bad) = fact.find(|c: char| !is_fact_char(c)) {
            return Err(error(
                bad,
                "a fact name (letters, digits, '_', '-', ':' and '.')",
            ));
        }
        let value = unquote(text[start + len..].trim());
        if value.is_empty() {
            return Err(error(text.len(), "a value after the operator"));
        }
        Ok(FactFilter {
            fact: fact.to_string(),
            comparison: Comparison::new(op, value)?,
        })
    }

    /// Whether the node's value of the fact (`None` when absent) satisfies the comparison.
    pub fn matches(&self, actual: Option<&Value>) -> bool {
        self.comparison.holds(actual)
    }
}

pub(crate) fn is_fact_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | ':' | '.')
}

/// Strips one pair of matching quotes.
pub(crate) fn unquote(value: &str) -> &str {
    for q in ['"', '\''] {
        if value.len() >= 2 && value.starts_with(q) && value.ends_with(q) {
            return &value[1..value.len() - 1];
        }
    }
    value
}

impl fmt::Display for FactFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}{}",
            self.fact,
            self.comparison.op.as_str(),
            self.comparison.value
        )
    }
}

impl Serialize for FactFilter {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for FactFilter {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        FactFilter::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn holds(filter: &str, actual: Value) -> bool {
        FactFilter::parse(filter).unwrap().matches(Some(&actual))
    }

    #[test]
    fn comparisons_follow_mcollective() {
        let cases = [
            ("os=Debian", json!("Debian"), true),
            ("os==Debian", json!("Debian"), true),
            ("os=debian", json!("Debian"), false),
            ("os=/^deb/", json!("debian"), true),
            ("os=~^Deb", json!("Debian"), true),
            ("os=~/^Deb/", json!("Debian"), true),
            ("os=~^deb", json!("Debian"), false),
            ("os!=Debian", json!("RedHat"), true),
            ("os!=Debian", json!("Debian"), false),
            ("mem>4096", json!(8192), true),
            ("mem>4096", json!("8192"), true),
            ("mem>10000", json!("8192"), false),
            ("mem<10000", json!("8192"), true),
            ("mem>=8192", json!(8192), true),
            ("mem<=8191.5", json!(8192), false),
            ("mem<=8192", json!("8192.0"), true),
            ("name>b", json!("c"), true),
            ("name<b", json!("c"), false),
            ("enabled=true", json!(true), true),
            ("ip=10.242.54.[123]", json!("10.242.54.3"), true),
            ("ip=10.242.54.[123]", json!("10.242.54.4"), false),
            ("list=b", json!(["a", "b"]), true),
            ("list!=b", json!(["a", "b"]), false),
            ("quoted=\"a b\"", json!("a b"), true),
            ("os.family=Debian", json!("Debian"), true),
        ];
        for (filter, actual, expected) in cases {
            assert_eq!(
                holds(filter, actual.clone()),
                expected,
                "{filter} against {actual}"
            );
        }
    }

    #[test]
    fn a_missing_or_structured_fact_never_matches() {
        let f = FactFilter::parse("os!=Debian").unwrap();
        assert!(!f.matches(None));
        assert!(!f.matches(Some(&json!({"family": "RedHat"}))));
    }

    #[test]
    fn bad_fact_filters_point_at_the_problem() {
        let cases = [
            ("osfamily", 8, "a comparison operator"),
            ("=Debian", 0, "a fact name"),
            ("os family=Debian", 2, "a fact name"),
            ("os=", 3, "a value"),
            ("os!Debian", 2, "a comparison operator"),
        ];
        for (text, position, expected) in cases {
            match FactFilter::parse(text) {
                Err(FilterError::Parse(e)) => {
                    assert_eq!(e.position, position, "{text}: {e}");
                    assert!(e.expected.starts_with(expected), "{text}: {e}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
        assert!(matches!(
            FactFilter::parse("os=~("),
            Err(FilterError::Regex { .. })
        ));
    }

    #[test]
    fn round_trips_as_text() {
        let f = FactFilter::parse("memorysize_mb>=4096").unwrap();
        assert_eq!(f.to_string(), "memorysize_mb>=4096");
        let json = serde_json::to_string(&f).unwrap();
        assert_eq!(serde_json::from_str::<FactFilter>(&json).unwrap(), f);
    }
}
