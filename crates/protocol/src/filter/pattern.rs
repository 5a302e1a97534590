//! Values as operators type them: exact, `/regex/`, or a glob.

use std::fmt;

use regex::Regex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::FilterError;

/// An exact value, a `/regex/`, or a glob such as `web*` or `node[23]`.
#[derive(Clone)]
pub enum Pattern {
    /// Matches this text only.
    Exact(String),
    /// Matches where the unanchored regular expression matches.
    Regex(Regex),
    /// Matches the text exactly, or as a glob (`*`, `?`, `[...]`).
    Glob(String, Regex),
}

impl Pattern {
    /// `/.../` is a regular expression (unanchored, as in MCollective);
    /// text with `*`, `?` or `[` also matches as an anchored glob (a muster
    /// extension: MCollective would match it only literally); anything
    /// else must match exactly.
    ///
    /// ```
    /// use muster_protocol::Pattern;
    /// assert!(Pattern::parse("/^web\\d+$/").unwrap().matches("web12"));
    /// assert!(!Pattern::parse("web1").unwrap().matches("web12"));
    /// assert!(Pattern::parse("node[23]").unwrap().matches("node3"));
    /// assert!(Pattern::parse("web*").unwrap().matches("web12"));
    /// assert!(Pattern::parse("/web(/").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<Pattern, FilterError> {
        if text.len() >= 2 && text.starts_with('/') && text.ends_with('/') {
            return regex(&text[1..text.len() - 1], text).map(Pattern::Regex);
        }
        if text.contains(['*', '?', '[']) {
            return Ok(Pattern::Glob(text.to_string(), glob_regex(text)));
        }
        Ok(Pattern::Exact(text.to_string()))
    }

    /// Whether `value` matches.
    pub fn matches(&self, value: &str) -> bool {
        match self {
            Pattern::Exact(exact) => exact == value,
            Pattern::Regex(regex) => regex.is_match(value),
            Pattern::Glob(exact, glob) => exact == value || glob.is_match(value),
        }
    }

    /// The exact value, if this is neither a regex nor a glob.
    pub fn as_exact(&self) -> Option<&str> {
        match self {
            Pattern::Exact(exact) => Some(exact),
            _ => None,
        }
    }
}

/// Compiles a regex, naming the text the user typed in the error.
pub(crate) fn regex(body: &str, typed: &str) -> Result<Regex, FilterError> {
    regex::RegexBuilder::new(body)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| FilterError::Regex {
            pattern: typed.to_string(),
            reason: e
                .to_string()
                .lines()
                .last()
                .unwrap_or("invalid")
                .trim()
                .to_string(),
        })
}

/// An anchored regex for a shell glob. An unclosed `[` is literal.
fn glob_regex(glob: &str) -> Regex {
    let chars: Vec<char> = glob.chars().collect();
    let mut out = String::from("^");
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' => out.push_str(".*"),
            '?' => out.push('.'),
            '[' => match chars[i + 1..].iter().position(|&c| c == ']') {
                Some(len) if len > 0 => {
                    let class: String = chars[i + 1..i + 1 + len].iter().collect();
                    out.push('[');
                    let class = match class.strip_prefix('!') {
                        Some(rest) => {
                            out.push('^');
                            rest.to_string()
                        }
                        None => class,
                    };
                    for c in class.chars() {
                        if matches!(c, '\\' | '[' | ']' | '^' | '&' | '~') {
                            out.push('\\');
                        }
                        out.push(c);
                    }
                    out.push(']');
                    i += len + 1;
                }
                _ => out.push_str(r"\["),
            },
            c => out.push_str(&regex::escape(&c.to_string())),
        }
        i += 1;
    }
    out.push('$');
    // Built only from escaped text and closed classes, so it compiles;
    // fall back to matching nothing rather than panic.
    Regex::new(&out).unwrap_or_else(|_| Regex::new(r"[^\s\S]").expect("static regex"))
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Exact(text) | Pattern::Glob(text, _) => f.write_str(text),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_what_operators_type() {
        let cases = [
            ("node[23]", "node2", true),
            ("node[23]", "node3", true),
            ("node[23]", "node4", false),
            ("node[23]", "node[23]", true),
            ("node[!23]", "node4", true),
            ("node[!23]", "node2", false),
            ("web*", "web12", true),
            ("web*", "db1", false),
            ("we?1", "web1", true),
            ("10.242.54.[123]", "10.242.54.2", true),
            ("10.242.54.[123]", "10.242.54.20", false),
            ("10.242.54.[123]", "10242054.2", false),
            ("a[b", "a[b", true),
            ("a[b*", "a[bcd", true),
            ("x[]", "x[]", true),
            ("[\\]x", "\\x", true),
        ];
        for (glob, value, expected) in cases {
            assert_eq!(
                Pattern::parse(glob).unwrap().matches(value),
                expected,
                "{glob} vs {value}"
            );
        }
    }

    #[test]
    fn regex_errors_name_the_pattern() {
        let Err(FilterError::Regex { pattern, reason }) = Pattern::parse("/web(/") else {
            panic!("expected a regex error");
        };
        assert_eq!(pattern, "/web(/");
        assert!(reason.contains("unclosed group"), "{reason}");
    }
}
