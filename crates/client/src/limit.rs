//! Choosing a random subset of the discovered nodes, as MCollective's
//! `--limit-nodes N`, `--limit-nodes N%` and `--one` do.
//!
//! The choice is random so that repeated small runs spread over the fleet,
//! and reproducible: the same seed over the same nodes picks the same
//! subset, whatever order discovery listed them in. The generator is
//! splitmix64: tiny, fast and well mixed, which is all a sample needs (it
//! is not for secrets).
//!
//! ```
//! use muster_client::Limit;
//!
//! let nodes: Vec<String> = (1..=20).map(|n| format!("node{n:02}")).collect();
//! let limit: Limit = "25%".parse().unwrap();
//! let chosen = limit.choose(&nodes, 42);
//! assert_eq!(chosen.len(), 5);
//! assert_eq!(chosen, limit.choose(&nodes, 42));
//! ```

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

/// How many of the discovered nodes to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// At most this many nodes (at least 1).
    Count(usize),
    /// This share of the nodes, 1 to 100 percent, rounded up, so at least
    /// one node is kept whenever any were discovered.
    Percent(u8),
}

/// Text that is not a node limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a node limit: give a count of at least 1 (e.g. 10) or a percentage from 1% to 100% (e.g. 25%)")]
pub struct LimitError {
    /// The limit as typed, for messages.
    pub text: String,
}

impl FromStr for Limit {
    type Err = LimitError;

    fn from_str(text: &str) -> Result<Limit, LimitError> {
        let error = || LimitError {
            text: text.to_string(),
        };
        let trimmed = text.trim();
        match trimmed.strip_suffix('%') {
            Some(percent) => match percent.trim().parse::<u8>() {
                Ok(p @ 1..=100) => Ok(Limit::Percent(p)),
                _ => Err(error()),
            },
            None => match trimmed.parse::<usize>() {
                Ok(n) if n >= 1 => Ok(Limit::Count(n)),
                _ => Err(error()),
            },
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Count(n) => write!(f, "{n}"),
            Limit::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl Limit {
    /// How many of `discovered` nodes this limit keeps.
    pub fn count(&self, discovered: usize) -> usize {
        let wanted = match *self {
            Limit::Count(n) => n,
            Limit::Percent(p) => (discovered * p as usize).div_ceil(100).max(1),
        };
        wanted.min(discovered)
    }

    /// A random subset of `nodes` of [`Limit::count`] size, sorted. The
    /// same `seed` over the same set of nodes gives the same subset.
    pub fn choose(&self, nodes: &[String], seed: u64) -> Vec<String> {
        let mut pool = nodes.to_vec();
        // Sorted first, so the choice depends on the set, not on the order
        // discovery happened to list it in.
        pool.sort();
        pool.dedup();
        let keep = self.count(pool.len());
        let mut rng = SplitMix64(seed);
        // A partial Fisher-Yates shuffle: the first `keep` places are a
        // uniform sample.
        for i in 0..keep {
            let j = i + rng.below(pool.len() - i);
            pool.swap(i, j);
        }
        pool.truncate(keep);
        pool.sort();
        pool
    }
}

/// A seed that differs from run to run: the clock mixed with the process id.
pub fn time_seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    SplitMix64(nanos ^ (u64::from(std::process::id()) << 32)).next()
}

/// splitmix64 (Steele, Lea and Flood): one 64-bit state, one add and a
/// few multiply-xorshifts per number.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0), by multiply-shift; the bias is far
    /// below anything a fleet's size could show.
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next()) * n as u128) >> 64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("node{i:03}")).collect()
    }

    #[test]
    fn limits_parse_as_counts_or_percentages() {
        assert_eq!("5".parse(), Ok(Limit::Count(5)));
        assert_eq!(" 25% ".parse(), Ok(Limit::Percent(25)));
        assert_eq!("100%".parse(), Ok(Limit::Percent(100)));
        for bad in ["0", "0%", "101%", "-1", "x", "%", "2.5", "1.5%", ""] {
            assert!(bad.parse::<Limit>().is_err(), "{bad:?} parsed");
        }
        assert_eq!(Limit::Percent(25).to_string(), "25%");
        assert_eq!(Limit::Count(3).to_string(), "3");
    }

    #[test]
    fn counts_round_percentages_up_and_never_exceed_the_fleet() {
        let cases = [
            (Limit::Count(5), 20, 5),
            (Limit::Count(50), 20, 20),
            (Limit::Count(1), 0, 0),
            (Limit::Percent(25), 20, 5),
            (Limit::Percent(10), 15, 2),
            (Limit::Percent(1), 3, 1),
            (Limit::Percent(100), 7, 7),
            (Limit::Percent(50), 0, 0),
        ];
        for (limit, discovered, kept) in cases {
            assert_eq!(limit.count(discovered), kept, "{limit} of {discovered}");
        }
    }

    #[test]
    fn choice_is_seeded_order_independent_and_a_subset() {
        let all = nodes(100);
        let limit = Limit::Count(10);
        let a = limit.choose(&all, 7);
        assert_eq!(a.len(), 10);
        assert!(a.iter().all(|n| all.contains(n)));
        assert!(a.windows(2).all(|w| w[0] < w[1]), "sorted and distinct");
        let mut reversed = all.clone();
        reversed.reverse();
        assert_eq!(limit.choose(&reversed, 7), a);
        let differs = (8..20).any(|seed| limit.choose(&all, seed) != a);
        assert!(differs, "other seeds pick other nodes");
    }

    #[test]
    fn every_node_can_be_chosen() {
        let all = nodes(10);
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..200 {
            seen.extend(Limit::Count(1).choose(&all, seed));
        }
        assert_eq!(seen.len(), 10);
    }
}
