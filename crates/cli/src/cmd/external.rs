//! Custom applications: any executable `mco-NAME` on PATH runs as
//! `mco NAME ARGS...`, the way git and cargo find theirs. Built-in
//! applications win over PATH.
//!
//! The program replaces `mco` (exec), so its exit code, signals and
//! terminal are its own. It gets its arguments untouched (selectors
//! included: `mco hello -F role=web` runs `mco-hello -F role=web`) and two
//! variables: `MCO_CONFIG`, the client config to use (from `mco --config
//! FILE NAME`, else the inherited one, else the default file when it
//! exists), and `MCO_BIN`, this `mco`, for applications that call
//! `"$MCO_BIN" rpc ... --json`.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

/// What a custom application's program name starts with.
pub(crate) const PREFIX: &str = "mco-";

/// The variable naming the `mco` binary that started an application.
pub(crate) const BIN_ENV: &str = "MCO_BIN";

/// One `mco-NAME` program found on PATH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Application {
    /// What follows `mco` on the command line.
    pub name: String,
    pub path: PathBuf,
}

/// Every `mco-NAME` program on PATH, sorted by name; when a name is in
/// several directories, the first on PATH (the one that runs) is kept.
pub(crate) fn on_path() -> Vec<Application> {
    let mut found: Vec<Application> = Vec::new();
    for dir in path_dirs() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut here: Vec<Application> = entries
            .flatten()
            .filter_map(|entry| {
                let file = entry.file_name();
                let name = file.to_str()?.strip_prefix(PREFIX)?;
                let path = entry.path();
                (valid_name(name) && is_executable(&path)).then(|| Application {
                    name: name.to_string(),
                    path,
                })
            })
            .collect();
        here.retain(|app| !found.iter().any(|f| f.name == app.name));
        found.extend(here);
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    found
}

/// The `mco-NAME` program that `mco NAME` runs, if there is one.
pub(crate) fn find(name: &str) -> Option<PathBuf> {
    if !valid_name(name) {
        return None;
    }
    path_dirs()
        .into_iter()
        .map(|dir| dir.join(format!("{PREFIX}{name}")))
        .find(|path| is_executable(path))
}

/// Runs `argv` (the application's name, then its arguments) as
/// `mco-NAME`. Returns only when it cannot: no such program, or exec
/// failed.
pub(crate) fn run(argv: Vec<OsString>, cli: &clap::Command) -> anyhow::Result<u8> {
    let Some((name, args)) = argv.split_first() else {
        anyhow::bail!("no application named");
    };
    let name = name.to_string_lossy();
    let Some(program) = find(&name) else {
        anyhow::bail!(unknown(&name, cli));
    };
    let error = command(&program, args).exec();
    anyhow::bail!("cannot run {}: {error}", program.display())
}

/// `program ARGS` with the environment a custom application gets.
pub(crate) fn command(program: &Path, args: &[OsString]) -> std::process::Command {
    let mut command = std::process::Command::new(program);
    command.args(args);
    if let Ok(mco) = std::env::current_exe() {
        command.env(BIN_ENV, mco);
    }
    if std::env::var_os(muster_client::CONFIG_ENV).is_none() {
        let default = muster_client::default_dir().join("client.cfg");
        if default.is_file() {
            command.env(muster_client::CONFIG_ENV, default);
        }
    }
    command
}

/// The error for an application that is neither built in nor on PATH,
/// naming the applications whose names are close.
pub(crate) fn unknown(name: &str, cli: &clap::Command) -> String {
    let mut names: Vec<String> = cli
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .map(|c| c.get_name().to_string())
        .collect();
    names.extend(on_path().into_iter().map(|app| app.name));
    let similar = similar(name, &names);
    let mut message = format!(
        "{name:?} is not an mco application: it is not built in and there is no {PREFIX}{name} on PATH"
    );
    if !similar.is_empty() {
        message.push_str(&format!("\n\nSimilar applications: {}", similar.join(", ")));
    }
    message.push_str("\n\n`mco help` lists every application.");
    message
}

/// The names within a small edit distance of `name`, or starting with it,
/// closest first.
pub(crate) fn similar(name: &str, names: &[String]) -> Vec<String> {
    let limit = (name.chars().count() / 3).max(2);
    let mut close: Vec<(usize, &String)> = names
        .iter()
        .map(|candidate| {
            (
                muster_protocol::suggest::edit_distance(name, candidate),
                candidate,
            )
        })
        .filter(|(d, candidate)| *d <= limit || (name.len() >= 2 && candidate.starts_with(name)))
        .collect();
    close.sort();
    close.dedup_by(|a, b| a.1 == b.1);
    close.into_iter().map(|(_, n)| n.clone()).collect()
}

/// A name `mco NAME` can run: no path separators, nothing hidden.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with(['.', '-']) && !name.contains('/')
}

fn path_dirs() -> Vec<PathBuf> {
    std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .filter(|dir| !dir.as_os_str().is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// A regular file (after symlinks) that someone may execute.
fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn similar_names_closest_first() {
        let names: Vec<String> = ["ping", "plugin", "puppet", "rpc", "find", "facts"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(similar("pign", &names), ["ping"]);
        assert_eq!(similar("pupet", &names), ["puppet"]);
        assert_eq!(similar("plugi", &names), ["plugin"]);
        assert_eq!(similar("rcp", &names), ["rpc"]);
        assert!(similar("nosuchapp", &names).is_empty());
    }

    #[test]
    fn names_that_could_escape_path_lookup_are_refused() {
        assert!(valid_name("hello"));
        assert!(!valid_name("../hello"));
        assert!(!valid_name(".hidden"));
        assert!(!valid_name(""));
    }
}
