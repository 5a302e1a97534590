//! External agents: any executable plus its JSON DDL, in any language.
//!
//! `plugin.external.agents_dir` names one or more directories (comma
//! separated). Each agent there is `<name>.json`, its DDL in Choria's
//! layout with `metadata.name` equal to `<name>`, and an executable
//! `<name>` beside it. A broken agent is logged and skipped so one bad file
//! never keeps a node down; only a directory that cannot be read is an
//! error.
//!
//! Every request runs the program once, without a shell, in its own
//! process group: the request arrives as JSON on stdin, the reply is read
//! as JSON from stdout, stderr goes to the log. The DDL's
//! `metadata.timeout` bounds the run; on expiry the whole group is killed,
//! so a shell script's children die with it. `docs/external-agents.md`
//! describes the contract for agent authors.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use muster_protocol::ddl::{self, Ddl};
use muster_protocol::{Request, StatusCode};
use serde_json::{json, Map, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use crate::agent::{ActionError, ActionFuture, ActionResult};
use crate::{Agent, Node, ServerConfig};

/// The setting naming the directories external agents are loaded from.
pub const AGENTS_DIR: &str = "plugin.external.agents_dir";

/// The most a program may write to stdout; more is a failed reply.
pub const MAX_STDOUT: usize = 1024 * 1024;

/// How much of stderr is kept for the log and error messages; the rest is
/// read and dropped so the program never blocks on a full pipe.
const MAX_STDERR: usize = 64 * 1024;

/// Used when the daemon itself runs without a PATH.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Variables passed through from the daemon's environment; everything
/// else is left out so agents do not depend on how the daemon was started.
const KEPT_ENV: &[&str] = &["PATH", "LANG", "LC_ALL", "TZ"];

/// One external agent: its DDL and the program that runs its actions.
#[derive(Debug, Clone)]
pub struct External {
    ddl: Ddl,
    program: PathBuf,
}

impl External {
    /// Loads `<dir>/<name>.json` and checks its program `<dir>/<name>`.
    /// The error says what is wrong, for the start-up warning.
    pub fn load(ddl_file: &Path) -> Result<External, String> {
        let name = ddl_file
            .file_stem()
            .and_then(|s| s.to_str())
            .ok_or("the file name is not UTF-8")?;
        if !is_agent_name(name) {
            return Err(format!(
                "{name:?} is not an agent name (letters, digits and '_' only)"
            ));
        }
        let text = std::fs::read_to_string(ddl_file).map_err(|e| format!("cannot read: {e}"))?;
        let ddl = Ddl::from_json(&text)?;
        if ddl.metadata.name != name {
            return Err(format!(
                "metadata.name is {:?} but the file is named for {name:?}",
                ddl.metadata.name
            ));
        }
        if ddl::builtin_names().contains(&name) {
            return Err(format!("{name:?} is the name of a built-in agent"));
        }
        let program = ddl_file.with_file_name(name);
        let meta = std::fs::metadata(&program)
            .map_err(|e| format!("its program {} is missing: {e}", program.display()))?;
        if !meta.is_file() {
            return Err(format!("its program {} is not a file", program.display()));
        }
        if !is_executable(&meta) {
            return Err(format!(
                "its program {} is not executable (chmod +x it)",
                program.display()
            ));
        }
        Ok(External { ddl, program })
    }
}

/// Every external agent in the configured directories. Broken agents are
/// logged with a warning naming the file and skipped; a directory that
/// cannot be read is an error naming the setting's line.
pub fn load_all(config: &ServerConfig) -> Result<Vec<Arc<dyn Agent>>, String> {
    let mut agents: Vec<Arc<dyn Agent>> = Vec::new();
    let mut seen: Vec<(String, PathBuf)> = Vec::new();
    for dir in config.settings.list(AGENTS_DIR) {
        let entries = std::fs::read_dir(&dir).map_err(|e| {
            config
                .settings
                .error(
                    AGENTS_DIR,
                    format!("cannot read agents directory {dir}: {e}"),
                )
                .to_string()
        })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
            .collect();
        files.sort();
        for file in files {
            match External::load(&file) {
                Ok(agent) => {
                    let name = agent.ddl.metadata.name.clone();
                    if let Some((_, first)) = seen.iter().find(|(n, _)| *n == name) {
                        tracing::warn!(
                            file = %file.display(),
                            "skipping external agent {name}: already loaded from {}",
                            first.display()
                        );
                        continue;
                    }
                    tracing::info!(file = %file.display(), "loaded external agent {name}");
                    seen.push((name, file));
                    agents.push(Arc::new(agent));
                }
                Err(e) => {
                    tracing::warn!(file = %file.display(), "skipping external agent: {e}");
                }
            }
        }
    }
    Ok(agents)
}

impl Agent for External {
    fn ddl(&self) -> &Ddl {
        &self.ddl
    }

    fn call(&self, _node: &Node, action: &str, request: &Request) -> ActionFuture {
        let Some(spec) = self.ddl.action(action) else {
            return crate::agent::ready(Err(ActionError::unknown_action(
                &self.ddl.metadata.name,
                action,
            )));
        };
        let defaults: Map<String, Value> = spec
            .output
            .iter()
            .filter_map(|(key, output)| Some((key.clone(), output.default.clone()?)))
            .collect();
        let run = Run {
            agent: self.ddl.metadata.name.clone(),
            action: action.to_string(),
            program: self.program.clone(),
            timeout: Duration::from_secs(self.ddl.metadata.timeout.max(1)),
            stdin: stdin_document(request),
            request_id: request.id.clone(),
            defaults,
        };
        Box::pin(run.execute())
    }
}

/// What the program reads on stdin.
fn stdin_document(request: &Request) -> Vec<u8> {
    let document = json!({
        "protocol": 1,
        "agent": request.agent,
        "action": request.action,
        "data": request.data,
        "caller": request.caller,
        "request_id": request.id,
        "sender": request.sender,
        "collective": request.collective,
    });
    let mut bytes = document.to_string().into_bytes();
    bytes.push(b'\n');
    bytes
}

/// One run of an agent's program, owning everything it needs.
struct Run {
    agent: String,
    action: String,
    program: PathBuf,
    timeout: Duration,
    stdin: Vec<u8>,
    request_id: String,
    defaults: Map<String, Value>,
}

/// How a run of the program ended.
enum Ended {
    Exited {
        status: ExitStatus,
        stdout: Captured,
        stderr: Captured,
    },
    TimedOut {
        stderr: Vec<u8>,
    },
    /// Waiting for the exit failed; the group was killed.
    Lost {
        error: io::Error,
        stderr: Vec<u8>,
    },
}

/// Bytes read from a pipe, and whether the cap cut them short.
#[derive(Default)]
struct Captured {
    bytes: Vec<u8>,
    overflowed: bool,
}

impl Run {
    async fn execute(self) -> ActionResult {
        let child = match self.spawn().await {
            Ok(child) => child,
            Err(e) => {
                tracing::warn!(agent = %self.agent, program = %self.program.display(), "cannot start external agent: {e}");
                return Err(ActionError::new(
                    StatusCode::Aborted,
                    format!("agent {} could not be started: {e}", self.agent),
                ));
            }
        };
        let ended = self.supervise(child).await;
        self.interpret(ended)
    }

    async fn spawn(&self) -> io::Result<Child> {
        let mut attempt = 0;
        loop {
            let mut command = Command::new(&self.program);
            command
                .env_clear()
                .env("MUSTER_AGENT", &self.agent)
                .env("MUSTER_ACTION", &self.action)
                .env("MUSTER_REQUEST_ID", &self.request_id)
                .current_dir("/")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .process_group(0)
                .kill_on_drop(true);
            for key in KEPT_ENV {
                if let Some(value) = std::env::var_os(key) {
                    command.env(key, value);
                }
            }
            if std::env::var_os("PATH").is_none() {
                command.env("PATH", DEFAULT_PATH);
            }
            match command.spawn() {
                // A just-written program can be briefly "busy" while another
                // thread's fork still holds its write descriptor.
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && attempt < 10 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => return other,
            }
        }
    }

    /// Feeds stdin, collects stdout and stderr and waits for the exit,
    /// all within the timeout; kills the process group when it expires.
    async fn supervise(&self, mut child: Child) -> Ended {
        let group = ProcessGroup::of(&child);
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let input = self.stdin.clone();
        let stderr_buf = Arc::new(std::sync::Mutex::new(Vec::new()));

        let feed = async move {
            if let Some(mut pipe) = stdin {
                // A program that ignores its input may exit before reading it.
                let _ = pipe.write_all(&input).await;
                let _ = pipe.shutdown().await;
            }
        };
        let out = async {
            let captured = read_capped(stdout, MAX_STDOUT, None).await;
            if captured.overflowed {
                // Stop it now rather than wait for the timeout.
                group.kill();
            }
            captured
        };
        let err = read_capped(stderr, MAX_STDERR, Some(stderr_buf.clone()));
        let work = async {
            let ((), stdout, stderr) = tokio::join!(feed, out, err);
            let status = child.wait().await;
            (status, stdout, stderr)
        };
        let finished = tokio::time::timeout(self.timeout, work).await;
        match finished {
            Ok((Ok(status), stdout, stderr)) => {
                group.reaped();
                Ended::Exited {
                    status,
                    stdout,
                    stderr,
                }
            }
            Ok((Err(error), _, stderr)) => {
                group.kill();
                let _ = child.wait().await;
                group.reaped();
                Ended::Lost {
                    error,
                    stderr: stderr.bytes,
                }
            }
            Err(_) => {
                // The leader is not reaped yet, so its group id is still ours.
                group.kill();
                let _ = child.wait().await;
                group.reaped();
                let stderr = stderr_buf.lock().map(|b| b.clone()).unwrap_or_default();
                Ended::TimedOut { stderr }
            }
        }
    }

    fn interpret(&self, ended: Ended) -> ActionResult {
        let agent = &self.agent;
        match ended {
            Ended::TimedOut { stderr } => {
                self.log_stderr(&stderr, true);
                tracing::warn!(agent = %agent, action = %self.action, "external agent timed out after {} s; killed", self.timeout.as_secs());
                Err(ActionError::new(
                    StatusCode::Aborted,
                    format!("agent {agent} timed out after {} s", self.timeout.as_secs()),
                ))
            }
            Ended::Lost { error, stderr } => {
                self.log_stderr(&stderr, true);
                tracing::warn!(agent = %agent, action = %self.action, "cannot wait for external agent: {error}");
                Err(ActionError::new(
                    StatusCode::Aborted,
                    format!("agent {agent} could not be waited for: {error}"),
                ))
            }
            Ended::Exited {
                status,
                stdout,
                stderr,
            } => {
                let failed = !status.success() || stdout.overflowed;
                self.log_stderr(&stderr.bytes, failed);
                if stdout.overflowed {
                    return Err(ActionError::new(
                        StatusCode::UnknownError,
                        format!("agent {agent} wrote more than {MAX_STDOUT} bytes to stdout"),
                    ));
                }
                if !status.success() {
                    return Err(ActionError::new(
                        StatusCode::Aborted,
                        failure_message(agent, status, &stderr.bytes),
                    ));
                }
                self.reply(&stdout.bytes)
            }
        }
    }

    /// Turns the program's stdout into the action's result.
    fn reply(&self, stdout: &[u8]) -> ActionResult {
        let agent = &self.agent;
        let invalid = |why: String| {
            ActionError::new(
                StatusCode::UnknownError,
                format!("agent {agent} wrote invalid JSON: {why}"),
            )
        };
        let text = String::from_utf8_lossy(stdout);
        if text.trim().is_empty() {
            return Err(invalid("nothing on stdout".into()));
        }
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| invalid(format!("{e} (output began {:?})", preview(&text))))?;
        let Value::Object(object) = value else {
            return Err(invalid(format!(
                "expected an object, found {}",
                kind_of(&value)
            )));
        };
        let reply = parse_reply(object).map_err(|e| {
            ActionError::new(
                StatusCode::UnknownError,
                format!("agent {agent} wrote an invalid reply: {e}"),
            )
        })?;
        match reply {
            ProgramReply {
                code: StatusCode::Ok,
                mut data,
                ..
            } => {
                for (key, default) in &self.defaults {
                    data.entry(key.clone()).or_insert_with(|| default.clone());
                }
                Ok(Value::Object(data))
            }
            ProgramReply {
                code,
                message,
                data,
            } => Err(ActionError::new(
                code,
                message.unwrap_or_else(|| format!("agent {agent} failed")),
            )
            .with_data(Value::Object(data))),
        }
    }

    fn log_stderr(&self, stderr: &[u8], failed: bool) {
        let text = String::from_utf8_lossy(stderr);
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            if failed {
                tracing::warn!(agent = %self.agent, action = %self.action, "stderr: {line}");
            } else {
                tracing::info!(agent = %self.agent, action = %self.action, "stderr: {line}");
            }
        }
    }
}

/// What a program answered, as read from its stdout.
struct ProgramReply {
    code: StatusCode,
    message: Option<String>,
    data: Map<String, Value>,
}

/// The statuscode, statusmsg and data of a reply object: either
/// `{"statuscode", "statusmsg", "data"}` or a bare object taken as data.
fn parse_reply(mut object: Map<String, Value>) -> Result<ProgramReply, String> {
    const ENVELOPE: [&str; 3] = ["statuscode", "statusmsg", "data"];
    let enveloped = object.contains_key("statuscode")
        || (object.contains_key("data") && object.keys().all(|k| ENVELOPE.contains(&k.as_str())));
    if !enveloped {
        return Ok(ProgramReply {
            code: StatusCode::Ok,
            message: None,
            data: object,
        });
    }
    if let Some(extra) = object.keys().find(|k| !ENVELOPE.contains(&k.as_str())) {
        return Err(format!(
            "unknown key {extra:?} beside statuscode (put outputs under \"data\")"
        ));
    }
    let code = match object.remove("statuscode") {
        None | Some(Value::Null) => StatusCode::Ok,
        Some(value) => value
            .as_u64()
            .and_then(|n| u8::try_from(n).ok())
            .and_then(|n| StatusCode::try_from(n).ok())
            .ok_or_else(|| format!("statuscode must be a whole number 0-5, found {value}"))?,
    };
    let message = match object.remove("statusmsg") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(other) => return Err(format!("statusmsg must be a string, found {other}")),
    };
    let data = match object.remove("data") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(data)) => data,
        Some(other) => return Err(format!("data must be an object, found {}", kind_of(&other))),
    };
    Ok(ProgramReply {
        code,
        message,
        data,
    })
}

/// Why a program that exited unsuccessfully failed, with its last words.
fn failure_message(agent: &str, status: ExitStatus, stderr: &[u8]) -> String {
    use std::os::unix::process::ExitStatusExt;
    let how = match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => "failed".to_string(),
    };
    let text = String::from_utf8_lossy(stderr);
    match text.lines().rev().map(str::trim).find(|l| !l.is_empty()) {
        Some(line) => format!("agent {agent} {how}: {line}"),
        None => format!("agent {agent} {how} (nothing on stderr)"),
    }
}

/// Reads a pipe to its end, keeping at most `limit` bytes. Past the limit
/// stdout stops reading (the caller kills the program); stderr keeps
/// draining so the program never blocks writing to it. `shared` mirrors
/// what is kept, so a timeout can still report it.
async fn read_capped(
    pipe: Option<impl AsyncRead + Unpin>,
    limit: usize,
    shared: Option<Arc<std::sync::Mutex<Vec<u8>>>>,
) -> Captured {
    let mut captured = Captured::default();
    let Some(mut pipe) = pipe else {
        return captured;
    };
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let n = match pipe.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let room = limit.saturating_sub(captured.bytes.len());
        let kept = &chunk[..n.min(room)];
        captured.bytes.extend_from_slice(kept);
        if let Some(shared) = &shared {
            if let Ok(mut buf) = shared.lock() {
                buf.extend_from_slice(kept);
            }
        }
        if n > room {
            captured.overflowed = true;
            if shared.is_none() {
                break;
            }
        }
    }
    captured
}

/// The process group a program runs in. Dropping it before the leader is
/// reaped (a request abandoned mid-run) kills the whole group.
struct ProcessGroup {
    pgid: Option<libc::pid_t>,
    live: std::sync::atomic::AtomicBool,
}

impl ProcessGroup {
    fn of(child: &Child) -> ProcessGroup {
        let pgid = child.id().and_then(|id| libc::pid_t::try_from(id).ok());
        ProcessGroup {
            pgid,
            live: std::sync::atomic::AtomicBool::new(pgid.is_some()),
        }
    }

    /// Kills every process in the group. Only called while the leader is
    /// unreaped, so the id cannot have been reused.
    fn kill(&self) {
        if let (Some(pgid), true) = (
            self.pgid,
            self.live.load(std::sync::atomic::Ordering::SeqCst),
        ) {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }

    /// The leader has been waited for; the group id is no longer ours.
    fn reaped(&self) {
        self.live.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}

fn is_agent_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

fn is_executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

fn preview(text: &str) -> String {
    text.trim().chars().take(60).collect()
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
