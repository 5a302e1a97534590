//! MCollective-style `key = value` configuration files.
//!
//! Both `mco server` and the client read this format: one setting per
//! line, `#` starts a comment, keys may contain dots
//! (`plugin.nats.servers`), a later line overrides an earlier one. Every
//! error names its line.
//!
//! ```
//! use muster_protocol::config::Config;
//!
//! let config = Config::parse("identity = web1\ncollectives = mcollective, compute\n").unwrap();
//! assert_eq!(config.get("identity"), Some("web1"));
//! assert_eq!(config.list("collectives"), vec!["mcollective", "compute"]);
//! ```

use std::collections::HashMap;
use std::fmt;

/// A parsed configuration file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    /// key -> (value, line number it came from)
    values: HashMap<String, (String, usize)>,
    /// Where the text came from, for error messages.
    source: String,
}

/// A configuration problem, with the line it is on when there is one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub file: String,
    pub line: Option<usize>,
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

impl Config {
    /// Parses text that did not come from a named file.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse_named(text, "config")
    }

    /// Parses `text`, naming `source` (usually the file path) in errors.
    pub fn parse_named(text: &str, source: &str) -> Result<Config, ConfigError> {
        let mut values = HashMap::new();
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
                return Err(error(format!(
                    "expected 'key = value', found {:?}",
                    truncate(trimmed)
                )));
            };
            let key = key.trim();
            if key.is_empty() {
                return Err(error("missing key before '='".into()));
            }
            if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(error(format!(
                    "key {:?} contains whitespace",
                    truncate(key)
                )));
            }
            values.insert(key.to_string(), (value.trim().to_string(), line));
        }
        Ok(Config {
            values,
            source: source.to_string(),
        })
    }

    /// The value of `key`, if set and not empty.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values
            .get(key)
            .map(|(v, _)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// A comma-separated list; empty when unset.
    pub fn list(&self, key: &str) -> Vec<String> {
        self.get(key)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// An unsigned number.
    pub fn number(&self, key: &str) -> Result<Option<u64>, ConfigError> {
        self.typed(key, "a whole number", |v| v.parse::<u64>().ok())
    }

    /// `true/false`, `yes/no`, `1/0`, `on/off` — as MCollective accepts.
    pub fn flag(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        self.typed(key, "true or false", |v| {
            match v.to_ascii_lowercase().as_str() {
                "true" | "yes" | "1" | "on" | "y" => Some(true),
                "false" | "no" | "0" | "off" | "n" => Some(false),
                _ => None,
            }
        })
    }

    /// An error about `key`, pointing at its line.
    pub fn error(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.source.clone(),
            line: self.values.get(key).map(|(_, line)| *line),
            message: message.into(),
        }
    }

    /// Where this configuration came from.
    pub fn source(&self) -> &str {
        &self.source
    }

    fn typed<T>(
        &self,
        key: &str,
        expected: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<Option<T>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => parse(v)
                .map(Some)
                .ok_or_else(|| self.error(key, format!("{key} must be {expected}, found {v:?}"))),
        }
    }
}

fn truncate(text: &str) -> String {
    text.chars().take(60).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_mcollective_style_files() {
        let text = "# a comment\n\nidentity = web1\nplugin.nats.servers = nats://a:4222,nats://b:4222\n  loglevel=debug  \nidentity = web2\nempty =\n";
        let config = Config::parse(text).unwrap();
        assert_eq!(config.get("identity"), Some("web2"));
        assert_eq!(config.get("loglevel"), Some("debug"));
        assert_eq!(config.get("empty"), None);
        assert_eq!(config.get("missing"), None);
        assert_eq!(
            config.list("plugin.nats.servers"),
            vec!["nats://a:4222", "nats://b:4222"]
        );
        assert!(config.list("missing").is_empty());
    }

    #[test]
    fn values_may_contain_equals_signs() {
        let config = Config::parse("plugin.x = a=b").unwrap();
        assert_eq!(config.get("plugin.x"), Some("a=b"));
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
    fn typed_values_report_their_line() {
        let config = Config::parse("a = 1\nb = nope\nc = yes\n").unwrap();
        assert_eq!(config.number("a").unwrap(), Some(1));
        let err = config.number("b").unwrap_err();
        assert_eq!(err.line, Some(2));
        assert!(err.message.contains("whole number"));
        assert_eq!(config.flag("c").unwrap(), Some(true));
        assert!(config.flag("b").is_err());
        assert_eq!(config.number("zzz").unwrap(), None);
    }

    #[test]
    fn binary_garbage_is_an_error_not_a_panic() {
        let text = String::from_utf8_lossy(&[0xff, 0x00, b'\n', b'=', 0x01]).into_owned();
        assert!(Config::parse(&text).is_err());
    }
}
