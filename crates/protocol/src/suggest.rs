//! "Did you mean ...?" for names a human typed: config keys, agents,
//! actions. One place decides what counts as a typo, so every error that
//! offers a guess offers it the same way.

/// The candidate closest to `typed` within `budget` edits (see
/// [`edit_distance`]; case is ignored), the first such on a tie.
/// `None` when every candidate is further away.
///
/// ```
/// use muster_protocol::suggest::closest;
/// let agents = ["package", "service", "puppet"];
/// assert_eq!(closest("pakage", agents, 2), Some("package"));
/// assert_eq!(closest("zookeeper", agents, 2), None);
/// ```
pub fn closest<'a, I>(typed: &str, candidates: I, budget: usize) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let typed = typed.to_lowercase();
    let mut best: Option<(usize, &'a str)> = None;
    for candidate in candidates {
        let distance = edit_distance(&typed, &candidate.to_lowercase());
        if distance <= budget && best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, name)| name)
}

/// Levenshtein distance with adjacent swaps (optimal string alignment),
/// counted in characters. Names are short, so the plain two-row table is
/// enough; a dependency (strsim) would bring nothing more for 20 lines.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        current[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (previous[j] + 1)
                .min(current[j - 1] + 1)
                .min(previous[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(before[j - 2] + 1);
            }
            current[j] = best;
        }
        std::mem::swap(&mut before, &mut previous);
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_edits_and_swaps() {
        assert_eq!(edit_distance("identiy", "identity"), 1);
        assert_eq!(edit_distance("identtiy", "identity"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }

    #[test]
    fn closest_is_within_the_budget() {
        let names = ["package", "puppet", "service", "rpcutil"];
        assert_eq!(closest("pakage", names, 2), Some("package"));
        assert_eq!(closest("PAKCAGE", names, 2), Some("package"));
        assert_eq!(closest("sevrice", names, 2), Some("service"));
        assert_eq!(closest("puppett", names, 2), Some("puppet"));
        assert_eq!(closest("pkg", names, 2), None);
        assert_eq!(closest("myagent", names, 2), None);
    }
}
