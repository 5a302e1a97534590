//! `client.cfg`: where the client connects and which certificate it signs with.

use std::path::{Path, PathBuf};

use muster_protocol::config::{Config, ConfigError, ConfigErrors, ConfigFile, Report};

/// The environment variable that names the client config file.
pub const CONFIG_ENV: &str = "MCO_CONFIG";

/// Everything the client reads from its config file.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientConfig {
    /// The file it came from; `None` when no file exists and defaults apply.
    pub file: Option<PathBuf>,
    /// Broker URLs (`plugin.nats.servers`).
    pub servers: Vec<String>,
    /// NATS credentials beyond the certificate, when the broker wants them.
    pub nats_auth: muster_connector::Auth,
    /// The collective requests go to unless `-T` names another.
    pub main_collective: String,
    /// The collectives this client may address.
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
    /// The discovery a call uses where its flags say nothing.
    pub discovery: crate::DiscoverySettings,
    /// Keys that are ignored (server.cfg's, plugins muster lacks), each
    /// naming its line.
    pub warnings: Vec<ConfigError>,
    /// Every setting as written, relative paths resolved.
    pub settings: Config,
}

impl ClientConfig {
    /// Reads `explicit`, else `$MCO_CONFIG`, else the default file if it
    /// exists; with none of them, every setting takes its default. Every
    /// error in the file is reported, each with its line.
    pub fn load(explicit: Option<&Path>) -> Result<ClientConfig, ConfigErrors> {
        let Some(path) = ClientConfig::path(explicit) else {
            return ClientConfig::from_config(&Config::default());
        };
        let path = std::path::absolute(&path).unwrap_or(path);
        let text = std::fs::read_to_string(&path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            line: None,
            message: format!("cannot read: {e}"),
        })?;
        let (config, errors) = Config::parse_file(&text, &path);
        let mut client = ClientConfig::interpret(config, errors)?;
        client.file = Some(path);
        Ok(client)
    }

    /// The file [`ClientConfig::load`] reads: `explicit`, else
    /// `$MCO_CONFIG`, else the default one if it exists.
    pub fn path(explicit: Option<&Path>) -> Option<PathBuf> {
        explicit
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os(CONFIG_ENV).map(PathBuf::from))
            .or_else(|| Some(default_dir().join("client.cfg")).filter(|p| p.exists()))
    }

    /// Interprets parsed settings; relative paths are taken as written.
    pub fn from_config(config: &Config) -> Result<ClientConfig, ConfigErrors> {
        ClientConfig::interpret(config.clone(), Vec::new())
    }

    /// Checks every key against the table, then reads each setting,
    /// collecting every error rather than stopping at the first.
    fn interpret(
        config: Config,
        parse_errors: Vec<ConfigError>,
    ) -> Result<ClientConfig, ConfigErrors> {
        let (mut errors, warnings) = config.start_checking(ConfigFile::Client, parse_errors);
        let config = &config;
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
        if let Err(e) = muster_connector::parse_servers(&servers) {
            errors.push(config.error("plugin.nats.servers", e.to_string()));
        }
        let security = errors.take(muster_pki::Settings::from_config(
            config,
            None,
            default_dir().join("ssl"),
            format!(
                "{}{}",
                user_name(),
                muster_protocol::identity::CALLER_SUFFIX
            ),
        ));
        if let Some(security) = &security {
            if muster_protocol::identity::role_of(&security.certname)
                != muster_protocol::identity::Role::Caller
            {
                errors.push(config.error(
                    "plugin.security.certname",
                    format!(
                        "{:?} is not a caller's certificate name: callers are named <user>.mcollective",
                        security.certname
                    ),
                ));
            }
        }
        let nats_auth = errors.take(muster_connector::Auth::from_config(config, None));
        let verify_replies = errors
            .take(config.flag("plugin.security.verify_replies"))
            .flatten()
            .unwrap_or(true);
        let ttl = errors.take(config.number("ttl")).flatten().unwrap_or(60);
        let window_ms = errors
            .take(config.number("discovery_window_ms"))
            .flatten()
            .unwrap_or(100)
            .clamp(1, 60_000);
        let discovery_timeout = errors.take(config.seconds("discovery_timeout")).flatten();
        let puppetdb_timeout = errors
            .take(config.seconds("plugin.puppetdb.timeout"))
            .flatten();
        errors.into_result(&warnings)?;
        let (Some(security), Some(nats_auth)) = (security, nats_auth) else {
            // Each None above recorded its error, so into_result returned.
            return Err(ConfigErrors::from(
                config.error("plugin.security.certname", "inconsistent settings"),
            ));
        };
        let puppetdb_tls = security.clone();
        Ok(ClientConfig {
            file: None,
            servers,
            nats_auth,
            main_collective,
            collectives,
            security,
            verify_replies,
            ttl,
            agent_dirs: config.paths("plugin.external.agents_dir"),
            window: crate::QuietWindow {
                floor: std::time::Duration::from_millis(window_ms),
                ..crate::QuietWindow::default()
            },
            discovery: crate::DiscoverySettings {
                method: config
                    .get("default_discovery_method")
                    .map(str::to_ascii_lowercase),
                timeout: discovery_timeout,
                inventory: config.path("plugin.choria.discovery.inventory.source"),
                program: config.path("plugin.choria.discovery.external.command"),
                options: config.get("default_discovery_options").map(str::to_string),
                puppetdb: crate::puppetdb::PuppetDb {
                    url: config
                        .get("plugin.puppetdb.url")
                        .unwrap_or(crate::puppetdb::DEFAULT_URL)
                        .to_string(),
                    timeout: puppetdb_timeout,
                    collectives_fact: match config.get("plugin.puppetdb.collectives_fact") {
                        Some(fact) if fact.eq_ignore_ascii_case("none") => None,
                        Some(fact) => Some(fact.to_string()),
                        None => Some(crate::puppetdb::DEFAULT_COLLECTIVES_FACT.to_string()),
                    },
                    tls: Some(puppetdb_tls),
                },
            },
            warnings,
            settings: config.clone(),
        })
    }

    /// Reads the file [`ClientConfig::load`] would, then checks what it
    /// points at ([`ClientConfig::verify`]) — also when the file itself
    /// has errors, so `check-config` lists every problem in one pass.
    pub fn check(explicit: Option<&Path>) -> Result<ClientConfig, ConfigErrors> {
        let Some(path) = ClientConfig::path(explicit) else {
            let client = ClientConfig::from_config(&Config::default())?;
            let verified = client.verify();
            return ConfigErrors {
                errors: verified.errors,
                warnings: verified.warnings,
            }
            .into_result(&[])
            .map(|()| client);
        };
        let path = std::path::absolute(&path).unwrap_or(path);
        let text = std::fs::read_to_string(&path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            line: None,
            message: format!("cannot read: {e}"),
        })?;
        let (config, errors) = Config::parse_file(&text, &path);
        let verified = verify_settings(&config);
        let mut client =
            verified.joined(ClientConfig::interpret(config, errors), |c| &mut c.warnings)?;
        client.file = Some(path);
        Ok(client)
    }

    /// Checks what the settings point at without connecting: the caller's
    /// certificate and key loadable and vouched for by the CA, agent
    /// directories readable. Each problem names its setting's line.
    pub fn verify(&self) -> Report {
        verify_settings(&self.settings)
    }
}

/// [`ClientConfig::verify`] on settings that may have errors of their own.
fn verify_settings(config: &Config) -> Report {
    let mut report = Report::default();
    let security = muster_pki::Settings::from_config(
        config,
        None,
        default_dir().join("ssl"),
        format!(
            "{}{}",
            user_name(),
            muster_protocol::identity::CALLER_SUFFIX
        ),
    );
    if let Ok(security) = security {
        if let Err(e) = security.load() {
            let key = ["plugin.security.ssldir", "plugin.security.certname"]
                .into_iter()
                .find(|key| config.line(key).is_some())
                .unwrap_or("plugin.security.ssldir");
            report
                .errors
                .push(config.error(key, format!("cannot load the caller's certificate: {e}")));
        }
    }
    for dir in config.paths("plugin.external.agents_dir") {
        if let Err(e) = std::fs::read_dir(&dir) {
            report.errors.push(config.error(
                "plugin.external.agents_dir",
                format!("cannot read agents directory {}: {e}", dir.display()),
            ));
        }
    }
    report
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
            "plugin.nats.servers = nats://127.0.0.1:4999\nmain_collective = ops\ncollectives = ops, dev\nplugin.security.ssldir = ssl\nplugin.security.certname = me.mcollective\nttl = 30\ndiscovery_window_ms = 400\nplugin.external.agents_dir = agents\nidentity = laptop\n",
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
        assert_eq!(config.agent_dirs, vec![dir.path().join("agents")]);
        assert_eq!(config.warnings.len(), 1);
        assert!(config.warnings[0]
            .message
            .contains("identity is a server.cfg setting"));
        assert_eq!(config.file, Some(file));
    }

    #[test]
    fn discovery_settings_come_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("client.cfg");
        let config = ClientConfig::from_config(&Config::default()).unwrap();
        assert_eq!(
            config.discovery,
            crate::DiscoverySettings {
                puppetdb: config.discovery.puppetdb.clone(),
                ..Default::default()
            }
        );
        assert_eq!(config.discovery.puppetdb.url, "https://puppet:8081");
        std::fs::write(
            &file,
            "default_discovery_method = Inventory\ndiscovery_timeout = 0.25\ndefault_discovery_options = other.json\nplugin.choria.discovery.inventory.source = inv.json\nplugin.choria.discovery.external.command = /bin/disco\n",
        )
        .unwrap();
        let config = ClientConfig::load(Some(&file)).unwrap();
        assert_eq!(
            config.discovery,
            crate::DiscoverySettings {
                method: Some("inventory".into()),
                timeout: Some(std::time::Duration::from_millis(250)),
                inventory: Some(dir.path().join("inv.json")),
                program: Some("/bin/disco".into()),
                options: Some("other.json".into()),
                puppetdb: config.discovery.puppetdb.clone(),
            }
        );
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
        std::fs::write(&file, "discovery_timeout = 0\n").unwrap();
        let err = ClientConfig::load(Some(&file)).unwrap_err();
        assert!(
            err.to_string()
                .contains("discovery_timeout must be seconds above 0"),
            "{err}"
        );
        std::fs::write(&file, "ttl = 5\ndefault_discovery_method = inventry\n").unwrap();
        let err = ClientConfig::load(Some(&file)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}:2: default_discovery_method must be one of broadcast, flatfile, inventory, external, puppetdb, registry; found \"inventry\" (did you mean inventory?)",
                file.display()
            )
        );
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
        std::fs::write(&file, "ttl = soon\nplugin.nats.server = x\nttl = 5\n").unwrap();
        let err = ClientConfig::load(Some(&file)).unwrap_err();
        let lines: Vec<_> = err.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![Some(1), Some(2), Some(3)], "{err}");
        assert!(err.errors[1]
            .message
            .contains("did you mean plugin.nats.servers?"));
        let err = ClientConfig::load(Some(&dir.path().join("missing.cfg"))).unwrap_err();
        assert!(
            err.to_string().contains("missing.cfg: cannot read"),
            "{err}"
        );
    }
}
