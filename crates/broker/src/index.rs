//! Subjects and the subscription index.
//!
//! Most subscriptions in a fleet are exact subjects (`mcollective.node.x`,
//! `mcollective.broadcast.agent.rpcutil`), so they live in a hash map keyed by
//! subject. Only wildcard subscriptions (`_INBOX.abc.*`, `foo.>`) go into a
//! token trie, which a publish walks once per matching path.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use crate::client::Client;

/// One subscription of one client.
#[derive(Debug)]
pub(crate) struct Sub {
    /// Broker-wide unique id, used to find the subscription again on removal.
    pub id: u64,
    pub client: Arc<Client>,
    pub sid: Bytes,
    pub subject: Bytes,
    pub queue: Option<Bytes>,
    wildcard: bool,
    /// Auto-unsubscribe limit (UNSUB sid max); 0 means none.
    max: AtomicU64,
    delivered: AtomicU64,
}

/// Outcome of trying to deliver one more message to a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claim {
    /// Deliver it.
    Deliver,
    /// Deliver it; it was the last one the subscription wanted.
    DeliverLast,
    /// The subscription has had all it asked for.
    Exhausted,
}

impl Sub {
    pub(crate) fn new(
        id: u64,
        client: Arc<Client>,
        sid: Bytes,
        subject: Bytes,
        queue: Option<Bytes>,
    ) -> Self {
        let wildcard = has_wildcard(&subject);
        Sub {
            id,
            client,
            sid,
            subject,
            queue,
            wildcard,
            max: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
        }
    }

    /// Sets the auto-unsubscribe limit. Returns true when it is already reached.
    pub(crate) fn set_max(&self, max: u64) -> bool {
        self.max.store(max, Ordering::SeqCst);
        max > 0 && self.delivered.load(Ordering::SeqCst) >= max
    }

    /// Counts one delivery unless the limit was reached (atomically, since
    /// several publishers may race on the same subscription).
    pub(crate) fn claim(&self) -> Claim {
        let max = self.max.load(Ordering::SeqCst);
        let mut cur = self.delivered.load(Ordering::SeqCst);
        loop {
            if max > 0 && cur >= max {
                return Claim::Exhausted;
            }
            match self.delivered.compare_exchange_weak(
                cur,
                cur + 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) if max > 0 && cur + 1 == max => return Claim::DeliverLast,
                Ok(_) => return Claim::Deliver,
                Err(actual) => cur = actual,
            }
        }
    }
}

fn tokens(subject: &[u8]) -> std::slice::Split<'_, u8, impl FnMut(&u8) -> bool> {
    subject.split(|&b| b == b'.')
}

fn has_wildcard(subject: &[u8]) -> bool {
    tokens(subject).any(|t| t == b"*" || t == b">")
}

fn bad_byte(b: u8) -> bool {
    b.is_ascii_whitespace() || b.is_ascii_control()
}

/// A subject a client may publish to: non-empty tokens, no wildcards, no whitespace.
pub(crate) fn valid_publish_subject(subject: &[u8]) -> bool {
    !subject.is_empty()
        && !subject.iter().any(|&b| bad_byte(b))
        && tokens(subject).all(|t| !t.is_empty() && t != b"*" && t != b">")
}

/// A subject a client may subscribe to: like a publish subject, but `*` may be
/// any token and `>` the last one.
pub(crate) fn valid_subscribe_subject(subject: &[u8]) -> bool {
    if subject.is_empty() || subject.iter().any(|&b| bad_byte(b)) {
        return false;
    }
    let mut toks = tokens(subject).peekable();
    while let Some(t) = toks.next() {
        if t.is_empty() || (t == b">" && toks.peek().is_some()) {
            return false;
        }
    }
    true
}

/// A queue group name is a single word without whitespace.
pub(crate) fn valid_queue(queue: &[u8]) -> bool {
    !queue.is_empty() && !queue.iter().any(|&b| bad_byte(b))
}

/// Subscriptions in insertion order with cheap removal by id (the id column is
/// scanned, not the `Arc`s, so removing from a set of thousands stays cheap).
#[derive(Debug, Default)]
struct SubSet {
    ids: Vec<u64>,
    subs: Vec<Arc<Sub>>,
}

impl SubSet {
    fn push(&mut self, sub: Arc<Sub>) {
        self.ids.push(sub.id);
        self.subs.push(sub);
    }

    fn remove(&mut self, id: u64) -> bool {
        match self.ids.iter().position(|&i| i == id) {
            Some(pos) => {
                self.ids.swap_remove(pos);
                self.subs.swap_remove(pos);
                true
            }
            None => false,
        }
    }

    fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// The subscriptions on one subject pattern.
#[derive(Debug, Default)]
struct SubGroup {
    plain: SubSet,
    queues: HashMap<Bytes, SubSet>,
}

impl SubGroup {
    fn insert(&mut self, sub: Arc<Sub>) {
        match &sub.queue {
            Some(q) => self.queues.entry(q.clone()).or_default().push(sub),
            None => self.plain.push(sub),
        }
    }

    fn remove(&mut self, sub: &Sub) -> bool {
        match &sub.queue {
            None => self.plain.remove(sub.id),
            Some(q) => {
                let Some(set) = self.queues.get_mut(q) else {
                    return false;
                };
                let removed = set.remove(sub.id);
                if set.is_empty() {
                    self.queues.remove(q);
                }
                removed
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.plain.is_empty() && self.queues.is_empty()
    }

    fn collect(&self, out: &mut Matches) {
        out.plain.extend(self.plain.subs.iter().cloned());
        for (name, set) in &self.queues {
            match out.queues.iter_mut().find(|(n, _)| n == name) {
                Some((_, members)) => members.extend(set.subs.iter().cloned()),
                None => out.queues.push((name.clone(), set.subs.clone())),
            }
        }
    }
}

/// A trie node for wildcard subscriptions.
#[derive(Debug, Default)]
struct Node {
    literal: HashMap<Bytes, Node>,
    star: Option<Box<Node>>,
    /// Subscriptions whose pattern ends at this node.
    here: SubGroup,
    /// Subscriptions whose pattern is this node's path followed by `>`.
    rest: SubGroup,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.literal.is_empty()
            && self.star.is_none()
            && self.here.is_empty()
            && self.rest.is_empty()
    }

    fn insert(&mut self, toks: &[&[u8]], sub: Arc<Sub>) {
        match toks {
            [] => self.here.insert(sub),
            [t] if *t == b">" => self.rest.insert(sub),
            [t, more @ ..] if *t == b"*" => self
                .star
                .get_or_insert_with(Default::default)
                .insert(more, sub),
            [t, more @ ..] => self
                .literal
                .entry(Bytes::copy_from_slice(t))
                .or_default()
                .insert(more, sub),
        }
    }

    /// Removes `sub` below this node and prunes nodes left empty.
    fn remove(&mut self, toks: &[&[u8]], sub: &Sub) -> bool {
        match toks {
            [] => self.here.remove(sub),
            [t] if *t == b">" => self.rest.remove(sub),
            [t, more @ ..] if *t == b"*" => {
                let Some(child) = self.star.as_mut() else {
                    return false;
                };
                let removed = child.remove(more, sub);
                if child.is_empty() {
                    self.star = None;
                }
                removed
            }
            [t, more @ ..] => {
                let Some(child) = self.literal.get_mut(*t) else {
                    return false;
                };
                let removed = child.remove(more, sub);
                if child.is_empty() {
                    self.literal.remove(*t);
                }
                removed
            }
        }
    }

    fn collect(&self, toks: &[&[u8]], out: &mut Matches) {
        let Some((first, more)) = toks.split_first() else {
            self.here.collect(out);
            return;
        };
        self.rest.collect(out);
        if let Some(child) = self.literal.get(*first) {
            child.collect(more, out);
        }
        if let Some(child) = &self.star {
            child.collect(more, out);
        }
    }
}

/// The subscriptions matching one subject, grouped for delivery. Reused
/// between publishes to avoid allocating per message.
#[derive(Debug, Default)]
pub(crate) struct Matches {
    pub plain: Vec<Arc<Sub>>,
    pub queues: Vec<(Bytes, Vec<Arc<Sub>>)>,
}

impl Matches {
    pub(crate) fn clear(&mut self) {
        self.plain.clear();
        self.queues.clear();
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.plain.is_empty() && self.queues.is_empty()
    }
}

/// Every subscription of the broker.
#[derive(Debug, Default)]
pub(crate) struct Index {
    exact: HashMap<Bytes, SubGroup>,
    wild: Node,
    wild_count: usize,
}

impl Index {
    pub(crate) fn insert(&mut self, sub: Arc<Sub>) {
        if sub.wildcard {
            let subject = sub.subject.clone();
            let toks: Vec<&[u8]> = tokens(&subject).collect();
            self.wild_count += 1;
            self.wild.insert(&toks, sub);
        } else {
            self.exact
                .entry(sub.subject.clone())
                .or_default()
                .insert(sub);
        }
    }

    /// Removes a subscription; does nothing if it is already gone.
    pub(crate) fn remove(&mut self, sub: &Sub) {
        if sub.wildcard {
            let toks: Vec<&[u8]> = tokens(&sub.subject).collect();
            if self.wild.remove(&toks, sub) {
                self.wild_count -= 1;
            }
        } else if let Some(group) = self.exact.get_mut(&sub.subject) {
            group.remove(sub);
            if group.is_empty() {
                self.exact.remove(&sub.subject);
            }
        }
    }

    /// Appends every subscription matching the literal `subject` to `out`.
    pub(crate) fn collect(&self, subject: &[u8], out: &mut Matches) {
        if let Some(group) = self.exact.get(subject) {
            group.collect(out);
        }
        if self.wild_count > 0 {
            let toks: Vec<&[u8]> = tokens(subject).collect();
            self.wild.collect(&toks, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Counters;

    struct Fixture {
        client: Arc<Client>,
        next: u64,
        index: Index,
    }

    impl Fixture {
        fn new() -> Self {
            let client = Arc::new(Client::new(1, 1 << 20, Arc::new(Counters::default())));
            Fixture {
                client,
                next: 0,
                index: Index::default(),
            }
        }

        fn sub(&mut self, subject: &str, queue: Option<&str>) -> Arc<Sub> {
            self.next += 1;
            let sub = Arc::new(Sub::new(
                self.next,
                self.client.clone(),
                Bytes::from(self.next.to_string()),
                Bytes::copy_from_slice(subject.as_bytes()),
                queue.map(|q| Bytes::copy_from_slice(q.as_bytes())),
            ));
            self.index.insert(sub.clone());
            sub
        }

        /// Subject patterns matching `subject`, sorted, with queue groups as `q:pattern`.
        fn matching(&self, subject: &str) -> Vec<String> {
            let mut m = Matches::default();
            self.index.collect(subject.as_bytes(), &mut m);
            let name = |s: &Arc<Sub>| String::from_utf8_lossy(&s.subject).into_owned();
            let mut out: Vec<String> = m.plain.iter().map(name).collect();
            for (q, members) in &m.queues {
                let q = String::from_utf8_lossy(q);
                out.extend(members.iter().map(|s| format!("{q}:{}", name(s))));
            }
            out.sort();
            out
        }
    }

    #[test]
    fn matches_exact_and_wildcards() {
        let mut f = Fixture::new();
        for pattern in ["a.b.c", "a.*.c", "a.>", "*.b.*", ">", "a.b", "a.*", "x.>"] {
            f.sub(pattern, None);
        }
        assert_eq!(f.matching("a.b.c"), ["*.b.*", ">", "a.*.c", "a.>", "a.b.c"]);
        assert_eq!(f.matching("a.b"), [">", "a.*", "a.>", "a.b"]);
        assert_eq!(f.matching("a"), [">"]);
        assert_eq!(f.matching("x"), [">"]);
        assert_eq!(f.matching("x.y.z"), [">", "x.>"]);
    }

    #[test]
    fn queue_groups_collect_across_patterns() {
        let mut f = Fixture::new();
        f.sub("jobs", Some("w"));
        f.sub("jobs", Some("w"));
        f.sub("*", Some("w"));
        f.sub("jobs", Some("other"));
        f.sub("jobs", None);
        let mut m = Matches::default();
        f.index.collect(b"jobs", &mut m);
        assert_eq!(m.plain.len(), 1);
        let mut groups: Vec<(String, usize)> = m
            .queues
            .iter()
            .map(|(q, members)| (String::from_utf8_lossy(q).into_owned(), members.len()))
            .collect();
        groups.sort();
        assert_eq!(groups, [("other".to_string(), 1), ("w".to_string(), 3)]);
    }

    #[test]
    fn removal_prunes_everything() {
        let mut f = Fixture::new();
        let mut subs: Vec<Arc<Sub>> = ["a.b", "a.*", "a.>", "*.*.c", "a.b", "q"]
            .iter()
            .map(|p| f.sub(p, None))
            .collect();
        subs.push(f.sub("a.*", Some("g")));
        f.index.remove(&subs[0]);
        assert_eq!(f.matching("a.b"), ["a.*", "a.>", "a.b", "g:a.*"]);
        for sub in &subs {
            f.index.remove(sub);
            f.index.remove(sub); // twice is harmless
        }
        assert!(f.matching("a.b").is_empty());
        assert!(f.index.exact.is_empty());
        assert!(f.index.wild.is_empty());
        assert_eq!(f.index.wild_count, 0);
    }

    #[test]
    fn claim_respects_max() {
        let mut f = Fixture::new();
        let sub = f.sub("a", None);
        assert_eq!(sub.claim(), Claim::Deliver);
        assert!(!sub.set_max(3));
        assert_eq!(sub.claim(), Claim::Deliver);
        assert_eq!(sub.claim(), Claim::DeliverLast);
        assert_eq!(sub.claim(), Claim::Exhausted);
        assert!(sub.set_max(2));
    }

    #[test]
    fn subject_validation() {
        for ok in ["a", "a.b.c", "_INBOX.x", "foo*", "a-b.c_d"] {
            assert!(valid_publish_subject(ok.as_bytes()), "{ok}");
            assert!(valid_subscribe_subject(ok.as_bytes()), "{ok}");
        }
        for bad in ["", ".", "a.", ".a", "a..b", "a b", "a\tb"] {
            assert!(!valid_publish_subject(bad.as_bytes()), "{bad:?}");
            assert!(!valid_subscribe_subject(bad.as_bytes()), "{bad:?}");
        }
        for wild in ["*", ">", "a.*.b", "a.>", "*.*"] {
            assert!(!valid_publish_subject(wild.as_bytes()), "{wild}");
            assert!(valid_subscribe_subject(wild.as_bytes()), "{wild}");
        }
        for bad in [">.a", "a.>.b"] {
            assert!(!valid_subscribe_subject(bad.as_bytes()), "{bad}");
        }
    }
}
