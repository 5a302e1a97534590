//! `package`: query, install, update and remove packages with the node's
//! own package tools.
//!
//! A [`Provider`] knows one family of tools: which programs it needs, the
//! command line of each action and how to read the query's answer. `apt`
//! drives `dpkg-query` and `apt-get`; `dnf` and `yum` drive `rpm` and the
//! tool of their name. The provider is `plugin.package.provider` or, when
//! that is unset, the first whose programs are all on the node. Tools run
//! directly (never through a shell) with arguments the agent has checked:
//! a package name starts with a letter or digit, so it cannot pass for an
//! option. Every action is bounded by the DDL's timeout
//! (`plugin.package.timeout` may lower it); on expiry the tool's whole
//! process group is killed.
//!
//! Settings, all optional:
//!
//! | key | meaning |
//! | --- | --- |
//! | `plugin.package.provider` | `apt`, `dnf` or `yum`; detected when unset |
//! | `plugin.package.timeout` | seconds an action may run (default: the DDL's) |
//! | `plugin.package.dpkg_query`, `.apt_get`, `.rpm`, `.dnf`, `.yum` | the tools' paths (default: found on `PATH`) |
//! | `plugin.package.apt_options` | extra `apt-get` arguments, space-separated |
//! | `plugin.package.yum_options` | extra `dnf`/`yum` arguments, space-separated |

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use muster_protocol::config::{Config, ConfigError};
use muster_protocol::ddl::Ddl;
use muster_protocol::{Request, StatusCode};
use serde_json::{json, Map, Value};

use super::command::{self, RunError};
#[cfg(test)]
use super::command::{tail, MAX_OUTPUT};
use crate::agent::{ready, ActionError, ActionFuture, Agent};
use crate::Node;

/// Longest package name or version accepted, as the DDL says.
const MAX_INPUT: usize = 128;

const NO_PROVIDER: &str = "no package provider found on this node";

/// MCollective's package agent.
pub(super) struct Package {
    settings: Arc<Settings>,
}

/// The agent's `plugin.package.*` settings.
#[derive(Debug)]
struct Settings {
    provider: Option<Family>,
    timeout: Duration,
    dpkg_query: PathBuf,
    apt_get: PathBuf,
    apt_options: Vec<String>,
    rpm: PathBuf,
    dnf: PathBuf,
    yum: PathBuf,
    yum_options: Vec<String>,
}

/// The kinds of provider this agent knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Apt,
    Dnf,
    Yum,
}

impl Family {
    const ALL: [Family; 3] = [Family::Apt, Family::Dnf, Family::Yum];

    fn name(self) -> &'static str {
        match self {
            Family::Apt => "apt",
            Family::Dnf => "dnf",
            Family::Yum => "yum",
        }
    }
}

impl Package {
    /// Reads the `plugin.package.*` settings; a bad one is an error naming
    /// its line.
    pub(super) fn from_settings(settings: &Config) -> Result<Package, ConfigError> {
        let provider = match settings.get("plugin.package.provider") {
            None => None,
            Some(name) => Some(
                Family::ALL
                    .into_iter()
                    .find(|f| f.name() == name)
                    .ok_or_else(|| {
                        settings.error(
                            "plugin.package.provider",
                            format!("unknown package provider {name:?} (known: apt, dnf, yum)"),
                        )
                    })?,
            ),
        };
        let ddl_timeout = ddl().metadata.timeout;
        let timeout = match settings.number("plugin.package.timeout")? {
            None => ddl_timeout,
            Some(0) => {
                return Err(settings.error(
                    "plugin.package.timeout",
                    "the timeout must be at least 1 second",
                ))
            }
            Some(seconds) => seconds,
        };
        let tool = |key: &str, default: &str| PathBuf::from(settings.get(key).unwrap_or(default));
        let options = |key: &str| -> Vec<String> {
            settings
                .get(key)
                .map(|v| v.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default()
        };
        Ok(Package {
            settings: Arc::new(Settings {
                provider,
                timeout: Duration::from_secs(timeout),
                dpkg_query: tool("plugin.package.dpkg_query", "dpkg-query"),
                apt_get: tool("plugin.package.apt_get", "apt-get"),
                apt_options: options("plugin.package.apt_options"),
                rpm: tool("plugin.package.rpm", "rpm"),
                dnf: tool("plugin.package.dnf", "dnf"),
                yum: tool("plugin.package.yum", "yum"),
                yum_options: options("plugin.package.yum_options"),
            }),
        })
    }
}

fn ddl() -> &'static Ddl {
    muster_protocol::ddl::builtin("package").expect("the package DDL is built in")
}

impl Agent for Package {
    fn ddl(&self) -> &Ddl {
        ddl()
    }

    fn call(&self, _node: &Node, action: &str, request: &Request) -> ActionFuture {
        let change = match action {
            "status" => None,
            "install" => Some(Change::Install),
            "update" => Some(Change::Update),
            "uninstall" => Some(Change::Uninstall),
            "purge" => Some(Change::Purge),
            other => return ready(Err(ActionError::unknown_action("package", other))),
        };
        let inputs = match Inputs::from_data(&request.data, change == Some(Change::Install)) {
            Ok(inputs) => inputs,
            Err(e) => return ready(Err(e)),
        };
        let settings = Arc::clone(&self.settings);
        Box::pin(async move {
            let at = Instant::now() + settings.timeout;
            let provider = select(&settings).await?;
            let deadline = Deadline {
                at,
                timed_out: format!(
                    "{} {} timed out after {} s",
                    provider.name(),
                    change.map_or("status", Change::name),
                    settings.timeout.as_secs()
                ),
            };
            run(&*provider, change, &inputs, &deadline).await
        })
    }
}

/// The checked inputs of one request.
struct Inputs {
    package: String,
    version: Option<String>,
}

impl Inputs {
    fn from_data(data: &Map<String, Value>, takes_version: bool) -> Result<Inputs, ActionError> {
        let package = match data.get("package") {
            None | Some(Value::Null) => return Err(ActionError::missing("package")),
            Some(Value::String(package)) => package.clone(),
            Some(_) => return Err(ActionError::invalid("input \"package\" must be a string")),
        };
        if !is_package_name(&package) {
            return Err(ActionError::invalid(format!(
                "input \"package\" must be a package name of at most {MAX_INPUT} letters, digits and . + _ : - starting with a letter or digit, got {:?}",
                shown(&package)
            )));
        }
        let version = match data.get("version") {
            None | Some(Value::Null) => None,
            Some(_) if !takes_version => {
                return Err(ActionError::invalid(
                    "input \"version\" only applies to install",
                ))
            }
            Some(Value::String(version)) if is_version(version) => Some(version.clone()),
            Some(other) => {
                return Err(ActionError::invalid(format!(
                    "input \"version\" must be a version of at most {MAX_INPUT} letters, digits and . + ~ _ : - starting with a letter or digit, got {}",
                    shown(&other.to_string())
                )))
            }
        };
        Ok(Inputs { package, version })
    }
}

/// A package name every provider accepts as one argument: no shell or glob
/// characters, and no leading `-` that would make it an option.
fn is_package_name(name: &str) -> bool {
    is_token(name, |c| matches!(c, '.' | '+' | '_' | ':' | '-'))
}

fn is_version(version: &str) -> bool {
    is_token(version, |c| matches!(c, '.' | '+' | '~' | '_' | ':' | '-'))
}

fn is_token(text: &str, extra: impl Fn(char) -> bool) -> bool {
    text.len() <= MAX_INPUT
        && text.starts_with(|c: char| c.is_ascii_alphanumeric())
        && text.chars().all(|c| c.is_ascii_alphanumeric() || extra(c))
}

/// Enough of a refused value to recognise it.
fn shown(text: &str) -> String {
    text.chars().take(60).collect()
}

/// An action that changes the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Install,
    Update,
    Uninstall,
    Purge,
}

impl Change {
    fn name(self) -> &'static str {
        match self {
            Change::Install => "install",
            Change::Update => "update",
            Change::Uninstall => "uninstall",
            Change::Purge => "purge",
        }
    }
}

/// A tool's command line and the variables it runs with besides the
/// daemon's own.
#[derive(Debug, Clone, PartialEq)]
struct Invocation {
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(&'static str, &'static str)>,
}

/// What a finished program said.
#[derive(Debug)]
struct Finished {
    success: bool,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Finished {
    /// Standard output then standard error, trimmed, the end kept when long.
    fn output(&self) -> String {
        command::joined(&self.stdout, &self.stderr)
    }
}

/// A package as the provider's query reports it.
#[derive(Debug, Clone, PartialEq)]
struct Installed {
    version: String,
    arch: String,
}

/// One family of package tools.
trait Provider: Send + Sync {
    fn name(&self) -> &'static str;
    /// The programs this provider needs, as configured.
    fn tools(&self) -> Vec<PathBuf>;
    /// The command that reports one package's state.
    fn query(&self, package: &str) -> Invocation;
    /// The installed package in the query's answer, if any.
    fn parse(&self, answer: &Finished) -> Option<Installed>;
    /// The command that makes a change.
    fn change(&self, change: Change, package: &str, version: Option<&str>) -> Invocation;
}

/// Debian's dpkg and apt.
struct Apt {
    dpkg_query: PathBuf,
    apt_get: PathBuf,
    options: Vec<String>,
}

impl Provider for Apt {
    fn name(&self) -> &'static str {
        "apt"
    }

    fn tools(&self) -> Vec<PathBuf> {
        vec![self.dpkg_query.clone(), self.apt_get.clone()]
    }

    fn query(&self, package: &str) -> Invocation {
        Invocation {
            program: self.dpkg_query.clone(),
            args: vec![
                "-W".into(),
                "-f".into(),
                "${Package}\\t${Version}\\t${Architecture}\\t${Status}\\n".into(),
                package.into(),
            ],
            env: vec![("LC_ALL", "C")],
        }
    }

    fn parse(&self, answer: &Finished) -> Option<Installed> {
        // Several lines for a multi-arch package; any installed one counts.
        answer.stdout.lines().find_map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            match fields.as_slice() {
                [_, version, arch, status]
                    if status.split_whitespace().last() == Some("installed")
                        && !version.is_empty() =>
                {
                    Some(Installed {
                        version: version.to_string(),
                        arch: arch.to_string(),
                    })
                }
                _ => None,
            }
        })
    }

    fn change(&self, change: Change, package: &str, version: Option<&str>) -> Invocation {
        // Wait for a concurrent dpkg run rather than fail at once; keep
        // changed configuration files without asking. Settings come after,
        // so they can override these.
        let mut args: Vec<String> = [
            "-o",
            "DPkg::Lock::Timeout=60",
            "-o",
            "Dpkg::Options::=--force-confdef",
            "-o",
            "Dpkg::Options::=--force-confold",
        ]
        .map(String::from)
        .into();
        args.extend(self.options.iter().cloned());
        args.extend(["-y".into(), "-q".into()]);
        match change {
            Change::Install => args.push("install".into()),
            Change::Update => args.extend(["install".into(), "--only-upgrade".into()]),
            Change::Uninstall => args.push("remove".into()),
            Change::Purge => args.push("purge".into()),
        }
        args.push(match version {
            Some(version) => format!("{package}={version}"),
            None => package.into(),
        });
        Invocation {
            program: self.apt_get.clone(),
            args,
            env: vec![
                ("DEBIAN_FRONTEND", "noninteractive"),
                ("APT_LISTCHANGES_FRONTEND", "none"),
                ("LC_ALL", "C"),
            ],
        }
    }
}

/// rpm with dnf or yum, whose command lines are the same.
struct Rpm {
    family: Family,
    rpm: PathBuf,
    tool: PathBuf,
    options: Vec<String>,
}

impl Provider for Rpm {
    fn name(&self) -> &'static str {
        self.family.name()
    }

    fn tools(&self) -> Vec<PathBuf> {
        vec![self.rpm.clone(), self.tool.clone()]
    }

    fn query(&self, package: &str) -> Invocation {
        Invocation {
            program: self.rpm.clone(),
            args: vec![
                "-q".into(),
                "--qf".into(),
                "%{NAME}\\t%|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}\\t%{ARCH}\\n".into(),
                package.into(),
            ],
            env: vec![("LC_ALL", "C")],
        }
    }

    fn parse(&self, answer: &Finished) -> Option<Installed> {
        if !answer.success {
            return None;
        }
        answer
            .stdout
            .lines()
            .find_map(|line| match line.split('\t').collect::<Vec<_>>()[..] {
                [_, version, arch] if !version.is_empty() => Some(Installed {
                    version: version.to_string(),
                    arch: arch.to_string(),
                }),
                _ => None,
            })
    }

    fn change(&self, change: Change, package: &str, version: Option<&str>) -> Invocation {
        let mut args = self.options.clone();
        args.push("-y".into());
        args.push(
            match change {
                Change::Install => "install",
                Change::Update => "upgrade",
                // rpm keeps no configuration files apart to purge.
                Change::Uninstall | Change::Purge => "remove",
            }
            .into(),
        );
        args.push(match version {
            Some(version) => format!("{package}-{version}"),
            None => package.into(),
        });
        Invocation {
            program: self.tool.clone(),
            args,
            env: vec![("LC_ALL", "C")],
        }
    }
}

fn provider(settings: &Settings, family: Family) -> Box<dyn Provider> {
    match family {
        Family::Apt => Box::new(Apt {
            dpkg_query: settings.dpkg_query.clone(),
            apt_get: settings.apt_get.clone(),
            options: settings.apt_options.clone(),
        }),
        Family::Dnf | Family::Yum => Box::new(Rpm {
            family,
            rpm: settings.rpm.clone(),
            tool: if family == Family::Dnf {
                settings.dnf.clone()
            } else {
                settings.yum.clone()
            },
            options: settings.yum_options.clone(),
        }),
    }
}

/// The configured provider, or the first whose tools are all here; its
/// tools resolved to full paths.
async fn select(settings: &Settings) -> Result<Box<dyn Provider>, ActionError> {
    let families: &[Family] = match &settings.provider {
        Some(family) => std::slice::from_ref(family),
        None => &Family::ALL,
    };
    let mut missing = Vec::new();
    for &family in families {
        let candidate = provider(settings, family);
        let mut absent = Vec::new();
        for tool in candidate.tools() {
            if locate(&tool).await.is_none() {
                absent.push(tool.display().to_string());
            }
        }
        if absent.is_empty() {
            return Ok(candidate);
        }
        missing.push(format!("{} needs {}", family.name(), absent.join(" and ")));
    }
    let why = match settings.provider {
        Some(family) => format!("plugin.package.provider is {}, but", family.name()),
        None => "none detected:".to_string(),
    };
    Err(ActionError::new(
        StatusCode::Aborted,
        format!("{NO_PROVIDER} ({why} {})", missing.join("; ")),
    ))
}

/// `tool` itself when it names a path, else the first match on `PATH`;
/// only executable files count.
async fn locate(tool: &Path) -> Option<PathBuf> {
    async fn executable(path: &Path) -> bool {
        use std::os::unix::fs::PermissionsExt;
        match tokio::fs::metadata(path).await {
            Ok(meta) => meta.is_file() && meta.permissions().mode() & 0o111 != 0,
            Err(_) => false,
        }
    }
    if tool.components().count() > 1 || tool.is_absolute() {
        return executable(tool).await.then(|| tool.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(tool);
        if executable(&candidate).await {
            return Some(candidate);
        }
    }
    None
}

/// When an action's tools must have finished, and what to say when not.
struct Deadline {
    at: Instant,
    timed_out: String,
}

/// Runs one action with `provider` and builds its reply.
async fn run(
    provider: &dyn Provider,
    change: Option<Change>,
    inputs: &Inputs,
    deadline: &Deadline,
) -> Result<Value, ActionError> {
    let package = inputs.package.as_str();
    let Some(change) = change else {
        let answer = execute(&provider.query(package), deadline).await?;
        let installed = provider.parse(&answer);
        return Ok(reply(
            provider,
            package,
            installed.as_ref(),
            None,
            answer.output(),
        ));
    };
    let done = execute(
        &provider.change(change, package, inputs.version.as_deref()),
        deadline,
    )
    .await?;
    let output = done.output();
    if !done.success {
        return Err(ActionError::new(
            StatusCode::Aborted,
            format!(
                "{} {} {package} failed ({}): {output}",
                provider.name(),
                change.name(),
                exit_status(&done)
            ),
        ));
    }
    let installed = provider.parse(&execute(&provider.query(package), deadline).await?);
    let failed = |why: &str| {
        Err(ActionError::new(
            StatusCode::Aborted,
            format!(
                "{} {} {package}: {why}: {output}",
                provider.name(),
                change.name()
            ),
        ))
    };
    match (change, &installed) {
        (Change::Install, None) => failed("the tool succeeded but the package is not installed"),
        (Change::Install, Some(found)) => match &inputs.version {
            Some(wanted) if !same_version(wanted, &found.version) => failed(&format!(
                "version {} is installed, not {wanted}",
                found.version
            )),
            _ => Ok(reply(provider, package, installed.as_ref(), None, output)),
        },
        (Change::Update, None) => failed("not installed, so not updated (use install)"),
        (Change::Uninstall | Change::Purge, Some(found)) => failed(&format!(
            "the tool succeeded but version {} is still installed",
            found.version
        )),
        (Change::Purge, None) => Ok(reply(provider, package, None, Some("purged"), output)),
        _ => Ok(reply(provider, package, installed.as_ref(), None, output)),
    }
}

/// Whether an installed version is the one asked for: rpm reports
/// `version-release` where one may ask for `version` alone.
fn same_version(wanted: &str, installed: &str) -> bool {
    installed == wanted
        || installed
            .strip_prefix(wanted)
            .is_some_and(|rest| rest.starts_with('-'))
        || installed
            .split_once(':')
            .is_some_and(|(_, rest)| same_version(wanted, rest))
}

fn exit_status(done: &Finished) -> String {
    match done.code {
        Some(code) => format!("exit status {code}"),
        None => "killed by a signal".to_string(),
    }
}

fn reply(
    provider: &dyn Provider,
    package: &str,
    installed: Option<&Installed>,
    gone: Option<&str>,
    output: String,
) -> Value {
    let (ensure, version, arch) = match installed {
        Some(found) => (
            found.version.as_str(),
            found.version.as_str(),
            found.arch.as_str(),
        ),
        None => (gone.unwrap_or("absent"), "", ""),
    };
    json!({
        "name": package,
        "ensure": ensure,
        "version": version,
        "arch": arch,
        "provider": provider.name(),
        "output": output,
    })
}

/// Runs a tool to completion; at the deadline its whole process group
/// (apt-get starts dpkg and maintainer scripts) is killed.
async fn execute(invocation: &Invocation, deadline: &Deadline) -> Result<Finished, ActionError> {
    let program = locate(&invocation.program)
        .await
        .unwrap_or_else(|| invocation.program.clone());
    let tool = command::Invocation::new(&program)
        .args(&invocation.args)
        .envs(invocation.env.iter().copied());
    let aborted = |message: String| ActionError::new(StatusCode::Aborted, message);
    match command::run(&tool, deadline.at).await {
        Ok(done) => Ok(Finished {
            success: done.success(),
            code: done.code,
            stdout: done.stdout,
            stderr: done.stderr,
        }),
        Err(RunError::Start(e)) => Err(aborted(format!("cannot run {}: {e}", program.display()))),
        Err(RunError::Lost(e)) => Err(aborted(format!("waiting for {}: {e}", program.display()))),
        Err(RunError::TimedOut { .. }) => Err(aborted(deadline.timed_out.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_names_cannot_be_options_globs_or_shell() {
        for good in [
            "rsync",
            "libc6:amd64",
            "g++",
            "python3.11",
            "Foo_bar-1",
            "0ad",
        ] {
            assert!(is_package_name(good), "{good}");
        }
        for bad in [
            "",
            "-oAPT::x=1",
            "--purge",
            "vim;reboot",
            "a b",
            "lib*",
            "a?",
            "a[b]",
            "$(id)",
            "a`b`",
            "a|b",
            "a&b",
            "a>b",
            "a\nb",
            "é",
            &"a".repeat(MAX_INPUT + 1),
        ] {
            assert!(!is_package_name(bad), "{bad}");
        }
        assert!(is_version("1:2.3~rc1-4+deb12u1"));
        assert!(!is_version("-1"));
        assert!(!is_version("1;2"));
    }

    #[test]
    fn versions_match_with_or_without_release_and_epoch() {
        assert!(same_version("1.0", "1.0"));
        assert!(same_version("1.0", "1.0-3.el9"));
        assert!(same_version("1.0", "2:1.0-3"));
        assert!(!same_version("1.0", "1.0.1"));
        assert!(!same_version("1.0", "1.1"));
    }

    fn finished(success: bool, stdout: &str) -> Finished {
        Finished {
            success,
            code: Some(if success { 0 } else { 1 }),
            stdout: stdout.into(),
            stderr: String::new(),
        }
    }

    #[test]
    fn dpkg_query_answers_are_read() {
        let apt = Apt {
            dpkg_query: "dpkg-query".into(),
            apt_get: "apt-get".into(),
            options: vec![],
        };
        let installed = apt.parse(&finished(
            true,
            "rsync\t3.2.7-1\tamd64\tinstall ok installed\n",
        ));
        assert_eq!(
            installed,
            Some(Installed {
                version: "3.2.7-1".into(),
                arch: "amd64".into()
            })
        );
        assert_eq!(
            apt.parse(&finished(
                true,
                "vim\t2:9.0\tamd64\tdeinstall ok config-files\n"
            )),
            None
        );
        assert_eq!(apt.parse(&finished(false, "")), None);
        let install = apt.change(Change::Install, "rsync", Some("3.2"));
        assert_eq!(install.args.last().map(String::as_str), Some("rsync=3.2"));
        let update = apt.change(Change::Update, "rsync", None);
        assert!(update.args.ends_with(&[
            "install".into(),
            "--only-upgrade".into(),
            "rsync".into()
        ]));
    }

    #[test]
    fn rpm_answers_are_read() {
        let dnf = Rpm {
            family: Family::Dnf,
            rpm: "rpm".into(),
            tool: "dnf".into(),
            options: vec![],
        };
        assert_eq!(
            dnf.parse(&finished(true, "bash\t5.1.8-6.el9\tx86_64\n")),
            Some(Installed {
                version: "5.1.8-6.el9".into(),
                arch: "x86_64".into()
            })
        );
        assert_eq!(
            dnf.parse(&finished(false, "package nosuch is not installed\n")),
            None
        );
        let install = dnf.change(Change::Install, "bash", Some("5.1.8"));
        assert_eq!(install.args, vec!["-y", "install", "bash-5.1.8"]);
        assert_eq!(
            dnf.change(Change::Purge, "bash", None).args,
            vec!["-y", "remove", "bash"]
        );
    }

    #[test]
    fn long_output_keeps_its_end() {
        let text = format!("{}end", "x".repeat(MAX_OUTPUT));
        assert!(tail(&text, MAX_OUTPUT).ends_with("end"));
        assert_eq!(tail(&text, MAX_OUTPUT).len(), MAX_OUTPUT);
        assert_eq!(tail("é", 1), "");
    }
}
