//! Refusing a request id that was already seen.
//!
//! Ids are remembered until their request expires; after that the age
//! check refuses the request anyway, so memory stays bounded by the
//! request rate times the longest accepted ttl.

use std::collections::HashMap;

/// Seen request ids and when they expire (Unix ms).
#[derive(Default)]
pub struct ReplayGuard {
    seen: HashMap<String, u64>,
    next_prune: u64,
}

impl ReplayGuard {
    /// Records `id`; false if it was already seen and has not expired.
    pub fn first_sighting(&mut self, id: &str, expires_at: u64, now: u64) -> bool {
        if now >= self.next_prune {
            self.seen.retain(|_, expiry| *expiry >= now);
            self.next_prune = now + 10_000;
        }
        match self.seen.get(id) {
            Some(expiry) if *expiry >= now => false,
            _ => {
                self.seen.insert(id.to_string(), expires_at);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_sighting_is_refused_until_expiry() {
        let mut guard = ReplayGuard::default();
        assert!(guard.first_sighting("a", 1_000, 0));
        assert!(!guard.first_sighting("a", 1_000, 500));
        // The node still accepts a request at its expiry instant, so the id
        // must be remembered through it.
        assert!(!guard.first_sighting("a", 1_000, 1_000));
        assert!(guard.first_sighting("b", 1_000, 500));
        // Pruning forgets expired ids.
        assert!(guard.first_sighting("c", 30_000, 20_000));
        assert_eq!(guard.seen.len(), 1);
    }
}
