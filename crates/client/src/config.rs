//! `client.cfg`: where the client connects and which certificate it signs with.

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
    /// NATS credentials beyond the certificate, when the broker wants them.
    pub nats_auth: muster_connector::Auth,
    pub main_collective: String,
    pub collectives: Vec<String>,
    /// The caller's certificate and the CA (`plugin.security.*`); the
    /// certname defaults to `<login>.mcollective`.
    pub security: muster_pki::Settings,
    /// Check every reply's signature (`plugin.security.verify_replies`,
    /// default on). Off, a reply is believed on the broker's word that the
    /// subject names its sender: a compromised broker or a nats-server
    /// deployment could then let one node speak for another.
    pub verify_replies: bool,
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
        let mut client = ClientConfig::from_config_in(&config, path.parent())?;
        client.file = Some(path.clone());
        Ok(client)
    }

    /// Interprets parsed settings; relative paths are taken as written.
    pub fn from_config(config: &Config) -> Result<ClientConfig, ConfigError> {
        ClientConfig::from_config_in(config, None)
    }

    /// Interprets parsed settings; a relative ssldir or credentials file
    /// is taken from `base`, the config file's directory.
    fn from_config_in(config: &Config, base: Option<&Path>) -> Result<ClientConfig, ConfigError> {
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
        let security = muster_pki::Settings::from_config(
            config,
            base,
            default_dir().join("ssl"),
            format!(
                "{}{}",
                user_name(),
                muster_protocol::identity::CALLER_SUFFIX
            ),
        )?;
        if muster_protocol::identity::role_of(&security.certname)
            != muster_protocol::identity::Role::Caller
        {
            return Err(config.error(
                "plugin.security.certname",
                format!(
                    "{:?} is not a caller's certificate name: callers are named <user>.mcollective",
                    security.certname
                ),
            ));
        }
        Ok(ClientConfig {
            file: None,
            servers,
            nats_auth: muster_connector::Auth::from_config(config, base)?,
            main_collective,
            collectives,
            security,
            verify_replies: config
                .flag("plugin.security.verify_replies")?
                .unwrap_or(true),
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
            "plugin.nats.servers = nats://127.0.0.1:4999\nmain_collective = ops\ncollectives = ops, dev\nplugin.security.ssldir = ssl\nplugin.security.certname = me.mcollective\nttl = 30\ndiscovery_window_ms = 400\n",
        )
        .unwrap();
        let config = ClientConfig::load(Some(&file)).unwrap();
        assert_eq!(config.servers, vec!["nats://127.0.0.1:4999"]);
        assert_eq!(config.main_collective, "ops");
        assert_eq!(config.collectives, vec!["ops", "dev"]);
        assert_eq!(config.security.ssldir.root(), dir.path().join("ssl"));
        assert_eq!(config.security.certname, "me.mcollective");
        assert_eq!(config.ttl, 30);
        assert_eq!(config.window.floor, std::time::Duration::from_millis(400));
        assert_eq!(config.file, Some(file));
    }

    #[test]
    fn errors_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("client.cfg");
        std::fs::write(&file, "plugin.security.certname = web1\n").unwrap();
        let err = ClientConfig::load(Some(&file)).unwrap_err();
        assert!(
            err.to_string().contains("not a caller's certificate name"),
            "{err}"
        );
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
