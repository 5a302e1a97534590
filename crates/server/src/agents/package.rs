//! `package`: query, install, update and remove packages with the node's
//! own package tools, with the whole action set of the MCollective/Choria
//! package agent: `status`, `install`, `update`, `uninstall`, `purge`,
//! `search`, `count`, `md5`, `checkupdates`, `refresh`, `apt_update`,
//! `apt_checkupdates`, `yum_clean` and `yum_checkupdates`.
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
//! | `plugin.package.dpkg_query`, `.apt_get`, `.apt_cache`, `.rpm`, `.dnf`, `.yum` | the tools' paths (default: found on `PATH`) |
//! | `plugin.package.apt_options` | extra `apt-get` arguments, space-separated (`-o`/`-c` ones reach `apt-cache` too) |
//! | `plugin.package.yum_options` | extra `dnf`/`yum` arguments, space-separated |
//! | `plugin.package.yum_clean_mode` | what `yum_clean` cleans when the request names no mode (default `all`) |
//!
//! The `apt_*` actions need the apt tools and the `yum_*` ones yum or dnf,
//! whichever provider answers the package actions; on a node without them
//! they fail with status 1, as upstream's do on the other family.

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

/// What `yum clean` may clean, as upstream's DDL lists them.
const YUM_CLEAN_MODES: [&str; 7] = [
    "all",
    "headers",
    "packages",
    "metadata",
    "dbcache",
    "plugins",
    "expire-cache",
];

/// The most a listing tool (`dpkg-query -l`, `rpm -qa`, a search) may
/// print; all of it is read, so `count` and `md5` see every package.
const MAX_LISTING: usize = 64 * 1024 * 1024;

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
    apt_cache: PathBuf,
    apt_options: Vec<String>,
    rpm: PathBuf,
    dnf: PathBuf,
    yum: PathBuf,
    yum_options: Vec<String>,
    yum_clean_mode: String,
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
        let yum_clean_mode = match settings.get("plugin.package.yum_clean_mode") {
            None => "all".to_string(),
            Some(mode) if YUM_CLEAN_MODES.contains(&mode) => mode.to_string(),
            Some(mode) => {
                return Err(settings.error(
                    "plugin.package.yum_clean_mode",
                    format!(
                        "unknown yum clean mode {mode:?} (known: {})",
                        YUM_CLEAN_MODES.join(", ")
                    ),
                ))
            }
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
                apt_cache: tool("plugin.package.apt_cache", "apt-cache"),
                apt_options: options("plugin.package.apt_options"),
                rpm: tool("plugin.package.rpm", "rpm"),
                dnf: tool("plugin.package.dnf", "dnf"),
                yum: tool("plugin.package.yum", "yum"),
                yum_options: options("plugin.package.yum_options"),
                yum_clean_mode,
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
        let task = match Task::from_request(action, &request.data, &self.settings) {
            Ok(task) => task,
            Err(e) => return ready(Err(e)),
        };
        let settings = Arc::clone(&self.settings);
        let action = action.to_string();
        Box::pin(async move {
            let at = Instant::now() + settings.timeout;
            let provider = select(&settings, &action).await?;
            let deadline = Deadline {
                at,
                timed_out: format!(
                    "{} {action} timed out after {} s",
                    provider.name(),
                    settings.timeout.as_secs()
                ),
            };
            match task {
                Task::Package(change, inputs) => run(&*provider, change, &inputs, &deadline).await,
                Task::Search(package) => search(&*provider, &package, &deadline).await,
                Task::Count => listing(&*provider, &deadline, false).await,
                Task::Md5 => listing(&*provider, &deadline, true).await,
                Task::CheckUpdates => check_updates(&*provider, &deadline).await,
                Task::Refresh => refresh(&*provider, &deadline).await,
                Task::YumClean(mode) => {
                    let Some(clean) = provider.clean(&mode) else {
                        return Err(ActionError::new(
                            StatusCode::Aborted,
                            format!("the {} provider has no yum clean", provider.name()),
                        ));
                    };
                    let done = step(&*provider, &clean, &deadline).await?;
                    Ok(json!({ "output": done.output(), "exitcode": done.code }))
                }
            }
        })
    }
}

/// One request, its inputs checked.
enum Task {
    /// `status`, or a change to one package.
    Package(Option<Change>, Inputs),
    Search(String),
    Count,
    Md5,
    /// `checkupdates`, `apt_checkupdates`, `yum_checkupdates`.
    CheckUpdates,
    /// `refresh`, `apt_update`.
    Refresh,
    YumClean(String),
}

impl Task {
    fn from_request(
        action: &str,
        data: &Map<String, Value>,
        settings: &Settings,
    ) -> Result<Task, ActionError> {
        let change = match action {
            "status" => None,
            "install" => Some(Change::Install),
            "update" => Some(Change::Update),
            "uninstall" => Some(Change::Uninstall),
            "purge" => Some(Change::Purge),
            "search" => return Inputs::package(data).map(Task::Search),
            "count" => return Ok(Task::Count),
            "md5" => return Ok(Task::Md5),
            "checkupdates" | "apt_checkupdates" | "yum_checkupdates" => {
                return Ok(Task::CheckUpdates)
            }
            "refresh" | "apt_update" => return Ok(Task::Refresh),
            "yum_clean" => return clean_mode(data, settings).map(Task::YumClean),
            other => return Err(ActionError::unknown_action("package", other)),
        };
        Inputs::from_data(data, change == Some(Change::Install)).map(|i| Task::Package(change, i))
    }
}

/// The `mode` of `yum_clean`: one of [`YUM_CLEAN_MODES`], else the
/// configured default. A one-element list is taken as its element, as a
/// `list` input may arrive either way.
fn clean_mode(data: &Map<String, Value>, settings: &Settings) -> Result<String, ActionError> {
    let mode = match data.get("mode") {
        None | Some(Value::Null) => return Ok(settings.yum_clean_mode.clone()),
        Some(Value::String(mode)) => mode.as_str(),
        Some(Value::Array(items)) if items.len() == 1 && items[0].is_string() => {
            items[0].as_str().unwrap_or_default()
        }
        Some(_) => return Err(ActionError::invalid("input \"mode\" must be a string")),
    };
    if YUM_CLEAN_MODES.contains(&mode) {
        Ok(mode.to_string())
    } else {
        Err(ActionError::invalid(format!(
            "input \"mode\" must be one of {}, got {:?}",
            YUM_CLEAN_MODES.join(", "),
            shown(mode)
        )))
    }
}

/// The checked inputs of one request.
struct Inputs {
    package: String,
    version: Option<String>,
}

impl Inputs {
    /// The `package` input: a name no tool can take for an option.
    fn package(data: &Map<String, Value>) -> Result<String, ActionError> {
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
        Ok(package)
    }

    fn from_data(data: &Map<String, Value>, takes_version: bool) -> Result<Inputs, ActionError> {
        let package = Inputs::package(data)?;
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
    /// All of stdout is needed (a listing), not only its end.
    whole: bool,
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
    /// The command that lists every package.
    fn list(&self) -> Invocation;
    /// The lines of the listing that are installed packages (`count`).
    fn installed<'a>(&self, listing: &'a str) -> Vec<&'a str>;
    /// The text `md5` digests, as upstream's provider digests it.
    fn digested(&self, listing: &str) -> String;
    /// The command that finds the versions a repository offers.
    fn search(&self, package: &str) -> Invocation;
    /// What the search found; `None` when it failed.
    fn found(&self, answer: &Finished) -> Option<Vec<Available>>;
    /// The command that lists available upgrades without making them.
    fn check_updates(&self) -> Invocation;
    /// Whether the check ran (yum exits 100 when there are updates).
    fn updates_checked(&self, code: Option<i32>) -> bool;
    /// The upgrades in the check's output.
    fn outdated(&self, stdout: &str) -> Vec<Available>;
    /// The command that refreshes the repository metadata.
    fn refresh(&self) -> Invocation;
    /// `yum clean <mode>`; `None` for providers without one.
    fn clean(&self, mode: &str) -> Option<Invocation>;
}

/// A package version a repository offers.
#[derive(Debug, Clone, PartialEq)]
struct Available {
    package: String,
    version: String,
    repo: String,
}

impl Available {
    fn to_json(&self) -> Value {
        json!({ "package": self.package, "version": self.version, "repo": self.repo })
    }
}

/// Debian's dpkg and apt.
struct Apt {
    dpkg_query: PathBuf,
    apt_get: PathBuf,
    apt_cache: PathBuf,
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
            whole: false,
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
            env: APT_ENV.to_vec(),
            whole: false,
        }
    }

    fn list(&self) -> Invocation {
        Invocation {
            program: self.dpkg_query.clone(),
            args: vec!["--list".into()],
            env: vec![("LC_ALL", "C")],
            whole: true,
        }
    }

    fn installed<'a>(&self, listing: &'a str) -> Vec<&'a str> {
        listing.lines().filter(|l| l.starts_with("ii")).collect()
    }

    fn digested(&self, listing: &str) -> String {
        // As upstream: the installed lines only, so a removed package's
        // leftover configuration does not change the digest.
        self.installed(listing).join("\n")
    }

    fn search(&self, package: &str) -> Invocation {
        let mut args = cache_options(&self.options);
        args.extend(["madison".into(), package.into()]);
        Invocation {
            program: self.apt_cache.clone(),
            args,
            env: vec![("LC_ALL", "C")],
            whole: true,
        }
    }

    fn found(&self, answer: &Finished) -> Option<Vec<Available>> {
        if !answer.success {
            return None;
        }
        // `name | version | origin Packages`; source lines end in Sources.
        Some(
            answer
                .stdout
                .lines()
                .filter_map(|line| match line.split(" | ").collect::<Vec<_>>()[..] {
                    [name, version, origin] if origin.trim_end().ends_with("Packages") => {
                        Some(Available {
                            package: name.trim().into(),
                            version: version.trim().into(),
                            repo: origin.trim().trim_end_matches("Packages").trim_end().into(),
                        })
                    }
                    _ => None,
                })
                .collect(),
        )
    }

    fn check_updates(&self) -> Invocation {
        self.apt_get(&["--simulate", "dist-upgrade"])
    }

    fn updates_checked(&self, code: Option<i32>) -> bool {
        code == Some(0)
    }

    fn outdated(&self, stdout: &str) -> Vec<Available> {
        stdout.lines().filter_map(simulated_upgrade).collect()
    }

    fn refresh(&self) -> Invocation {
        self.apt_get(&["update"])
    }

    fn clean(&self, _mode: &str) -> Option<Invocation> {
        None
    }
}

/// What apt tools run with besides the daemon's environment.
const APT_ENV: [(&str, &str); 3] = [
    ("DEBIAN_FRONTEND", "noninteractive"),
    ("APT_LISTCHANGES_FRONTEND", "none"),
    ("LC_ALL", "C"),
];

impl Apt {
    /// `apt-get` with the configured options, quiet, then `args`.
    fn apt_get(&self, args: &[&str]) -> Invocation {
        let mut all = self.options.clone();
        all.push("-q".into());
        all.extend(args.iter().map(|a| a.to_string()));
        Invocation {
            program: self.apt_get.clone(),
            args: all,
            env: APT_ENV.to_vec(),
            whole: false,
        }
    }
}

/// The configuration options among `apt-get`'s (`-o x=y`, `-c file` and
/// their joined forms), which `apt-cache` understands too; others, such as
/// `--no-install-recommends`, it would refuse.
fn cache_options(options: &[String]) -> Vec<String> {
    let mut kept = Vec::new();
    let mut options = options.iter();
    while let Some(option) = options.next() {
        match option.as_str() {
            "-o" | "-c" | "--option" | "--config-file" => {
                kept.push(option.clone());
                kept.extend(options.next().cloned());
            }
            o if o.starts_with("-o")
                || o.starts_with("-c")
                || o.starts_with("--option=")
                || o.starts_with("--config-file=") =>
            {
                kept.push(option.clone())
            }
            _ => {}
        }
    }
    kept
}

/// An upgrade in `apt-get --simulate` output, read as upstream does:
/// `Inst name [installed] (candidate origin [arch])`. New packages (no
/// installed version in brackets) are not outdated ones.
fn simulated_upgrade(line: &str) -> Option<Available> {
    let rest = line.strip_prefix("Inst ")?;
    let (package, rest) = rest.split_once(" [")?;
    let (_, rest) = rest.split_once("] (")?;
    let (version, rest) = rest.split_once(char::is_whitespace)?;
    let repo = &rest[..rest.find(')')?];
    Some(Available {
        package: package.trim().into(),
        version: version.trim().into(),
        repo: repo.trim().into(),
    })
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
            whole: false,
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
            whole: false,
        }
    }

    fn list(&self) -> Invocation {
        Invocation {
            program: self.rpm.clone(),
            args: vec!["-qa".into()],
            env: vec![("LC_ALL", "C")],
            whole: true,
        }
    }

    fn installed<'a>(&self, listing: &'a str) -> Vec<&'a str> {
        listing.lines().filter(|l| !l.is_empty()).collect()
    }

    fn digested(&self, listing: &str) -> String {
        listing.to_string()
    }

    fn search(&self, package: &str) -> Invocation {
        let mut invocation = self.tool(&["list", "available", package]);
        invocation.whole = true;
        invocation
    }

    fn found(&self, answer: &Finished) -> Option<Vec<Available>> {
        // dnf and yum exit 1 when nothing matches.
        let nothing = answer.code == Some(1) && answer.output().contains("No matching Packages");
        if !answer.success && !nothing {
            return None;
        }
        Some(rpm_table(&answer.stdout))
    }

    fn check_updates(&self) -> Invocation {
        self.tool(&["check-update"])
    }

    fn updates_checked(&self, code: Option<i32>) -> bool {
        // 100: there are updates; 0: there are none.
        matches!(code, Some(0 | 100))
    }

    fn outdated(&self, stdout: &str) -> Vec<Available> {
        let before_obsoletes = stdout
            .split("\nObsoleting Packages")
            .next()
            .unwrap_or_default();
        rpm_table(before_obsoletes)
    }

    fn refresh(&self) -> Invocation {
        // As upstream: fresh metadata is fetched by the check that follows.
        self.tool(&["clean", "metadata"])
    }

    fn clean(&self, mode: &str) -> Option<Invocation> {
        Some(self.tool(&["clean", mode]))
    }
}

impl Rpm {
    /// dnf or yum with the configured options, quiet, then `args`.
    fn tool(&self, args: &[&str]) -> Invocation {
        let mut all = self.options.clone();
        all.push("-q".into());
        all.extend(args.iter().map(|a| a.to_string()));
        Invocation {
            program: self.tool.clone(),
            args: all,
            env: vec![("LC_ALL", "C")],
            whole: false,
        }
    }
}

/// `name.arch  version  repo` lines of `yum list` and `yum check-update`;
/// headings and wrapped lines have another shape and are skipped.
fn rpm_table(text: &str) -> Vec<Available> {
    text.lines()
        .filter_map(
            |line| match line.split_whitespace().collect::<Vec<_>>()[..] {
                [package, version, repo] if package.contains('.') && !line.ends_with(':') => {
                    Some(Available {
                        package: package.into(),
                        version: version.into(),
                        repo: repo.into(),
                    })
                }
                _ => None,
            },
        )
        .collect()
}

fn provider(settings: &Settings, family: Family) -> Box<dyn Provider> {
    match family {
        Family::Apt => Box::new(Apt {
            dpkg_query: settings.dpkg_query.clone(),
            apt_get: settings.apt_get.clone(),
            apt_cache: settings.apt_cache.clone(),
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

/// The providers that may answer `action`: those of its family for the
/// `apt_*` and `yum_*` actions, else the configured one or all.
fn families(settings: &Settings, action: &str) -> Vec<Family> {
    if action.starts_with("apt_") {
        vec![Family::Apt]
    } else if action.starts_with("yum_") {
        match settings.provider {
            Some(family @ (Family::Dnf | Family::Yum)) => vec![family],
            _ => vec![Family::Dnf, Family::Yum],
        }
    } else {
        match settings.provider {
            Some(family) => vec![family],
            None => Family::ALL.to_vec(),
        }
    }
}

/// The first provider for `action` whose tools are all here; its tools
/// resolved to full paths.
async fn select(settings: &Settings, action: &str) -> Result<Box<dyn Provider>, ActionError> {
    let families = families(settings, action);
    let mut missing = Vec::new();
    for &family in &families {
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
    let message = if action.starts_with("apt_") || action.starts_with("yum_") {
        let names: Vec<&str> = families.iter().map(|f| f.name()).collect();
        format!(
            "cannot find {} on this node, which {action} needs ({})",
            names.join(" or "),
            missing.join("; ")
        )
    } else {
        let why = match settings.provider {
            Some(family) => format!("plugin.package.provider is {}, but", family.name()),
            None => "none detected:".to_string(),
        };
        format!("{NO_PROVIDER} ({why} {})", missing.join("; "))
    };
    Err(ActionError::new(StatusCode::Aborted, message))
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
    let (ensure, arch) = match installed {
        Some(found) => (found.version.as_str(), found.arch.as_str()),
        None => (gone.unwrap_or("absent"), ""),
    };
    let (epoch, version, release) = match installed {
        Some(found) => split_version(&found.version),
        None => ("", "", ""),
    };
    json!({
        "name": package,
        "ensure": ensure,
        "epoch": epoch,
        "version": version,
        "release": release,
        "arch": arch,
        "provider": provider.name(),
        "output": output,
    })
}

/// `[epoch:]version[-release]` in its parts, the epoch `0` when not
/// written, as rpm and dpkg both read it (dpkg calls the release the
/// Debian revision: what follows the last `-`).
fn split_version(full: &str) -> (&str, &str, &str) {
    let (epoch, rest) = match full.split_once(':') {
        Some((epoch, rest)) if !epoch.is_empty() && epoch.bytes().all(|b| b.is_ascii_digit()) => {
            (epoch, rest)
        }
        _ => ("0", full),
    };
    match rest.rsplit_once('-') {
        Some((version, release)) => (epoch, version, release),
        None => (epoch, rest, ""),
    }
}

/// Runs `invocation`, which must succeed: on failure its exit code and
/// output go back with status 1.
async fn step(
    provider: &dyn Provider,
    invocation: &Invocation,
    deadline: &Deadline,
) -> Result<Finished, ActionError> {
    let done = execute(invocation, deadline).await?;
    if done.success {
        return Ok(done);
    }
    Err(failed(provider, invocation, &done))
}

/// A tool that ran but failed: status 1, with its exit code and output.
fn failed(provider: &dyn Provider, invocation: &Invocation, done: &Finished) -> ActionError {
    let words: Vec<&str> = invocation
        .args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with('-'))
        .filter(|a| !a.contains('='))
        .collect();
    let tool = invocation
        .program
        .file_name()
        .map_or_else(|| provider.name().into(), |n| n.to_string_lossy());
    ActionError::new(
        StatusCode::Aborted,
        format!(
            "{tool} {} failed ({}): {}",
            words.join(" "),
            exit_status(done),
            done.output()
        ),
    )
    .with_data(json!({ "exitcode": done.code, "output": done.output() }))
}

/// `search`: the versions the repositories offer.
async fn search(
    provider: &dyn Provider,
    package: &str,
    deadline: &Deadline,
) -> Result<Value, ActionError> {
    let invocation = provider.search(package);
    let done = execute(&invocation, deadline).await?;
    let Some(found) = provider.found(&done) else {
        return Err(failed(provider, &invocation, &done));
    };
    Ok(json!({
        "package_count": found.len(),
        "available_packages": found.iter().map(Available::to_json).collect::<Vec<_>>(),
    }))
}

/// `count` (how many packages are installed) or `md5` (a digest of their
/// list, equal on nodes with the same packages at the same versions).
async fn listing(
    provider: &dyn Provider,
    deadline: &Deadline,
    digest: bool,
) -> Result<Value, ActionError> {
    use md5::{Digest, Md5};
    let done = step(provider, &provider.list(), deadline).await?;
    let output = if digest {
        Md5::digest(provider.digested(&done.stdout).as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    } else {
        // A string, as upstream's agent answers.
        provider.installed(&done.stdout).len().to_string()
    };
    Ok(json!({ "output": output, "exitcode": done.code }))
}

/// `checkupdates` and the family ones: the upgrades the repositories
/// offer, changing nothing.
async fn check_updates(provider: &dyn Provider, deadline: &Deadline) -> Result<Value, ActionError> {
    let invocation = provider.check_updates();
    let done = execute(&invocation, deadline).await?;
    if !provider.updates_checked(done.code) {
        return Err(failed(provider, &invocation, &done));
    }
    let outdated: Vec<Value> = provider
        .outdated(&done.stdout)
        .iter()
        .map(Available::to_json)
        .collect();
    Ok(json!({
        "package_manager": provider.name(),
        "output": done.output(),
        "outdated_packages": outdated,
        "exitcode": done.code,
    }))
}

/// `refresh` and `apt_update`: fresh repository metadata, then, as
/// upstream, the check for updates against it.
async fn refresh(provider: &dyn Provider, deadline: &Deadline) -> Result<Value, ActionError> {
    step(provider, &provider.refresh(), deadline).await?;
    check_updates(provider, deadline).await
}

/// Runs a tool to completion; at the deadline its whole process group
/// (apt-get starts dpkg and maintainer scripts) is killed.
async fn execute(invocation: &Invocation, deadline: &Deadline) -> Result<Finished, ActionError> {
    let program = locate(&invocation.program)
        .await
        .unwrap_or_else(|| invocation.program.clone());
    let mut tool = command::Invocation::new(&program)
        .args(&invocation.args)
        .envs(invocation.env.iter().copied());
    if invocation.whole {
        tool = tool.stdout_limit(MAX_LISTING);
    }
    let aborted = |message: String| ActionError::new(StatusCode::Aborted, message);
    match command::run(&tool, deadline.at).await {
        Ok(done) if done.overflowed => Err(aborted(format!(
            "{} printed more than {} MiB",
            program.display(),
            MAX_LISTING >> 20
        ))),
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
            apt_cache: "apt-cache".into(),
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
    fn versions_split_into_epoch_version_and_release() {
        assert_eq!(split_version("1.0"), ("0", "1.0", ""));
        assert_eq!(split_version("3.2.7-1"), ("0", "3.2.7", "1"));
        assert_eq!(split_version("2:9.0.1378-2"), ("2", "9.0.1378", "2"));
        assert_eq!(
            split_version("1:2.3-4-5+deb12u1"),
            ("1", "2.3-4", "5+deb12u1")
        );
        assert_eq!(split_version("5.1.8-6.el9"), ("0", "5.1.8", "6.el9"));
    }

    #[test]
    fn apt_simulations_and_madison_are_read_as_upstream_reads_them() {
        let upgrade = simulated_upgrade(
            "Inst emacs23 [23.1+1-4ubuntu7] (23.1+1-4ubuntu7.1 Ubuntu:10.04/lucid-updates) []",
        );
        assert_eq!(
            upgrade,
            Some(Available {
                package: "emacs23".into(),
                version: "23.1+1-4ubuntu7.1".into(),
                repo: "Ubuntu:10.04/lucid-updates".into(),
            })
        );
        // A new package has no installed version: not an outdated one.
        assert_eq!(
            simulated_upgrade("Inst libfoo1 (1.2-1 Debian:12.5/stable [amd64])"),
            None
        );
        assert_eq!(simulated_upgrade("Conf emacs23 (23.1 Ubuntu [all])"), None);

        let apt = Apt {
            dpkg_query: "dpkg-query".into(),
            apt_get: "apt-get".into(),
            apt_cache: "apt-cache".into(),
            options: vec![],
        };
        let found = apt
            .found(&finished(
                true,
                "      bash | 5.2.15-2+b7 | http://deb.debian.org/debian bookworm/main amd64 Packages\n      bash | 5.2.15-2 | http://deb.debian.org/debian bookworm/main Sources\n",
            ))
            .expect("a search");
        assert_eq!(
            found,
            vec![Available {
                package: "bash".into(),
                version: "5.2.15-2+b7".into(),
                repo: "http://deb.debian.org/debian bookworm/main amd64".into(),
            }]
        );
        assert_eq!(apt.found(&finished(false, "")), None);
    }

    #[test]
    fn apt_cache_gets_only_configuration_options() {
        let options: Vec<String> = [
            "-o",
            "Dir::Etc::SourceList=/x",
            "--no-install-recommends",
            "-oAcquire::Languages=none",
            "-c",
            "/etc/apt/x.conf",
            "--option=A=b",
            "-t",
            "bookworm-backports",
        ]
        .map(String::from)
        .into();
        assert_eq!(
            cache_options(&options),
            [
                "-o",
                "Dir::Etc::SourceList=/x",
                "-oAcquire::Languages=none",
                "-c",
                "/etc/apt/x.conf",
                "--option=A=b"
            ]
        );
    }

    #[test]
    fn yum_tables_skip_headings_and_obsoletes() {
        let dnf = Rpm {
            family: Family::Dnf,
            rpm: "rpm".into(),
            tool: "dnf".into(),
            options: vec![],
        };
        let text = "\nLast metadata expiration check: 0:01:02 ago.\nbash.x86_64  5.1.8-9.el9  baseos\nObsoleting Packages\ngrub2-tools.x86_64  1:2.06-70.el9  baseos\n";
        assert_eq!(
            dnf.outdated(text),
            vec![Available {
                package: "bash.x86_64".into(),
                version: "5.1.8-9.el9".into(),
                repo: "baseos".into(),
            }]
        );
        assert!(dnf.updates_checked(Some(100)));
        assert!(dnf.updates_checked(Some(0)));
        assert!(!dnf.updates_checked(Some(1)));
        assert_eq!(dnf.installed("a-1.x86_64\n\nb-2.noarch\n").len(), 2);
        let mut none = finished(false, "");
        none.stderr = "Error: No matching Packages to list".into();
        assert_eq!(dnf.found(&none), Some(vec![]));
    }

    #[test]
    fn long_output_keeps_its_end() {
        let text = format!("{}end", "x".repeat(MAX_OUTPUT));
        assert!(tail(&text, MAX_OUTPUT).ends_with("end"));
        assert_eq!(tail(&text, MAX_OUTPUT).len(), MAX_OUTPUT);
        assert_eq!(tail("é", 1), "");
    }
}
