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

use super::command::{self, Finished, Invocation, STANDARD_PATH};
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
            clean("systemctl").args(["show", "--property=LoadState", "--value", "--", service]),
            |done| done.success() && !matches!(done.output().as_str(), "" | "not-found"),
        )
    }

    fn command(&self, service: &str, verb: Verb) -> Invocation {
        let verb = match verb {
            Verb::Status => "is-active",
            other => other.as_str(),
        };
        clean("systemctl").args([verb, "--", service])
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
        clean(self.initd.join(service)).args([verb.as_str()])
    }
}

/// `program` run as init runs it: with only `PATH` and `LC_ALL=C` set, and
/// stderr interleaved with stdout.
fn clean(program: impl AsRef<std::ffi::OsStr>) -> Invocation {
    Invocation::new(program)
        .env_clear()
        .envs([("PATH", STANDARD_PATH), ("LC_ALL", "C")])
        .stderr_to_stdout()
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
        return Ok(answer(running, &before.output()));
    }
    let done = run(provider.command(service, verb), deadline).await?;
    let output = done.output();
    if !done.success() {
        return Err(ActionError::new(
            StatusCode::Aborted,
            format!(
                "could not {} {service}: {}{}",
                verb.as_str(),
                done.exit(),
                with_output(&output)
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
                with_output(&output)
            ),
        ));
    }
    Ok(answer(wanted, &output))
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
