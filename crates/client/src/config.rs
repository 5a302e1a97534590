//! `client.cfg`: where the client connects and which key it signs with.

use std::path::{Path, PathBuf};

use muster_protocol::config::{Config, ConfigError};

/// The environment variable that names the client config file.
pub const CONFIG_ENV: &str = "MCO_CONFIG";

/// Everything the client reads from its config file.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientConfig {
    /// The file it came from; `None` when no file exists and defaults apply.
    pub file: Option<PathBuf>,
    pub servers: Vec<String>,
    pub main_collective: String,
    pub collectives: Vec<String>,
    /// The private key; its public half is `<key>.pub`.
    pub key_file: PathBuf,
    /// Who the caller says it is, e.g. `user=alice`.
    pub caller: String,
    /// Seconds a request stays valid.
    pub ttl: u64,
    /// Directories with `<agent>.json` DDLs of external agents.
    pub agent_dirs: Vec<PathBuf>,
    /// When broadcast discovery stops waiting (`discovery_window_ms` sets its floor).
    pub window: crate::QuietWindow,
}

impl ClientConfig {
    /// Reads `explicit`, else `$MCO_CONFIG`, else the default file if it
    /// exists; with none of them, every setting takes its default.
    pub fn load(explicit: Option<&Path>) -> Result<ClientConfig, ConfigError> {
        let chosen = explicit
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os(CONFIG_ENV).map(PathBuf::from));
        let path = match chosen {
            Some(path) => path,
            None => {
                let default = default_dir().join("client.cfg");
                if !default.exists() {
                    return ClientConfig::from_config(&Config::default());
                }
                default
            }
        };
        let text = std::fs::read_to_string(&path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            line: None,
            message: format!("cannot read: {e}"),
        })?;
        let config = Config::parse_named(&text, &path.display().to_string())?;
        let mut client = ClientConfig::from_config(&config)?;
        client.file = Some(path.clone());
        // A relative key path is relative to the config file.
        if client.key_file.is_relative() {
            if let Some(dir) = path.parent() {
                client.key_file = dir.join(&client.key_file);
            }
        }
        Ok(client)
    }

    /// Interprets parsed settings.
    pub fn from_config(config: &Config) -> Result<ClientConfig, ConfigError> {
        let main_collective = config
            .get("main_collective")
            .unwrap_or("mcollective")
            .to_string();
        let mut collectives = config.list("collectives");
        if collectives.is_empty() {
            collectives.push(main_collective.clone());
        }
        let mut servers = config.list("plugin.nats.servers");
        if servers.is_empty() {
            servers.push(muster_connector::DEFAULT_SERVER.to_string());
        }
        muster_connector::parse_servers(&servers)
            .map_err(|e| config.error("plugin.nats.servers", e.to_string()))?;
        let user = user_name();
        let key_file = config
            .get("plugin.security.key")
            .map(PathBuf::from)
            .unwrap_or_else(|| default_dir().join("keys").join(&user));
        Ok(ClientConfig {
            file: None,
            servers,
            main_collective,
            collectives,
            key_file,
            caller: config
                .get("plugin.security.caller")
                .map(str::to_string)
                .unwrap_or_else(|| format!("user={user}")),
            ttl: config.number("ttl")?.unwrap_or(60),
            agent_dirs: config
                .list("plugin.external.agents_dir")
                .into_iter()
                .map(PathBuf::from)
                .collect(),
            window: crate::QuietWindow {
                floor: std::time::Duration::from_millis(
                    config
                        .number("discovery_window_ms")?
                        .unwrap_or(100)
                        .clamp(1, 60_000),
                ),
                ..crate::QuietWindow::default()
            },
        })
    }
}

/// `$XDG_CONFIG_HOME/muster`, else `~/.config/muster`.
pub fn default_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("muster");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".config").join("muster")
}

/// The login name, made safe for a file name and a subject token.
pub fn user_name() -> String {
    let raw = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "muster".into());
    let safe: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if safe.is_empty() {
        "muster".into()
    } else {
        safe
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_settings_and_resolves_the_key_next_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("client.cfg");
        std::fs::write(
            &file,
            "plugin.nats.servers = nats://127.0.0.1:4999\nmain_collective = ops\ncollectives = ops, dev\nplugin.security.key = keys/me\nttl = 30\ndiscovery_window_ms = 400\n",
        )
        .unwrap();
        let config = ClientConfig::load(Some(&file)).unwrap();
        assert_eq!(config.servers, vec!["nats://127.0.0.1:4999"]);
        assert_eq!(config.main_collective, "ops");
        assert_eq!(config.collectives, vec!["ops", "dev"]);
        assert_eq!(config.key_file, dir.path().join("keys/me"));
        assert_eq!(config.ttl, 30);
        assert_eq!(config.window.floor, std::time::Duration::from_millis(400));
        assert_eq!(config.file, Some(file));
    }

    #[test]
    fn errors_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("client.cfg");
        std::fs::write(&file, "ttl = soon\n").unwrap();
        let err = ClientConfig::load(Some(&file)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}:1: ttl must be a whole number, found \"soon\"",
                file.display()
            )
        );
        let err = ClientConfig::load(Some(&dir.path().join("missing.cfg"))).unwrap_err();
        assert!(
            err.to_string().contains("missing.cfg: cannot read"),
            "{err}"
        );
    }
}
