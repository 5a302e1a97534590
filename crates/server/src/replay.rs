//! Refusing a request that may have been accepted before.
//!
//! Three rules together make a captured request useless to replay:
//!
//! - Ids have one fixed format (32 hex digits), so each remembered id
//!   costs the same 24 bytes or so, whatever a caller sends.
//! - An id is remembered until its request expires (at most
//!   `plugin.security.max_ttl`, five minutes by default); after that the
//!   age check refuses it anyway. The store holds at most
//!   [`ReplayGuard::capacity`] ids: when it is full of unexpired ids, new
//!   requests are **refused** ("too many requests in the replay window"),
//!   never remembered by growing.
//! - A node refuses requests dated before it started. Nothing is written
//!   to disk, yet a request accepted before a restart cannot run again
//!   after it. The price is clock skew: a caller whose clock runs N
//!   seconds behind the node's cannot use it for the first N seconds
//!   after the node starts (and any request is refused once older than
//!   its ttl). NTP keeps N well under a second.

use std::collections::HashMap;

/// Ids remembered by default; `plugin.security.replay_cache_size` sets it.
/// At 300 s max ttl this allows over 300 requests a second to one node.
pub(crate) const DEFAULT_CAPACITY: usize = 100_000;

/// Why a request id is not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Seen before and not yet expired.
    Seen,
    /// The store is full of unexpired ids.
    Full,
    /// Not a request id.
    Malformed,
}

/// Seen request ids and when they expire (Unix ms).
pub(crate) struct ReplayGuard {
    seen: HashMap<u128, u64>,
    capacity: usize,
    next_prune: u64,
}

impl Default for ReplayGuard {
    fn default() -> Self {
        ReplayGuard::new(DEFAULT_CAPACITY)
    }
}

impl ReplayGuard {
    /// A guard remembering at most `capacity` ids.
    pub(crate) fn new(capacity: usize) -> ReplayGuard {
        ReplayGuard {
            seen: HashMap::new(),
            capacity: capacity.max(1),
            next_prune: 0,
        }
    }

    /// How many ids it holds at most.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Records `id` (32 hex digits) if it is new and there is room.
    pub(crate) fn first_sighting(
        &mut self,
        id: &str,
        expires_at: u64,
        now: u64,
    ) -> Result<(), Refusal> {
        let key = parse(id).ok_or(Refusal::Malformed)?;
        if now >= self.next_prune || self.seen.len() >= self.capacity {
            self.seen.retain(|_, expiry| *expiry >= now);
            self.next_prune = now + 10_000;
        }
        match self.seen.get(&key) {
            Some(expiry) if *expiry >= now => Err(Refusal::Seen),
            _ if self.seen.len() >= self.capacity => Err(Refusal::Full),
            _ => {
                self.seen.insert(key, expires_at);
                Ok(())
            }
        }
    }
}

fn parse(id: &str) -> Option<u128> {
    if !muster_protocol::is_valid_id(id) {
        return None;
    }
    u128::from_str_radix(id, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0000000000000000000000000000000a";
    const B: &str = "0000000000000000000000000000000b";
    const C: &str = "0000000000000000000000000000000c";

    #[test]
    fn second_sighting_is_refused_until_expiry() {
        let mut guard = ReplayGuard::default();
        assert_eq!(guard.first_sighting(A, 1_000, 0), Ok(()));
        assert_eq!(guard.first_sighting(A, 1_000, 500), Err(Refusal::Seen));
        // The node still accepts a request at its expiry instant, so the id
        // must be remembered through it.
        assert_eq!(guard.first_sighting(A, 1_000, 1_000), Err(Refusal::Seen));
        assert_eq!(guard.first_sighting(B, 1_000, 500), Ok(()));
        // Pruning forgets expired ids.
        assert_eq!(guard.first_sighting(C, 30_000, 20_000), Ok(()));
        assert_eq!(guard.seen.len(), 1);
    }

    #[test]
    fn a_full_store_refuses_instead_of_growing() {
        let mut guard = ReplayGuard::new(2);
        assert_eq!(guard.first_sighting(A, 10_000, 0), Ok(()));
        assert_eq!(guard.first_sighting(B, 10_000, 0), Ok(()));
        assert_eq!(guard.first_sighting(C, 10_000, 1), Err(Refusal::Full));
        assert_eq!(guard.seen.len(), 2);
        // Once ids expire there is room again.
        assert_eq!(guard.first_sighting(C, 30_000, 10_001), Ok(()));
    }

    #[test]
    fn ids_of_another_shape_are_refused() {
        let mut guard = ReplayGuard::default();
        for id in [
            "",
            "abc",
            &"0".repeat(33),
            &"g".repeat(32),
            &"A".repeat(32),
            &"x".repeat(900_000),
        ] {
            assert_eq!(
                guard.first_sighting(id, 1, 0),
                Err(Refusal::Malformed),
                "{id:.40}"
            );
        }
        assert!(guard.seen.is_empty());
    }
}
