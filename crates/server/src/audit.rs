//! The audit log: JSON lines saying who asked a node for what, before it
//! ran and after.
//!
//! With `rpcaudit = 1` a node appends to `plugin.rpcaudit.logfile` lines
//! for every request that passed the security checks and whose filter
//! selected the node, saying who asked (the verified certificate name, and
//! the caller the request claims), what for, with which inputs, and what
//! came of it. Refused messages (untrusted, expired, replayed) have no
//! authenticated caller; they are counted in `daemon_stats` and logged
//! instead.
//!
//! A request that is going to run gets two lines sharing its
//! `request_id`:
//!
//! 1. [`AuditLog::accepted`], once the action policy and the DDL let the
//!    request through and *before* the agent is called:
//!    `"event":"accepted"` with the inputs as received (redacted). The line
//!    is written and `sync_data`ed before `accepted` returns, so a node
//!    that crashes, or is crashed by, the action still leaves it on disk.
//!    When it cannot be written, `accepted` fails (`on_failure = deny`,
//!    the default) and the node must refuse the request, or warns and lets
//!    it run (`on_failure = allow`).
//! 2. [`Accepted::finished`]: `"event":"finished"` with the outcome, the
//!    reply's status code and `duration_ms`. An [`Accepted`] dropped
//!    without `finished` (the action panicked, or the request's future was
//!    dropped) writes `"outcome":"abandoned"`.
//!
//! A request refused before anything ran (denied by the policy, unknown
//! action, inputs the DDL refuses) gets one line, [`AuditLog::refused`]:
//! `"event":"finished"` with its inputs too. So every audited request has
//! exactly one `finished` line, and an `accepted` line without one is an
//! action that is still running or took the node down with it.
//!
//! Each line is written with one `write_all` on a file opened for append
//! under a mutex, so lines from concurrent requests never interleave; the
//! `sync_data` of accepted lines happens after the mutex is released.
//!
//! ```
//! use muster_server::audit::{redacted_by_default, Outcome};
//! assert_eq!(Outcome::Denied.as_str(), "denied");
//! assert!(redacted_by_default("db_password") && redacted_by_default("apiKey"));
//! assert!(!redacted_by_default("keyboard"));
//! assert_eq!(muster_server::audit::rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
//! ```

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use muster_protocol::config::{Config, ConfigError};
use muster_protocol::{Request, StatusCode};
use serde::Serialize;
use serde_json::{Map, Value};

/// Where the audit log goes, what it leaves out, and what happens when it
/// cannot be written.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `plugin.rpcaudit.logfile`.
    pub file: PathBuf,
    /// `plugin.rpcaudit.redact`: more input names whose values are logged
    /// as `"[redacted]"` (whole names, compared ignoring case).
    pub redact: Vec<String>,
    /// `plugin.rpcaudit.redact_defaults`: whether names that look like
    /// secrets ([`redacted_by_default`]) are redacted too.
    pub redact_defaults: bool,
    /// `plugin.rpcaudit.on_failure`.
    pub on_failure: OnFailure,
}

/// What a node does with a request whose accepted line cannot be written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnFailure {
    /// Refuse it: nothing runs unaudited.
    #[default]
    Deny,
    /// Run it anyway, with a warning.
    Allow,
}

/// The log file when `plugin.rpcaudit.logfile` is not set.
pub const DEFAULT_FILE: &str = "/var/log/muster/audit.log";

/// What a redacted input's value is replaced by.
pub const REDACTED: &str = "[redacted]";

/// The start of the reply to a request refused because its accepted line
/// could not be written ([`AuditError::reply_message`] adds why).
pub const REFUSED: &str = "not run: this node cannot write its audit log";

/// The permissions a new log file gets: it holds request inputs.
pub const FILE_MODE: u32 = 0o600;

impl Settings {
    /// The defaults, logging to `file`.
    pub fn new(file: impl Into<PathBuf>) -> Settings {
        Settings {
            file: file.into(),
            redact: Vec::new(),
            redact_defaults: true,
            on_failure: OnFailure::Deny,
        }
    }

    /// The settings when `rpcaudit` is on, `None` when it is off.
    pub fn from_config(config: &Config) -> Result<Option<Settings>, ConfigError> {
        if !config.flag("rpcaudit")?.unwrap_or(false) {
            return Ok(None);
        }
        const ON_FAILURE: &str = "plugin.rpcaudit.on_failure";
        let on_failure = match config.get(ON_FAILURE).map(str::to_ascii_lowercase) {
            None => OnFailure::default(),
            Some(v) if v == "deny" => OnFailure::Deny,
            Some(v) if v == "allow" => OnFailure::Allow,
            Some(v) => {
                return Err(config.error(
                    ON_FAILURE,
                    format!("{ON_FAILURE} must be deny or allow, not {v:?}"),
                ))
            }
        };
        Ok(Some(Settings {
            file: config
                .get("plugin.rpcaudit.logfile")
                .unwrap_or(DEFAULT_FILE)
                .into(),
            redact: config.list("plugin.rpcaudit.redact"),
            redact_defaults: config
                .flag("plugin.rpcaudit.redact_defaults")?
                .unwrap_or(true),
            on_failure,
        }))
    }
}

/// Redacted by default when found anywhere in a name, ignoring case.
pub const SECRET_PARTS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "credential",
];

/// Redacted by default when one of a name's words is one of these.
pub const SECRET_WORDS: &[&str] = &["pass", "pwd", "pw", "auth"];

/// Whether an input called `name` is redacted unless
/// `plugin.rpcaudit.redact_defaults = false`: the name contains one of
/// [`SECRET_PARTS`] (`db_password`, `client_secret`, `X-Auth-Token`), or
/// one of its words is one of [`SECRET_WORDS`] or ends in `key` or `keys`
/// (`api_key`, `apiKey`, `sshkey`, `key`, `db_pass`). Words are split at
/// anything but letters and digits, and where a lower-case letter or a
/// digit is followed by an upper-case one; all is compared ignoring case.
/// So `keyboard`, `keyspace`, `passive` and `author` are kept.
pub fn redacted_by_default(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    if SECRET_PARTS.iter().any(|part| lower.contains(part)) {
        return true;
    }
    words(name).iter().any(|word| {
        SECRET_WORDS.contains(&word.as_str()) || word.ends_with("key") || word.ends_with("keys")
    })
}

/// `name`'s words, lower-cased: `apiKey-id` is `api`, `key`, `id`.
fn words(name: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut previous: Option<char> = None;
    for c in name.chars() {
        if !c.is_alphanumeric() {
            if !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
        } else {
            let boundary = c.is_uppercase()
                && previous.is_some_and(|p| p.is_lowercase() || p.is_ascii_digit());
            if boundary && !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            word.extend(c.to_lowercase());
        }
        previous = Some(c);
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
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
    /// The action started but never finished: it panicked, or the
    /// request's future was dropped ([`Accepted`] dropped unfinished).
    Abandoned,
}

impl Outcome {
    /// The outcome's name in the audit line.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::Denied => "denied",
            Outcome::Invalid => "invalid",
            Outcome::Abandoned => "abandoned",
        }
    }
}

/// A line that could not be written, or a log that could not be reopened.
#[derive(Debug, thiserror::Error)]
#[error("{doing} {}: {}", path.display(), describe(source))]
pub struct AuditError {
    path: PathBuf,
    doing: &'static str,
    #[source]
    source: io::Error,
}

impl AuditError {
    fn new(path: &Path, doing: &'static str, source: io::Error) -> AuditError {
        AuditError {
            path: path.to_path_buf(),
            doing,
            source,
        }
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the system said.
    pub fn io_error(&self) -> &io::Error {
        &self.source
    }

    /// The reply to a request refused because of this error: [`REFUSED`]
    /// and the system's reason, without the file's path.
    pub fn reply_message(&self) -> String {
        format!("{REFUSED}: {}", describe(&self.source))
    }
}

/// The audit log could not be opened at start-up; the daemon does not
/// start without the log it was told to keep.
#[derive(Debug, thiserror::Error)]
#[error("audit log {} (plugin.rpcaudit.logfile): {}", path.display(), describe(source))]
pub struct OpenError {
    path: PathBuf,
    #[source]
    source: io::Error,
}

impl OpenError {
    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the system said.
    pub fn io_error(&self) -> &io::Error {
        &self.source
    }
}

/// `ENOSPC: No space left on device (os error 28)`: the symbolic name, for
/// the errors a log file meets, and what the system says.
fn describe(error: &io::Error) -> String {
    let name = match error.raw_os_error() {
        Some(libc::ENOSPC) => "ENOSPC",
        Some(libc::EDQUOT) => "EDQUOT",
        Some(libc::EIO) => "EIO",
        Some(libc::EROFS) => "EROFS",
        Some(libc::EFBIG) => "EFBIG",
        Some(libc::EACCES) => "EACCES",
        Some(libc::EPERM) => "EPERM",
        Some(libc::ENOENT) => "ENOENT",
        Some(libc::ENOTDIR) => "ENOTDIR",
        Some(libc::EISDIR) => "EISDIR",
        Some(libc::EBADF) => "EBADF",
        Some(libc::EINVAL) => "EINVAL",
        Some(libc::ENXIO) => "ENXIO",
        Some(libc::EPIPE) => "EPIPE",
        _ => return error.to_string(),
    };
    format!("{name}: {error}")
}

/// Who asked what: the fields both of a request's lines carry.
#[derive(Debug, Clone)]
struct Subject {
    request_id: String,
    caller: String,
    claimed_caller: String,
    sender: String,
    agent: String,
    action: String,
    collective: String,
}

impl Subject {
    fn new(request: &Request, caller: &str, claimed: &str) -> Subject {
        Subject {
            request_id: request.id.clone(),
            caller: caller.to_string(),
            claimed_caller: claimed.to_string(),
            sender: request.sender.clone(),
            agent: request.agent.clone(),
            action: request.action.clone(),
            collective: request.collective.clone(),
        }
    }
}

/// One line, in the order its fields are written; absent fields are left
/// out.
#[derive(Serialize)]
struct Line<'a> {
    time: String,
    event: &'static str,
    request_id: &'a str,
    caller: &'a str,
    claimed_caller: &'a str,
    sender: &'a str,
    agent: &'a str,
    action: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Map<String, Value>>,
    collective: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    statuscode: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_ms: Option<u64>,
}

impl<'a> Line<'a> {
    fn new(event: &'static str, who: &'a Subject) -> Line<'a> {
        Line {
            time: rfc3339(muster_protocol::now_ms()),
            event,
            request_id: &who.request_id,
            caller: &who.caller,
            claimed_caller: &who.claimed_caller,
            sender: &who.sender,
            agent: &who.agent,
            action: &who.action,
            data: None,
            collective: &who.collective,
            outcome: None,
            statuscode: None,
            duration_ms: None,
        }
    }

    fn outcome(mut self, outcome: Outcome, statuscode: StatusCode, took: Duration) -> Self {
        self.outcome = Some(outcome.as_str());
        self.statuscode = Some(statuscode.into());
        self.duration_ms = Some(u64::try_from(took.as_millis()).unwrap_or(u64::MAX));
        self
    }
}

/// The open file, and for a regular file its device and inode, to notice
/// when the path stops naming it.
struct Open {
    file: Arc<File>,
    id: Option<(u64, u64)>,
}

/// Opens `path` for appending, creating it with [`FILE_MODE`].
fn open_file(path: &Path) -> io::Result<Open> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(FILE_MODE)
        .open(path)?;
    let meta = file.metadata()?;
    Ok(Open {
        id: meta.is_file().then(|| (meta.dev(), meta.ino())),
        file: Arc::new(file),
    })
}

/// An open audit log.
pub struct AuditLog {
    path: PathBuf,
    file: Mutex<Open>,
    redact: Vec<String>,
    redact_defaults: bool,
    on_failure: OnFailure,
    failing: AtomicBool,
    unwritten: AtomicU64,
}

impl AuditLog {
    /// Opens (or creates, mode 0600) the log for appending; an error names
    /// the file. The directory is not created. An existing regular file
    /// that group or others may read or write is left as it is, with a
    /// warning.
    pub fn open(settings: &Settings) -> Result<AuditLog, OpenError> {
        let path = &settings.file;
        let open = open_file(path).map_err(|source| OpenError {
            path: path.clone(),
            source,
        })?;
        if open.id.is_some() {
            if let Ok(meta) = open.file.metadata() {
                let mode = meta.mode() & 0o777;
                if mode & 0o077 != 0 {
                    tracing::warn!(
                        file = %path.display(),
                        mode = format!("{mode:04o}"),
                        "the audit log is open to group or others and holds request inputs; \
                         chmod 600 it unless that is meant"
                    );
                }
            }
        }
        Ok(AuditLog {
            path: path.clone(),
            file: Mutex::new(open),
            redact: settings
                .redact
                .iter()
                .map(|name| name.to_ascii_lowercase())
                .collect(),
            redact_defaults: settings.redact_defaults,
            on_failure: settings.on_failure,
            failing: AtomicBool::new(false),
            unwritten: AtomicU64::new(0),
        })
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `plugin.rpcaudit.on_failure`.
    pub fn on_failure(&self) -> OnFailure {
        self.on_failure
    }

    /// How many lines could not be written since the log was opened.
    pub fn unwritten(&self) -> u64 {
        self.unwritten.load(Ordering::Relaxed)
    }

    /// Records that `request` is about to run: call it after the policy
    /// and the DDL let the request through, right before the agent, and
    /// call [`Accepted::finished`] on the result when the action is done.
    /// `caller` is the verified certificate name, `claimed` what the
    /// request said, `inputs` the inputs as received.
    ///
    /// The line is on disk (`sync_data`) when this returns. If it cannot
    /// be written, with `on_failure = deny` this is the error and the
    /// request must not run (reply [`AuditError::reply_message`] with
    /// [`StatusCode::Aborted`]); with `allow` it is logged (the first of a
    /// run of failures at warn, the rest at debug) and this returns `Ok`.
    pub fn accepted(
        &self,
        request: &Request,
        caller: &str,
        claimed: &str,
        inputs: &Map<String, Value>,
    ) -> Result<Accepted<'_>, AuditError> {
        let who = Subject::new(request, caller, claimed);
        let written = {
            let mut line = Line::new("accepted", &who);
            line.data = Some(self.redacted(inputs));
            self.write(&line, true)
        };
        if let Err(e) = written {
            if self.on_failure == OnFailure::Deny {
                return Err(e);
            }
        }
        Ok(Accepted {
            log: self,
            who,
            started: Instant::now(),
            done: false,
        })
    }

    /// Records a request that was refused before anything ran (denied by
    /// the policy, unknown agent or action, inputs the DDL refuses): one
    /// `finished` line with its inputs, and `duration_ms` 0. A line that
    /// cannot be written is logged; there is nothing left to refuse.
    pub fn refused(
        &self,
        request: &Request,
        caller: &str,
        claimed: &str,
        inputs: &Map<String, Value>,
        outcome: Outcome,
        statuscode: StatusCode,
    ) {
        let who = Subject::new(request, caller, claimed);
        let mut line = Line::new("finished", &who).outcome(outcome, statuscode, Duration::ZERO);
        line.data = Some(self.redacted(inputs));
        let _ = self.write(&line, false);
    }

    /// `inputs` with the values of redacted names replaced, at any depth
    /// (keys of objects inside inputs, and inside lists, too).
    fn redacted(&self, inputs: &Map<String, Value>) -> Map<String, Value> {
        inputs
            .iter()
            .map(|(name, value)| {
                let value = if self.is_redacted(name) {
                    Value::String(REDACTED.to_string())
                } else {
                    self.redacted_value(value)
                };
                (name.clone(), value)
            })
            .collect()
    }

    fn redacted_value(&self, value: &Value) -> Value {
        match value {
            Value::Object(map) => Value::Object(self.redacted(map)),
            Value::Array(items) => {
                Value::Array(items.iter().map(|v| self.redacted_value(v)).collect())
            }
            other => other.clone(),
        }
    }

    fn is_redacted(&self, name: &str) -> bool {
        (self.redact_defaults && redacted_by_default(name))
            || self.redact.contains(&name.to_ascii_lowercase())
    }

    /// Appends one line, after reopening the file if the path no longer
    /// names it, then (if `sync` and it is a regular file) syncs it.
    fn write(&self, line: &Line, sync: bool) -> Result<(), AuditError> {
        let result = self.try_write(line, sync);
        match &result {
            Ok(()) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(file = %self.path.display(), "the audit log is writable again");
                }
            }
            Err(e) => self.failed(e),
        }
        result
    }

    fn try_write(&self, line: &Line, sync: bool) -> Result<(), AuditError> {
        let mut text = serde_json::to_string(line).map_err(|e| {
            AuditError::new(
                &self.path,
                "cannot format a line for the audit log",
                e.into(),
            )
        })?;
        text.push('\n');
        let (file, regular) = {
            let mut open = self.file.lock().unwrap_or_else(|p| p.into_inner());
            self.reopen_if_moved(&mut open)?;
            (&*open.file)
                .write_all(text.as_bytes())
                .map_err(|e| AuditError::new(&self.path, "cannot write the audit log", e))?;
            (open.file.clone(), open.id.is_some())
        };
        // Only regular files: pipes and terminals cannot be synced (EINVAL).
        if sync && regular {
            file.sync_data()
                .map_err(|e| AuditError::new(&self.path, "cannot sync the audit log", e))?;
        }
        Ok(())
    }

    /// Reopens a regular file that was moved (rotated) or removed, so lines
    /// go where the path says; a reopen that fails is the write's error.
    fn reopen_if_moved(&self, open: &mut Open) -> Result<(), AuditError> {
        let Some(id) = open.id else {
            return Ok(());
        };
        if let Ok(meta) = std::fs::metadata(&self.path) {
            if (meta.dev(), meta.ino()) == id {
                return Ok(());
            }
        }
        *open = open_file(&self.path).map_err(|e| {
            AuditError::new(
                &self.path,
                "cannot reopen the moved or removed audit log",
                e,
            )
        })?;
        tracing::info!(file = %self.path.display(), "the audit log was moved or removed; reopened it");
        Ok(())
    }

    /// Counts an unwritten line, and logs the first failure of a run of
    /// them (at error when requests are refused for it, at warn when they
    /// run unaudited), the rest at debug.
    fn failed(&self, error: &AuditError) {
        self.unwritten.fetch_add(1, Ordering::Relaxed);
        if self.failing.swap(true, Ordering::Relaxed) {
            tracing::debug!(%error, "cannot write the audit log");
            return;
        }
        match self.on_failure {
            OnFailure::Deny => tracing::error!(
                %error,
                "cannot write the audit log: refusing requests until it can (plugin.rpcaudit.on_failure = deny); \
                 further failures are logged at debug"
            ),
            OnFailure::Allow => tracing::warn!(
                %error,
                "cannot write the audit log: requests run unaudited (plugin.rpcaudit.on_failure = allow); \
                 further failures are logged at debug"
            ),
        }
    }
}

/// A request whose accepted line is written: call [`finished`] when its
/// action is done. Dropped unfinished, it writes `"outcome":"abandoned"`.
///
/// [`finished`]: Accepted::finished
#[must_use = "call finished() with the outcome when the action is done"]
pub struct Accepted<'log> {
    log: &'log AuditLog,
    who: Subject,
    started: Instant,
    done: bool,
}

impl Accepted<'_> {
    /// The request's id.
    pub fn request_id(&self) -> &str {
        &self.who.request_id
    }

    /// Writes the finished line: `outcome`, the reply's `statuscode`, and
    /// the time since [`AuditLog::accepted`]. A line that cannot be written
    /// is logged; the action has run.
    pub fn finished(mut self, outcome: Outcome, statuscode: StatusCode) {
        self.done = true;
        self.finish(outcome, statuscode);
    }

    fn finish(&self, outcome: Outcome, statuscode: StatusCode) {
        let line =
            Line::new("finished", &self.who).outcome(outcome, statuscode, self.started.elapsed());
        let _ = self.log.write(&line, false);
    }
}

impl Drop for Accepted<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.finish(Outcome::Abandoned, StatusCode::UnknownError);
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
        assert_eq!(parse("rpcaudit = 1"), Some(Settings::new(DEFAULT_FILE)));
        assert_eq!(
            parse("rpcaudit = 1"),
            Some(Settings {
                file: DEFAULT_FILE.into(),
                redact: vec![],
                redact_defaults: true,
                on_failure: OnFailure::Deny,
            })
        );
        assert_eq!(
            parse(
                "rpcaudit = yes\nplugin.rpcaudit.logfile = /a.log\nplugin.rpcaudit.redact = password, query\n\
                 plugin.rpcaudit.redact_defaults = no\nplugin.rpcaudit.on_failure = Allow"
            ),
            Some(Settings {
                file: "/a.log".into(),
                redact: vec!["password".into(), "query".into()],
                redact_defaults: false,
                on_failure: OnFailure::Allow,
            })
        );
        assert_eq!(
            parse("rpcaudit = 1\nplugin.rpcaudit.on_failure = deny").map(|s| s.on_failure),
            Some(OnFailure::Deny)
        );
        let err = Settings::from_config(&Config::parse("\nrpcaudit = often").unwrap()).unwrap_err();
        assert_eq!(err.line, Some(2));
        let err = Settings::from_config(
            &Config::parse("rpcaudit = 1\n\nplugin.rpcaudit.on_failure = ignore").unwrap(),
        )
        .unwrap_err();
        assert_eq!(err.line, Some(3));
        assert!(err.message.contains("deny or allow"), "{err}");
        let err = Settings::from_config(
            &Config::parse("rpcaudit = 1\nplugin.rpcaudit.redact_defaults = maybe").unwrap(),
        )
        .unwrap_err();
        assert_eq!(err.line, Some(2));
    }

    #[test]
    fn unopenable_file_is_named() {
        let err = AuditLog::open(&Settings::new("/nonexistent/dir/audit.log"))
            .err()
            .unwrap();
        assert_eq!(err.path(), Path::new("/nonexistent/dir/audit.log"));
        assert_eq!(err.io_error().kind(), io::ErrorKind::NotFound);
        let err = err.to_string();
        assert!(
            err.starts_with("audit log /nonexistent/dir/audit.log"),
            "{err}"
        );
        assert!(err.contains("ENOENT"), "{err}");
    }

    #[test]
    fn words_split_at_separators_and_case_changes() {
        assert_eq!(words("apiKey-id"), ["api", "key", "id"]);
        assert_eq!(words("DB_PASS"), ["db", "pass"]);
        assert_eq!(words("APIKey"), ["apikey"]);
        assert_eq!(words("v2Token"), ["v2", "token"]);
        assert_eq!(words("--"), Vec::<String>::new());
    }

    #[test]
    fn errors_name_the_errno() {
        let e = AuditError::new(
            Path::new("/l"),
            "cannot write the audit log",
            io::Error::from_raw_os_error(libc::ENOSPC),
        );
        assert!(
            e.to_string()
                .starts_with("cannot write the audit log /l: ENOSPC: "),
            "{e}"
        );
        assert!(e.reply_message().starts_with(REFUSED), "{e}");
        assert!(!e.reply_message().contains("/l"), "{e}");
    }

    #[test]
    fn times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_629_417_007), "2026-11-25T17:56:57.007Z");
    }
}
