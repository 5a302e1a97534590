//! MCollective-style `key = value` configuration files, checked against
//! the table of every key muster reads ([`KEYS`]).
//!
//! Both `mco server` and the client read this format: one setting per
//! line, `#` or `;` starts a comment, keys may contain dots
//! (`plugin.nats.servers`). Unlike MCollective's reader nothing is
//! silently dropped: a key set twice, a key muster does not know (with the
//! nearest known one suggested) and a value of the wrong kind are errors
//! that name the file and line, and [`Config::check`] reports them all at
//! once. Relative paths are taken from the config file's directory.
//!
//! ```
//! use muster_protocol::config::{Config, ConfigFile};
//!
//! let config = Config::parse("identity = web1\ncollectives = mcollective, compute\n").unwrap();
//! assert_eq!(config.get("identity"), Some("web1"));
//! assert_eq!(config.list("collectives"), vec!["mcollective", "compute"]);
//!
//! let typo = Config::parse("identiy = web1\n").unwrap();
//! let report = typo.check(ConfigFile::Server);
//! assert_eq!(
//!     report.errors[0].to_string(),
//!     "config:1: unknown setting identiy (did you mean identity?)"
//! );
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

mod keys;

pub use keys::{lookup, ConfigFile, Files, Key, Kind, Section, IGNORED, KEYS};

/// A parsed configuration file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    /// Every setting in file order; a key appears once.
    entries: Vec<Entry>,
    /// Where the text came from, for error messages.
    source: String,
}

#[derive(Debug, Clone, PartialEq)]
struct Entry {
    key: String,
    value: String,
    line: usize,
}

/// A configuration problem (or, in [`Report::warnings`], a doubt), with
/// the line it is on when there is one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file, as it was named.
    pub file: String,
    /// The 1-based line, when the problem is on one.
    pub line: Option<usize>,
    /// What is wrong, naming the key.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file, line, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// Every error found in a file, so an operator fixes them in one pass.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigErrors {
    /// In file order; never empty when returned as an error.
    pub errors: Vec<ConfigError>,
    /// Doubts found on the way (ignored keys), shown beside the errors.
    pub warnings: Vec<ConfigError>,
}

impl ConfigErrors {
    /// Adds `error` unless its line already has one: a bad value is found
    /// by the table check and again by its reader, and one message a line
    /// is what an operator wants.
    pub fn push(&mut self, error: ConfigError) {
        let seen = self.errors.iter().any(|e| {
            e == &error || (e.line.is_some() && e.line == error.line && e.file == error.file)
        });
        if !seen {
            self.errors.push(error);
        }
    }

    /// Keeps the value of `result`, or records its error.
    pub fn take<T>(&mut self, result: Result<T, ConfigError>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.push(error);
                None
            }
        }
    }

    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// `Err(self)`, carrying `warnings` too, when anything was found, in
    /// file order.
    pub fn into_result(mut self, warnings: &[ConfigError]) -> Result<(), ConfigErrors> {
        if self.errors.is_empty() {
            return Ok(());
        }
        self.errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
        self.warnings = warnings.to_vec();
        Err(self)
    }
}

impl Config {
    /// The first step of reading a file's settings: the errors its parse
    /// found and those of checking every key against [`KEYS`] for `file`,
    /// so the reader adds its own and reports them all at once; and the
    /// warnings (ignored keys).
    pub fn start_checking(
        &self,
        file: ConfigFile,
        parse_errors: Vec<ConfigError>,
    ) -> (ConfigErrors, Vec<ConfigError>) {
        let mut errors = ConfigErrors::default();
        let report = self.check(file);
        for error in parse_errors.into_iter().chain(report.errors) {
            errors.push(error);
        }
        (errors, report.warnings)
    }
}

impl Report {
    /// `interpreted` (a file's settings, or its errors) together with this
    /// report on what the file points at, so one pass lists every problem.
    /// `warnings` reaches the settings' own warning list.
    pub fn joined<T>(
        self,
        interpreted: Result<T, ConfigErrors>,
        warnings: impl FnOnce(&mut T) -> &mut Vec<ConfigError>,
    ) -> Result<T, ConfigErrors> {
        match interpreted {
            Ok(mut settings) => {
                let kept = warnings(&mut settings);
                kept.extend(self.warnings);
                let mut errors = ConfigErrors::default();
                for error in self.errors {
                    errors.push(error);
                }
                errors.into_result(kept).map(|()| settings)
            }
            Err(mut errors) => {
                for error in self.errors {
                    errors.push(error);
                }
                errors.warnings.extend(self.warnings);
                errors.errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
                Err(errors)
            }
        }
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        ConfigErrors {
            errors: vec![error],
            warnings: Vec::new(),
        }
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// What [`Config::check`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Unknown keys, repeated keys, bad values.
    pub errors: Vec<ConfigError>,
    /// Keys that are ignored: another file's, or of plugins muster lacks.
    pub warnings: Vec<ConfigError>,
}

impl Config {
    /// Parses text that did not come from a named file.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse_named(text, "config")
    }

    /// Parses `text`, naming `source` (usually the file path) in errors;
    /// the first line that does not parse, or repeats a key, is the error.
    pub fn parse_named(text: &str, source: &str) -> Result<Config, ConfigError> {
        let (config, errors) = Config::parse_all(text, source);
        match errors.into_iter().next() {
            Some(error) => Err(error),
            None => Ok(config),
        }
    }

    /// Parses a file's text, returning what parsed and every line that did
    /// not. Relative paths ([`Kind::Path`], [`Kind::Paths`]) are taken from
    /// the file's directory, so the server and the client agree; give an
    /// absolute `path` (`std::path::absolute`) so they do not depend on
    /// the working directory.
    pub fn parse_file(text: &str, path: &Path) -> (Config, Vec<ConfigError>) {
        let (config, errors) = Config::parse_all(text, &path.display().to_string());
        let config = match path.parent() {
            Some(base) => config.resolve_paths(base),
            None => config,
        };
        (config, errors)
    }

    /// Parses everything that parses and reports every line that does not.
    pub fn parse_all(text: &str, source: &str) -> (Config, Vec<ConfigError>) {
        let mut entries: Vec<Entry> = Vec::new();
        let mut errors = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let error = |message: String| ConfigError {
                file: source.to_string(),
                line: Some(line),
                message,
            };
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
                continue;
            }
            let Some((key, value)) = trimmed.split_once('=') else {
                errors.push(error(format!(
                    "expected 'key = value', found {:?}",
                    truncate(trimmed)
                )));
                continue;
            };
            let key = key.trim();
            if key.is_empty() {
                errors.push(error("missing key before '='".into()));
                continue;
            }
            if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
                errors.push(error(format!(
                    "key {:?} contains whitespace",
                    truncate(key)
                )));
                continue;
            }
            if let Some(first) = entries.iter().find(|e| e.key == key) {
                errors.push(error(format!(
                    "{key} is set twice, on line {} and on line {line}: keep one",
                    first.line
                )));
                continue;
            }
            entries.push(Entry {
                key: key.to_string(),
                value: value.trim().to_string(),
                line,
            });
        }
        (
            Config {
                entries,
                source: source.to_string(),
            },
            errors,
        )
    }

    /// Takes relative [`Kind::Path`] and [`Kind::Paths`] values from
    /// `base`, the config file's directory — the one place that does.
    pub fn resolve_paths(mut self, base: &Path) -> Config {
        for entry in &mut self.entries {
            let Some(key) = lookup(&entry.key) else {
                continue;
            };
            match key.kind {
                Kind::Path if !entry.value.is_empty() => {
                    entry.value = resolve(base, &entry.value);
                }
                Kind::Paths => {
                    entry.value = split_list(&entry.value)
                        .map(|p| resolve(base, p))
                        .collect::<Vec<_>>()
                        .join(", ");
                }
                _ => {}
            }
        }
        self
    }

    /// Checks every key against [`KEYS`] for `file`: unknown keys (with the
    /// nearest known one), values of the wrong kind; keys of the other file
    /// and of plugins muster does not have are warnings.
    pub fn check(&self, file: ConfigFile) -> Report {
        let mut report = Report::default();
        for entry in &self.entries {
            let at = |message: String| ConfigError {
                file: self.source.clone(),
                line: Some(entry.line),
                message,
            };
            match lookup(&entry.key) {
                Some(key) if key.files.includes(file) => {
                    if !entry.value.is_empty() {
                        if let Err(message) = validate(key, &entry.value) {
                            report.errors.push(at(message));
                        }
                    }
                }
                Some(key) => {
                    let other = match key.files {
                        Files::Server => ConfigFile::Server,
                        _ => ConfigFile::Client,
                    };
                    report.warnings.push(at(format!(
                        "{} is a {} setting; {} ignores it",
                        key.name,
                        other.name(),
                        file.name()
                    )));
                }
                None => match ignored(&entry.key) {
                    Some(why) => report.warnings.push(at(format!(
                        "{} is not used by muster and is ignored: {why}",
                        entry.key
                    ))),
                    None => report.errors.push(at(unknown(&entry.key, file))),
                },
            }
        }
        report
    }

    /// Every key `file` reads, in [`KEYS`] order, with its value as set
    /// (secrets redacted) or its default: what `check-config` prints.
    pub fn effective(&self, file: ConfigFile) -> Vec<Setting> {
        KEYS.iter()
            .filter(|key| key.files.includes(file))
            .map(
                |key| match self.entry(key.name).filter(|e| !e.value.is_empty()) {
                    Some(entry) => Setting {
                        key,
                        value: redacted(key, &entry.value),
                        line: Some(entry.line),
                    },
                    None => Setting {
                        key,
                        value: key.default.to_string(),
                        line: None,
                    },
                },
            )
            .collect()
    }

    /// Every setting as written (paths resolved): key, value, line.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &str, usize)> {
        self.entries
            .iter()
            .map(|e| (e.key.as_str(), e.value.as_str(), e.line))
    }

    /// The line `key` is set on.
    pub fn line(&self, key: &str) -> Option<usize> {
        self.entry(key).map(|e| e.line)
    }

    /// The value of `key`, if set and not empty.
    ///
    /// # Panics
    ///
    /// In debug builds, when `key` is not in [`KEYS`]: every key muster
    /// reads must be documented and checked.
    pub fn get(&self, key: &str) -> Option<&str> {
        debug_assert!(
            lookup(key).is_some(),
            "config key {key:?} is read but missing from muster_protocol::config::KEYS"
        );
        self.entry(key)
            .map(|e| e.value.as_str())
            .filter(|v| !v.is_empty())
    }

    /// A comma-separated list; empty when unset.
    pub fn list(&self, key: &str) -> Vec<String> {
        self.get(key)
            .map(|v| split_list(v).map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// A path; relative ones were taken from the file's directory when the
    /// file was read with [`Config::parse_file`].
    pub fn path(&self, key: &str) -> Option<PathBuf> {
        self.get(key).map(PathBuf::from)
    }

    /// A comma-separated list of paths, resolved like [`Config::path`].
    pub fn paths(&self, key: &str) -> Vec<PathBuf> {
        self.list(key).into_iter().map(PathBuf::from).collect()
    }

    /// An unsigned number.
    pub fn number(&self, key: &str) -> Result<Option<u64>, ConfigError> {
        self.typed(key, parse_number)
    }

    /// A duration in seconds, decimals allowed.
    pub fn seconds(&self, key: &str) -> Result<Option<std::time::Duration>, ConfigError> {
        self.typed(key, parse_seconds)
    }

    /// `true/false`, `yes/no`, `1/0`, `on/off` — as MCollective accepts.
    pub fn flag(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        self.typed(key, parse_flag)
    }

    /// An error about `key`, pointing at its line.
    pub fn error(&self, key: &str, message: impl Into<String>) -> ConfigError {
        debug_assert!(
            lookup(key).is_some(),
            "config key {key:?} is named but missing from muster_protocol::config::KEYS"
        );
        ConfigError {
            file: self.source.clone(),
            line: self.line(key),
            message: message.into(),
        }
    }

    /// Where this configuration came from.
    pub fn source(&self) -> &str {
        &self.source
    }

    fn entry(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key == key)
    }

    fn typed<T>(
        &self,
        key: &str,
        parse: impl Fn(&str, &str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => parse(key, v)
                .map(Some)
                .map_err(|message| self.error(key, message)),
        }
    }
}

/// One line of [`Config::effective`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The key's row.
    pub key: &'static Key,
    /// As set, redacted; or the default (empty: off).
    pub value: String,
    /// The line it is set on; `None` when the default applies.
    pub line: Option<usize>,
}

/// `value` taken from `base` when it is relative.
pub fn resolve(base: &Path, value: &str) -> String {
    let path = Path::new(value);
    if path.is_absolute() || base.as_os_str().is_empty() {
        value.to_string()
    } else {
        base.join(path).display().to_string()
    }
}

/// `value` fit to print: secrets replaced, passwords in URLs replaced.
pub fn redacted(key: &Key, value: &str) -> String {
    match key.kind {
        Kind::Secret => REDACTED.to_string(),
        Kind::Urls => split_list(value)
            .map(redact_url)
            .collect::<Vec<_>>()
            .join(", "),
        _ => value.to_string(),
    }
}

/// What a secret is shown as.
pub const REDACTED: &str = "[redacted]";

/// `nats://user:secret@host:4222` as `nats://user:[redacted]@host:4222`;
/// a lone token before `@` is redacted whole.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), url),
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_string();
    };
    let userinfo = &rest[..at];
    let shown = match userinfo.split_once(':') {
        Some((user, _)) => format!("{user}:{REDACTED}"),
        None => REDACTED.to_string(),
    };
    format!("{scheme}{shown}{}", &rest[at..])
}

fn split_list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

fn parse_number(key: &str, value: &str) -> Result<u64, String> {
    value
        .parse::<u64>()
        .map_err(|_| format!("{key} must be a whole number, found {value:?}"))
}

fn parse_seconds(key: &str, value: &str) -> Result<std::time::Duration, String> {
    value
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0 && *s <= 86_400.0)
        .map(std::time::Duration::from_secs_f64)
        .ok_or_else(|| {
            format!("{key} must be seconds above 0 and at most 86400 (e.g. 1.5), found {value:?}")
        })
}

fn parse_flag(key: &str, value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" | "on" | "y" => Ok(true),
        "false" | "no" | "0" | "off" | "n" => Ok(false),
        _ => Err(format!("{key} must be true or false, found {value:?}")),
    }
}

/// Whether `value` is of `key`'s kind; the message names the key.
fn validate(key: &Key, value: &str) -> Result<(), String> {
    let name = key.name;
    match key.kind {
        Kind::Number => parse_number(name, value).map(drop),
        Kind::Seconds => parse_seconds(name, value).map(drop),
        Kind::Flag => parse_flag(name, value).map(drop),
        Kind::OneOf(words) => {
            if words.iter().any(|w| w.eq_ignore_ascii_case(value)) {
                Ok(())
            } else {
                let near = words
                    .iter()
                    .map(|w| (edit_distance(&value.to_lowercase(), w), w))
                    .filter(|(d, _)| *d <= 2)
                    .min_by_key(|(d, _)| *d)
                    .map(|(_, w)| format!(" (did you mean {w}?)"))
                    .unwrap_or_default();
                Err(format!(
                    "{name} must be one of {}; found {value:?}{near}",
                    words.join(", ")
                ))
            }
        }
        Kind::Name => {
            if crate::subject::is_valid_name(value) {
                Ok(())
            } else {
                Err(format!(
                    "{name} {value:?} cannot contain spaces, '*', '>' or empty dot-separated parts"
                ))
            }
        }
        Kind::AbsPath => {
            if Path::new(value).is_absolute() {
                Ok(())
            } else {
                Err(format!("{name} must be an absolute path, found {value:?}"))
            }
        }
        Kind::AbsPaths => match split_list(value).find(|p| {
            let path = Path::new(p);
            !path.is_absolute()
                || path
                    .components()
                    .any(|c| c == std::path::Component::ParentDir)
        }) {
            Some(bad) => Err(format!(
                "{name}: {bad:?} must be an absolute path without '..'"
            )),
            None => Ok(()),
        },
        Kind::HostPort => {
            let ok = value.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
            });
            if ok {
                Ok(())
            } else {
                Err(format!("{name} must be host:port, found {value:?}"))
            }
        }
        Kind::Text
        | Kind::List
        | Kind::Path
        | Kind::Paths
        | Kind::Command
        | Kind::Urls
        | Kind::Secret => Ok(()),
    }
}

/// Why `key` is ignored, when it is a setting muster knows it does not use.
fn ignored(key: &str) -> Option<String> {
    for (name, why) in IGNORED {
        let hit = if name.ends_with('.') {
            key.starts_with(name)
        } else {
            key == *name
        };
        if hit {
            return Some((*why).to_string());
        }
    }
    // plugin.<name>.* of a plugin muster does not have at all.
    let plugin = key.strip_prefix("plugin.")?.split('.').next()?;
    let prefix = format!("plugin.{plugin}.");
    if KEYS.iter().any(|k| k.name.starts_with(&prefix)) || !key.contains(&prefix) {
        return None;
    }
    Some(format!("muster has no {plugin} plugin"))
}

/// The error for a key nobody reads, with the nearest key `file` reads.
fn unknown(key: &str, file: ConfigFile) -> String {
    match suggestion(key, file) {
        Some(near) => format!("unknown setting {key} (did you mean {near}?)"),
        None => format!(
            "unknown setting {key} (docs/configuration.md lists every {} key)",
            file.name()
        ),
    }
}

/// The known key closest to `key`: a few edits away, or the same last
/// part under another prefix (`plugin.nats.ssldir` -> `plugin.security.ssldir`).
fn suggestion(key: &str, file: ConfigFile) -> Option<&'static str> {
    let candidates = || KEYS.iter().filter(|k| k.files.includes(file));
    let budget = (key.chars().count() / 4).clamp(1, 3);
    let near = crate::suggest::closest(key, candidates().map(|k| k.name), budget);
    near.or_else(|| {
        let last = key.rsplit('.').next()?;
        candidates()
            .find(|k| k.name.contains('.') && k.name.rsplit('.').next() == Some(last))
            .map(|k| k.name)
    })
}

/// Kept here for callers that found it first; [`crate::suggest`] owns it.
pub use crate::suggest::edit_distance;

fn truncate(text: &str) -> String {
    text.chars().take(60).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_mcollective_style_files() {
        let text = "# a comment\n\nidentity = web1\nplugin.nats.servers = nats://a:4222,nats://b:4222\n  loglevel=debug  \nlogfile =\n";
        let config = Config::parse(text).unwrap();
        assert_eq!(config.get("identity"), Some("web1"));
        assert_eq!(config.get("loglevel"), Some("debug"));
        assert_eq!(config.get("logfile"), None);
        assert_eq!(config.get("classesfile"), None);
        assert_eq!(
            config.list("plugin.nats.servers"),
            vec!["nats://a:4222", "nats://b:4222"]
        );
        assert!(config.list("collectives").is_empty());
    }

    #[test]
    fn values_may_contain_equals_signs() {
        let config = Config::parse("plugin.nats.token = a=b").unwrap();
        assert_eq!(config.get("plugin.nats.token"), Some("a=b"));
    }

    #[test]
    fn errors_name_the_line() {
        let err = Config::parse_named(
            "identity = a\nthis line is wrong\n",
            "/etc/muster/server.cfg",
        )
        .unwrap_err();
        assert_eq!(err.line, Some(2));
        assert_eq!(
            err.to_string(),
            "/etc/muster/server.cfg:2: expected 'key = value', found \"this line is wrong\""
        );
        assert_eq!(
            Config::parse("= x").unwrap_err().message,
            "missing key before '='"
        );
        assert!(Config::parse("a b = c")
            .unwrap_err()
            .message
            .contains("whitespace"));
    }

    #[test]
    fn every_bad_line_is_reported_and_a_repeated_key_names_both_lines() {
        let (config, errors) = Config::parse_all(
            "identity = a\nnonsense\nloglevel = info\n= x\nidentity = b\n",
            "server.cfg",
        );
        let lines: Vec<_> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![Some(2), Some(4), Some(5)]);
        assert_eq!(
            errors[2].to_string(),
            "server.cfg:5: identity is set twice, on line 1 and on line 5: keep one"
        );
        assert_eq!(config.get("identity"), Some("a"));
        assert_eq!(config.get("loglevel"), Some("info"));
    }

    #[test]
    fn typed_values_report_their_line() {
        let config = Config::parse("ttl = 1\nmax_in_flight = nope\nrpcaudit = yes\n").unwrap();
        assert_eq!(config.number("ttl").unwrap(), Some(1));
        let err = config.number("max_in_flight").unwrap_err();
        assert_eq!(err.line, Some(2));
        assert!(err.message.contains("whole number"));
        assert_eq!(config.flag("rpcaudit").unwrap(), Some(true));
        assert!(config.flag("max_in_flight").is_err());
        assert_eq!(config.number("max_agent_processes").unwrap(), None);
    }

    #[test]
    fn binary_garbage_is_an_error_not_a_panic() {
        let text = String::from_utf8_lossy(&[0xff, 0x00, b'\n', b'=', 0x01]).into_owned();
        assert!(Config::parse(&text).is_err());
    }

    #[test]
    fn unknown_keys_suggest_the_nearest_known_one() {
        let config = Config::parse(
            "identiy = node01\nplugin.nats.server = nats://x:4222\nplugin.nats.ssldir = /ssl\nfrobnicate = 1\n",
        )
        .unwrap();
        let report = config.check(ConfigFile::Server);
        let messages: Vec<_> = report.errors.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(
            messages,
            vec![
                "unknown setting identiy (did you mean identity?)",
                "unknown setting plugin.nats.server (did you mean plugin.nats.servers?)",
                "unknown setting plugin.nats.ssldir (did you mean plugin.security.ssldir?)",
                "unknown setting frobnicate (docs/configuration.md lists every server.cfg key)",
            ]
        );
        assert!(report.warnings.is_empty());
    }

    #[test]
    fn foreign_plugins_and_the_other_files_keys_are_warnings() {
        let config = Config::parse(
            "plugin.choria.srv_domain = example.net\nplugin.puppetdb.host = pdb\nplugin.redis.host = r\n\
             ttl = 30\nidentity = n1\nlibdir = /usr/libexec/mcollective\n",
        )
        .unwrap();
        let report = config.check(ConfigFile::Server);
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        let lines: Vec<_> = report.warnings.iter().map(|w| w.line).collect();
        assert_eq!(lines, vec![Some(1), Some(2), Some(3), Some(4), Some(6)]);
        assert!(report.warnings[2].message.contains("no redis plugin"));
        assert!(report.warnings[3]
            .message
            .contains("ttl is a client.cfg setting; server.cfg ignores it"));
        let client = config.check(ConfigFile::Client);
        assert!(client
            .warnings
            .iter()
            .any(|w| w.line == Some(5) && w.message.contains("identity is a server.cfg setting")));
    }

    #[test]
    fn values_are_checked_by_kind() {
        let config = Config::parse(
            "loglevel = loud\nmax_in_flight = -1\nrpcaudit = perhaps\nidentity = a b\n\
             plugin.puppet.vardir = cache\nplugin.filemgr.allowed_paths = /tmp, /var/../etc\n\
             plugin.prometheus.listen = 9100\nLOG_FORMAT = json\nlog_format = JSON\n",
        )
        .unwrap();
        let report = config.check(ConfigFile::Server);
        let lines: Vec<_> = report.errors.iter().map(|e| e.line.unwrap()).collect();
        assert_eq!(lines, vec![1, 2, 3, 4, 5, 6, 7, 8], "{:?}", report.errors);
        assert!(report.errors[0].message.contains("must be one of trace"));
        assert!(report.errors[7].message.contains("did you mean log_format"));
    }

    #[test]
    fn relative_paths_are_taken_from_the_files_directory() {
        let (config, errors) = Config::parse_file(
            "plugin.yaml = facts.yaml, /abs.json\nclassesfile = ../classes.txt\nplugin.puppet.command = puppet\n",
            Path::new("/etc/muster/server.cfg"),
        );
        assert!(errors.is_empty());
        assert_eq!(
            config.paths("plugin.yaml"),
            vec![
                PathBuf::from("/etc/muster/facts.yaml"),
                PathBuf::from("/abs.json")
            ]
        );
        assert_eq!(
            config.path("classesfile"),
            Some(PathBuf::from("/etc/muster/../classes.txt"))
        );
        assert_eq!(config.get("plugin.puppet.command"), Some("puppet"));
    }

    #[test]
    fn secrets_and_url_passwords_are_redacted() {
        let key = |name| lookup(name).unwrap();
        assert_eq!(
            redacted(
                key("plugin.nats.servers"),
                "nats://u:pw@h:4222, tls://h2:4222, nats://tok@h3"
            ),
            "nats://u:[redacted]@h:4222, tls://h2:4222, nats://[redacted]@h3"
        );
        assert_eq!(redacted(key("plugin.nats.password"), "pw"), REDACTED);
        assert_eq!(redacted(key("identity"), "web1"), "web1");
    }

    #[test]
    fn keys_are_unique_and_their_examples_pass_their_own_check() {
        for (i, key) in KEYS.iter().enumerate() {
            assert!(
                KEYS[..i].iter().all(|k| k.name != key.name),
                "{} twice",
                key.name
            );
            assert!(validate(key, key.example).is_ok(), "{}", key.name);
            assert!(!key.meaning.is_empty(), "{}", key.name);
        }
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "missing from muster_protocol::config::KEYS")]
    fn reading_an_undocumented_key_panics_in_debug_builds() {
        let _ = Config::default().get("no.such.key");
    }
}
