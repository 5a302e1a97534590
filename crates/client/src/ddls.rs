//! Where the client finds agent DDLs: built into muster for the built-in
//! agents, and as `<agent>.json` files in the directories named by
//! `plugin.external.agents_dir` (the same files nodes load external
//! agents from), so inputs are checked before anything is sent.

use std::path::{Path, PathBuf};
use std::time::Duration;

use muster_protocol::ddl::{self, Ddl, DdlError};

use crate::ClientConfig;

/// A DDL file the client found but cannot use, with its path.
#[derive(Debug, thiserror::Error)]
pub enum DdlFileError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The DDL file.
        path: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// The file is not a valid DDL.
    #[error("{}: {source}", path.display())]
    Parse {
        /// The DDL file.
        path: PathBuf,
        /// What is wrong with it.
        source: DdlError,
    },
}

/// The DDL of `agent`, if the client knows one.
pub fn ddl_for(config: &ClientConfig, agent: &str) -> Result<Option<Ddl>, DdlFileError> {
    Ok(locate(config, agent)?.map(|(ddl, _)| ddl))
}

/// The DDL of `agent` and the file it came from (`None`: built into
/// muster). A DDL file in `plugin.external.agents_dir` comes first, so an
/// external agent that replaces a built-in one on the nodes (see
/// `plugin.<agent>.activate_agent`) is validated and documented by its
/// own DDL.
pub fn locate(
    config: &ClientConfig,
    agent: &str,
) -> Result<Option<(Ddl, Option<PathBuf>)>, DdlFileError> {
    if muster_protocol::subject::is_valid_name(agent) && !agent.contains(['/', '.']) {
        for dir in &config.agent_dirs {
            for path in [
                dir.join(format!("{agent}.json")),
                dir.join(agent).join(format!("{agent}.json")),
            ] {
                if path.is_file() {
                    return read(&path).map(|ddl| Some((ddl, Some(path))));
                }
            }
        }
    }
    Ok(ddl::builtin(agent).map(|ddl| (ddl.clone(), None)))
}

/// Every DDL the client knows, sorted by agent name; a DDL file wins over
/// the built-in DDL of the same name, as in [`locate`].
pub fn all_ddls(config: &ClientConfig) -> Vec<Ddl> {
    let mut ddls: Vec<Ddl> = Vec::new();
    for dir in &config.agent_dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for path in paths {
            let path = match path.file_name() {
                Some(name) if path.is_dir() => {
                    let mut file = name.to_os_string();
                    file.push(".json");
                    path.join(file)
                }
                _ => path,
            };
            if path.extension().is_some_and(|e| e == "json") && path.is_file() {
                match read(&path) {
                    Ok(ddl) if !ddls.iter().any(|d| d.metadata.name == ddl.metadata.name) => {
                        ddls.push(ddl)
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!("{e}"),
                }
            }
        }
    }
    for ddl in ddl::builtin_names().into_iter().filter_map(ddl::builtin) {
        if !ddls.iter().any(|d| d.metadata.name == ddl.metadata.name) {
            ddls.push(ddl.clone());
        }
    }
    ddls.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    ddls
}

fn read(path: &Path) -> Result<Ddl, DdlFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| DdlFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Ddl::from_json(&text).map_err(|source| DdlFileError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

/// Added to a DDL's timeout when waiting for replies: the DDL says how
/// long the node may work, and the request and reply still travel.
pub const NETWORK_MARGIN: Duration = Duration::from_secs(2);

/// How long a call waits when the client has no DDL for its agent.
pub const UNKNOWN_AGENT_TIMEOUT: Duration = Duration::from_secs(10);

/// The timeout a built-in agent's DDL gives its actions.
pub fn builtin_timeout(agent: &str) -> Option<Duration> {
    ddl::builtin(agent).map(|d| Duration::from_secs(d.metadata.timeout))
}

/// How long a call to `agent` waits for replies unless told otherwise:
/// the DDL's timeout plus [`NETWORK_MARGIN`], or [`UNKNOWN_AGENT_TIMEOUT`]
/// for an agent without one (or whose DDL does not read).
pub fn call_timeout(config: &ClientConfig, agent: &str) -> Duration {
    match ddl_for(config, agent) {
        Ok(Some(ddl)) => Duration::from_secs(ddl.metadata.timeout) + NETWORK_MARGIN,
        _ => UNKNOWN_AGENT_TIMEOUT,
    }
}
