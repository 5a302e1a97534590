//! Facts from the real `facter -j`, for `factsource = facter`.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Facts from the real `facter -j`, for `factsource = facter`.
///
/// The first [`get`](FacterSource::get) runs facter; later calls answer from
/// the cache until it is older than the refresh interval. `get` blocks while
/// facter runs (up to the timeout, 60 s by default): from async code call it
/// through `tokio::task::spawn_blocking`. Concurrent callers wait for the one
/// run rather than starting their own.
///
/// ```no_run
/// use std::time::Duration;
/// let facter = muster_server::sysfacts::FacterSource::new(Duration::from_secs(300));
/// let facts = facter.get()?;
/// println!("{}", facts["os"]["family"]);
/// # Ok::<(), String>(())
/// ```
#[derive(Debug)]
pub struct FacterSource {
    program: PathBuf,
    args: Vec<String>,
    refresh: Duration,
    timeout: Duration,
    state: Mutex<FacterState>,
}

#[derive(Debug, Default)]
struct FacterState {
    last_good: Option<Arc<Value>>,
    last_error: Option<String>,
    checked: Option<Instant>,
}

/// Facter output larger than this is refused.
const MAX_FACTER_OUTPUT: u64 = 64 << 20;

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

    /// Kills a run of the program that takes longer than `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> FacterSource {
        self.timeout = timeout;
        self
    }

    /// The facts, from the cache or from a new run when the cache is stale.
    ///
    /// A failed run keeps the last good facts and returns them; with none,
    /// it is an error naming the program. A failure is not retried before
    /// the refresh interval has passed either. Blocks while the program runs.
    pub fn get(&self) -> Result<Arc<Value>, String> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let fresh = state.checked.is_some_and(|at| at.elapsed() < self.refresh);
        if !fresh {
            match self.run() {
                Ok(value) => {
                    state.last_good = Some(Arc::new(value));
                    state.last_error = None;
                }
                Err(e) => {
                    tracing::warn!("{e}");
                    state.last_error = Some(e);
                }
            }
            state.checked = Some(Instant::now());
        }
        match (&state.last_good, &state.last_error) {
            (Some(value), _) => Ok(Arc::clone(value)),
            (None, Some(e)) => Err(e.clone()),
            (None, None) => Err(format!("{}: no facts yet", self.program.display())),
        }
    }

    fn run(&self) -> Result<Value, String> {
        let name = self.program.display().to_string();
        let mut child = self
            .spawn()
            .map_err(|e| format!("{name}: cannot run: {e}"))?;
        let deadline = Instant::now() + self.timeout;
        // Read both pipes on their own threads so a chatty program cannot
        // fill one pipe and stall while we wait.
        let (out_tx, out_rx) = std::sync::mpsc::channel();
        let (err_tx, err_rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        std::thread::spawn(move || out_tx.send(read_capped(stdout, MAX_FACTER_OUTPUT)));
        std::thread::spawn(move || err_tx.send(read_capped(stderr, 64 << 10)));
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "{name}: no answer within {} s, killed",
                        self.timeout.as_secs_f64()
                    ));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(format!("{name}: {e}")),
            }
        };
        // A background process it left behind may hold the pipes open: do
        // not wait for their end past the deadline.
        let remaining = || {
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(100))
        };
        let stdout = out_rx.recv_timeout(remaining()).unwrap_or_default();
        let stderr = err_rx.recv_timeout(remaining()).unwrap_or_default();
        let why = String::from_utf8_lossy(&stderr);
        let last = why
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim()
            .to_string();
        match serde_json::from_slice::<Value>(&stdout) {
            // facter exits 1 when one fact resolver fails (e.g. an unreadable
            // /proc file) but still prints every other fact: use them.
            Ok(value @ Value::Object(_)) => {
                if !status.success() {
                    tracing::warn!(program = %name, %status, error = %last, "facter reported errors; using the facts it printed");
                }
                Ok(value)
            }
            _ if !status.success() => Err(format!(
                "{name}: exited with {status}{}{last}",
                if last.is_empty() { "" } else { ": " }
            )),
            Ok(_) => Err(format!("{name}: output is not a JSON object of facts")),
            Err(e) => Err(format!("{name}: output is not JSON: {e}")),
        }
    }
}

impl FacterSource {
    fn spawn(&self) -> std::io::Result<std::process::Child> {
        let mut attempt = 0;
        loop {
            let spawned = Command::new(&self.program)
                .args(&self.args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn();
            match spawned {
                // A just-written program can be briefly "busy" while another
                // thread's fork still holds its write descriptor.
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && attempt < 10 => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => return other,
            }
        }
    }
}

fn read_capped(pipe: Option<impl Read>, limit: u64) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Some(pipe) = pipe {
        let mut pipe = pipe.take(limit);
        let _ = pipe.read_to_end(&mut buf);
        // Drain the rest so the writer is never blocked on a full pipe.
        let _ = std::io::copy(&mut pipe.into_inner(), &mut std::io::sink());
    }
    buf
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

    #[test]
    fn facter_failures_name_the_program() {
        let dir = tempfile::tempdir().expect("tempdir");
        let garbage = script(dir.path(), "garbage-facter", "echo 'this is not json'");
        let err = FacterSource::with_command(garbage.clone(), vec![], Duration::ZERO)
            .get()
            .unwrap_err();
        assert!(
            err.contains("garbage-facter") && err.contains("not JSON"),
            "{err}"
        );
        let failing = script(
            dir.path(),
            "failing-facter",
            "echo 'boom happened' >&2; exit 3",
        );
        let err = FacterSource::with_command(failing, vec![], Duration::ZERO)
            .get()
            .unwrap_err();
        assert!(
            err.contains("failing-facter") && err.contains("boom happened"),
            "{err}"
        );
        let missing = dir.path().join("no-such-facter");
        let err = FacterSource::with_command(missing, vec![], Duration::ZERO)
            .get()
            .unwrap_err();
        assert!(err.contains("no-such-facter"), "{err}");
        let slow = script(dir.path(), "slow-facter", "exec sleep 30");
        let started = Instant::now();
        let err = FacterSource::with_command(slow, vec![], Duration::ZERO)
            .timeout(Duration::from_millis(200))
            .get()
            .unwrap_err();
        assert!(
            err.contains("slow-facter") && started.elapsed() < Duration::from_secs(10),
            "{err}"
        );
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
