//! Facts from the real `facter -j`, for `factsource = facter`.
//!
//! Facter takes seconds, and on a sick machine it can hang or leave helpers
//! running, so it goes through the agents' one process runner
//! ([`crate::agents::command::run`]): its own process group, its output
//! captured, and the whole group killed at the timeout. Its stdout is read
//! through a pipe (all of it, up to a cap), so a helper that keeps that pipe
//! open keeps the run going until the timeout, when it is killed with the
//! rest of the group. The answer is cached for the refresh interval, and a
//! failed run keeps the last good facts.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::agents::command::{self, Invocation, RunError};

/// Facter output larger than this is refused.
const MAX_FACTER_OUTPUT: usize = 64 << 20;

/// Why facter gave no facts. Every message names the program run.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FacterError {
    /// It could not be started: missing, not executable, or no runtime or
    /// thread to run it on.
    #[error("{}: cannot run: {source}", .program.display())]
    Start {
        /// The program.
        program: PathBuf,
        /// Why it could not start.
        source: Arc<io::Error>,
    },
    /// Waiting for it or reading its output failed; its group was killed.
    #[error("{}: lost while running: {source}", .program.display())]
    Lost {
        /// The program.
        program: PathBuf,
        /// What failed.
        source: Arc<io::Error>,
    },
    /// It was still running at the timeout; it and every process it started
    /// (its process group) were killed.
    #[error(
        "{}: timed out after {} s; it and the processes it started were killed",
        .program.display(),
        .timeout.as_secs_f64()
    )]
    TimedOut {
        /// The program.
        program: PathBuf,
        /// How long it was given.
        timeout: Duration,
    },
    /// It failed and printed no facts.
    #[error("{}: exited with {status}{}", .program.display(), colon_then(.why))]
    Failed {
        /// "exit code 3" or "killed by signal 9".
        status: String,
        /// The program.
        program: PathBuf,
        /// The last line of its stderr, which says why; may be empty.
        why: String,
    },
    /// It printed more than it may; it was killed.
    #[error("{}: printed more than {limit} bytes of facts and was killed", .program.display())]
    TooLarge {
        /// The program.
        program: PathBuf,
        /// The most it may print.
        limit: usize,
    },
    /// Its output does not parse as JSON.
    #[error("{}: output is not JSON: {source}", .program.display())]
    NotJson {
        /// The program.
        program: PathBuf,
        /// Where parsing failed.
        source: Arc<serde_json::Error>,
    },
    /// Its output is JSON but not an object of facts.
    #[error("{}: output is not a JSON object of facts", .program.display())]
    NotObject {
        /// The program.
        program: PathBuf,
    },
}

fn colon_then(text: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

/// Facts from the real `facter -j`, for `factsource = facter`.
///
/// The first [`get`](FacterSource::get) runs facter; later calls answer from
/// the cache until it is older than the refresh interval. `get` blocks while
/// facter runs (up to the timeout, 60 s by default); called on a
/// multi-threaded runtime's worker it hands that worker's other tasks off
/// first, but from async code prefer `tokio::task::spawn_blocking`.
/// Concurrent callers wait for the one run rather than starting their own.
///
/// ```no_run
/// use std::time::Duration;
/// let facter = muster_server::sysfacts::FacterSource::new(Duration::from_secs(300));
/// let facts = facter.get()?;
/// println!("{}", facts["os"]["family"]);
/// # Ok::<(), muster_server::sysfacts::FacterError>(())
/// ```
#[derive(Debug)]
pub struct FacterSource {
    program: PathBuf,
    args: Vec<String>,
    refresh: Duration,
    timeout: Duration,
    state: Mutex<FacterState>,
}

/// The last run's outcome and when it ended: its facts, or the facts of the
/// last good run before it, or (with none) its error.
#[derive(Debug, Default)]
struct FacterState {
    last: Option<(Instant, Result<Arc<Value>, FacterError>)>,
}

impl FacterSource {
    /// Runs `facter -j`, found on `PATH`, at most once per `refresh`.
    pub fn new(refresh: Duration) -> FacterSource {
        FacterSource::with_command(PathBuf::from("facter"), vec!["-j".to_string()], refresh)
    }

    /// Runs `program` with `args` instead of `facter -j`.
    pub fn with_command(program: PathBuf, args: Vec<String>, refresh: Duration) -> FacterSource {
        FacterSource {
            program,
            args,
            refresh,
            timeout: Duration::from_secs(60),
            state: Mutex::new(FacterState::default()),
        }
    }

    /// Kills a run of the program, with every process it started, that
    /// takes longer than `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> FacterSource {
        self.timeout = timeout;
        self
    }

    /// The facts, from the cache or from a new run when the cache is stale.
    ///
    /// A failed run keeps the last good facts and returns them; with none,
    /// it is the run's error. A failure is not retried before the refresh
    /// interval has passed either. Blocks while the program runs.
    pub fn get(&self) -> Result<Arc<Value>, FacterError> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((at, last)) = &state.last {
            if at.elapsed() < self.refresh {
                return last.clone();
            }
        }
        let ran = self.run().map(Arc::new);
        if let Err(e) = &ran {
            tracing::warn!("{e}");
        }
        let kept = match (ran, state.last.take()) {
            (Err(_), Some((_, Ok(good)))) => Ok(good),
            (ran, _) => ran,
        };
        state.last = Some((Instant::now(), kept.clone()));
        kept
    }

    fn run(&self) -> Result<Value, FacterError> {
        let program = || self.program.clone();
        let invocation = Invocation::new(&self.program)
            .args(&self.args)
            .stdout_limit(MAX_FACTER_OUTPUT);
        let deadline = Instant::now() + self.timeout;
        let finished = match on_own_runtime(|| command::run(&invocation, deadline)) {
            Err(e) | Ok(Err(RunError::Start(e))) => {
                return Err(FacterError::Start {
                    program: program(),
                    source: Arc::new(e),
                })
            }
            Ok(Err(RunError::Lost(e))) => {
                return Err(FacterError::Lost {
                    program: program(),
                    source: Arc::new(e),
                })
            }
            Ok(Err(RunError::TimedOut { .. })) => {
                return Err(FacterError::TimedOut {
                    program: program(),
                    timeout: self.timeout,
                })
            }
            Ok(Ok(finished)) => finished,
        };
        if finished.overflowed {
            return Err(FacterError::TooLarge {
                program: program(),
                limit: MAX_FACTER_OUTPUT,
            });
        }
        let status = match (finished.code, finished.signal) {
            (Some(code), _) => format!("exit code {code}"),
            (None, Some(signal)) => format!("killed by signal {signal}"),
            (None, None) => "no exit code".to_string(),
        };
        let why = finished
            .stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim()
            .to_string();
        let success = finished.code == Some(0);
        match serde_json::from_str::<Value>(&finished.stdout) {
            // facter exits 1 when one fact resolver fails (e.g. an unreadable
            // /proc file) but still prints every other fact: use them.
            Ok(value @ Value::Object(_)) => {
                if !success {
                    tracing::warn!(program = %self.program.display(), %status, error = %why, "facter reported errors; using the facts it printed");
                }
                Ok(value)
            }
            _ if !success => Err(FacterError::Failed {
                program: program(),
                status,
                why,
            }),
            Ok(_) => Err(FacterError::NotObject { program: program() }),
            Err(e) => Err(FacterError::NotJson {
                program: program(),
                source: Arc::new(e),
            }),
        }
    }
}

/// Runs the future `make` builds to its end on a runtime and thread of its
/// own: `get` is synchronous and is called from plain threads,
/// `spawn_blocking` threads and, at start-up, a runtime's worker, where a
/// nested `block_on` would panic. A multi-threaded runtime's worker is told
/// to hand its other tasks off while it waits.
fn on_own_runtime<F, Fut>(make: F) -> io::Result<Fut::Output>
where
    F: FnOnce() -> Fut + Send,
    Fut: Future,
    Fut::Output: Send,
{
    let run = || {
        std::thread::scope(|scope| {
            let runner = std::thread::Builder::new()
                .name("facter".into())
                .spawn_scoped(scope, || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    Ok(runtime.block_on(make()))
                })?;
            runner
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("its runner thread panicked")))
        })
    };
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(run)
        }
        _ => run(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    }

    #[test]
    fn facter_output_is_cached_and_refreshed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let counter = dir.path().join("runs");
        let body = format!(
            "echo x >> '{c}'\nn=$(wc -l < '{c}')\necho \"{{\\\"os\\\": {{\\\"family\\\": \\\"Debian\\\"}}, \\\"run\\\": $n}}\"",
            c = counter.display()
        );
        let program = script(dir.path(), "facter", &body);
        let cached = FacterSource::with_command(
            program.clone(),
            vec!["-j".into()],
            Duration::from_secs(300),
        );
        let first = cached.get().expect("facts");
        assert_eq!(first["os"]["family"], "Debian");
        assert_eq!(cached.get().expect("facts")["run"], 1);
        let eager = FacterSource::with_command(program, vec![], Duration::ZERO);
        let a = eager.get().expect("facts")["run"].as_u64();
        let b = eager.get().expect("facts")["run"].as_u64();
        assert!(b > a, "{a:?} then {b:?}");
    }

    /// The error of a first run of `program`, and its message.
    fn failure(program: PathBuf, timeout: Duration) -> (FacterError, String) {
        let err = FacterSource::with_command(program, vec![], Duration::ZERO)
            .timeout(timeout)
            .get()
            .expect_err("it fails");
        let message = err.to_string();
        (err, message)
    }

    #[test]
    fn facter_failures_name_the_program() {
        let dir = tempfile::tempdir().expect("tempdir");
        let minute = Duration::from_secs(60);
        let garbage = script(dir.path(), "garbage-facter", "echo 'this is not json'");
        let (err, message) = failure(garbage, minute);
        assert!(matches!(err, FacterError::NotJson { .. }), "{err:?}");
        assert!(
            message.contains("garbage-facter") && message.contains("not JSON"),
            "{message}"
        );
        let list = script(dir.path(), "list-facter", "echo '[1, 2]'");
        let (err, message) = failure(list, minute);
        assert!(matches!(err, FacterError::NotObject { .. }), "{err:?}");
        assert!(message.contains("list-facter"), "{message}");
        let failing = script(
            dir.path(),
            "failing-facter",
            "echo 'boom happened' >&2; exit 3",
        );
        let (err, message) = failure(failing, minute);
        assert!(matches!(err, FacterError::Failed { .. }), "{err:?}");
        assert!(
            message.contains("failing-facter")
                && message.contains("exit code 3")
                && message.contains("boom happened"),
            "{message}"
        );
        let (err, message) = failure(dir.path().join("no-such-facter"), minute);
        assert!(
            matches!(&err, FacterError::Start { source, .. } if source.kind() == io::ErrorKind::NotFound),
            "{err:?}"
        );
        assert!(std::error::Error::source(&err).is_some());
        assert!(message.contains("no-such-facter"), "{message}");
        let slow = script(dir.path(), "slow-facter", "exec sleep 30");
        let (err, message) = failure(slow, Duration::from_millis(200));
        assert!(matches!(err, FacterError::TimedOut { .. }), "{err:?}");
        assert!(
            message.contains("slow-facter") && message.contains("timed out"),
            "{message}"
        );
    }

    #[test]
    fn facter_exiting_with_an_error_but_printing_facts_is_believed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let partial = script(
            dir.path(),
            "facter",
            "echo 'one resolver failed' >&2; echo '{\"a\": 1}'; exit 1",
        );
        let source = FacterSource::with_command(partial, vec![], Duration::ZERO);
        assert_eq!(source.get().expect("facts")["a"], 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn facter_runs_from_a_runtime_worker() {
        let dir = tempfile::tempdir().expect("tempdir");
        let program = script(dir.path(), "facter", "echo '{\"a\": 1}'");
        let source = FacterSource::with_command(program, vec![], Duration::ZERO);
        assert_eq!(source.get().expect("facts")["a"], 1);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn facter_runs_from_a_single_threaded_runtime() {
        let dir = tempfile::tempdir().expect("tempdir");
        let program = script(dir.path(), "facter", "echo '{\"a\": 1}'");
        let source = FacterSource::with_command(program, vec![], Duration::ZERO);
        assert_eq!(source.get().expect("facts")["a"], 1);
    }

    #[test]
    fn facter_keeps_last_good_value_on_failure() {
        let dir = tempfile::tempdir().expect("tempdir");
        let flag = dir.path().join("broken");
        let body = format!(
            "if [ -e '{}' ]; then exit 1; fi\necho '{{\"a\": 1}}'",
            flag.display()
        );
        let program = script(dir.path(), "facter", &body);
        let source = FacterSource::with_command(program, vec![], Duration::ZERO);
        assert_eq!(source.get().expect("facts")["a"], 1);
        std::fs::write(&flag, "").expect("flag");
        assert_eq!(source.get().expect("last good facts")["a"], 1);
    }
}
