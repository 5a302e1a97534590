//! Puppet runs across the fleet with at most N at once, as MCollective's
//! `mco puppet runall N`: a sliding window, not batches. A node's
//! `puppet runonce` blocks until its run is done, so each slot is one
//! outstanding runonce call, and the next node starts the moment any run
//! ends. A node that is already applying a catalog (its run lock is held,
//! by the Puppet daemon say) answers "busy": it keeps its slot, and all
//! such nodes are asked for their status together, in one request per
//! [`RunAll::poll_interval`], until their run is over and they get their own.
//!
//! The window is generic over [`PuppetFleet`], which [`Client`] implements,
//! so it can be tested against a fake fleet on a paused clock.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use serde_json::{Map, Value};
use tokio::time::Instant;

use crate::{Call, Client, ClientError, Targets};

/// What a node's runonce came to.
#[derive(Debug, Clone, PartialEq)]
pub enum RunResult {
    /// The run ended; the reply's data (`summary`, `changed`, ...).
    Finished(Value),
    /// The node was applying a catalog already and did not start a run.
    Busy,
    /// The run failed, was refused, or the node did not answer.
    Failed(String),
}

/// What the window needs from the fleet; [`Client`] is the real one.
pub trait PuppetFleet {
    /// Runs Puppet once on `node` and waits until the run is over (or
    /// `timeout` has passed).
    fn runonce(
        &self,
        node: &str,
        data: &Map<String, Value>,
        timeout: Duration,
    ) -> impl Future<Output = RunResult>;

    /// Whether each of `nodes` is applying a catalog now, asked in one
    /// request; nodes that do not answer are left out.
    fn applying(
        &self,
        nodes: &[String],
        timeout: Duration,
    ) -> impl Future<Output = Result<HashMap<String, bool>, ClientError>>;
}

impl PuppetFleet for Client {
    async fn runonce(&self, node: &str, data: &Map<String, Value>, timeout: Duration) -> RunResult {
        let call = Call::new("puppet", "runonce")
            .with_data(data.clone())
            .with_targets(Targets::Nodes(vec![node.to_string()]))
            .with_timeout(timeout);
        let outcome = match self.call(&call, |_| {}).await {
            Ok(outcome) => outcome,
            Err(e) => return RunResult::Failed(e.to_string()),
        };
        match outcome.responses.into_iter().next() {
            None => RunResult::Failed(format!("no reply within {:.0} s", timeout.as_secs_f64())),
            Some(r) if r.reply.statuscode.is_ok() => RunResult::Finished(r.reply.data),
            // A refused run while the node's status says it is applying is
            // a run already going (a daemon's, another operator's): that
            // is how any puppet agent says so, whatever its message.
            Some(r) => {
                let ask = timeout.min(Duration::from_secs(10));
                let status = self.applying(&[node.to_string()], ask).await;
                match status.ok().and_then(|s| s.get(node).copied()) {
                    Some(true) => RunResult::Busy,
                    _ => RunResult::Failed(r.reply.statusmsg),
                }
            }
        }
    }

    async fn applying(
        &self,
        nodes: &[String],
        timeout: Duration,
    ) -> Result<HashMap<String, bool>, ClientError> {
        let call = Call::new("puppet", "status")
            .with_targets(Targets::Nodes(nodes.to_vec()))
            .with_timeout(timeout);
        let outcome = self.call(&call, |_| {}).await?;
        Ok(outcome
            .responses
            .into_iter()
            .filter(|r| r.reply.statuscode.is_ok())
            .map(|r| {
                let applying = r.reply.data.get("applying").and_then(Value::as_bool);
                (r.reply.sender, applying.unwrap_or(false))
            })
            .collect())
    }
}

/// What happened to one node, as it happens.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// Its runonce was sent.
    Started(String),
    /// It was applying a catalog already; it waits, holding a slot.
    Busy(String),
    /// Its run ended; the reply's `summary`.
    Finished {
        /// The node.
        node: String,
        /// What its reply said, e.g. "Puppet run completed with changes".
        summary: String,
    },
    /// Its run failed or it did not answer.
    Failed {
        /// The node.
        node: String,
        /// Why, e.g. its reply's status message.
        reason: String,
    },
}

/// How the runs went.
#[derive(Debug, Clone, Default)]
pub struct RunAllReport {
    /// Nodes whose run finished, in the order they finished.
    pub succeeded: Vec<String>,
    /// Nodes whose run failed, with why, in the order they failed.
    pub failed: Vec<(String, String)>,
    /// The most nodes that were running (or waiting busy) at once.
    pub most_at_once: usize,
    /// From the first start to the last end.
    pub elapsed: Duration,
}

/// A runall: how many at once, with what options, and how long to wait.
#[derive(Debug, Clone)]
pub struct RunAll {
    /// Most nodes running at once; 0 counts as 1.
    pub concurrency: usize,
    /// The runonce inputs (noop, tags, environment, ...).
    pub data: Map<String, Value>,
    /// How long one run may take: the puppet DDL's timeout plus the
    /// network margin unless the caller says otherwise.
    pub run_timeout: Duration,
    /// How often busy nodes are asked whether their run is over.
    pub poll_interval: Duration,
    /// How long a status poll waits for answers.
    pub status_timeout: Duration,
}

impl RunAll {
    /// `concurrency` at once, with the puppet DDL's timeouts.
    pub fn new(concurrency: usize) -> RunAll {
        let ddl = crate::ddls::builtin_timeout("puppet").unwrap_or(Duration::from_secs(300));
        RunAll {
            concurrency,
            data: Map::new(),
            run_timeout: ddl + crate::ddls::NETWORK_MARGIN,
            poll_interval: Duration::from_secs(1),
            status_timeout: Duration::from_secs(10),
        }
    }

    /// Runs Puppet on every node in `nodes`, in order, never more than
    /// [`RunAll::concurrency`] at once, telling `progress` as things happen.
    pub async fn run<F: PuppetFleet>(
        &self,
        fleet: &F,
        nodes: Vec<String>,
        mut progress: impl FnMut(Progress),
    ) -> RunAllReport {
        type Pending<'f> = Pin<Box<dyn Future<Output = (String, RunResult)> + 'f>>;
        type Poll<'f> =
            Pin<Box<dyn Future<Output = Result<HashMap<String, bool>, ClientError>> + 'f>>;

        let started = Instant::now();
        let window = self.concurrency.max(1);
        let mut queue: VecDeque<String> = nodes.into();
        let mut running: FuturesUnordered<Pending<'_>> = FuturesUnordered::new();
        // Busy nodes and since when they have been waiting.
        let mut busy: Vec<(String, Instant)> = Vec::new();
        let mut poll: Option<Poll<'_>> = None;
        let mut next_poll = Instant::now() + self.poll_interval;
        let mut report = RunAllReport::default();
        let start = |node: String| -> Pending<'_> {
            Box::pin(async move {
                let result = fleet.runonce(&node, &self.data, self.run_timeout).await;
                (node, result)
            })
        };

        loop {
            while running.len() + busy.len() < window {
                let Some(node) = queue.pop_front() else { break };
                progress(Progress::Started(node.clone()));
                running.push(start(node));
            }
            report.most_at_once = report.most_at_once.max(running.len() + busy.len());
            if running.is_empty() && busy.is_empty() {
                break;
            }
            let polling = !busy.is_empty() && poll.is_none();
            tokio::select! {
                Some((node, result)) = running.next(), if !running.is_empty() => match result {
                    RunResult::Finished(data) => {
                        let summary = data
                            .get("summary")
                            .and_then(Value::as_str)
                            .unwrap_or("finished")
                            .to_string();
                        report.succeeded.push(node.clone());
                        progress(Progress::Finished { node, summary });
                    }
                    RunResult::Busy => {
                        if busy.is_empty() {
                            next_poll = Instant::now() + self.poll_interval;
                        }
                        busy.push((node.clone(), Instant::now()));
                        progress(Progress::Busy(node));
                    }
                    RunResult::Failed(reason) => {
                        report.failed.push((node.clone(), reason.clone()));
                        progress(Progress::Failed { node, reason });
                    }
                },
                () = tokio::time::sleep_until(next_poll), if polling => {
                    let nodes: Vec<String> = busy.iter().map(|(n, _)| n.clone()).collect();
                    poll = Some(Box::pin(fleet.applying_owned(nodes, self.status_timeout)));
                }
                answer = async { poll.as_mut().expect("guarded").await }, if poll.is_some() => {
                    poll = None;
                    next_poll = Instant::now() + self.poll_interval;
                    let applying = answer.unwrap_or_else(|e| {
                        tracing::warn!(error = %e, "puppet status poll failed");
                        HashMap::new()
                    });
                    let mut still = Vec::new();
                    for (node, since) in busy.drain(..) {
                        match applying.get(&node) {
                            Some(false) => {
                                progress(Progress::Started(node.clone()));
                                running.push(start(node));
                            }
                            _ if since.elapsed() >= self.run_timeout => {
                                let reason = format!(
                                    "still applying another run after {:.0} s",
                                    self.run_timeout.as_secs_f64()
                                );
                                report.failed.push((node.clone(), reason.clone()));
                                progress(Progress::Failed { node, reason });
                            }
                            _ => still.push((node, since)),
                        }
                    }
                    busy = still;
                }
            }
        }
        report.elapsed = started.elapsed();
        report
    }
}

/// `applying` with owned arguments, so a poll can live beside the runs.
trait ApplyingOwned: PuppetFleet {
    fn applying_owned(
        &self,
        nodes: Vec<String>,
        timeout: Duration,
    ) -> impl Future<Output = Result<HashMap<String, bool>, ClientError>> {
        async move { self.applying(&nodes, timeout).await }
    }
}

impl<F: PuppetFleet> ApplyingOwned for F {}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use serde_json::json;

    use super::*;

    /// Nodes whose runs take `run` each; `busy_until` says until when a
    /// node's lock is held by someone else.
    struct FakeFleet {
        run: Duration,
        busy_until: HashMap<String, Instant>,
        running: RefCell<usize>,
        most: RefCell<usize>,
        polls: RefCell<Vec<Vec<String>>>,
        runs: RefCell<Vec<String>>,
    }

    impl FakeFleet {
        fn new(run: Duration) -> FakeFleet {
            FakeFleet {
                run,
                busy_until: HashMap::new(),
                running: RefCell::new(0),
                most: RefCell::new(0),
                polls: RefCell::new(Vec::new()),
                runs: RefCell::new(Vec::new()),
            }
        }
    }

    impl PuppetFleet for FakeFleet {
        async fn runonce(&self, node: &str, _: &Map<String, Value>, _: Duration) -> RunResult {
            if self
                .busy_until
                .get(node)
                .is_some_and(|t| Instant::now() < *t)
            {
                return RunResult::Busy;
            }
            if node.starts_with("broken") {
                return RunResult::Failed("Puppet run failed".into());
            }
            *self.running.borrow_mut() += 1;
            let now = *self.running.borrow();
            self.most.replace_with(|m| (*m).max(now));
            self.runs.borrow_mut().push(node.to_string());
            tokio::time::sleep(self.run).await;
            *self.running.borrow_mut() -= 1;
            RunResult::Finished(json!({"summary": "Puppet run completed without changes"}))
        }

        async fn applying(
            &self,
            nodes: &[String],
            _: Duration,
        ) -> Result<HashMap<String, bool>, ClientError> {
            self.polls.borrow_mut().push(nodes.to_vec());
            Ok(nodes
                .iter()
                .map(|n| {
                    let busy = self.busy_until.get(n).is_some_and(|t| Instant::now() < *t);
                    (n.clone(), busy)
                })
                .collect())
        }
    }

    fn names(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("node{i}")).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn five_nodes_two_at_a_time_take_three_runs() {
        let fleet = FakeFleet::new(Duration::from_secs(2));
        let started = Instant::now();
        let report = RunAll::new(2).run(&fleet, names(5), |_| {}).await;
        assert_eq!(started.elapsed(), Duration::from_secs(6));
        assert_eq!(report.succeeded.len(), 5);
        assert!(report.failed.is_empty());
        assert_eq!(*fleet.most.borrow(), 2);
        assert_eq!(report.most_at_once, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn the_window_never_exceeds_n_and_refills_at_once() {
        for n in 1..=4 {
            let fleet = FakeFleet::new(Duration::from_secs(3));
            let report = RunAll::new(n).run(&fleet, names(7), |_| {}).await;
            assert_eq!(*fleet.most.borrow(), n.min(7), "window {n}");
            assert_eq!(report.succeeded.len(), 7);
            // Equal runs refill in whole rounds: ceil(7 / n) of them.
            assert_eq!(
                report.elapsed,
                Duration::from_secs(3 * 7u64.div_ceil(n as u64))
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_node_holds_its_slot_then_gets_its_run() {
        let mut fleet = FakeFleet::new(Duration::from_secs(2));
        let now = Instant::now();
        fleet
            .busy_until
            .insert("node1".into(), now + Duration::from_millis(3500));
        fleet
            .busy_until
            .insert("node2".into(), now + Duration::from_millis(3500));
        let mut seen = Vec::new();
        let report = RunAll::new(2).run(&fleet, names(3), |p| seen.push(p)).await;
        // Both busy nodes hold the two slots: node3 waits for them.
        assert_eq!(seen[2], Progress::Busy("node1".into()));
        assert_eq!(seen[3], Progress::Busy("node2".into()));
        // Each poll asks every busy node in one request.
        let polls = fleet.polls.borrow();
        assert!(polls.len() >= 3, "{polls:?}");
        assert!(polls.iter().all(|p| p == &["node1", "node2"]), "{polls:?}");
        assert_eq!(*fleet.runs.borrow(), ["node1", "node2", "node3"]);
        assert_eq!(report.succeeded.len(), 3);
        // Polls at 1, 2, 3, 4 s; the runs start at 4 s and end at 6; node3 at 8.
        assert_eq!(report.elapsed, Duration::from_secs(8));
    }

    #[tokio::test(start_paused = true)]
    async fn failures_free_their_slot_and_are_reported() {
        let fleet = FakeFleet::new(Duration::from_secs(2));
        let nodes = vec!["broken1".into(), "node1".into(), "node2".into()];
        let report = RunAll::new(1).run(&fleet, nodes, |_| {}).await;
        assert_eq!(report.failed.len(), 1);
        assert_eq!(report.failed[0].0, "broken1");
        assert_eq!(report.succeeded, ["node1", "node2"]);
        assert_eq!(report.elapsed, Duration::from_secs(4));
    }
}
