//! `puppet`: run Puppet, enable and disable it, report on its runs, and
//! manage single resources — Choria's puppet agent.
//!
//! The agent works with Puppet's own files, so `puppet agent --disable`
//! and `mco puppet disable` see each other: the disable lock
//! (`agent_disabled_lockfile`, JSON `{"disabled_message": "..."}`), the
//! catalog run lock (`agent_catalog_run_lockfile`, present while a catalog
//! is applied), the agent daemon's pidfile and `last_run_summary.yaml`.
//!
//! Settings (defaults are what `puppet config print` gives for root with
//! Debian's `puppet` package, or with Puppet's own packages when
//! `/opt/puppetlabs/bin/puppet` exists):
//!
//! | key | default |
//! | --- | --- |
//! | `plugin.puppet.command` | `/opt/puppetlabs/bin/puppet` if present, else `puppet` on `PATH` |
//! | `plugin.puppet.confdir`, `codedir`, `logdir` | Puppet's own |
//! | `plugin.puppet.vardir` | `/var/cache/puppet` (`/opt/puppetlabs/puppet/cache`) |
//! | `plugin.puppet.rundir` | `/run/puppet` (`/var/run/puppetlabs`) |
//! | `plugin.puppet.statedir` | `<vardir>/state` |
//! | `plugin.puppet.publicdir` | `/var/cache/puppet/public` (`/opt/puppetlabs/puppet/public`); `<vardir>/public` when vardir is set |
//! | `plugin.puppet.lastrunfile` | `<publicdir>/last_run_summary.yaml` |
//! | `plugin.puppet.disabled_lockfile` | `<statedir>/agent_disabled.lock` |
//! | `plugin.puppet.catalog_run_lockfile` | `<statedir>/agent_catalog_run.lock` |
//! | `plugin.puppet.pidfile` | `<rundir>/agent.pid` |
//! | `plugin.puppet.apply_manifest` | unset: `runonce` runs `puppet agent`; set: `puppet apply <manifest>` |
//! | `plugin.puppet.resource_allow_types` | empty: `resource` refuses every type; `*` allows all |
//! | `plugin.puppet.resource_deny_types` | empty; wins over the allow list |
//! | `plugin.puppet.timeout` | the DDL's timeout (300 s), which is also its upper bound |
//!
//! Every path set here (or derived from one set here) is also passed to
//! Puppet as its `--flag`, so Puppet writes where the agent reads; unset
//! ones are left to Puppet and its `puppet.conf`.
//!
//! Without the puppet command every action answers `Aborted` with "puppet
//! is not installed on this node".

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use muster_protocol::config::{Config, ConfigError};
use muster_protocol::ddl::Ddl;
use muster_protocol::{Request, StatusCode};
use serde_json::{json, Map, Value};

use super::command::{self, Finished, Invocation, RunError};
use crate::agent::{ready, ActionError, ActionFuture, ActionResult, Agent};
use crate::data::{DataError, Properties};
use crate::Node;

const NOT_INSTALLED: &str = "puppet is not installed on this node";

/// The longest splay a run may ask for, in seconds.
const MAX_SPLAY: u64 = 3_600;

/// The puppet agent and where its Puppet keeps its state.
pub struct Puppet {
    paths: Arc<Paths>,
    timeout: Duration,
}

/// Where Puppet is and what it leaves behind.
#[derive(Debug)]
struct Paths {
    command: PathBuf,
    /// `--flag value` pairs for every directory and file set in the config.
    flags: Vec<(&'static str, PathBuf)>,
    statedir: PathBuf,
    lastrunfile: PathBuf,
    disabled_lockfile: PathBuf,
    catalog_run_lockfile: PathBuf,
    pidfile: PathBuf,
    apply_manifest: Option<PathBuf>,
    allow_types: Vec<String>,
    deny_types: Vec<String>,
}

impl Puppet {
    /// Reads `plugin.puppet.*`.
    pub fn from_settings(settings: &Config) -> Result<Puppet, ConfigError> {
        let path = |key: &str| -> Result<Option<PathBuf>, ConfigError> {
            match settings.get(&format!("plugin.puppet.{key}")) {
                None => Ok(None),
                Some(value) if Path::new(value).is_absolute() => Ok(Some(PathBuf::from(value))),
                Some(value) => Err(settings.error(
                    &format!("plugin.puppet.{key}"),
                    format!("plugin.puppet.{key} must be an absolute path, found {value:?}"),
                )),
            }
        };
        let aio = Path::new("/opt/puppetlabs/bin/puppet");
        let command = match settings.get("plugin.puppet.command") {
            Some(command) => PathBuf::from(command),
            None if aio.exists() => aio.to_path_buf(),
            None => PathBuf::from("puppet"),
        };
        let (vardir, publicdir, rundir) = if command.starts_with("/opt/puppetlabs") {
            (
                "/opt/puppetlabs/puppet/cache",
                "/opt/puppetlabs/puppet/public",
                "/var/run/puppetlabs",
            )
        } else {
            (
                "/var/cache/puppet",
                "/var/cache/puppet/public",
                "/run/puppet",
            )
        };

        let mut flags = Vec::new();
        for (key, flag) in [
            ("confdir", "--confdir"),
            ("codedir", "--codedir"),
            ("logdir", "--logdir"),
        ] {
            if let Some(dir) = path(key)? {
                flags.push((flag, dir));
            }
        }
        let vardir_set = path("vardir")?;
        let vardir = resolve(&mut flags, "--vardir", vardir_set.clone(), vardir.into());
        let rundir = resolve(&mut flags, "--rundir", path("rundir")?, rundir.into());
        let statedir_set =
            path("statedir")?.or_else(|| vardir_set.as_ref().map(|v| v.join("state")));
        let statedir = resolve(
            &mut flags,
            "--statedir",
            statedir_set.clone(),
            vardir.join("state"),
        );
        let publicdir_set =
            path("publicdir")?.or_else(|| vardir_set.as_ref().map(|v| v.join("public")));
        let publicdir = resolve(
            &mut flags,
            "--publicdir",
            publicdir_set.clone(),
            publicdir.into(),
        );
        let lastrunfile = resolve(
            &mut flags,
            "--lastrunfile",
            path("lastrunfile")?.or_else(|| {
                publicdir_set
                    .as_ref()
                    .map(|_| publicdir.join("last_run_summary.yaml"))
            }),
            publicdir.join("last_run_summary.yaml"),
        );
        let disabled_lockfile = resolve(
            &mut flags,
            "--agent_disabled_lockfile",
            path("disabled_lockfile")?.or_else(|| {
                statedir_set
                    .as_ref()
                    .map(|_| statedir.join("agent_disabled.lock"))
            }),
            statedir.join("agent_disabled.lock"),
        );
        let catalog_run_lockfile = resolve(
            &mut flags,
            "--agent_catalog_run_lockfile",
            path("catalog_run_lockfile")?.or_else(|| {
                statedir_set
                    .as_ref()
                    .map(|_| statedir.join("agent_catalog_run.lock"))
            }),
            statedir.join("agent_catalog_run.lock"),
        );
        // Only read: the daemon writes it; a one-off run has none.
        let pidfile = path("pidfile")?.unwrap_or_else(|| rundir.join("agent.pid"));

        let types = |key: &str| -> Vec<String> {
            settings
                .list(key)
                .into_iter()
                .map(|t| t.to_ascii_lowercase())
                .collect()
        };
        // Never longer than the DDL's timeout, which is how long callers wait.
        let limit = ddl().metadata.timeout;
        let timeout = settings
            .number("plugin.puppet.timeout")?
            .unwrap_or(limit)
            .min(limit)
            .max(1);
        Ok(Puppet {
            paths: Arc::new(Paths {
                command,
                flags,
                statedir,
                lastrunfile,
                disabled_lockfile,
                catalog_run_lockfile,
                pidfile,
                apply_manifest: path("apply_manifest")?,
                allow_types: types("plugin.puppet.resource_allow_types"),
                deny_types: types("plugin.puppet.resource_deny_types"),
            }),
            timeout: Duration::from_secs(timeout),
        })
    }
}

/// The path a setting gives, which Puppet then gets as `flag`, or the default.
fn resolve(
    flags: &mut Vec<(&'static str, PathBuf)>,
    flag: &'static str,
    set: Option<PathBuf>,
    default: PathBuf,
) -> PathBuf {
    match set {
        Some(set) => {
            flags.push((flag, set.clone()));
            set
        }
        None => default,
    }
}

fn ddl() -> &'static Ddl {
    muster_protocol::ddl::builtin("puppet").expect("the puppet DDL is built in")
}

impl Agent for Puppet {
    fn ddl(&self) -> &Ddl {
        ddl()
    }

    fn call(&self, _node: &Node, action: &str, request: &Request) -> ActionFuture {
        let paths = self.paths.clone();
        let data = &request.data;
        let deadline = Instant::now() + self.timeout;
        match action {
            "status" => blocking(move || {
                installed(&paths)?;
                Ok(State::read(&paths).to_json())
            }),
            "enable" => blocking(move || {
                installed(&paths)?;
                enable(&paths)
            }),
            "disable" => {
                let message = match optional_string(data, "message") {
                    Ok(message) => message
                        .unwrap_or_else(|| format!("Disabled via muster by {}", request.caller)),
                    Err(e) => return ready(Err(e)),
                };
                blocking(move || {
                    installed(&paths)?;
                    disable(&paths, &message)
                })
            }
            "last_run_summary" => blocking(move || {
                installed(&paths)?;
                last_run_summary(&paths)
            }),
            "runonce" => match RunOptions::from_data(data) {
                Ok(options) => Box::pin(async move { runonce(paths, options, deadline).await }),
                Err(e) => ready(Err(e)),
            },
            "resource" => match ResourceRequest::from_data(data) {
                Ok(resource) => {
                    Box::pin(async move { resource_action(paths, resource, deadline).await })
                }
                Err(e) => ready(Err(e)),
            },
            other => ready(Err(ActionError::unknown_action("puppet", other))),
        }
    }

    /// `puppet()`: what `status` says, from the same files.
    fn data(&self, argument: &str) -> Option<Result<Properties, DataError>> {
        let status = installed(&self.paths)
            .map(|()| State::read(&self.paths).to_json())
            .map_err(|e| DataError::Unavailable {
                plugin: "puppet",
                reason: e.message,
            });
        Some(status.and_then(|status| crate::data::puppet(argument, &status)))
    }
}

/// Runs file work off the async workers.
fn blocking(work: impl FnOnce() -> ActionResult + Send + 'static) -> ActionFuture {
    Box::pin(async move {
        tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| {
            Err(ActionError::new(
                StatusCode::UnknownError,
                format!("the action failed: {e}"),
            ))
        })
    })
}

fn aborted(message: impl Into<String>) -> ActionError {
    ActionError::new(StatusCode::Aborted, message)
}

/// Whether the puppet command exists; reads the file system.
fn installed(paths: &Paths) -> Result<(), ActionError> {
    let command = &paths.command;
    let found = if command.components().count() > 1 {
        command.is_file()
    } else {
        std::env::var_os("PATH")
            .map(|path| std::env::split_paths(&path).any(|dir| dir.join(command).is_file()))
            .unwrap_or(false)
    };
    if found {
        Ok(())
    } else {
        Err(aborted(NOT_INSTALLED))
    }
}

/// What the agent's files say about Puppet right now.
#[derive(Debug)]
struct State {
    /// The disable message, when disabled.
    disabled: Option<String>,
    applying: bool,
    daemon_present: bool,
    lastrun: u64,
}

impl State {
    fn read(paths: &Paths) -> State {
        State {
            disabled: disabled_message(&paths.disabled_lockfile),
            applying: pidfile_alive(&paths.catalog_run_lockfile, true),
            daemon_present: pidfile_alive(&paths.pidfile, false),
            lastrun: read_summary(&paths.lastrunfile)
                .ok()
                .flatten()
                .map(|summary| summary_lastrun(&summary))
                .unwrap_or(0),
        }
    }

    fn status(&self) -> &'static str {
        if self.applying {
            "applying a catalog"
        } else if self.disabled.is_some() {
            "disabled"
        } else if self.daemon_present {
            "idling"
        } else {
            "stopped"
        }
    }

    fn to_json(&self) -> Value {
        let now = now();
        let since = now.saturating_sub(self.lastrun);
        let mut message = format!("Currently {}", self.status());
        if let Some(reason) = self.disabled.as_deref().filter(|r| !r.is_empty()) {
            message.push_str(&format!(" ({reason})"));
        }
        if self.lastrun == 0 {
            message.push_str("; never run");
        } else {
            message.push_str(&format!("; last completed run {} ago", human(since)));
        }
        json!({
            "enabled": self.disabled.is_none(),
            "applying": self.applying,
            "idling": self.daemon_present && !self.applying,
            "daemon_present": self.daemon_present,
            "status": self.status(),
            "lastrun": self.lastrun,
            "since_lastrun": if self.lastrun == 0 { 0 } else { since },
            "disable_message": self.disabled.clone().unwrap_or_default(),
            "message": message,
        })
    }
}

fn now() -> u64 {
    muster_protocol::now_ms() / 1000
}

/// "2 minutes 10 seconds": the two largest units.
fn human(seconds: u64) -> String {
    let units = [
        ("day", 86_400),
        ("hour", 3_600),
        ("minute", 60),
        ("second", 1),
    ];
    let mut parts = Vec::new();
    let mut left = seconds;
    for (name, size) in units {
        let count = left / size;
        left %= size;
        if count > 0 {
            parts.push(format!(
                "{count} {name}{}",
                if count == 1 { "" } else { "s" }
            ));
        } else if !parts.is_empty() {
            // "1 hour", not "1 hour 0 minutes".
            break;
        }
        if parts.len() == 2 {
            break;
        }
    }
    if parts.is_empty() {
        "0 seconds".into()
    } else {
        parts.join(" ")
    }
}

/// The disable lock's message: `Some("")` for a lock without one.
fn disabled_message(lockfile: &Path) -> Option<String> {
    let text = std::fs::read_to_string(lockfile).ok()?;
    let message = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v.get("disabled_message")?.as_str().map(str::to_string))
        .unwrap_or_default();
    Some(message)
}

/// Whether the pid in `file` runs. A lock without a readable pid counts
/// as held when `held_without_pid`.
fn pidfile_alive(file: &Path, held_without_pid: bool) -> bool {
    let Ok(text) = std::fs::read_to_string(file) else {
        return false;
    };
    match text.trim().parse::<i32>() {
        Ok(pid) if pid > 0 => match rustix::process::Pid::from_raw(pid) {
            // EPERM: it runs, as another user.
            Some(pid) => !matches!(
                rustix::process::test_kill_process(pid),
                Err(e) if e != rustix::io::Errno::PERM
            ),
            None => held_without_pid,
        },
        _ => held_without_pid,
    }
}

fn enable(paths: &Paths) -> ActionResult {
    if disabled_message(&paths.disabled_lockfile).is_none() {
        return Err(aborted("Could not enable Puppet: already enabled"));
    }
    std::fs::remove_file(&paths.disabled_lockfile).map_err(|e| {
        aborted(format!(
            "Could not enable Puppet: cannot remove {}: {e}",
            paths.disabled_lockfile.display()
        ))
    })?;
    Ok(json!({ "enabled": true, "status": "Enabled the Puppet agent" }))
}

fn disable(paths: &Paths, message: &str) -> ActionResult {
    if let Some(current) = disabled_message(&paths.disabled_lockfile) {
        return Err(aborted(format!(
            "Could not disable Puppet: already disabled: {current}"
        )));
    }
    let lockfile = &paths.disabled_lockfile;
    let fail = |e: std::io::Error| {
        aborted(format!(
            "Could not disable Puppet: cannot write {}: {e}",
            lockfile.display()
        ))
    };
    if let Some(dir) = lockfile.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    // Written aside and renamed, so Puppet never reads half a lock.
    let partial = lockfile.with_extension("lock.muster");
    std::fs::write(&partial, json!({ "disabled_message": message }).to_string()).map_err(fail)?;
    std::fs::rename(&partial, lockfile).map_err(fail)?;
    Ok(json!({
        "enabled": false,
        "status": format!("Disabled the Puppet agent: {message}"),
    }))
}

/// Why `last_run_summary.yaml` could not be used.
#[derive(Debug, thiserror::Error)]
enum SummaryError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot parse {}: {source}", path.display())]
    Parse {
        path: PathBuf,
        source: serde_saphyr::Error,
    },
}

/// `last_run_summary.yaml`, or `None` when Puppet has not written one.
fn read_summary(file: &Path) -> Result<Option<Value>, SummaryError> {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(SummaryError::Read {
                path: file.to_path_buf(),
                source,
            })
        }
    };
    serde_saphyr::from_str::<Value>(&text)
        .map(Some)
        .map_err(|source| SummaryError::Parse {
            path: file.to_path_buf(),
            source,
        })
}

fn summary_lastrun(summary: &Value) -> u64 {
    summary
        .pointer("/time/last_run")
        .and_then(number)
        .map(|n| n.max(0.0) as u64)
        .unwrap_or(0)
}

fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn last_run_summary(paths: &Paths) -> ActionResult {
    let summary = read_summary(&paths.lastrunfile)
        .map_err(|e| aborted(e.to_string()))?
        .unwrap_or(Value::Null);
    let section = |name: &str| match summary.get(name) {
        Some(Value::Object(map)) => Value::Object(map.clone()),
        _ => Value::Object(Map::new()),
    };
    let count = |path: &str| {
        summary
            .pointer(path)
            .and_then(number)
            .map(|n| n.max(0.0) as u64)
            .unwrap_or(0)
    };
    let seconds = |path: &str| summary.pointer(path).and_then(number).unwrap_or(0.0);
    let text = |path: &str| match summary.pointer(path) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    let lastrun = summary_lastrun(&summary);
    Ok(json!({
        "resources": section("resources"),
        "time": section("time"),
        "changes": section("changes"),
        "events": section("events"),
        "version": section("version"),
        "lastrun": lastrun,
        "since_lastrun": if lastrun == 0 { 0 } else { now().saturating_sub(lastrun) },
        "total_resources": count("/resources/total"),
        "changed_resources": count("/resources/changed"),
        "failed_resources": count("/resources/failed"),
        "out_of_sync_resources": count("/resources/out_of_sync"),
        "corrected_resources": count("/resources/corrective_change"),
        "total_time": seconds("/time/total"),
        "config_retrieval_time": seconds("/time/config_retrieval"),
        "config_version": text("/version/config"),
        "puppet_version": text("/version/puppet"),
    }))
}

/// The inputs of `runonce`, checked.
#[derive(Debug, Default)]
struct RunOptions {
    noop: Option<bool>,
    tags: Vec<String>,
    splay: Option<bool>,
    splaylimit: Option<u64>,
    environment: Option<String>,
    force: bool,
}

impl RunOptions {
    fn from_data(data: &Map<String, Value>) -> Result<RunOptions, ActionError> {
        let tags = match data.get("tags") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(tags)) => tags.split(',').map(|t| t.trim().to_string()).collect(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|t| match t {
                    Value::String(t) => Ok(t.trim().to_string()),
                    other => Err(ActionError::invalid(format!(
                        "input \"tags\" must list tag names, got {other}"
                    ))),
                })
                .collect::<Result<_, _>>()?,
            Some(other) => {
                return Err(ActionError::invalid(format!(
                    "input \"tags\" must be a comma-separated string or a list, got {other}"
                )))
            }
        };
        let tags: Vec<String> = tags.into_iter().filter(|t| !t.is_empty()).collect();
        if let Some(bad) = tags.iter().find(|t| !is_tag(t)) {
            return Err(ActionError::invalid(format!(
                "input \"tags\": {bad:?} is not a Puppet tag (letters, digits, _ : . -)"
            )));
        }
        let environment = optional_string(data, "environment")?;
        if let Some(bad) = environment
            .as_ref()
            .filter(|e| e.len() > 128 || !e.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        {
            return Err(ActionError::invalid(format!(
                "input \"environment\" must be a Puppet environment name (letters, digits, _), got {bad:?}"
            )));
        }
        let splaylimit = optional_integer(data, "splaylimit")?;
        if let Some(limit) = splaylimit.filter(|limit| *limit > MAX_SPLAY) {
            return Err(ActionError::invalid(format!(
                "input \"splaylimit\" must be at most {MAX_SPLAY} seconds, got {limit}"
            )));
        }
        Ok(RunOptions {
            noop: optional_bool(data, "noop")?,
            tags,
            splay: optional_bool(data, "splay")?,
            splaylimit,
            environment,
            force: optional_bool(data, "force")?.unwrap_or(false),
        })
    }
}

fn is_tag(tag: &str) -> bool {
    tag.len() <= 256
        && tag
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_:.-".contains(c))
}

fn optional_string(data: &Map<String, Value>, name: &str) -> Result<Option<String>, ActionError> {
    match data.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().any(char::is_control) => Err(ActionError::invalid(
            format!("input {name:?} must not contain control characters"),
        )),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(ActionError::invalid(format!(
            "input {name:?} must be a string, got {other}"
        ))),
    }
}

fn optional_bool(data: &Map<String, Value>, name: &str) -> Result<Option<bool>, ActionError> {
    match data.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if s == "true" => Ok(Some(true)),
        Some(Value::String(s)) if s == "false" => Ok(Some(false)),
        Some(other) => Err(ActionError::invalid(format!(
            "input {name:?} must be true or false, got {other}"
        ))),
    }
}

fn optional_integer(data: &Map<String, Value>, name: &str) -> Result<Option<u64>, ActionError> {
    match data.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) if n.as_u64().is_some() => Ok(n.as_u64()),
        Some(Value::String(s)) if s.parse::<u64>().is_ok() => Ok(s.parse().ok()),
        Some(other) => Err(ActionError::invalid(format!(
            "input {name:?} must be a whole number of seconds, got {other}"
        ))),
    }
}

/// Runs puppet; a missing command is [`NOT_INSTALLED`].
async fn run_puppet(
    paths: &Paths,
    args: Vec<OsString>,
    deadline: Instant,
) -> Result<Finished, ActionError> {
    let invocation = Invocation::new(&paths.command)
        .args(args)
        .stderr_to_stdout();
    command::run(&invocation, deadline)
        .await
        .map_err(|e| match e {
            RunError::Start(e) if e.kind() == std::io::ErrorKind::NotFound => {
                aborted(NOT_INSTALLED)
            }
            other => aborted(other.describe(&invocation)),
        })
}

/// Reads the agent's state off the async workers.
async fn state(paths: &Arc<Paths>) -> Result<State, ActionError> {
    let paths = paths.clone();
    tokio::task::spawn_blocking(move || {
        installed(&paths)?;
        Ok(State::read(&paths))
    })
    .await
    .unwrap_or_else(|e| Err(aborted(e.to_string())))
}

async fn runonce(paths: Arc<Paths>, options: RunOptions, deadline: Instant) -> ActionResult {
    let state = state(&paths).await?;
    if !options.force {
        if let Some(reason) = &state.disabled {
            return Err(aborted(format!(
                "Puppet is disabled{}; enable it or force the run",
                if reason.is_empty() {
                    String::new()
                } else {
                    format!(": {reason}")
                }
            )));
        }
        if state.applying {
            return Err(aborted(
                "Puppet is applying a catalog already; try again later or force the run",
            ));
        }
    }
    let mut args: Vec<OsString> = Vec::new();
    let mut deadline = deadline;
    match &paths.apply_manifest {
        Some(_) => args.push("apply".into()),
        None => {
            args.extend(["agent", "--onetime", "--no-daemonize", "--verbose"].map(OsString::from))
        }
    }
    args.extend(["--color=false", "--detailed-exitcodes"].map(OsString::from));
    let forced_past_lock =
        options.force && state.disabled.is_some() && paths.apply_manifest.is_none();
    for (flag, value) in &paths.flags {
        if forced_past_lock && *flag == "--agent_disabled_lockfile" {
            continue;
        }
        args.push(flag.into());
        args.push(value.into());
    }
    if forced_past_lock {
        // puppet agent honours its own lock; a forced run points it at one that is never there.
        args.push("--agent_disabled_lockfile".into());
        args.push(paths.statedir.join("muster_forced_run.lock").into());
    }
    match options.noop {
        Some(true) => args.push("--noop".into()),
        Some(false) => args.push("--no-noop".into()),
        None => {}
    }
    if !options.tags.is_empty() {
        args.push("--tags".into());
        args.push(options.tags.join(",").into());
    }
    if let Some(environment) = &options.environment {
        args.push("--environment".into());
        args.push(environment.into());
    }
    match &paths.apply_manifest {
        Some(manifest) => args.push(manifest.into()),
        None if options.force || options.splay == Some(false) => args.push("--no-splay".into()),
        None if options.splay == Some(true) => {
            args.push("--splay".into());
            if let Some(limit) = options.splaylimit {
                args.push("--splaylimit".into());
                args.push(limit.to_string().into());
                deadline += Duration::from_secs(limit);
            }
        }
        None => {}
    }
    let done = run_puppet(&paths, args, deadline).await?;
    let output = done.output();
    // --detailed-exitcodes: 0 nothing changed, 2 changes, 4 failures, 6 both.
    let (changed, summary) = match done.code {
        Some(0) => (false, "Puppet run completed without changes"),
        Some(2) => (true, "Puppet run completed with changes"),
        _ => {
            return Err(aborted(format!(
                "Puppet run failed ({}): {}",
                done.exit(),
                command::tail(&output, command::MESSAGE_OUTPUT)
            )))
        }
    };
    Ok(json!({
        "summary": summary,
        "changed": changed,
        "exitcode": done.code.unwrap_or(0),
        "output": output,
    }))
}

/// The inputs of `resource`, checked.
#[derive(Debug)]
struct ResourceRequest {
    kind: String,
    name: String,
    properties: Vec<(String, String)>,
}

impl ResourceRequest {
    fn from_data(data: &Map<String, Value>) -> Result<ResourceRequest, ActionError> {
        let kind = optional_string(data, "type")?.ok_or_else(|| ActionError::missing("type"))?;
        let type_ok = kind.len() <= 64
            && kind.split("::").all(|part| {
                part.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                    && part
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            });
        if !type_ok {
            return Err(ActionError::invalid(format!(
                "input \"type\" must be a Puppet type name such as file or package, got {kind:?}"
            )));
        }
        let name = optional_string(data, "name")?.ok_or_else(|| ActionError::missing("name"))?;
        if name.starts_with('-') || name.len() > 1024 {
            return Err(ActionError::invalid(format!(
                "input \"name\" must not start with '-' and be at most 1024 characters, got {name:?}"
            )));
        }
        let mut properties = Vec::new();
        match data.get("properties") {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) => {
                for (key, value) in map {
                    let key_ok = key.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                        && key
                            .chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
                    if !key_ok {
                        return Err(ActionError::invalid(format!(
                            "input \"properties\": {key:?} is not a Puppet parameter name"
                        )));
                    }
                    let value = match value {
                        Value::String(s) => s.clone(),
                        Value::Number(n) => n.to_string(),
                        Value::Bool(b) => b.to_string(),
                        other => {
                            return Err(ActionError::invalid(format!(
                                "input \"properties\": {key} must be a string, number or boolean, got {other}"
                            )))
                        }
                    };
                    // `puppet resource` reads key=value up to the end of the line only.
                    if value.is_empty() || value.contains(['\n', '\r', '\0']) {
                        return Err(ActionError::invalid(format!(
                            "input \"properties\": {key} must be a non-empty single line"
                        )));
                    }
                    properties.push((key.clone(), value));
                }
            }
            Some(other) => {
                return Err(ActionError::invalid(format!(
                    "input \"properties\" must be a hash, got {other}"
                )))
            }
        }
        Ok(ResourceRequest {
            kind,
            name,
            properties,
        })
    }
}

fn type_allowed(paths: &Paths, kind: &str) -> bool {
    let listed = |list: &[String]| list.iter().any(|t| t == kind || t == "*");
    listed(&paths.allow_types) && !paths.deny_types.iter().any(|t| t == kind)
}

async fn resource_action(
    paths: Arc<Paths>,
    resource: ResourceRequest,
    deadline: Instant,
) -> ActionResult {
    state(&paths).await?;
    if !type_allowed(&paths, &resource.kind) {
        return Err(aborted(format!(
            "Puppet type {:?} may not be managed on this node (plugin.puppet.resource_allow_types, plugin.puppet.resource_deny_types)",
            resource.kind
        )));
    }
    let mut args: Vec<OsString> = vec!["resource".into(), "--color=false".into()];
    for (flag, value) in &paths.flags {
        args.push(flag.into());
        args.push(value.into());
    }
    args.push(resource.kind.clone().into());
    args.push(resource.name.clone().into());
    for (key, value) in &resource.properties {
        args.push(format!("{key}={value}").into());
    }
    let done = run_puppet(&paths, args, deadline).await?;
    let output = done.output();
    let failed = output
        .lines()
        .any(|line| line.starts_with("Error: /") || line.starts_with("Error: Could not run"));
    if !done.success() || failed {
        return Err(aborted(format!(
            "puppet resource {} {} failed ({}): {}",
            resource.kind,
            resource.name,
            done.exit(),
            command::tail(&output, command::MESSAGE_OUTPUT)
        )));
    }
    let changed = output.lines().any(|line| line.starts_with("Notice: /"));
    let opening = format!("{} {{", resource.kind);
    let result = match output.find(&opening) {
        Some(at) => output[at..].to_string(),
        None => output.clone(),
    };
    Ok(json!({ "changed": changed, "result": result, "output": output }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_choria() {
        for (seconds, words) in [
            (0, "0 seconds"),
            (1, "1 second"),
            (130, "2 minutes 10 seconds"),
            (3_600, "1 hour"),
            (3_661, "1 hour 1 minute"),
            (90_000, "1 day 1 hour"),
        ] {
            assert_eq!(human(seconds), words, "{seconds}");
        }
    }

    #[test]
    fn debian_defaults_and_derived_paths() {
        let plain = Puppet::from_settings(
            &Config::parse("plugin.puppet.command = /usr/bin/puppet").unwrap(),
        )
        .unwrap();
        assert_eq!(
            plain.paths.lastrunfile,
            Path::new("/var/cache/puppet/public/last_run_summary.yaml")
        );
        assert_eq!(
            plain.paths.disabled_lockfile,
            Path::new("/var/cache/puppet/state/agent_disabled.lock")
        );
        assert_eq!(plain.paths.pidfile, Path::new("/run/puppet/agent.pid"));
        assert!(plain.paths.flags.is_empty());

        let temp = Puppet::from_settings(
            &Config::parse(
                "plugin.puppet.command = /usr/bin/puppet\nplugin.puppet.vardir = /tmp/v",
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(
            temp.paths.lastrunfile,
            Path::new("/tmp/v/public/last_run_summary.yaml")
        );
        assert_eq!(
            temp.paths.catalog_run_lockfile,
            Path::new("/tmp/v/state/agent_catalog_run.lock")
        );
        let flags: Vec<&str> = temp.paths.flags.iter().map(|(f, _)| *f).collect();
        assert_eq!(
            flags,
            [
                "--vardir",
                "--statedir",
                "--publicdir",
                "--lastrunfile",
                "--agent_disabled_lockfile",
                "--agent_catalog_run_lockfile"
            ]
        );

        let relative = Config::parse("plugin.puppet.statedir = state").unwrap();
        assert!(Puppet::from_settings(&relative).is_err());
    }

    #[test]
    fn resource_types_are_denied_unless_allowed() {
        let puppet = |text: &str| Puppet::from_settings(&Config::parse(text).unwrap()).unwrap();
        assert!(!type_allowed(&puppet("").paths, "file"));
        let some = puppet("plugin.puppet.resource_allow_types = file, package");
        assert!(type_allowed(&some.paths, "file"));
        assert!(!type_allowed(&some.paths, "exec"));
        let all_but_exec = puppet(
            "plugin.puppet.resource_allow_types = *\nplugin.puppet.resource_deny_types = exec",
        );
        assert!(type_allowed(&all_but_exec.paths, "user"));
        assert!(!type_allowed(&all_but_exec.paths, "exec"));
    }
}
