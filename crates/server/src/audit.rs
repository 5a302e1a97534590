//! The audit log: one JSON line per request that reaches an agent.
//!
//! With `rpcaudit = 1` a node appends to `plugin.rpcaudit.logfile` a line
//! for every request that passed the security checks and whose filter
//! selected the node — allowed or denied by policy, valid or not — saying
//! who asked (the verified certificate name, and the caller the request claims),
//! what for, with which inputs, and what came of it. Refused messages
//! (untrusted, expired, replayed) have no authenticated caller; they are
//! counted in `daemon_stats` and logged instead.
//!
//! Each line is written with one `write_all` on a file opened for append
//! under a mutex, so lines from concurrent requests never interleave and
//! the async worker waits at most for one short write.
//!
//! ```
//! use muster_server::audit::Outcome;
//! assert_eq!(Outcome::Denied.as_str(), "denied");
//! assert_eq!(muster_server::audit::rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
//! ```

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use muster_protocol::config::{Config, ConfigError};
use muster_protocol::{Request, StatusCode};
use serde::Serialize;
use serde_json::{Map, Value};

/// Where the audit log goes and what it leaves out.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `plugin.rpcaudit.logfile`.
    pub file: PathBuf,
    /// `plugin.rpcaudit.redact`: input names whose values are logged as
    /// `"[redacted]"` (compared ignoring case).
    pub redact: Vec<String>,
}

/// The log file when `plugin.rpcaudit.logfile` is not set.
pub const DEFAULT_FILE: &str = "/var/log/muster/audit.log";

/// What a redacted input's value is replaced by.
pub const REDACTED: &str = "[redacted]";

impl Settings {
    /// The settings when `rpcaudit` is on, `None` when it is off.
    pub fn from_config(config: &Config) -> Result<Option<Settings>, ConfigError> {
        if !config.flag("rpcaudit")?.unwrap_or(false) {
            return Ok(None);
        }
        Ok(Some(Settings {
            file: config
                .get("plugin.rpcaudit.logfile")
                .unwrap_or(DEFAULT_FILE)
                .into(),
            redact: config.list("plugin.rpcaudit.redact"),
        }))
    }
}

/// What became of an audited request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The action ran and succeeded.
    Ok,
    /// The action ran and failed.
    Failed,
    /// The action policy refused it.
    Denied,
    /// An unknown agent or action, or inputs the DDL refuses; nothing ran.
    Invalid,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::Denied => "denied",
            Outcome::Invalid => "invalid",
        }
    }
}

/// One line, in the order its fields are written.
#[derive(Serialize)]
struct Line<'a> {
    time: String,
    request_id: &'a str,
    caller: &'a str,
    claimed_caller: &'a str,
    sender: &'a str,
    agent: &'a str,
    action: &'a str,
    data: Map<String, Value>,
    collective: &'a str,
    outcome: &'static str,
    statuscode: u8,
}

/// An open audit log.
pub struct AuditLog {
    path: PathBuf,
    file: Mutex<File>,
    redact: Vec<String>,
    failing: AtomicBool,
}

impl AuditLog {
    /// Opens (or creates) the log for appending; an error names the file.
    pub fn open(settings: &Settings) -> Result<AuditLog, String> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&settings.file)
            .map_err(|e| {
                format!(
                    "audit log {} (plugin.rpcaudit.logfile): {e}",
                    settings.file.display()
                )
            })?;
        Ok(AuditLog {
            path: settings.file.clone(),
            file: Mutex::new(file),
            redact: settings
                .redact
                .iter()
                .map(|name| name.to_ascii_lowercase())
                .collect(),
            failing: AtomicBool::new(false),
        })
    }

    /// Appends one line. `caller` is the verified certificate name,
    /// `claimed` what the request said, `inputs` the inputs as received.
    pub fn record(
        &self,
        request: &Request,
        caller: &str,
        claimed: &str,
        inputs: &Map<String, Value>,
        outcome: Outcome,
        statuscode: StatusCode,
    ) {
        let line = Line {
            time: rfc3339(muster_protocol::now_ms()),
            request_id: &request.id,
            caller,
            claimed_caller: claimed,
            sender: &request.sender,
            agent: &request.agent,
            action: &request.action,
            data: self.redacted(inputs),
            collective: &request.collective,
            outcome: outcome.as_str(),
            statuscode: statuscode.into(),
        };
        let mut text = match serde_json::to_string(&line) {
            Ok(text) => text,
            Err(e) => return self.failed(&e.to_string()),
        };
        text.push('\n');
        let result = {
            let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
            file.write_all(text.as_bytes())
        };
        match result {
            Ok(()) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(file = %self.path.display(), "audit log writable again");
                }
            }
            Err(e) => self.failed(&e.to_string()),
        }
    }

    fn redacted(&self, inputs: &Map<String, Value>) -> Map<String, Value> {
        inputs
            .iter()
            .map(|(name, value)| {
                if self.redact.contains(&name.to_ascii_lowercase()) {
                    (name.clone(), Value::String(REDACTED.to_string()))
                } else {
                    (name.clone(), value.clone())
                }
            })
            .collect()
    }

    /// Logs the first failure of a run of them at error, the rest at debug.
    fn failed(&self, error: &str) {
        if self.failing.swap(true, Ordering::Relaxed) {
            tracing::debug!(file = %self.path.display(), error, "cannot write the audit log");
        } else {
            tracing::error!(file = %self.path.display(), error, "cannot write the audit log");
        }
    }
}

/// Unix milliseconds as RFC 3339 in UTC, to the millisecond.
pub fn rfc3339(ms: u64) -> String {
    let seconds = i64::try_from(ms / 1000).unwrap_or(i64::MAX / 4);
    let date_time = muster_protocol::time::utc(seconds).replacen(' ', "T", 1);
    format!("{date_time}.{:03}Z", ms % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings() {
        let parse = |text: &str| Settings::from_config(&Config::parse(text).unwrap()).unwrap();
        assert_eq!(parse(""), None);
        assert_eq!(parse("rpcaudit = 0\nplugin.rpcaudit.logfile = /x"), None);
        assert_eq!(
            parse("rpcaudit = 1"),
            Some(Settings {
                file: DEFAULT_FILE.into(),
                redact: vec![]
            })
        );
        assert_eq!(
            parse("rpcaudit = yes\nplugin.rpcaudit.logfile = /a.log\nplugin.rpcaudit.redact = password, token"),
            Some(Settings {
                file: "/a.log".into(),
                redact: vec!["password".into(), "token".into()]
            })
        );
        let err = Settings::from_config(&Config::parse("\nrpcaudit = often").unwrap()).unwrap_err();
        assert_eq!(err.line, Some(2));
    }

    #[test]
    fn unopenable_file_is_named() {
        let err = AuditLog::open(&Settings {
            file: "/nonexistent/dir/audit.log".into(),
            redact: vec![],
        })
        .err()
        .unwrap();
        assert!(
            err.starts_with("audit log /nonexistent/dir/audit.log"),
            "{err}"
        );
    }

    #[test]
    fn times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_629_417_007), "2026-11-25T17:56:57.007Z");
    }
}
