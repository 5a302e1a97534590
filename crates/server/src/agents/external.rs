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

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use muster_protocol::config::{Config, ConfigError};
use muster_protocol::ddl::{self, Ddl};
use muster_protocol::{Request, StatusCode};
use serde_json::{json, Map, Value};

use super::command::{self, Finished, Invocation, RunError, STANDARD_PATH};
use crate::agent::{ActionError, ActionFuture, ActionResult};
use crate::{Agent, Node};

/// The setting naming the directories external agents are loaded from.
pub(super) const AGENTS_DIR: &str = "plugin.external.agents_dir";

/// The most a program may write to stdout; more is a failed reply.
pub(super) const MAX_STDOUT: usize = 1024 * 1024;

/// Variables passed through from the daemon's environment; everything
/// else is left out so agents do not depend on how the daemon was started.
const KEPT_ENV: &[&str] = &["PATH", "LANG", "LC_ALL", "TZ"];

/// Why an external agent was not loaded (it is skipped with a warning), or
/// why the agent directories could not be read (start-up fails).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The DDL's file name is not UTF-8, so it names no agent.
    #[error("the file name is not UTF-8")]
    NameNotUtf8,
    /// The DDL's file name is not an agent name.
    #[error("{0:?} is not an agent name (letters, digits and '_' only)")]
    BadName(String),
    /// The DDL file could not be read.
    #[error("cannot read: {source}")]
    Read {
        /// The DDL file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The DDL is not valid JSON or not a DDL.
    #[error(transparent)]
    Ddl(muster_protocol::ddl::DdlError),
    /// The DDL names another agent than its file.
    #[error("metadata.name is {found:?} but the file is named for {name:?}")]
    NameMismatch {
        /// The name in the DDL.
        found: String,
        /// The name from the file name.
        name: String,
    },
    /// A built-in agent of that name exists.
    #[error("{0:?} is the name of a built-in agent")]
    Builtin(String),
    /// The program beside the DDL is missing.
    #[error("its program {} is missing: {source}", program.display())]
    ProgramMissing {
        /// Where the program should be.
        program: PathBuf,
        /// Why it could not be looked at.
        source: std::io::Error,
    },
    /// The program is a directory or other non-file.
    #[error("its program {} is not a file", program.display())]
    ProgramNotFile {
        /// The program's path.
        program: PathBuf,
    },
    /// The program lacks execute permission.
    #[error("its program {} is not executable (chmod +x it)", program.display())]
    NotExecutable {
        /// The program's path.
        program: PathBuf,
    },
    /// A configured agents directory could not be read.
    #[error("{setting}: {source}")]
    AgentsDir {
        /// The setting's file and line, and the directory.
        setting: ConfigError,
        /// The directory.
        dir: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
}

/// One external agent: its DDL and the program that runs its actions.
#[derive(Debug, Clone)]
pub(super) struct External {
    ddl: Ddl,
    program: PathBuf,
}

impl External {
    /// Loads `<dir>/<name>.json` and checks its program `<dir>/<name>`.
    /// The error says what is wrong, for the start-up warning.
    pub(super) fn load(ddl_file: &Path) -> Result<External, LoadError> {
        let name = ddl_file
            .file_stem()
            .and_then(|s| s.to_str())
            .ok_or(LoadError::NameNotUtf8)?;
        if !is_agent_name(name) {
            return Err(LoadError::BadName(name.to_string()));
        }
        let text = std::fs::read_to_string(ddl_file).map_err(|source| LoadError::Read {
            path: ddl_file.to_path_buf(),
            source,
        })?;
        let ddl = Ddl::from_json(&text).map_err(LoadError::Ddl)?;
        if ddl.metadata.name != name {
            return Err(LoadError::NameMismatch {
                found: ddl.metadata.name,
                name: name.to_string(),
            });
        }
        if ddl::builtin_names().contains(&name) {
            return Err(LoadError::Builtin(name.to_string()));
        }
        let program = ddl_file.with_file_name(name);
        let meta = match std::fs::metadata(&program) {
            Ok(meta) => meta,
            Err(source) => return Err(LoadError::ProgramMissing { program, source }),
        };
        if !meta.is_file() {
            return Err(LoadError::ProgramNotFile { program });
        }
        if !is_executable(&meta) {
            return Err(LoadError::NotExecutable { program });
        }
        Ok(External { ddl, program })
    }
}

/// Every external agent in the configured directories. Broken agents are
/// logged with a warning naming the file and skipped; a directory that
/// cannot be read is an error naming the setting's line.
pub(super) fn load_all(settings: &Config) -> Result<Vec<Arc<dyn Agent>>, LoadError> {
    let mut agents: Vec<Arc<dyn Agent>> = Vec::new();
    let mut seen: Vec<(String, PathBuf)> = Vec::new();
    for dir in settings.list(AGENTS_DIR) {
        let entries = std::fs::read_dir(&dir).map_err(|source| LoadError::AgentsDir {
            setting: settings.error(AGENTS_DIR, format!("cannot read agents directory {dir}")),
            dir: PathBuf::from(&dir),
            source,
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
        let agent = &self.ddl.metadata.name;
        let kept = KEPT_ENV
            .iter()
            .filter_map(|key| Some((*key, std::env::var_os(key)?)));
        let path = std::env::var_os("PATH")
            .is_none()
            .then(|| ("PATH", OsString::from(STANDARD_PATH)));
        let invocation = Invocation::new(&self.program)
            .env_clear()
            .envs([
                ("MUSTER_AGENT", agent.as_str()),
                ("MUSTER_ACTION", action),
                ("MUSTER_REQUEST_ID", request.id.as_str()),
            ])
            .envs(kept.chain(path))
            .current_dir("/")
            .stdin(stdin_document(request))
            .stdout_limit(MAX_STDOUT);
        let run = Run {
            agent: agent.clone(),
            action: action.to_string(),
            program: self.program.clone(),
            timeout: Duration::from_secs(self.ddl.metadata.timeout.max(1)),
            invocation,
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
    invocation: Invocation,
    defaults: Map<String, Value>,
}

impl Run {
    async fn execute(self) -> ActionResult {
        let deadline = Instant::now() + self.timeout;
        let ended = command::run(&self.invocation, deadline).await;
        self.interpret(ended)
    }

    fn interpret(&self, ended: Result<Finished, RunError>) -> ActionResult {
        let agent = &self.agent;
        match ended {
            Err(RunError::Start(e)) => {
                tracing::warn!(agent = %self.agent, program = %self.program.display(), "cannot start external agent: {e}");
                Err(ActionError::new(
                    StatusCode::Aborted,
                    format!("agent {} could not be started: {e}", self.agent),
                ))
            }
            Err(RunError::TimedOut { stderr, .. }) => {
                self.log_stderr(&stderr, true);
                tracing::warn!(agent = %agent, action = %self.action, "external agent timed out after {} s; killed", self.timeout.as_secs());
                Err(ActionError::new(
                    StatusCode::Aborted,
                    format!("agent {agent} timed out after {} s", self.timeout.as_secs()),
                ))
            }
            Err(RunError::Lost(error)) => {
                tracing::warn!(agent = %agent, action = %self.action, "cannot wait for external agent: {error}");
                Err(ActionError::new(
                    StatusCode::Aborted,
                    format!("agent {agent} could not be waited for: {error}"),
                ))
            }
            Ok(done) => {
                let failed = !done.success() || done.overflowed;
                self.log_stderr(&done.stderr, failed);
                if done.overflowed {
                    return Err(ActionError::new(
                        StatusCode::UnknownError,
                        format!("agent {agent} wrote more than {MAX_STDOUT} bytes to stdout"),
                    ));
                }
                if !done.success() {
                    return Err(ActionError::new(
                        StatusCode::Aborted,
                        failure_message(agent, &done),
                    ));
                }
                self.reply(&done.stdout)
            }
        }
    }

    /// Turns the program's stdout into the action's result.
    fn reply(&self, text: &str) -> ActionResult {
        let agent = &self.agent;
        let invalid = |why: String| {
            ActionError::new(
                StatusCode::UnknownError,
                format!("agent {agent} wrote invalid JSON: {why}"),
            )
        };
        if text.trim().is_empty() {
            return Err(invalid("nothing on stdout".into()));
        }
        let value: Value = serde_json::from_str(text)
            .map_err(|e| invalid(format!("{e} (output began {:?})", preview(text))))?;
        let Value::Object(object) = value else {
            return Err(invalid(format!(
                "expected an object, found {}",
                kind_of(&value)
            )));
        };
        let reply = ProgramReply::parse(object).map_err(|e| {
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

    fn log_stderr(&self, stderr: &str, failed: bool) {
        for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
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

/// Why a program's reply object is not a valid reply.
#[derive(Debug, thiserror::Error)]
enum ReplyError {
    #[error("unknown key {0:?} beside statuscode (put outputs under \"data\")")]
    UnknownKey(String),
    #[error("statuscode must be a whole number 0-5, found {0}")]
    StatusCode(Value),
    #[error("statusmsg must be a string, found {0}")]
    StatusMsg(Value),
    #[error("data must be an object, found {0}")]
    Data(&'static str),
}

impl ProgramReply {
    /// The statuscode, statusmsg and data of a reply object: either
    /// `{"statuscode", "statusmsg", "data"}` or a bare object taken as data.
    fn parse(mut object: Map<String, Value>) -> Result<ProgramReply, ReplyError> {
        const ENVELOPE: [&str; 3] = ["statuscode", "statusmsg", "data"];
        let enveloped = object.contains_key("statuscode")
            || (object.contains_key("data")
                && object.keys().all(|k| ENVELOPE.contains(&k.as_str())));
        if !enveloped {
            return Ok(ProgramReply {
                code: StatusCode::Ok,
                message: None,
                data: object,
            });
        }
        if let Some(extra) = object.keys().find(|k| !ENVELOPE.contains(&k.as_str())) {
            return Err(ReplyError::UnknownKey(extra.clone()));
        }
        let code = match object.remove("statuscode") {
            None | Some(Value::Null) => StatusCode::Ok,
            Some(value) => match value
                .as_u64()
                .and_then(|n| u8::try_from(n).ok())
                .and_then(|n| StatusCode::try_from(n).ok())
            {
                Some(code) => code,
                None => return Err(ReplyError::StatusCode(value)),
            },
        };
        let message = match object.remove("statusmsg") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(other) => return Err(ReplyError::StatusMsg(other)),
        };
        let data = match object.remove("data") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(data)) => data,
            Some(other) => return Err(ReplyError::Data(kind_of(&other))),
        };
        Ok(ProgramReply {
            code,
            message,
            data,
        })
    }
}

/// Why a program that exited unsuccessfully failed, with its last words.
fn failure_message(agent: &str, done: &Finished) -> String {
    let how = match (done.code, done.signal) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => "failed".to_string(),
    };
    match done
        .stderr
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
    {
        Some(line) => format!("agent {agent} {how}: {line}"),
        None => format!("agent {agent} {how} (nothing on stderr)"),
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

#[cfg(test)]
mod tests {
    use std::error::Error;
    use std::io::ErrorKind;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn ddl_text(name: &str) -> String {
        json!({
            "metadata": {
                "name": name, "description": "d", "author": "a", "license": "l",
                "version": "1", "url": "u", "timeout": 5
            },
            "actions": []
        })
        .to_string()
    }

    #[test]
    fn load_errors_keep_the_file_and_the_cause() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ddl_file = dir.path().join("lonely.json");
        std::fs::write(&ddl_file, ddl_text("lonely")).expect("write");
        match External::load(&ddl_file) {
            Err(LoadError::ProgramMissing { program, source }) => {
                assert_eq!(program, dir.path().join("lonely"));
                assert_eq!(source.kind(), ErrorKind::NotFound);
            }
            other => panic!("{other:?}"),
        }

        let program = dir.path().join("lonely");
        std::fs::write(&program, "#!/bin/sh\n").expect("write");
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = External::load(&ddl_file).expect_err("not executable");
        assert!(matches!(&err, LoadError::NotExecutable { program: p } if *p == program));
        assert!(err.to_string().contains("chmod +x"), "{err}");

        let other = dir.path().join("other.json");
        std::fs::write(&other, ddl_text("lonely")).expect("write");
        let err = External::load(&other).expect_err("misnamed");
        assert_eq!(
            err.to_string(),
            "metadata.name is \"lonely\" but the file is named for \"other\""
        );
    }

    #[test]
    fn an_unreadable_directory_names_the_setting_and_keeps_the_cause() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nosuch");
        let settings =
            Config::parse(&format!("{AGENTS_DIR} = {}", missing.display())).expect("settings");
        let err = match load_all(&settings) {
            Ok(_) => panic!("a missing directory must be an error"),
            Err(e) => e,
        };
        let LoadError::AgentsDir {
            dir: named, source, ..
        } = &err
        else {
            panic!("{err:?}");
        };
        assert_eq!(*named, missing);
        assert_eq!(source.kind(), ErrorKind::NotFound);
        assert!(err.source().is_some());
        assert!(
            err.to_string()
                .starts_with("config:1: cannot read agents directory"),
            "{err}"
        );
    }

    #[test]
    fn reply_errors_say_what_is_wrong() {
        let parse = |value: Value| match value {
            Value::Object(object) => ProgramReply::parse(object).map(|_| ()),
            _ => unreachable!(),
        };
        let cases = [
            (
                json!({"statuscode": 0, "x": 1}),
                "unknown key \"x\" beside statuscode",
            ),
            (
                json!({"statuscode": 9}),
                "statuscode must be a whole number 0-5, found 9",
            ),
            (
                json!({"statuscode": 1, "statusmsg": 2}),
                "statusmsg must be a string, found 2",
            ),
            (json!({"data": [1]}), "data must be an object, found"),
        ];
        for (reply, message) in cases {
            let err = parse(reply.clone()).expect_err("invalid");
            assert!(err.to_string().contains(message), "{reply}: {err}");
        }
        assert!(parse(json!({"any": "thing"})).is_ok());
    }
}
