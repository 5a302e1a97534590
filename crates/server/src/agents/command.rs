//! Running an external program: the one way every agent does it.
//!
//! A program runs directly (never through a shell) in its own process
//! group, so the children a script starts belong to it. The whole group is
//! killed at the deadline, when its capped stdout overflows, or when the
//! future running it is dropped (a request abandoned mid-run); always while
//! the leader is unreaped, so the group id cannot have been reused.
//!
//! Output goes to unlinked temporary files, not pipes: an init script or a
//! package's maintainer script leaves its daemon holding the script's
//! stdout and stderr, and reading a pipe to its end would wait for the
//! daemon to exit (Puppet runs its commands the same way for that reason).
//! Only a capped stdout ([`Invocation::stdout_limit`]) is a pipe, so the
//! group can be stopped the moment it passes the cap; such a run also
//! waits for the pipe's end.
//!
//! ```text
//! let ls = Invocation::new("ls").args(["-l", "/"]).stderr_to_stdout();
//! let done = command::run(&ls, Instant::now() + Duration::from_secs(5)).await?;
//! println!("{}: {}", done.exit(), done.output());
//! ```
//!
//! A daemon shutting down stops what its requests run: work run through
//! [`stoppable`] observes that daemon's [`StopSignal`], and when it fires
//! every program still running gets SIGTERM to its group, then SIGKILL
//! [`STOP_WAIT`] later. Programs outside such a scope are never stopped.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::future::Future;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::process::{kill_process_group, Pid, Signal};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// How long a program asked to stop (SIGTERM) has before its group is
/// killed: dpkg or puppet get to leave their state consistent.
pub(crate) const STOP_WAIT: Duration = Duration::from_secs(5);

/// Fired once by a daemon that shuts down: the programs of work run under
/// it with [`stoppable`] are asked to stop.
#[derive(Debug, Clone)]
pub(crate) struct StopSignal(Arc<watch::Sender<bool>>);

impl StopSignal {
    pub(crate) fn new() -> StopSignal {
        StopSignal(Arc::new(watch::Sender::new(false)))
    }

    /// Stops every program running under this signal, and any started
    /// under it from now on.
    pub(crate) fn fire(&self) {
        self.0.send_replace(true);
    }
}

/// What a program run inside [`stoppable`] sees.
#[derive(Clone)]
struct StopScope {
    signal: watch::Receiver<bool>,
    /// Set when a program of this scope was asked to stop.
    stopped: Arc<AtomicBool>,
}

tokio::task_local! {
    static STOP_SCOPE: StopScope;
}

/// Runs `work`, whose programs stop when `signal` fires. Returns its
/// output and whether any of its programs was stopped.
pub(crate) async fn stoppable<F: Future>(signal: &StopSignal, work: F) -> (F::Output, bool) {
    let scope = StopScope {
        signal: signal.0.subscribe(),
        stopped: Arc::new(AtomicBool::new(false)),
    };
    let stopped = scope.stopped.clone();
    let output = STOP_SCOPE.scope(scope, work).await;
    (output, stopped.load(Ordering::SeqCst))
}

/// How much of an output file is kept: the end, which says why it failed.
pub(super) const MAX_OUTPUT: usize = 64 * 1024;

/// How much output an error message carries.
pub(super) const MESSAGE_OUTPUT: usize = 4 * 1024;

/// `PATH` for programs run without the daemon's environment, as init sets it.
pub(super) const STANDARD_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How often a spawn that finds its program "text file busy" is tried again.
const BUSY_RETRIES: u32 = 10;

/// The last `max` bytes of `text` or a little less, on a character
/// boundary: the end of a tool's output says why it failed.
pub(super) fn tail(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// A program, its arguments and how it runs, built like
/// `std::process::Command`. By default it inherits the daemon's
/// environment and working directory, reads `/dev/null` and writes stdout
/// and stderr to separate files.
#[derive(Debug, Clone)]
pub(crate) struct Invocation {
    program: OsString,
    args: Vec<OsString>,
    env_clear: bool,
    env: Vec<(OsString, OsString)>,
    current_dir: Option<PathBuf>,
    stdin: Option<Vec<u8>>,
    stderr_to_stdout: bool,
    stdout_limit: Option<usize>,
}

impl Invocation {
    pub(crate) fn new(program: impl AsRef<OsStr>) -> Invocation {
        Invocation {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            env_clear: false,
            env: Vec::new(),
            current_dir: None,
            stdin: None,
            stderr_to_stdout: false,
            stdout_limit: None,
        }
    }

    pub(crate) fn args<I, S>(mut self, args: I) -> Invocation
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Starts from an empty environment instead of the daemon's.
    pub(super) fn env_clear(mut self) -> Invocation {
        self.env_clear = true;
        self
    }

    pub(super) fn envs<I, K, V>(mut self, vars: I) -> Invocation
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        self.env.extend(
            vars.into_iter()
                .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned())),
        );
        self
    }

    pub(super) fn current_dir(mut self, dir: impl Into<PathBuf>) -> Invocation {
        self.current_dir = Some(dir.into());
        self
    }

    /// Writes `input` to its stdin, then closes it; a program that exits
    /// without reading it is no error.
    #[allow(dead_code)] // no agent feeds stdin since external agents moved to Choria's files
    pub(super) fn stdin(mut self, input: Vec<u8>) -> Invocation {
        self.stdin = Some(input);
        self
    }

    /// Interleaves stderr with stdout, as a terminal shows them;
    /// [`Finished::stderr`] is then empty.
    pub(super) fn stderr_to_stdout(mut self) -> Invocation {
        self.stderr_to_stdout = true;
        self
    }

    /// Keeps all of stdout, read through a pipe, up to `limit` bytes; one
    /// byte more kills the group and sets [`Finished::overflowed`].
    pub(crate) fn stdout_limit(mut self, limit: usize) -> Invocation {
        self.stdout_limit = Some(limit);
        self
    }

    /// The command line, for messages.
    pub(super) fn display(&self) -> String {
        std::iter::once(&self.program)
            .chain(&self.args)
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn command(&self) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&self.program);
        if self.env_clear {
            command.env_clear();
        } else {
            for (name, value) in muster_connector::for_children() {
                match value {
                    Some(value) => command.env(name, value),
                    None => command.env_remove(name),
                };
            }
        }
        if let Some(dir) = &self.current_dir {
            command.current_dir(dir);
        }
        command
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(match self.stdin {
                Some(_) => Stdio::piped(),
                None => Stdio::null(),
            })
            .process_group(0)
            .kill_on_drop(true);
        command
    }
}

/// A program that ran to its end.
#[derive(Debug, Clone)]
pub(crate) struct Finished {
    /// The exit code; `None` when a signal ended it.
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// Its stdout (with stderr when interleaved): all of it up to the
    /// limit when capped, else the last 64 KiB.
    pub stdout: String,
    /// Its stderr, the last 64 KiB.
    pub stderr: String,
    /// Stdout passed its limit, and the group was killed for it.
    pub overflowed: bool,
}

impl Finished {
    pub(super) fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// "exit code 3" or "killed by signal 9".
    pub(super) fn exit(&self) -> String {
        match (self.code, self.signal) {
            (Some(code), _) => format!("exit code {code}"),
            (None, Some(signal)) => format!("killed by signal {signal}"),
            (None, None) => "ended without an exit code".into(),
        }
    }

    /// Stdout then stderr, each trimmed, the last 64 KiB.
    pub(super) fn output(&self) -> String {
        joined(&self.stdout, &self.stderr)
    }
}

/// Stdout then stderr, trimmed, on separate lines, the end kept when long.
pub(super) fn joined(stdout: &str, stderr: &str) -> String {
    let joined = [stdout.trim(), stderr.trim()]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    tail(&joined, MAX_OUTPUT).to_string()
}

/// Why a program did not run to its end.
#[derive(Debug)]
pub(crate) enum RunError {
    /// It could not be started; `NotFound` when the program does not exist.
    Start(io::Error),
    /// Waiting for it or reading its output failed; its group was killed.
    Lost(io::Error),
    /// It was still running at the deadline, and its group was killed.
    TimedOut {
        after: Duration,
        stdout: String,
        stderr: String,
    },
}

impl RunError {
    pub(super) fn describe(&self, invocation: &Invocation) -> String {
        let program = invocation.program.to_string_lossy();
        match self {
            RunError::Start(e) if e.kind() == io::ErrorKind::NotFound => {
                format!("cannot run {program}: it does not exist")
            }
            RunError::Start(e) | RunError::Lost(e) => format!("cannot run {program}: {e}"),
            RunError::TimedOut {
                after,
                stdout,
                stderr,
            } => {
                let mut message = format!(
                    "{} did not finish within {} s and was killed",
                    invocation.display(),
                    // The deadline may have been set a moment before this
                    // command started: round to the nearest second.
                    ((after.as_millis() + 500) / 1000).max(1)
                );
                let output = joined(stdout, stderr);
                if !output.is_empty() {
                    message.push_str(": ");
                    message.push_str(tail(&output, MESSAGE_OUTPUT));
                }
                message
            }
        }
    }
}

/// Captured output beyond this many bytes kills the program.
pub(super) const MAX_CAPTURE: u64 = 64 << 20;

/// Runs `invocation` in its own process group, killing the group at
/// `deadline`, when its output passes [`MAX_CAPTURE`], or when the
/// returned future is dropped; inside [`stoppable`], stopping it when the
/// signal fires.
pub(crate) async fn run(invocation: &Invocation, deadline: Instant) -> Result<Finished, RunError> {
    let started = Instant::now();
    let capped = invocation.stdout_limit.is_some();
    let shared = invocation.stderr_to_stdout;
    let outputs = tokio::task::spawn_blocking(move || Outputs::new(capped, shared))
        .await
        .map_err(io::Error::other)
        .flatten()
        .map_err(|e| {
            RunError::Start(io::Error::other(format!(
                "cannot create a file for its output: {e}"
            )))
        })?;
    let mut command = invocation.command();
    command.stdout(outputs.stdout_fd).stderr(outputs.stderr_fd);
    let mut child = spawn(&mut command).await.map_err(RunError::Start)?;
    // Closes our copies of its stdout and stderr, so a pipe can end.
    drop(command);
    let group = Group::of(&child);
    let (stdout_file, stdout_pipe) = match outputs.stdout {
        Kept::File(file) => (Some(file), None),
        Kept::Pipe(pipe) => (
            None,
            Some(
                tokio::net::unix::pipe::Receiver::from_owned_fd(pipe.into())
                    .map_err(RunError::Lost)?,
            ),
        ),
    };
    let stdin = child.stdin.take();
    let feed = async {
        if let (Some(mut pipe), Some(input)) = (stdin, &invocation.stdin) {
            let _ = pipe.write_all(input).await;
            let _ = pipe.shutdown().await;
        }
    };
    let read = async {
        let (Some(pipe), Some(limit)) = (stdout_pipe, invocation.stdout_limit) else {
            return None;
        };
        let mut kept = Vec::new();
        let _ = pipe.take(limit as u64 + 1).read_to_end(&mut kept).await;
        let overflowed = kept.len() > limit;
        if overflowed {
            // Stop it now rather than at the deadline.
            group.kill();
            kept.truncate(limit);
        }
        Some((String::from_utf8_lossy(&kept).into_owned(), overflowed))
    };
    let work = async {
        let ((), piped) = tokio::join!(feed, read);
        (child.wait().await, piped)
    };
    // A runaway writer must not fill the disk before its deadline.
    let watch = async {
        let files: Vec<&File> = [stdout_file.as_ref(), outputs.stderr.as_ref()]
            .into_iter()
            .flatten()
            .collect();
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let size: u64 = files
                .iter()
                .filter_map(|f| f.metadata().ok())
                .map(|m| m.len())
                .sum();
            if size > MAX_CAPTURE {
                tracing::warn!(program = %invocation.display(), "wrote more than {MAX_CAPTURE} bytes of output; killed");
                group.kill();
                return;
            }
        }
    };
    // The daemon is shutting down: TERM, and KILL if that is not enough.
    let scope = STOP_SCOPE.try_with(StopScope::clone).ok();
    let stop = async {
        let Some(mut scope) = scope else {
            return std::future::pending().await;
        };
        if scope.signal.wait_for(|fired| *fired).await.is_err() {
            return std::future::pending().await;
        }
        scope.stopped.store(true, Ordering::SeqCst);
        tracing::info!(program = %invocation.display(), "asking it to stop (SIGTERM): the daemon is shutting down");
        group.signal(Signal::TERM);
        tokio::time::sleep(STOP_WAIT).await;
        tracing::warn!(program = %invocation.display(), "still running {} s after SIGTERM; killed", STOP_WAIT.as_secs());
        group.kill();
    };
    let watched = async {
        tokio::pin!(work);
        tokio::select! {
            ended = &mut work => ended,
            () = watch => work.await,
            () = stop => work.await,
        }
    };
    let ended = tokio::time::timeout_at(deadline.into(), watched).await;
    let (status, piped) = match ended {
        Ok((Ok(status), piped)) => {
            group.reaped();
            (Some(status), piped)
        }
        Ok((Err(e), _)) => return Err(RunError::Lost(e)),
        Err(_) => {
            group.kill();
            let _ = child.wait().await;
            group.reaped();
            (None, None)
        }
    };

    let stderr_file = outputs.stderr;
    let (stdout, stderr) = tokio::task::spawn_blocking(move || -> io::Result<_> {
        let text = |file: Option<File>| {
            file.map(read_tail)
                .transpose()
                .map(Option::unwrap_or_default)
        };
        Ok((text(stdout_file)?, text(stderr_file)?))
    })
    .await
    .map_err(io::Error::other)
    .flatten()
    .map_err(|e| RunError::Lost(io::Error::other(format!("cannot read its output: {e}"))))?;
    let (stdout, overflowed) = piped.unwrap_or((stdout, false));
    match status {
        Some(status) => Ok(Finished {
            code: status.code(),
            signal: status.signal(),
            stdout,
            stderr,
            overflowed,
        }),
        None => Err(RunError::TimedOut {
            after: started.elapsed(),
            stdout,
            stderr,
        }),
    }
}

/// Starts the program, trying again while it is "text file busy": a
/// program written just now stays busy until another thread's fork has
/// closed its copy of the write descriptor.
async fn spawn(command: &mut tokio::process::Command) -> io::Result<tokio::process::Child> {
    let mut attempt = 0;
    loop {
        match command.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && attempt < BUSY_RETRIES => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => return other,
        }
    }
}

/// Where a program's stdout and stderr go: what we keep to read, and the
/// descriptors the program writes to.
struct Outputs {
    stdout: Kept,
    /// `None` when stderr shares stdout's.
    stderr: Option<File>,
    stdout_fd: OwnedFd,
    stderr_fd: OwnedFd,
}

/// Our end of the program's stdout.
enum Kept {
    /// An unlinked temporary file, read when the program has ended.
    File(File),
    /// A pipe, read while it runs.
    Pipe(io::PipeReader),
}

impl Outputs {
    fn new(capped: bool, shared: bool) -> io::Result<Outputs> {
        let (stdout, stdout_fd): (Kept, OwnedFd) = if capped {
            let (reader, writer) = io::pipe()?;
            (Kept::Pipe(reader), writer.into())
        } else {
            let file = capture_file()?;
            let fd = file.try_clone()?.into();
            (Kept::File(file), fd)
        };
        let (stderr, stderr_fd) = if shared {
            (None, stdout_fd.try_clone()?)
        } else {
            let file = capture_file()?;
            let fd = file.try_clone()?.into();
            (Some(file), fd)
        };
        Ok(Outputs {
            stdout,
            stderr,
            stdout_fd,
            stderr_fd,
        })
    }
}

/// The process group a program leads. Dropping it before the leader is
/// reaped kills the whole group.
struct Group(Option<Pid>);

impl Group {
    fn of(child: &tokio::process::Child) -> Group {
        Group(
            child
                .id()
                .and_then(|id| i32::try_from(id).ok())
                .filter(|pgid| *pgid > 1)
                .and_then(Pid::from_raw),
        )
    }

    /// Kills every process in the group.
    fn kill(&self) {
        self.signal(Signal::KILL);
    }

    /// Signals every process in the group. Only called while the leader is
    /// unreaped, so the group id is still ours.
    fn signal(&self, signal: Signal) {
        if let Some(pgid) = self.0 {
            // ESRCH: the group has already gone.
            let _ = kill_process_group(pgid, signal);
        }
    }

    /// The leader has been waited for; its id may be reused from now on.
    fn reaped(mut self) {
        self.0 = None;
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A new temporary file that is already unlinked, readable only by us.
fn capture_file() -> io::Result<File> {
    tempfile::tempfile()
}

/// The file's last [`MAX_OUTPUT`] bytes.
fn read_tail(mut file: File) -> io::Result<String> {
    let max = MAX_OUTPUT as u64;
    let len = file.seek(SeekFrom::End(0))?;
    file.seek(SeekFrom::Start(len.saturating_sub(max)))?;
    let mut bytes = Vec::new();
    file.take(max).read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Invocation {
        Invocation::new("/bin/sh").args(["-c", script])
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(10)
    }

    #[tokio::test]
    async fn stdout_and_stderr_are_kept_apart_or_interleaved() {
        let done = run(&sh("echo out; echo err >&2; exit 3"), soon())
            .await
            .unwrap();
        assert_eq!(done.exit(), "exit code 3");
        assert_eq!(
            (done.stdout.as_str(), done.stderr.as_str()),
            ("out\n", "err\n")
        );
        assert_eq!(done.output(), "out\nerr");
        let done = run(&sh("echo out; echo err >&2").stderr_to_stdout(), soon())
            .await
            .unwrap();
        assert_eq!(
            (done.stdout.as_str(), done.stderr.as_str()),
            ("out\nerr\n", "")
        );
    }

    #[tokio::test]
    async fn a_daemon_holding_the_output_does_not_hold_up_the_run() {
        let started = Instant::now();
        let done = run(&sh("sleep 3 & echo started"), soon()).await.unwrap();
        assert_eq!(done.output(), "started");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn stdin_is_fed_and_a_capped_stdout_stops_the_program() {
        let cat = Invocation::new("cat")
            .stdin(b"hello".to_vec())
            .stdout_limit(5);
        let done = run(&cat, soon()).await.unwrap();
        assert_eq!((done.stdout.as_str(), done.overflowed), ("hello", false));
        let yes = sh("yes >&2").stderr_to_stdout().stdout_limit(1000);
        let done = run(&yes, soon()).await.unwrap();
        assert!(done.overflowed && done.stdout.len() == 1000, "{done:?}");
        assert_eq!(done.signal, Some(libc::SIGKILL));
    }

    #[tokio::test]
    async fn a_deadline_or_a_missing_program_is_an_error() {
        let deadline = Instant::now() + Duration::from_millis(300);
        match run(&sh("echo waiting; sleep 30"), deadline).await {
            Err(RunError::TimedOut { stdout, .. }) => assert_eq!(stdout, "waiting\n"),
            other => panic!("{other:?}"),
        }
        match run(&Invocation::new("/nonexistent/muster"), soon()).await {
            Err(RunError::Start(e)) => assert_eq!(e.kind(), io::ErrorKind::NotFound),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_runaway_writer_is_stopped_before_it_fills_the_disk() {
        let started = Instant::now();
        let finished = run(&sh("yes muster"), Instant::now() + Duration::from_secs(60))
            .await
            .expect("it ran");
        assert_eq!(finished.signal, Some(9), "{:?}", finished.exit());
        assert!(started.elapsed() < Duration::from_secs(60));
    }

    /// Runs `script` in `signal`'s stop scope once it has written `ready`
    /// in `dir`, fires the signal, and returns how it ended.
    async fn stopped_after_start(script: &str) -> (Result<Finished, RunError>, bool, PathBuf) {
        let dir = tempfile::tempdir().unwrap().keep();
        let ready = dir.join("ready");
        let script = format!("cd {}; {script}", dir.display());
        let signal = StopSignal::new();
        let task = tokio::spawn({
            let signal = signal.clone();
            async move {
                let program = sh(&script);
                stoppable(
                    &signal,
                    run(&program, Instant::now() + Duration::from_secs(60)),
                )
                .await
            }
        });
        let waited = Instant::now();
        while !ready.exists() {
            assert!(
                waited.elapsed() < Duration::from_secs(20),
                "it never started"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        signal.fire();
        let (ended, stopped) = task.await.unwrap();
        (ended, stopped, dir)
    }

    #[tokio::test]
    async fn a_program_that_traps_term_is_asked_to_stop() {
        let (ended, stopped, dir) = stopped_after_start(
            "trap 'echo stopping > term; exit 7' TERM; touch ready; while :; do sleep 0.1; done",
        )
        .await;
        let done = ended.expect("it ran");
        assert_eq!(done.code, Some(7), "{:?}", done.exit());
        assert!(stopped);
        assert_eq!(
            std::fs::read_to_string(dir.join("term")).unwrap(),
            "stopping\n"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_program_that_ignores_term_is_killed_after_the_stop_wait() {
        let started = Instant::now();
        let (ended, stopped, dir) =
            stopped_after_start("trap '' TERM; touch ready; while :; do sleep 0.1; done").await;
        let done = ended.expect("it ran");
        assert_eq!(done.signal, Some(libc::SIGKILL), "{:?}", done.exit());
        assert!(stopped);
        assert!(started.elapsed() >= STOP_WAIT);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn outside_a_stop_scope_nothing_is_stopped() {
        let signal = StopSignal::new();
        signal.fire();
        let done = run(&sh("sleep 0.5; echo done"), soon()).await.unwrap();
        assert_eq!(
            (done.exit().as_str(), done.output().as_str()),
            ("exit code 0", "done")
        );
        // Work in the scope that holds no program is not stopped either.
        let ((), stopped) = stoppable(&signal, async {}).await;
        assert!(!stopped);
    }
}
