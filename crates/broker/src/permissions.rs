//! What an admitted client may publish and subscribe to.
//!
//! Patterns use NATS subject syntax: `*` is any one token, `>` (last) is one
//! or more tokens. One extension: a token that ends in `*` after other
//! characters, like `node*`, matches any single token starting with `node`
//! (including `node` itself).
//!
//! The broker compiles a client's [`Permissions`] once, when it is admitted,
//! into [`Compiled`]: publish checks run for every message and must not split
//! pattern strings again.

use std::collections::HashSet;

use crate::index::valid_publish_subject;

/// Allow-lists of subject patterns in NATS syntax (`*` one token, `>` the
/// rest). One extension: a token that ENDS in `*` after other characters (e.g.
/// `node*`) matches any single token starting with that prefix, the prefix
/// alone included (used for a fleet simulator's credential). An empty list
/// allows nothing; a pattern that is not a valid subject (an empty token, `>`
/// before the end) matches nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions {
    /// Patterns a client may publish to (PUB and HPUB).
    pub publish: Vec<String>,
    /// Patterns a client may subscribe to: a SUB subject is allowed when one
    /// pattern matches every subject the subscription could receive.
    pub subscribe: Vec<String>,
}

impl Permissions {
    /// Allows everything: publish and subscribe `>`.
    pub fn allow_all() -> Self {
        Permissions {
            publish: vec![">".to_string()],
            subscribe: vec![">".to_string()],
        }
    }

    /// Whether a client may publish to the concrete `subject`. A subject with
    /// wildcards or empty tokens cannot be published to and is never allowed.
    ///
    /// This parses the patterns on every call; the broker itself parses them
    /// once per connection.
    pub fn may_publish(&self, subject: &[u8]) -> bool {
        valid_publish_subject(subject) && PatternSet::new(&self.publish).matches(subject)
    }

    /// Whether a client may subscribe to `subject`, which may contain `*` and
    /// `>`: only if one pattern covers everything the subscription could
    /// match. Allow `a.*.c` permits `a.b.c` and `a.*.c` but not `a.>` or `>`;
    /// allow `a.>` permits `a.b.>`.
    ///
    /// This parses the patterns on every call; the broker itself parses them
    /// once per connection.
    pub fn may_subscribe(&self, subject: &[u8]) -> bool {
        PatternSet::new(&self.subscribe).covers(subject)
    }
}

/// A client's permissions, parsed.
#[derive(Debug, Clone)]
pub(crate) struct Compiled {
    publish: PatternSet,
    subscribe: PatternSet,
}

impl Compiled {
    pub(crate) fn new(perms: &Permissions) -> Self {
        Compiled {
            publish: PatternSet::new(&perms.publish),
            subscribe: PatternSet::new(&perms.subscribe),
        }
    }

    /// `subject` must already be a valid publish subject.
    pub(crate) fn may_publish(&self, subject: &[u8]) -> bool {
        self.publish.matches(subject)
    }

    pub(crate) fn may_subscribe(&self, subject: &[u8]) -> bool {
        self.subscribe.covers(subject)
    }
}

/// One token of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Literal(Box<[u8]>),
    /// `node*`: a token starting with these bytes.
    Prefix(Box<[u8]>),
    /// `*`
    Star,
    /// `>`, always last.
    Rest,
}

impl Tok {
    fn parse(token: &[u8]) -> Tok {
        match token {
            b"*" => Tok::Star,
            b">" => Tok::Rest,
            [prefix @ .., b'*'] => Tok::Prefix(prefix.into()),
            literal => Tok::Literal(literal.into()),
        }
    }

    /// Whether this (non-`>`) pattern token matches one concrete token.
    fn matches(&self, token: &[u8]) -> bool {
        match self {
            Tok::Literal(lit) => **lit == *token,
            Tok::Prefix(prefix) => token.starts_with(prefix),
            Tok::Star | Tok::Rest => true,
        }
    }
}

/// A parsed pattern list: patterns without wildcards in a hash set, the rest
/// as token lists.
#[derive(Debug, Clone, Default)]
struct PatternSet {
    /// A bare `>`: everything is allowed.
    everything: bool,
    exact: HashSet<Box<[u8]>>,
    wild: Vec<Vec<Tok>>,
}

fn tokens(subject: &[u8]) -> impl Iterator<Item = &[u8]> {
    subject.split(|&b| b == b'.')
}

fn bad_byte(b: u8) -> bool {
    b.is_ascii_whitespace() || b.is_ascii_control()
}

impl PatternSet {
    fn new(patterns: &[String]) -> Self {
        let mut set = PatternSet::default();
        for pattern in patterns {
            let bytes = pattern.as_bytes();
            let toks: Vec<Tok> = tokens(bytes).map(Tok::parse).collect();
            let valid = !bytes.is_empty()
                && !bytes.iter().any(|&b| bad_byte(b))
                && tokens(bytes).all(|t| !t.is_empty())
                && !toks[..toks.len() - 1].contains(&Tok::Rest);
            if !valid {
                tracing::warn!(pattern = %pattern, "ignoring invalid permission pattern");
                continue;
            }
            if toks == [Tok::Rest] {
                set.everything = true;
            } else if toks.iter().all(|t| matches!(t, Tok::Literal(_))) {
                set.exact.insert(bytes.into());
            } else {
                set.wild.push(toks);
            }
        }
        set
    }

    /// Whether some pattern matches the concrete subject.
    fn matches(&self, subject: &[u8]) -> bool {
        self.everything
            || (!self.exact.is_empty() && self.exact.contains(subject))
            || self.wild.iter().any(|p| pattern_matches(p, subject))
    }

    /// Whether some pattern matches every subject that the subscription
    /// subject `subject` (with `*` and `>` as wildcards) can match.
    fn covers(&self, subject: &[u8]) -> bool {
        if self.everything {
            return true;
        }
        let wildcard = tokens(subject).any(|t| t == b"*" || t == b">");
        if !wildcard && self.exact.contains(subject) {
            return true;
        }
        self.wild.iter().any(|p| pattern_covers(p, subject))
    }
}

fn pattern_matches(pattern: &[Tok], subject: &[u8]) -> bool {
    let mut toks = tokens(subject);
    for p in pattern {
        if *p == Tok::Rest {
            return toks.next().is_some();
        }
        match toks.next() {
            Some(t) if p.matches(t) => {}
            _ => return false,
        }
    }
    toks.next().is_none()
}

fn pattern_covers(pattern: &[Tok], subject: &[u8]) -> bool {
    let mut toks = tokens(subject);
    for p in pattern {
        let Some(t) = toks.next() else {
            return false;
        };
        match (p, t) {
            // `>` takes one or more tokens of any kind, wildcards included.
            (Tok::Rest, _) => return true,
            // Only `>` covers a trailing `>`.
            (_, b">") => return false,
            // Only `*` (or `>`) covers `*`.
            (Tok::Star, b"*") => {}
            (_, b"*") => return false,
            (p, t) if p.matches(t) => {}
            _ => return false,
        }
    }
    toks.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perms(patterns: &[&str]) -> Permissions {
        let list: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
        Permissions {
            publish: list.clone(),
            subscribe: list,
        }
    }

    #[test]
    fn subscribe_coverage() {
        // (allow patterns, subscription subject, allowed)
        let cases: &[(&[&str], &str, bool)] = &[
            (&["a.*.c"], "a.b.c", true),
            (&["a.*.c"], "a.*.c", true),
            (&["a.*.c"], "a.>", false),
            (&["a.*.c"], ">", false),
            (&["a.*.c"], "a.b", false),
            (&["a.*.c"], "a.b.c.d", false),
            (&["a.*.c"], "*.b.c", false),
            (&["a.>"], "a.b.>", true),
            (&["a.>"], "a.>", true),
            (&["a.>"], "a.*", true),
            (&["a.>"], "a.b.c.d", true),
            (&["a.>"], "a", false),
            (&["a.>"], ">", false),
            (&["a.>"], "b.c", false),
            (&[">"], ">", true),
            (&[">"], "anything.at.all", true),
            (&["*.>"], ">", false),
            (&["*.>"], "*.>", true),
            (&["*.>"], "a.*", true),
            (&["*"], "*", true),
            (&["*"], ">", false),
            (&["*"], "a.b", false),
            (&["a.b"], "a.b", true),
            (&["a.b"], "a.*", false),
            (&["a.b"], "a.b.c", false),
            (&["a.b", "a.*"], "a.*", true),
            (&["x.y", "a.*.c", "q.>"], "q.r.>", true),
            (&[], "a", false),
            (&[], ">", false),
            // The prefix extension covers literal tokens only.
            (&["mc.node.node*"], "mc.node.node0042", true),
            (&["mc.node.node*"], "mc.node.node", true),
            (&["mc.node.node*"], "mc.node.web1", false),
            (&["mc.node.node*"], "mc.node.*", false),
            (&["mc.node.node*"], "mc.node.>", false),
            (&["mc.node.node*"], "mc.node.node1.x", false),
            (&["mc.node*.>"], "mc.nodes.a.>", true),
            // `*` inside a token is an ordinary character.
            (&["a*b"], "a*b", true),
            (&["a*b"], "axb", false),
            // Invalid patterns match nothing.
            (&["a.>.b"], "a.x.b", false),
            (&["a..b"], "a..b", false),
            (&[""], "a", false),
        ];
        for (allow, subject, want) in cases {
            assert_eq!(
                perms(allow).may_subscribe(subject.as_bytes()),
                *want,
                "allow {allow:?}, SUB {subject}"
            );
            assert_eq!(
                Compiled::new(&perms(allow)).may_subscribe(subject.as_bytes()),
                *want,
                "compiled: allow {allow:?}, SUB {subject}"
            );
        }
    }

    #[test]
    fn publish_matching() {
        let cases: &[(&[&str], &str, bool)] = &[
            (&["a.b"], "a.b", true),
            (&["a.b"], "a.b.c", false),
            (&["a.b"], "a", false),
            (&["a.*"], "a.b", true),
            (&["a.*"], "a.b.c", false),
            (&["a.>"], "a.b.c", true),
            (&["a.>"], "a", false),
            (&[">"], "x", true),
            (&["*.b.*"], "a.b.c", true),
            (&["*.b.*"], "a.x.c", false),
            (&["mc.node.node*"], "mc.node.node0042", true),
            (&["mc.node.node*"], "mc.node.web1", false),
            (&["mc.node.node*"], "mc.node.nod", false),
            (&["_INBOX.>", "mc.reply.*"], "mc.reply.x", true),
            (&["_INBOX.>", "mc.reply.*"], "_INBOX.abc.1", true),
            (&["_INBOX.>", "mc.reply.*"], "mc.request", false),
            (&[], "a", false),
            // Wildcard subjects cannot be published to.
            (&[">"], "a.*", false),
            (&[">"], "a..b", false),
        ];
        for (allow, subject, want) in cases {
            assert_eq!(
                perms(allow).may_publish(subject.as_bytes()),
                *want,
                "allow {allow:?}, PUB {subject}"
            );
        }
        let compiled = Compiled::new(&perms(&["x.y", "mc.node.node*", "f.>"]));
        for (subject, want) in [
            ("x.y", true),
            ("x.z", false),
            ("mc.node.node7", true),
            ("f.g.h", true),
            ("f", false),
        ] {
            assert_eq!(compiled.may_publish(subject.as_bytes()), want, "{subject}");
        }
    }

    #[test]
    fn allow_all_allows_all() {
        let all = Permissions::allow_all();
        assert!(all.may_publish(b"a.b"));
        assert!(all.may_subscribe(b">"));
        assert!(!Permissions::default().may_publish(b"a"));
        assert!(!Permissions::default().may_subscribe(b"a"));
    }
}
