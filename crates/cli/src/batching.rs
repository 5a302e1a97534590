//! `--batch N --batch-sleep S`, `--limit-nodes N|N%`, `--one` and
//! `--limit-seed SEED`: how many of the discovered nodes a request goes to,
//! and how many at a time. The work is in `muster_client` (`Batch`,
//! `Limit`); this only reads the flags.

use std::time::Duration;

use muster_client::{Batch, Limit};

/// Flags that pick a subset of the discovered nodes and pace the request.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct BatchFlags {
    /// Send the request to N nodes at a time, waiting for each batch's replies (broadcasts are never batched)
    #[arg(long = "batch", value_name = "N", value_parser = batch_size)]
    pub batch: Option<usize>,
    /// Seconds to sleep between batches
    #[arg(
        long = "batch-sleep",
        value_name = "SECONDS",
        value_parser = batch_sleep,
        default_value = "1",
        requires = "batch"
    )]
    pub batch_sleep: Duration,
    /// Address only N of the discovered nodes, or N% of them (rounded up), chosen at random
    #[arg(
        long = "limit-nodes",
        visible_alias = "ln",
        value_name = "N|N%",
        value_parser = limit
    )]
    pub limit_nodes: Option<Limit>,
    /// Address only one of the discovered nodes, chosen at random (--limit-nodes 1)
    #[arg(long = "one", short = '1', conflicts_with = "limit_nodes")]
    pub one: bool,
    /// Seed for choosing --limit-nodes/--one's nodes: the same seed picks the same nodes (default: the clock)
    #[arg(long = "limit-seed", value_name = "SEED")]
    pub limit_seed: Option<u64>,
}

impl Default for BatchFlags {
    fn default() -> BatchFlags {
        BatchFlags {
            batch: None,
            batch_sleep: Batch::DEFAULT_SLEEP,
            limit_nodes: None,
            one: false,
            limit_seed: None,
        }
    }
}

impl BatchFlags {
    /// The batching these flags ask for, if any.
    pub(crate) fn batch(&self) -> Option<Batch> {
        self.batch
            .map(|size| Batch::new(size).with_sleep(self.batch_sleep))
    }

    /// The node limit these flags ask for, if any.
    pub(crate) fn limit(&self) -> Option<Limit> {
        if self.one {
            Some(Limit::Count(1))
        } else {
            self.limit_nodes
        }
    }

    /// The nodes to address out of those discovered: all of them, or the
    /// random subset the limit picks.
    pub(crate) fn choose(&self, discovered: Vec<String>) -> Vec<String> {
        match self.limit() {
            None => discovered,
            Some(limit) => {
                let seed = self
                    .limit_seed
                    .unwrap_or_else(muster_client::limit::time_seed);
                limit.choose(&discovered, seed)
            }
        }
    }
}

fn batch_size(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!(
            "{text:?} is not a batch size: give a whole number of nodes, at least 1"
        )),
    }
}

fn batch_sleep(text: &str) -> Result<Duration, String> {
    match text.trim().parse::<f64>() {
        Ok(s) if s.is_finite() && (0.0..=86_400.0).contains(&s) => Ok(Duration::from_secs_f64(s)),
        _ => Err(format!(
            "{text:?} is not a pause: give seconds between 0 and 86400"
        )),
    }
}

fn limit(text: &str) -> Result<Limit, String> {
    text.parse()
        .map_err(|e: muster_client::LimitError| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        flags: BatchFlags,
    }

    fn parse(args: &[&str]) -> Result<BatchFlags, clap::Error> {
        Cli::try_parse_from(std::iter::once("mco").chain(args.iter().copied())).map(|c| c.flags)
    }

    #[test]
    fn flags_read_as_mcollective_spells_them() {
        let f = parse(&["--batch", "5", "--batch-sleep", "0.5"]).unwrap();
        assert_eq!(
            f.batch(),
            Some(Batch {
                size: 5,
                sleep: Duration::from_millis(500)
            })
        );
        assert_eq!(
            parse(&["--batch", "3"]).unwrap().batch().unwrap().sleep,
            Duration::from_secs(1)
        );
        assert_eq!(parse(&[]).unwrap().batch(), None);
        assert_eq!(
            parse(&["--ln", "25%"]).unwrap().limit(),
            Some(Limit::Percent(25))
        );
        assert_eq!(parse(&["--one"]).unwrap().limit(), Some(Limit::Count(1)));
        assert_eq!(parse(&["-1"]).unwrap().limit(), Some(Limit::Count(1)));
        assert_eq!(parse(&[]).unwrap().limit(), None);
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for args in [
            &["--batch", "0"][..],
            &["--batch", "x"],
            &["--batch", "2", "--batch-sleep", "-1"],
            &["--batch-sleep", "2"],
            &["--limit-nodes", "0"],
            &["--limit-nodes", "150%"],
            &["--one", "--limit-nodes", "3"],
        ] {
            let error = parse(args)
                .err()
                .unwrap_or_else(|| panic!("{args:?} parsed"));
            assert_eq!(error.exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn the_seed_fixes_the_choice() {
        let nodes: Vec<String> = (1..=20).map(|n| format!("node{n:02}")).collect();
        let f = parse(&["--limit-nodes", "4", "--limit-seed", "9"]).unwrap();
        let chosen = f.choose(nodes.clone());
        assert_eq!(chosen.len(), 4);
        assert_eq!(f.choose(nodes.clone()), chosen);
        assert_eq!(parse(&[]).unwrap().choose(nodes.clone()), nodes);
    }
}
