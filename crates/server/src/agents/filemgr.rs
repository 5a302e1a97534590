//! `filemgr`: MCollective's file manager — status, touch and remove one file.
//!
//! `status` is the `fstat` data plugin's answer plus the owner and group
//! names and a SHA-256 digest. Paths must be absolute. With
//! `plugin.filemgr.allowed_paths` set (comma-separated directories) the
//! agent only acts inside those trees: a path containing `..`, or whose
//! real location (symlinks resolved) lies elsewhere, is refused with
//! status 4, so a symlink cannot lead it out of bounds. All file work runs
//! on the blocking pool.

use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use muster_protocol::config::{Config, ConfigError};
use muster_protocol::ddl::Ddl;
use muster_protocol::{Request, StatusCode};
use serde_json::{json, Map, Value};
use sha2::Sha256;

use crate::agent::{ready, ActionError, ActionFuture, Agent};
use crate::Node;

/// Longest path accepted, as the DDL says.
const MAX_PATH: usize = 512;

const ALLOWED_PATHS: &str = "plugin.filemgr.allowed_paths";

/// MCollective's filemgr agent.
pub(super) struct Filemgr {
    /// Directories the agent may act in; empty means anywhere.
    allowed: Arc<Vec<PathBuf>>,
}

impl Filemgr {
    /// Reads `plugin.filemgr.allowed_paths`; every entry must be absolute.
    pub(super) fn from_settings(settings: &Config) -> Result<Filemgr, ConfigError> {
        let mut allowed = Vec::new();
        for entry in settings.list(ALLOWED_PATHS) {
            let path = PathBuf::from(&entry);
            if !path.is_absolute() || has_dot_dot(&path) {
                return Err(settings.error(
                    ALLOWED_PATHS,
                    format!("{entry:?} must be an absolute path without '..'"),
                ));
            }
            allowed.push(path);
        }
        Ok(Filemgr {
            allowed: Arc::new(allowed),
        })
    }
}

impl Agent for Filemgr {
    fn ddl(&self) -> &Ddl {
        muster_protocol::ddl::builtin("filemgr").expect("the filemgr DDL is built in")
    }

    fn call(&self, _node: &Node, action: &str, request: &Request) -> ActionFuture {
        let run: fn(&str) -> Result<Value, ActionError> = match action {
            "status" => status,
            "touch" => touch,
            "remove" => remove,
            other => return ready(Err(ActionError::unknown_action("filemgr", other))),
        };
        let file = match file_input(&request.data) {
            Ok(file) => file,
            Err(e) => return ready(Err(e)),
        };
        let allowed = Arc::clone(&self.allowed);
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                check_allowed(&file, &allowed)?;
                run(&file)
            })
            .await
            .map_err(|e| ActionError::new(StatusCode::UnknownError, format!("filemgr: {e}")))?
        })
    }
}

/// The `file` input: an absolute path of at most 512 characters.
fn file_input(data: &Map<String, Value>) -> Result<String, ActionError> {
    let file = match data.get("file") {
        None | Some(Value::Null) => return Err(ActionError::missing("file")),
        Some(Value::String(file)) => file,
        Some(_) => return Err(ActionError::invalid("input \"file\" must be a string")),
    };
    if file.chars().count() > MAX_PATH {
        return Err(ActionError::invalid(format!(
            "input \"file\" is longer than {MAX_PATH} characters"
        )));
    }
    if !file.starts_with('/') || file.len() < 2 {
        return Err(ActionError::invalid(format!(
            "input \"file\" must be an absolute path, got {file:?}"
        )));
    }
    if file.contains('\0') {
        return Err(ActionError::invalid("input \"file\" contains a NUL byte"));
    }
    Ok(file.clone())
}

fn has_dot_dot(path: &Path) -> bool {
    path.components().any(|c| c == Component::ParentDir)
}

/// Refuses, with status 4, a path outside `allowed` (when it is not empty),
/// judged both as written and with symlinks resolved.
fn check_allowed(file: &str, allowed: &[PathBuf]) -> Result<(), ActionError> {
    if allowed.is_empty() {
        return Ok(());
    }
    let path = Path::new(file);
    let refused = || {
        let list: Vec<String> = allowed.iter().map(|p| p.display().to_string()).collect();
        ActionError::invalid(format!(
            "{file} is outside {ALLOWED_PATHS} ({})",
            list.join(", ")
        ))
    };
    if has_dot_dot(path) {
        return Err(ActionError::invalid(format!(
            "{file} contains '..', which {ALLOWED_PATHS} does not allow"
        )));
    }
    if !allowed.iter().any(|dir| path.starts_with(dir)) {
        return Err(refused());
    }
    let real = real_location(path).map_err(|e| {
        ActionError::new(StatusCode::Aborted, format!("cannot resolve {file}: {e}"))
    })?;
    let inside = allowed.iter().any(|dir| {
        let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.clone());
        real.starts_with(dir)
    });
    if inside {
        Ok(())
    } else {
        Err(refused())
    }
}

/// Where `path` really is: its own resolution when it exists (following a
/// final symlink, as touch does), else its parent's plus its name.
fn real_location(path: &Path) -> std::io::Result<PathBuf> {
    match std::fs::canonicalize(path) {
        Ok(real) => Ok(real),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
                return Err(e);
            };
            match std::fs::canonicalize(parent) {
                Ok(parent) => Ok(parent.join(name)),
                // Nothing there to escape through: judge it as written.
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(path.to_path_buf()),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

fn aborted(message: String) -> ActionError {
    ActionError::new(StatusCode::Aborted, message)
}

fn status(file: &str) -> Result<Value, ActionError> {
    let mut result = crate::data::fstat(file).map_err(|e| aborted(e.to_string()))?;
    let present = result.get("present") == Some(&json!(1));
    if !present {
        result.insert("owner".into(), json!(""));
        result.insert("group".into(), json!(""));
        result.insert("sha256".into(), json!(0));
        return Ok(Value::Object(result));
    }
    let id = |key: &str| result.get(key).and_then(Value::as_u64).unwrap_or(0);
    let (uid, gid) = (id("uid"), id("gid"));
    result.insert("owner".into(), json!(name_of("/etc/passwd", uid)));
    result.insert("group".into(), json!(name_of("/etc/group", gid)));
    let sha256 = if result.get("type") == Some(&json!("file")) {
        // Bounded as fstat's md5: too big, or a kernel file, reports 0.
        match crate::data::digest::<Sha256>(Path::new(file))
            .map_err(|e| aborted(format!("{file}: sha256: {e}")))?
        {
            crate::data::Hashed::Hex(hex) => json!(hex),
            crate::data::Hashed::Skipped(_) => json!(0),
        }
    } else {
        json!(0)
    };
    result.insert("sha256".into(), sha256);
    Ok(Value::Object(result))
}

/// The name `id` has in a passwd-style file (`name:x:id:...`), or the id
/// itself when the file has no entry for it.
fn name_of(database: &str, id: u64) -> String {
    std::fs::read_to_string(database)
        .ok()
        .and_then(|text| lookup_name(&text, id))
        .unwrap_or_else(|| id.to_string())
}

fn lookup_name(text: &str, id: u64) -> Option<String> {
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let _password = fields.next()?;
        let number: u64 = fields.next()?.trim().parse().ok()?;
        (number == id && !name.is_empty()).then(|| name.to_string())
    })
}

fn touch(file: &str) -> Result<Value, ActionError> {
    let created = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(file)
    {
        Ok(_) => true,
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            set_times_to_now(file).map_err(|e| aborted(format!("cannot touch {file}: {e}")))?;
            false
        }
        Err(e) => return Err(aborted(format!("cannot create {file}: {e}"))),
    };
    Ok(json!({
        "name": file,
        "output": if created { "created" } else { "touched" },
    }))
}

/// Sets a path's access and modification times to now without opening it
/// (opening a FIFO or a device could block or have side effects).
fn set_times_to_now(file: &str) -> std::io::Result<()> {
    let now = rustix::fs::Timespec {
        tv_sec: 0,
        tv_nsec: rustix::fs::UTIME_NOW,
    };
    let times = rustix::fs::Timestamps {
        last_access: now,
        last_modification: now,
    };
    rustix::fs::utimensat(rustix::fs::CWD, file, &times, rustix::fs::AtFlags::empty())?;
    Ok(())
}

fn remove(file: &str) -> Result<Value, ActionError> {
    let meta = match std::fs::symlink_metadata(file) {
        Ok(meta) => meta,
        Err(e) if e.kind() == ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR) => {
            return Err(aborted(format!("cannot remove {file}: not present")))
        }
        Err(e) => return Err(aborted(format!("cannot remove {file}: {e}"))),
    };
    if meta.is_dir() {
        return Err(aborted(format!(
            "cannot remove {file}: it is a directory, and filemgr removes files only"
        )));
    }
    std::fs::remove_file(file).map_err(|e| aborted(format!("cannot remove {file}: {e}")))?;
    Ok(json!({ "name": file, "output": "removed" }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_passwd_style_lines() {
        let passwd =
            "root:x:0:0:root:/root:/bin/bash\n# comment\n\nbad line\ndaemon:x:1:1::/:/bin/false\n";
        assert_eq!(lookup_name(passwd, 0).as_deref(), Some("root"));
        assert_eq!(lookup_name(passwd, 1).as_deref(), Some("daemon"));
        assert_eq!(lookup_name(passwd, 7), None);
        assert_eq!(lookup_name("", 0), None);
    }

    #[test]
    fn file_input_wants_an_absolute_bounded_path() {
        let data = |v: Value| v.as_object().cloned().unwrap_or_default();
        assert_eq!(
            file_input(&data(json!({"file": "/tmp/x"}))).as_deref(),
            Ok("/tmp/x")
        );
        for bad in [
            json!({}),
            json!({"file": null}),
            json!({"file": 3}),
            json!({"file": "tmp/x"}),
            json!({"file": "/"}),
            json!({"file": ""}),
            json!({"file": "/a\0b"}),
            json!({"file": format!("/{}", "a".repeat(MAX_PATH))}),
        ] {
            let err = file_input(&data(bad.clone())).expect_err(&bad.to_string());
            assert!(
                matches!(err.code, StatusCode::InvalidData | StatusCode::MissingData),
                "{bad}: {err:?}"
            );
        }
    }
}
