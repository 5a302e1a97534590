//! `service`: query, start, stop and restart services.
//!
//! Two providers sit behind one trait: `systemd` runs `systemctl`, and is
//! chosen where systemd is PID 1 (`/run/systemd/system` exists); `sysv`
//! runs `<initd>/<service> status|start|stop|restart` directly, never
//! through a shell, and reads the status exit code as LSB defines it:
//! 0 is running, anything else is stopped.
//!
//! Settings:
//!
//! | key | default |
//! | --- | --- |
//! | `plugin.service.provider` | `systemd` or `sysv`, detected when unset |
//! | `plugin.service.initd` | `/etc/init.d` |
//! | `plugin.service.timeout` | the DDL's timeout (60 s), which is also its upper bound |
//!
//! Actions are idempotent: starting a running service or stopping a
//! stopped one changes nothing and succeeds. A service the provider does
//! not know is `Aborted` with "no such service" and nothing is run. Every
//! action ends within the DDL's timeout; a command still running then is
//! killed together with its process group.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use muster_protocol::config::{Config, ConfigError};
use muster_protocol::ddl::Ddl;
use muster_protocol::{Request, StatusCode};
use serde_json::{json, Map, Value};

use self::command::{Finished, Invocation};
use crate::agent::{ready, ActionError, ActionFuture, ActionResult, Agent};
use crate::Node;

/// The longest service name accepted, as the DDL says.
const MAX_NAME: usize = 128;

/// The service agent with the provider its settings chose.
pub struct Service {
    provider: Arc<dyn ServiceProvider>,
    timeout: Duration,
}

impl Service {
    /// Reads `plugin.service.*`; an unknown provider is an error naming its line.
    pub fn from_settings(settings: &Config) -> Result<Service, ConfigError> {
        let initd = PathBuf::from(
            settings
                .get("plugin.service.initd")
                .unwrap_or("/etc/init.d"),
        );
        let provider: Arc<dyn ServiceProvider> = match settings.get("plugin.service.provider") {
            Some("systemd") => Arc::new(Systemd),
            Some("sysv") => Arc::new(Sysv { initd }),
            Some(other) => {
                return Err(settings.error(
                    "plugin.service.provider",
                    format!("unknown service provider {other:?} (this build knows: systemd, sysv)"),
                ))
            }
            None if std::path::Path::new("/run/systemd/system").is_dir() => Arc::new(Systemd),
            None => Arc::new(Sysv { initd }),
        };
        // Never longer than the DDL's timeout, which is how long callers wait.
        let limit = ddl().metadata.timeout;
        let timeout = settings
            .number("plugin.service.timeout")?
            .unwrap_or(limit)
            .min(limit)
            .max(1);
        Ok(Service {
            provider,
            timeout: Duration::from_secs(timeout),
        })
    }

    /// `systemd` or `sysv`.
    pub fn provider(&self) -> &'static str {
        self.provider.name()
    }
}

fn ddl() -> &'static Ddl {
    muster_protocol::ddl::builtin("service").expect("the service DDL is built in")
}

impl Agent for Service {
    fn ddl(&self) -> &Ddl {
        ddl()
    }

    fn call(&self, _node: &Node, action: &str, request: &Request) -> ActionFuture {
        let verb = match action {
            "status" => Verb::Status,
            "start" => Verb::Start,
            "stop" => Verb::Stop,
            "restart" => Verb::Restart,
            other => return ready(Err(ActionError::unknown_action("service", other))),
        };
        let service = match service_name(&request.data) {
            Ok(service) => service,
            Err(e) => return ready(Err(e)),
        };
        let provider = self.provider.clone();
        let deadline = Instant::now() + self.timeout;
        Box::pin(async move { act(provider.as_ref(), &service, verb, deadline).await })
    }
}

/// What an action does to a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Status,
    Start,
    Stop,
    Restart,
}

impl Verb {
    fn as_str(self) -> &'static str {
        match self {
            Verb::Status => "status",
            Verb::Start => "start",
            Verb::Stop => "stop",
            Verb::Restart => "restart",
        }
    }
}

/// How to find out whether a service exists.
enum Probe {
    /// It exists when this is a file.
    File(PathBuf),
    /// It exists when this command's result says so.
    Command(Invocation, fn(&Finished) -> bool),
}

/// A way of managing services on this machine.
trait ServiceProvider: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    fn probe(&self, service: &str) -> Probe;
    /// The command that does `verb`; for [`Verb::Status`] it exits 0 when
    /// the service runs.
    fn command(&self, service: &str, verb: Verb) -> Invocation;
}

struct Systemd;

impl ServiceProvider for Systemd {
    fn name(&self) -> &'static str {
        "systemd"
    }

    fn probe(&self, service: &str) -> Probe {
        Probe::Command(
            Invocation::clean(
                "systemctl",
                ["show", "--property=LoadState", "--value", "--", service],
            ),
            |done| {
                done.success()
                    && !done.output.trim().is_empty()
                    && done.output.trim() != "not-found"
            },
        )
    }

    fn command(&self, service: &str, verb: Verb) -> Invocation {
        let verb = match verb {
            Verb::Status => "is-active",
            other => other.as_str(),
        };
        Invocation::clean("systemctl", [verb, "--", service])
    }
}

struct Sysv {
    initd: PathBuf,
}

impl ServiceProvider for Sysv {
    fn name(&self) -> &'static str {
        "sysv"
    }

    fn probe(&self, service: &str) -> Probe {
        Probe::File(self.initd.join(service))
    }

    fn command(&self, service: &str, verb: Verb) -> Invocation {
        Invocation::clean(self.initd.join(service), [verb.as_str()])
    }
}

/// The `service` input, checked here too: it becomes a path and an argument.
fn service_name(data: &Map<String, Value>) -> Result<String, ActionError> {
    let name = match data.get("service") {
        None | Some(Value::Null) => return Err(ActionError::missing("service")),
        Some(Value::String(name)) => name,
        Some(other) => {
            return Err(ActionError::invalid(format!(
                "input \"service\" must be a string, got {other}"
            )))
        }
    };
    let safe = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_@.:-".contains(c))
        && !name.starts_with('-')
        && name != "."
        && name != "..";
    if !safe {
        return Err(ActionError::invalid(format!(
            "input \"service\" must be a service name of at most {MAX_NAME} letters, digits and _@.:- not starting with '-', got {name:?}"
        )));
    }
    Ok(name.clone())
}

async fn act(
    provider: &dyn ServiceProvider,
    service: &str,
    verb: Verb,
    deadline: Instant,
) -> ActionResult {
    if !exists(provider, service, deadline).await? {
        return Err(ActionError::new(
            StatusCode::Aborted,
            format!("no such service: {service}"),
        ));
    }
    let before = run(provider.command(service, Verb::Status), deadline).await?;
    let running = before.success();
    let settled = match verb {
        Verb::Status => true,
        Verb::Start => running,
        Verb::Stop => !running,
        Verb::Restart => false,
    };
    if settled {
        return Ok(answer(running, &before.output));
    }
    let done = run(provider.command(service, verb), deadline).await?;
    if !done.success() {
        return Err(ActionError::new(
            StatusCode::Aborted,
            format!(
                "could not {} {service}: {}{}",
                verb.as_str(),
                done.exit(),
                with_output(&done.output)
            ),
        ));
    }
    let after = run(provider.command(service, Verb::Status), deadline).await?;
    let wanted = verb != Verb::Stop;
    if after.success() != wanted {
        return Err(ActionError::new(
            StatusCode::Aborted,
            format!(
                "{service} is {} after {}{}",
                word(after.success()),
                verb.as_str(),
                with_output(&done.output)
            ),
        ));
    }
    Ok(answer(wanted, &done.output))
}

async fn exists(
    provider: &dyn ServiceProvider,
    service: &str,
    deadline: Instant,
) -> Result<bool, ActionError> {
    match provider.probe(service) {
        Probe::File(path) => Ok(tokio::fs::metadata(&path)
            .await
            .map(|m| m.is_file())
            .unwrap_or(false)),
        Probe::Command(invocation, check) => Ok(check(&run(invocation, deadline).await?)),
    }
}

/// Runs a service command; failing to run it at all is `Aborted`.
async fn run(invocation: Invocation, deadline: Instant) -> Result<Finished, ActionError> {
    command::run(&invocation, deadline)
        .await
        .map_err(|e| ActionError::new(StatusCode::Aborted, e.describe(&invocation)))
}

fn word(running: bool) -> &'static str {
    if running {
        "running"
    } else {
        "stopped"
    }
}

fn answer(running: bool, output: &str) -> Value {
    json!({ "status": word(running), "output": output })
}

fn with_output(output: &str) -> String {
    if output.is_empty() {
        String::new()
    } else {
        format!(": {}", command::tail(output, command::MESSAGE_OUTPUT))
    }
}

/// Running a command with its output captured, a deadline and a kill.
///
/// Shared with the puppet agent. Output goes to an unlinked temporary
/// file, not a pipe: an init script leaves its daemon holding the
/// script's stdout, and reading a pipe to its end would wait for the
/// daemon to exit (Puppet runs its commands the same way for that reason).
pub(super) mod command {
    use std::ffi::{OsStr, OsString};
    use std::fs::File;
    use std::io::{Read, Seek, SeekFrom};
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    /// How much of a command's output is kept: the tail, which says why it failed.
    const MAX_OUTPUT: u64 = 64 * 1024;

    /// `PATH` for commands run with a clean environment, as init runs them.
    const CLEAN_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

    /// How much output an error message carries.
    pub const MESSAGE_OUTPUT: usize = 4 * 1024;

    /// The last `max` bytes of `text` or a little less, on a character
    /// boundary: the end of a tool's output says why it failed.
    pub fn tail(text: &str, max: usize) -> &str {
        let mut start = text.len().saturating_sub(max);
        while !text.is_char_boundary(start) {
            start += 1;
        }
        &text[start..]
    }

    /// A program and its arguments; no shell is involved.
    #[derive(Debug, Clone)]
    pub struct Invocation {
        pub program: OsString,
        pub args: Vec<OsString>,
        /// Run with only `PATH` and `LC_ALL=C`, as init scripts expect.
        pub clean_env: bool,
    }

    impl Invocation {
        pub fn new<I, S>(program: impl Into<OsString>, args: I) -> Invocation
        where
            I: IntoIterator<Item = S>,
            S: AsRef<OsStr>,
        {
            Invocation {
                program: program.into(),
                args: args.into_iter().map(|a| a.as_ref().to_owned()).collect(),
                clean_env: false,
            }
        }

        pub fn clean<I, S>(program: impl Into<OsString>, args: I) -> Invocation
        where
            I: IntoIterator<Item = S>,
            S: AsRef<OsStr>,
        {
            Invocation {
                clean_env: true,
                ..Invocation::new(program, args)
            }
        }

        /// The command line, for messages.
        pub fn display(&self) -> String {
            std::iter::once(&self.program)
                .chain(&self.args)
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" ")
        }
    }

    /// A command that ran to its end.
    #[derive(Debug, Clone)]
    pub struct Finished {
        /// The exit code; `None` when a signal ended it.
        pub code: Option<i32>,
        pub signal: Option<i32>,
        /// Its stdout and stderr interleaved, trimmed, at most the last 64 KiB.
        pub output: String,
    }

    impl Finished {
        pub fn success(&self) -> bool {
            self.code == Some(0)
        }

        /// "exit code 3" or "killed by signal 9".
        pub fn exit(&self) -> String {
            match (self.code, self.signal) {
                (Some(code), _) => format!("exit code {code}"),
                (None, Some(signal)) => format!("killed by signal {signal}"),
                (None, None) => "ended without an exit code".into(),
            }
        }
    }

    /// Why a command did not run to its end.
    #[derive(Debug)]
    pub enum RunError {
        /// The program does not exist.
        NotFound,
        /// It could not be started or waited for.
        Failed(String),
        /// It was still running at the deadline and was killed.
        TimedOut { after: Duration, output: String },
    }

    impl RunError {
        pub fn describe(&self, invocation: &Invocation) -> String {
            let program = invocation.program.to_string_lossy();
            match self {
                RunError::NotFound => format!("cannot run {program}: it does not exist"),
                RunError::Failed(e) => format!("cannot run {program}: {e}"),
                RunError::TimedOut { after, output } => {
                    let mut message = format!(
                        "{} did not finish within {} s and was killed",
                        invocation.display(),
                        after.as_secs()
                    );
                    if !output.is_empty() {
                        message.push_str(": ");
                        message.push_str(tail(output, MESSAGE_OUTPUT));
                    }
                    message
                }
            }
        }
    }

    /// Runs `invocation` in its own process group, killing the group at
    /// `deadline` or when the returned future is dropped.
    pub async fn run(invocation: &Invocation, deadline: Instant) -> Result<Finished, RunError> {
        let started = Instant::now();
        let capture = tokio::task::spawn_blocking(capture_file)
            .await
            .map_err(|e| RunError::Failed(e.to_string()))?
            .map_err(|e| RunError::Failed(format!("cannot create a file for its output: {e}")))?;
        let (stdout, stderr) = match (capture.try_clone(), capture.try_clone()) {
            (Ok(stdout), Ok(stderr)) => (stdout, stderr),
            (Err(e), _) | (_, Err(e)) => return Err(RunError::Failed(e.to_string())),
        };
        let mut command = tokio::process::Command::new(&invocation.program);
        command
            .args(&invocation.args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0)
            .kill_on_drop(true);
        if invocation.clean_env {
            command
                .env_clear()
                .env("PATH", CLEAN_PATH)
                .env("LC_ALL", "C");
        }
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(RunError::NotFound),
            Err(e) => return Err(RunError::Failed(e.to_string())),
        };
        drop(command);
        let mut group = GroupKill(child.id().and_then(|pid| i32::try_from(pid).ok()));
        let left = deadline.saturating_duration_since(Instant::now());
        let status = match tokio::time::timeout(left, child.wait()).await {
            Ok(Ok(status)) => {
                group.0 = None;
                Some(status)
            }
            Ok(Err(e)) => return Err(RunError::Failed(e.to_string())),
            Err(_) => {
                drop(group);
                let _ = child.wait().await;
                None
            }
        };
        let output = tokio::task::spawn_blocking(move || read_tail(capture))
            .await
            .map_err(|e| RunError::Failed(e.to_string()))?
            .map_err(|e| RunError::Failed(format!("cannot read its output: {e}")))?;
        match status {
            Some(status) => Ok(Finished {
                code: status.code(),
                signal: status.signal(),
                output,
            }),
            None => Err(RunError::TimedOut {
                after: started.elapsed(),
                output,
            }),
        }
    }

    /// Kills a process group when dropped, unless disarmed.
    struct GroupKill(Option<i32>);

    impl Drop for GroupKill {
        fn drop(&mut self) {
            if let Some(pgid) = self.0.filter(|pgid| *pgid > 1) {
                // SAFETY: kill(2) with a negative pid signals that process
                // group; it touches no memory of ours.
                unsafe {
                    libc::kill(-pgid, libc::SIGKILL);
                }
            }
        }
    }

    /// A new temporary file that is already unlinked.
    fn capture_file() -> std::io::Result<File> {
        static COUNT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir();
        loop {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            let path = dir.join(format!(
                ".muster-output-{}-{}-{nanos}",
                std::process::id(),
                COUNT.fetch_add(1, Ordering::Relaxed)
            ));
            match std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(file) => {
                    let _ = std::fs::remove_file(&path);
                    return Ok(file);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    fn read_tail(mut file: File) -> std::io::Result<String> {
        let len = file.seek(SeekFrom::End(0))?;
        file.seek(SeekFrom::Start(len.saturating_sub(MAX_OUTPUT)))?;
        let mut bytes = Vec::new();
        file.take(MAX_OUTPUT).read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).trim().to_string())
    }
}
