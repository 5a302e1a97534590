//! External agents: Choria's external-agent protocol, so agents written
//! for Choria (py-mco-agent, go-external, a shell script) run unchanged.
//!
//! `plugin.external.agents_dir` names one or more directories (comma
//! separated), laid out as Choria's agent directories are: an agent is
//! `<name>.json`, its DDL in Choria's layout with `metadata.name` equal to
//! `<name>`, and its program beside it, either `<name>` or, built for one
//! platform, `<name>-<GOOS>_<GOARCH>` (Go's names, e.g.
//! `hello-linux_amd64`); or the same two files in a directory `<name>/`.
//! A broken agent is logged and skipped so one bad file never keeps a node
//! down; only a directory that cannot be read is an error. A Ruby `.ddl`
//! with no `.json` beside it is a warning naming the converter.
//!
//! At load each agent gets an activation check
//! (`io.choria.mcorpc.external.v1.activation_request`, 2 s): only an agent
//! answering `{"activate": true}` is offered. Every request then runs the
//! program once, without a shell, in its own process group and a fresh
//! temporary working directory (removed afterwards), as
//! `PROGRAM <request file> <reply file> <protocol>` with the
//! `CHORIA_EXTERNAL_*` variables naming the same files. The reply is read
//! from the reply file; stdout and stderr are only logged. The DDL's
//! `metadata.timeout` bounds the run; on expiry the whole group is killed.
//! `docs/external-agents.md` describes the contract for agent authors.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use muster_protocol::config::{Config, ConfigError};
use muster_protocol::ddl::{self, Ddl};
use muster_protocol::{Request, StatusCode};
use serde_json::{json, Map, Value};

use super::command::{self, Finished, Invocation, RunError, STANDARD_PATH};
use crate::agent::{ActionError, ActionFuture, Origin};
use crate::{Agent, Node};

/// The setting naming the directories external agents are loaded from.
pub(super) const AGENTS_DIR: &str = "plugin.external.agents_dir";

/// The protocol of a request to run an action.
pub(crate) const RPC_PROTOCOL: &str = "io.choria.mcorpc.external.v1.rpc_request";
const RPC_SCHEMA: &str = "https://choria.io/schemas/mcorpc/external/v1/rpc_request.json";
/// The protocol of the activation check at load.
pub(crate) const ACTIVATION_PROTOCOL: &str = "io.choria.mcorpc.external.v1.activation_request";
const ACTIVATION_SCHEMA: &str =
    "https://choria.io/schemas/mcorpc/external/v1/activation_request.json";

/// How long the activation check may take, as in Choria.
pub(crate) const ACTIVATION_TIMEOUT: Duration = Duration::from_secs(2);

/// The largest reply file read; a bigger one is a failed reply.
pub(crate) const MAX_REPLY: u64 = 1024 * 1024;

/// Lines of stdout, and of stderr, logged per run at most (each stream's
/// last 64 KiB is kept).
const LOGGED_LINES: usize = 200;

/// Where the agent's own settings file is looked for when the daemon has
/// no config file: `<dir>/<agent>` (py-mco-agent also tries `.cfg`).
pub(super) const DEFAULT_PLUGIN_D: &str = "/etc/muster/plugin.d";

/// Variables passed through from the daemon's environment besides the
/// `CHORIA_EXTERNAL_*` ones; everything else is left out so agents do not
/// depend on how the daemon was started.
const KEPT_ENV: &[&str] = &["PATH", "LANG", "LC_ALL", "TZ"];

/// Why an external agent was not loaded (it is skipped with a log line),
/// or why the agent directories could not be read (start-up fails).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The DDL's file name is not UTF-8, so it names no agent.
    #[error("the file name is not UTF-8")]
    NameNotUtf8,
    /// The DDL's file name is not an agent name.
    #[error("{0:?} is not an agent name (lower-case letters, digits and '_')")]
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
    /// The DDL is for another of Choria's agent providers (e.g. `golang`).
    #[error("metadata.provider is {0:?}; only \"external\" agents (or no provider) run here")]
    Provider(String),
    /// An agent no external agent may replace (Choria refuses it too).
    #[error("{0:?} is always muster's own agent")]
    Reserved(String),
    /// A built-in agent of that name runs.
    #[error(
        "the built-in {0} agent is active; set plugin.{0}.activate_agent = 0 \
         in server.cfg to replace it with this one"
    )]
    BuiltinActive(String),
    /// `plugin.<agent>.activate_agent` or `activate_agents` turned it off.
    #[error("turned off by plugin.{0}.activate_agent or activate_agents")]
    Deactivated(String),
    /// Neither program is beside the DDL.
    #[error(
        "its program is missing: neither {} nor {} exists",
        program.display(),
        platform_program.display()
    )]
    ProgramMissing {
        /// Where the program should be.
        program: PathBuf,
        /// Where this platform's build of it could be instead.
        platform_program: PathBuf,
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
    /// The activation check answered `{"activate": false}`.
    #[error("its activation check declined: it does not activate on this node")]
    Declined,
    /// The activation check failed, so the agent is not offered.
    #[error("its activation check failed, so it does not activate: {0}")]
    Activation(String),
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
    /// An activation setting is not a flag.
    #[error(transparent)]
    Setting(#[from] ConfigError),
}

impl LoadError {
    /// Skips the operator chose (or the agent asked for) are not warnings.
    fn deliberate(&self) -> bool {
        matches!(self, LoadError::Declined | LoadError::Deactivated(_))
    }
}

/// Whether an agent may run as far as the config says:
/// `plugin.<agent>.activate_agent`, else `activate_agents`, else yes.
pub(super) fn activated(settings: &Config, agent: &str) -> Result<bool, ConfigError> {
    let own = format!("plugin.{agent}.activate_agent");
    Ok(match settings.flag(&own)? {
        Some(own) => own,
        None => settings.flag("activate_agents")?.unwrap_or(true),
    })
}

/// One external agent: its DDL and the program that runs its actions.
#[derive(Debug, Clone)]
pub(super) struct External {
    ddl: Ddl,
    ddl_file: PathBuf,
    program: PathBuf,
    /// What `CHORIA_EXTERNAL_CONFIG` names.
    config_file: PathBuf,
}

impl External {
    /// Loads `<dir>/<name>.json` and finds its program beside it, without
    /// the activation check. The error says what is wrong, for the log.
    pub(super) fn load(ddl_file: &Path, plugin_d: &Path) -> Result<External, LoadError> {
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
        // Choria's DDLs say which provider runs the agent; the Ddl type
        // does not keep it, so it is read from the text.
        let provider = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["metadata"]["provider"].as_str().map(str::to_string));
        if let Some(provider) = provider.filter(|p| p != "external") {
            return Err(LoadError::Provider(provider));
        }
        let program = program_for(ddl_file, name)?;
        Ok(External {
            config_file: plugin_d.join(name),
            ddl,
            ddl_file: ddl_file.to_path_buf(),
            program,
        })
    }

    fn name(&self) -> &str {
        &self.ddl.metadata.name
    }

    /// Choria's activation check: whether the agent wants to run here.
    /// Blocks up to [`ACTIVATION_TIMEOUT`] (a little more to start).
    pub(super) fn activation_check(&self) -> Result<bool, String> {
        let request = json!({
            "$schema": ACTIVATION_SCHEMA,
            "protocol": ACTIVATION_PROTOCOL,
            "agent": self.name(),
        });
        let exchange = Exchange {
            agent: self.name().to_string(),
            action: None,
            program: self.program.clone(),
            config_file: self.config_file.clone(),
            protocol: ACTIVATION_PROTOCOL,
            request: request.to_string().into_bytes(),
            facts: b"{}".to_vec(),
            timeout: ACTIVATION_TIMEOUT,
        };
        // Loading is synchronous and may happen inside the daemon's
        // runtime, so the check gets a small runtime of its own.
        let ran = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start a runtime for it: {e}"))?;
            runtime.block_on(exchange.run()).map_err(|e| e.to_string())
        })
        .join()
        .map_err(|_| "the check panicked".to_string())??;
        parse_activation(&ran)
    }
}

/// The program beside `ddl_file`: `<name>`, else this platform's
/// `<name>-<GOOS>_<GOARCH>`, as Choria picks it.
fn program_for(ddl_file: &Path, name: &str) -> Result<PathBuf, LoadError> {
    let program = ddl_file.with_file_name(name);
    let platform_program = ddl_file.with_file_name(format!("{name}-{}", platform()));
    let (program, meta) = match std::fs::metadata(&program) {
        Ok(meta) => (program, meta),
        Err(_) => match std::fs::metadata(&platform_program) {
            Ok(meta) => (platform_program, meta),
            Err(_) => {
                return Err(LoadError::ProgramMissing {
                    program,
                    platform_program,
                })
            }
        },
    };
    if !meta.is_file() {
        return Err(LoadError::ProgramNotFile { program });
    }
    if !is_executable(&meta) {
        return Err(LoadError::NotExecutable { program });
    }
    Ok(program)
}

/// This machine as Go names it (`GOOS_GOARCH`), the suffix Choria's
/// per-platform agent programs carry: `linux_amd64`, `linux_arm64`, ...
pub(crate) fn platform() -> String {
    let os = match std::env::consts::OS {
        "macos" => "darwin",
        other => other,
    };
    let little = cfg!(target_endian = "little");
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "powerpc64" if little => "ppc64le",
        "powerpc64" => "ppc64",
        "mips64" if little => "mips64le",
        "mips" if little => "mipsle",
        "loongarch64" => "loong64",
        other => other,
    };
    format!("{os}_{arch}")
}

/// The DDL files in one agents directory, in Choria's two layouts:
/// `<dir>/<name>.json` and `<dir>/<name>/<name>.json`. Ruby DDLs without
/// a JSON one beside them are warned about (once per file).
fn ddl_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut ruby = Vec::new();
    for entry in std::fs::read_dir(dir)?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            let Some(name) = path.file_name().map(|n| n.to_os_string()) else {
                continue;
            };
            let nested = |ext: &str| {
                let mut file = name.clone();
                file.push(ext);
                path.join(file)
            };
            if nested(".json").is_file() {
                files.push(nested(".json"));
            } else if nested(".ddl").is_file() {
                ruby.push(nested(".ddl"));
            }
        } else if path.extension().is_some_and(|ext| ext == "json") {
            files.push(path);
        } else if path.extension().is_some_and(|ext| ext == "ddl")
            && !path.with_extension("json").exists()
        {
            ruby.push(path);
        }
    }
    for file in ruby {
        warn_ruby_ddl(&file);
    }
    files.sort();
    Ok(files)
}

/// A Ruby DDL is not read; say so once per file, naming the converter.
fn warn_ruby_ddl(file: &Path) {
    static WARNED: OnceLock<Mutex<Vec<PathBuf>>> = OnceLock::new();
    let mut warned = WARNED
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if warned.iter().any(|w| w == file) {
        return;
    }
    warned.push(file.to_path_buf());
    tracing::warn!(
        file = %file.display(),
        "{} is an MCollective Ruby DDL with no JSON DDL beside it, so it is not used; \
         convert it with `mco plugin ddl2json {}`",
        file.display(),
        file.display()
    );
}

/// Every external agent in the configured directories that may run and
/// activates. Broken agents are logged with a warning naming the file and
/// skipped; a directory that cannot be read is an error naming the
/// setting's line. `plugin_d` is where agents' own settings files are.
pub(super) fn load_all(
    settings: &Config,
    plugin_d: &Path,
) -> Result<Vec<Arc<dyn Agent>>, LoadError> {
    let mut agents: Vec<Arc<dyn Agent>> = Vec::new();
    let mut seen: Vec<(String, PathBuf)> = Vec::new();
    for dir in settings.list(AGENTS_DIR) {
        let files = ddl_files(Path::new(&dir)).map_err(|source| LoadError::AgentsDir {
            setting: settings.error(AGENTS_DIR, format!("cannot read agents directory {dir}")),
            dir: PathBuf::from(&dir),
            source,
        })?;
        for file in files {
            let loaded = External::load(&file, plugin_d).and_then(|agent| {
                if let Some((_, first)) = seen.iter().find(|(n, _)| n == agent.name()) {
                    tracing::warn!(
                        file = %file.display(),
                        "skipping external agent {}: already loaded from {}",
                        agent.name(),
                        first.display()
                    );
                    return Ok(None);
                }
                admit(settings, &agent)?;
                Ok(Some(agent))
            });
            match loaded {
                Ok(Some(agent)) => {
                    let name = agent.name().to_string();
                    tracing::info!(
                        file = %file.display(),
                        program = %agent.program.display(),
                        "loaded external agent {name}"
                    );
                    seen.push((name, file));
                    agents.push(Arc::new(agent));
                }
                Ok(None) => {}
                Err(e @ LoadError::Setting(_)) => return Err(e),
                Err(e) if e.deliberate() => {
                    tracing::info!(file = %file.display(), "not offering external agent: {e}");
                }
                Err(e) => {
                    tracing::warn!(file = %file.display(), "skipping external agent: {e}");
                }
            }
        }
    }
    Ok(agents)
}

/// Whether `agent` may run: not a reserved name, not shadowed by an
/// active built-in, not turned off, and its activation check says yes.
fn admit(settings: &Config, agent: &External) -> Result<(), LoadError> {
    let name = agent.name();
    if name == "rpcutil" {
        return Err(LoadError::Reserved(name.to_string()));
    }
    let on = activated(settings, name)?;
    if ddl::builtin_names().contains(&name) {
        if on {
            return Err(LoadError::BuiltinActive(name.to_string()));
        }
    } else if !on {
        return Err(LoadError::Deactivated(name.to_string()));
    }
    match agent.activation_check() {
        Ok(true) => Ok(()),
        Ok(false) => Err(LoadError::Declined),
        Err(why) => Err(LoadError::Activation(why)),
    }
}

impl Agent for External {
    fn ddl(&self) -> &Ddl {
        &self.ddl
    }

    fn origin(&self) -> Origin {
        Origin::External {
            executable: self.program.clone(),
            ddl: self.ddl_file.clone(),
        }
    }

    fn call(&self, node: &Node, action: &str, request: &Request) -> ActionFuture {
        let Some(spec) = self.ddl.action(action) else {
            return crate::agent::ready(Err(ActionError::unknown_action(self.name(), action)));
        };
        let defaults: Map<String, Value> = spec
            .output
            .iter()
            .filter_map(|(key, output)| Some((key.clone(), output.default.clone()?)))
            .collect();
        let facts = serde_json::to_vec(&*node.facts()).unwrap_or_else(|_| b"{}".to_vec());
        let exchange = Exchange {
            agent: self.name().to_string(),
            action: Some(action.to_string()),
            program: self.program.clone(),
            config_file: self.config_file.clone(),
            protocol: RPC_PROTOCOL,
            request: request_document(request).to_string().into_bytes(),
            facts,
            timeout: Duration::from_secs(self.ddl.metadata.timeout.max(1)),
        };
        let action = action.to_string();
        Box::pin(async move {
            let called = format!("{}#{}", exchange.agent, action);
            let failed = |why: String| {
                let message = format!("cannot call external agent {called}: {why}");
                tracing::warn!(agent = %exchange.agent, action = %action, "{message}");
                ActionError::new(StatusCode::Aborted, message)
            };
            let reply = exchange.run().await.map_err(|e| failed(e.to_string()))?;
            let mut reply = parse_reply(&reply).map_err(failed)?;
            for (key, default) in defaults {
                reply.data.entry(key).or_insert(default);
            }
            match reply.code {
                StatusCode::Ok => Ok(Value::Object(reply.data)),
                code => Err(ActionError::new(
                    code,
                    reply
                        .message
                        .filter(|m| !m.is_empty())
                        .unwrap_or_else(|| format!("agent {} failed", exchange.agent)),
                )
                .with_data(Value::Object(reply.data))),
            }
        })
    }
}

/// The request file: Choria's `rpc_request` with the verified caller.
fn request_document(request: &Request) -> Value {
    json!({
        "$schema": RPC_SCHEMA,
        "protocol": RPC_PROTOCOL,
        "agent": request.agent,
        "action": request.action,
        "requestid": request.id,
        "senderid": request.sender,
        "callerid": request.caller,
        "collective": request.collective,
        "ttl": request.ttl,
        "msgtime": request.time / 1000,
        "data": request.data,
    })
}

/// One run of an agent's program, owning everything it needs.
struct Exchange {
    agent: String,
    /// `None` for the activation check.
    action: Option<String>,
    program: PathBuf,
    config_file: PathBuf,
    protocol: &'static str,
    request: Vec<u8>,
    facts: Vec<u8>,
    timeout: Duration,
}

/// Why a run gave no reply to read.
#[derive(Debug, thiserror::Error)]
enum ExchangeError {
    #[error("cannot prepare its files: {0}")]
    Setup(std::io::Error),
    #[error("cannot start {}: {source}", program.display())]
    Start {
        program: PathBuf,
        source: std::io::Error,
    },
    #[error("lost track of it: {0}")]
    Lost(std::io::Error),
    #[error("it did not finish within {0} s and was killed")]
    TimedOut(u64),
    #[error("it {0}")]
    Failed(String),
    #[error("cannot read its reply file: {0}")]
    ReadReply(std::io::Error),
    #[error("its reply file holds {0} bytes, more than the {MAX_REPLY} allowed")]
    ReplyTooLarge(u64),
    #[error("its reply file was replaced by something that is not a regular file")]
    ReplyNotFile,
}

impl Exchange {
    /// Runs the program once in a fresh directory and returns what it
    /// wrote to the reply file.
    async fn run(&self) -> Result<Vec<u8>, ExchangeError> {
        let request = self.request.clone();
        let facts = self.facts.clone();
        let agent = self.agent.clone();
        let files = tokio::task::spawn_blocking(move || RunFiles::new(&agent, &request, &facts))
            .await
            .map_err(|e| ExchangeError::Setup(std::io::Error::other(e)))?
            .map_err(ExchangeError::Setup)?;
        let kept = KEPT_ENV
            .iter()
            .filter_map(|key| Some((OsString::from(key), std::env::var_os(key)?)));
        let path = std::env::var_os("PATH")
            .is_none()
            .then(|| (OsString::from("PATH"), OsString::from(STANDARD_PATH)));
        let invocation = Invocation::new(&self.program)
            .args([
                files.request.as_os_str(),
                files.reply.as_os_str(),
                self.protocol.as_ref(),
            ])
            .env_clear()
            .envs(kept.chain(path))
            .envs([
                ("CHORIA_EXTERNAL_REQUEST", files.request.as_os_str()),
                ("CHORIA_EXTERNAL_REPLY", files.reply.as_os_str()),
                ("CHORIA_EXTERNAL_PROTOCOL", self.protocol.as_ref()),
                ("CHORIA_EXTERNAL_CONFIG", self.config_file.as_os_str()),
                ("CHORIA_EXTERNAL_FACTS", files.facts.as_os_str()),
            ])
            .current_dir(files.dir.path());
        let ended = command::run(&invocation, Instant::now() + self.timeout).await;
        let succeeded = self.finish(ended);
        // Reading the reply and removing what the agent left are file work.
        tokio::task::spawn_blocking(move || {
            let reply = succeeded.and_then(|()| read_reply(&files.reply));
            drop(files);
            reply
        })
        .await
        .map_err(|e| ExchangeError::Lost(std::io::Error::other(e)))?
    }

    /// Logs the run's output; `Ok` when it exited 0, so its reply counts.
    fn finish(&self, ended: Result<Finished, RunError>) -> Result<(), ExchangeError> {
        let done = match ended {
            Err(RunError::Start(source)) => {
                return Err(ExchangeError::Start {
                    program: self.program.clone(),
                    source,
                })
            }
            Err(RunError::Lost(e)) => return Err(ExchangeError::Lost(e)),
            Err(RunError::TimedOut { stdout, stderr, .. }) => {
                self.log_output(&stdout, &stderr, true);
                return Err(ExchangeError::TimedOut(self.timeout.as_secs()));
            }
            Ok(done) => done,
        };
        self.log_output(&done.stdout, &done.stderr, !done.success());
        if !done.success() {
            return Err(ExchangeError::Failed(failure(&done)));
        }
        Ok(())
    }

    /// Stdout at info and stderr at warn (Choria logs them at info and
    /// error), each line tagged with the agent; everything at warn when
    /// the run failed.
    fn log_output(&self, stdout: &str, stderr: &str, failed: bool) {
        let action = self.action.as_deref().unwrap_or("activation check");
        for (stream, text) in [("stdout", stdout), ("stderr", stderr)] {
            let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
            let skipped = lines.len().saturating_sub(LOGGED_LINES);
            if skipped > 0 {
                tracing::warn!(agent = %self.agent, action, "{stream}: {skipped} earlier lines not logged");
            }
            for line in &lines[skipped..] {
                if failed || stream == "stderr" {
                    tracing::warn!(agent = %self.agent, action, "{stream}: {line}");
                } else {
                    tracing::info!(agent = %self.agent, action, "{stream}: {line}");
                }
            }
        }
    }
}

/// The reply file's contents: a regular file (not a link to a device
/// that never ends) of at most [`MAX_REPLY`] bytes.
fn read_reply(reply: &Path) -> Result<Vec<u8>, ExchangeError> {
    use std::io::Read;
    let meta = std::fs::symlink_metadata(reply).map_err(ExchangeError::ReadReply)?;
    if !meta.is_file() {
        return Err(ExchangeError::ReplyNotFile);
    }
    if meta.len() > MAX_REPLY {
        return Err(ExchangeError::ReplyTooLarge(meta.len()));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(reply)
        .and_then(|file| file.take(MAX_REPLY + 1).read_to_end(&mut bytes))
        .map_err(ExchangeError::ReadReply)?;
    if bytes.len() as u64 > MAX_REPLY {
        return Err(ExchangeError::ReplyTooLarge(bytes.len() as u64));
    }
    Ok(bytes)
}

/// A run's temporary directory and the files in it; dropping it removes
/// them.
struct RunFiles {
    dir: tempfile::TempDir,
    request: PathBuf,
    reply: PathBuf,
    facts: PathBuf,
}

impl RunFiles {
    fn new(agent: &str, request: &[u8], facts: &[u8]) -> std::io::Result<RunFiles> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("muster-{agent}-"))
            .tempdir()?;
        let request_file = dir.path().join("request.json");
        let reply = dir.path().join("reply.json");
        let facts_file = dir.path().join("facts.json");
        std::fs::write(&request_file, request)?;
        std::fs::write(&reply, b"")?;
        std::fs::write(&facts_file, facts)?;
        Ok(RunFiles {
            dir,
            request: request_file,
            reply,
            facts: facts_file,
        })
    }
}

/// How a program that exited unsuccessfully failed, with its last words.
fn failure(done: &Finished) -> String {
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
        Some(line) => format!("{how}: {line}"),
        None => format!("{how} (nothing on stderr)"),
    }
}

/// What a program answered, as read from its reply file.
#[derive(Debug)]
struct ProgramReply {
    code: StatusCode,
    message: Option<String>,
    data: Map<String, Value>,
}

/// The reply file of an action: `{"statuscode", "statusmsg", "data"}`.
/// Other keys are ignored, as Choria ignores them.
fn parse_reply(bytes: &[u8]) -> Result<ProgramReply, String> {
    let mut object = json_object(bytes)?;
    const FIELDS: [&str; 3] = ["statuscode", "statusmsg", "data"];
    if !object.is_empty() && !FIELDS.iter().any(|f| object.contains_key(*f)) {
        let keys: Vec<&str> = object.keys().map(String::as_str).take(5).collect();
        return Err(format!(
            "its reply has none of statuscode, statusmsg and data (it has {}); \
             put outputs under \"data\"",
            keys.join(", ")
        ));
    }
    let code = match object.remove("statuscode") {
        None | Some(Value::Null) => StatusCode::Ok,
        Some(value) => value
            .as_u64()
            .and_then(|n| u8::try_from(n).ok())
            .and_then(|n| StatusCode::try_from(n).ok())
            .ok_or_else(|| {
                format!("its reply's statuscode must be a whole number 0-5, found {value}")
            })?,
    };
    let message = match object.remove("statusmsg") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(other) => {
            return Err(format!(
                "its reply's statusmsg must be a string, found {other}"
            ))
        }
    };
    let data = match object.remove("data") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(data)) => data,
        Some(other) => {
            return Err(format!(
                "its reply's data must be an object, found {}",
                kind_of(&other)
            ))
        }
    };
    Ok(ProgramReply {
        code,
        message,
        data,
    })
}

/// The reply file of an activation check: `{"activate": true|false}`.
fn parse_activation(bytes: &[u8]) -> Result<bool, String> {
    let object = json_object(bytes)?;
    match object.get("activate") {
        Some(Value::Bool(activate)) => Ok(*activate),
        Some(other) => Err(format!(
            "its activation reply's \"activate\" must be true or false, found {other}"
        )),
        None => {
            Err("its activation reply has no \"activate\" (expected {\"activate\": true})".into())
        }
    }
}

fn json_object(bytes: &[u8]) -> Result<Map<String, Value>, String> {
    let text = String::from_utf8_lossy(bytes);
    if text.trim().is_empty() {
        return Err("it wrote no reply (the reply file is empty)".into());
    }
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(other) => Err(format!(
            "its reply must be a JSON object, found {}",
            kind_of(&other)
        )),
        Err(e) => Err(format!(
            "its reply is not JSON: {e} (it began {:?})",
            text.trim().chars().take(60).collect::<String>()
        )),
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

    fn ddl_text(name: &str, provider: Option<&str>) -> String {
        let mut ddl = json!({
            "metadata": {
                "name": name, "description": "d", "author": "a", "license": "l",
                "version": "1", "url": "u", "timeout": 5
            },
            "actions": []
        });
        if let Some(provider) = provider {
            ddl["metadata"]["provider"] = json!(provider);
        }
        ddl.to_string()
    }

    #[test]
    fn load_errors_keep_the_file_and_the_cause() {
        let dir = tempfile::tempdir().expect("tempdir");
        let plugin_d = dir.path().join("plugin.d");
        let ddl_file = dir.path().join("lonely.json");
        std::fs::write(&ddl_file, ddl_text("lonely", None)).expect("write");
        match External::load(&ddl_file, &plugin_d) {
            Err(LoadError::ProgramMissing {
                program,
                platform_program,
            }) => {
                assert_eq!(program, dir.path().join("lonely"));
                assert_eq!(
                    platform_program,
                    dir.path().join(format!("lonely-{}", platform()))
                );
            }
            other => panic!("{other:?}"),
        }

        let program = dir.path().join("lonely");
        std::fs::write(&program, "#!/bin/sh\n").expect("write");
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = External::load(&ddl_file, &plugin_d).expect_err("not executable");
        assert!(matches!(&err, LoadError::NotExecutable { program: p } if *p == program));
        assert!(err.to_string().contains("chmod +x"), "{err}");

        let other = dir.path().join("other.json");
        std::fs::write(&other, ddl_text("lonely", None)).expect("write");
        let err = External::load(&other, &plugin_d).expect_err("misnamed");
        assert_eq!(
            err.to_string(),
            "metadata.name is \"lonely\" but the file is named for \"other\""
        );

        let golang = dir.path().join("golang.json");
        std::fs::write(&golang, ddl_text("golang", Some("golang"))).expect("write");
        let err = External::load(&golang, &plugin_d).expect_err("another provider");
        assert!(
            matches!(&err, LoadError::Provider(p) if p == "golang"),
            "{err}"
        );
    }

    #[test]
    fn the_platform_program_is_used_when_the_plain_one_is_missing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ddl_file = dir.path().join("multi.json");
        std::fs::write(&ddl_file, ddl_text("multi", Some("external"))).expect("write");
        let built = dir.path().join(format!("multi-{}", platform()));
        std::fs::write(&built, "#!/bin/sh\n").expect("write");
        std::fs::set_permissions(&built, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let agent = External::load(&ddl_file, Path::new("/etc/muster/plugin.d")).expect("loads");
        assert_eq!(agent.program, built);
        assert_eq!(agent.config_file, Path::new("/etc/muster/plugin.d/multi"));

        let plain = dir.path().join("multi");
        std::fs::write(&plain, "#!/bin/sh\n").expect("write");
        std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let agent = External::load(&ddl_file, Path::new("/x")).expect("loads");
        assert_eq!(agent.program, plain, "the plain program comes first");
    }

    #[test]
    fn platform_names_are_go_names() {
        let platform = platform();
        if cfg!(all(target_os = "linux", target_arch = "x86_64")) {
            assert_eq!(platform, "linux_amd64");
        }
        if cfg!(all(target_os = "linux", target_arch = "aarch64")) {
            assert_eq!(platform, "linux_arm64");
        }
        assert!(!platform.contains("x86_64") && !platform.contains("aarch64"));
    }

    #[test]
    fn an_unreadable_directory_names_the_setting_and_keeps_the_cause() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nosuch");
        let settings =
            Config::parse(&format!("{AGENTS_DIR} = {}", missing.display())).expect("settings");
        let err = match load_all(&settings, dir.path()) {
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
        let cases: [(&[u8], &str); 8] = [
            (b"", "it wrote no reply"),
            (b"  \n", "it wrote no reply"),
            (b"not json", "its reply is not JSON"),
            (b"[1]", "must be a JSON object, found an array"),
            (br#"{"statuscode": 9}"#, "whole number 0-5, found 9"),
            (
                br#"{"statuscode": 1, "statusmsg": 2}"#,
                "statusmsg must be a string, found 2",
            ),
            (
                br#"{"data": [1]}"#,
                "data must be an object, found an array",
            ),
            (
                br#"{"message": "hi"}"#,
                "none of statuscode, statusmsg and data (it has message)",
            ),
        ];
        for (reply, message) in cases {
            let err = parse_reply(reply).expect_err("invalid");
            assert!(
                err.contains(message),
                "{:?}: {err}",
                String::from_utf8_lossy(reply)
            );
        }
        let ok = parse_reply(
            br#"{"statuscode": 0, "statusmsg": "", "data": {"a": 1}, "disableresponse": false}"#,
        )
        .expect("valid");
        assert_eq!(ok.code, StatusCode::Ok);
        assert_eq!(ok.data["a"], 1);
        let empty = parse_reply(b"{}").expect("an empty reply is OK with no data");
        assert!(empty.data.is_empty());
    }

    #[test]
    fn activation_replies_must_say_true_or_false() {
        assert_eq!(parse_activation(br#"{"activate": true}"#), Ok(true));
        assert_eq!(parse_activation(br#"{"activate": false}"#), Ok(false));
        for (reply, message) in [
            (&b"yes"[..], "not JSON"),
            (br#"{"activate": "yes"}"#, "must be true or false"),
            (br#"{}"#, "has no \"activate\""),
            (b"", "wrote no reply"),
        ] {
            let err = parse_activation(reply).expect_err("invalid");
            assert!(err.contains(message), "{err}");
        }
    }
}
