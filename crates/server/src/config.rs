//! `server.cfg`: what a node is and where it connects.

use std::path::{Path, PathBuf};

use muster_protocol::config::{Config, ConfigError};
use muster_protocol::subject;

/// Where a node's system facts come from; fact files are merged over them.
#[derive(Debug, Clone, PartialEq)]
pub enum FactSource {
    /// Gathered natively from /proc, /sys and /etc (`factsource = yaml`, the default).
    Native,
    /// `facter -j`, cached and re-run every `refresh` (`factsource = facter`).
    Facter {
        command: PathBuf,
        refresh: std::time::Duration,
    },
}

/// Everything `mco server` reads from its config file.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// The file this came from, reported by `daemon_stats`.
    pub file: Option<PathBuf>,
    pub identity: String,
    /// Every collective the node belongs to; includes `main_collective`.
    pub collectives: Vec<String>,
    pub main_collective: String,
    /// Where system facts come from.
    pub factsource: FactSource,
    /// Fact files (YAML or JSON), merged in order over the system facts.
    pub fact_files: Vec<PathBuf>,
    pub classes_file: Option<PathBuf>,
    pub servers: Vec<String>,
    /// NATS credentials beyond the certificate, when the broker wants them.
    pub nats_auth: muster_connector::Auth,
    pub logfile: Option<PathBuf>,
    pub loglevel: String,
    /// The node's certificate and the CA (`plugin.security.*`).
    pub security: muster_pki::Settings,
    /// The longest ttl a request may ask for; bounds the replay memory.
    pub max_ttl: u64,
    /// How many request ids the replay store holds at most.
    pub replay_cache_size: usize,
    /// Requests handled at once (`max_in_flight`); more are answered busy.
    pub max_in_flight: usize,
    /// Agent actions running at once (`max_agent_processes`); more are answered busy.
    pub max_agent_processes: usize,
    /// Authorization: `plugin.actionpolicy.*`.
    pub actionpolicy: crate::policy::Settings,
    /// The audit log, when `rpcaudit` is on.
    pub rpcaudit: Option<crate::audit::Settings>,
    /// Every setting as written, for agents' own `plugin.<agent>.*` keys.
    pub settings: Config,
    /// `plugin.prometheus.listen`: `host:port` where `mco server` serves
    /// Prometheus `/metrics` (unset: not served).
    pub prometheus_listen: Option<String>,
}

impl ServerConfig {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<ServerConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            line: None,
            message: format!("cannot read: {e}"),
        })?;
        let config = Config::parse_named(&text, &path.display().to_string())?;
        let mut server = ServerConfig::from_config_in(&config, path.parent())?;
        server.file = Some(path.to_path_buf());
        Ok(server)
    }

    /// Interprets parsed settings; paths are taken as written.
    pub fn from_config(config: &Config) -> Result<ServerConfig, ConfigError> {
        ServerConfig::from_config_in(config, None)
    }

    /// Interprets parsed settings; a relative ssldir or credentials file
    /// is taken from `base`, the config file's directory.
    fn from_config_in(config: &Config, base: Option<&Path>) -> Result<ServerConfig, ConfigError> {
        let identity = match config.get("identity") {
            Some(identity) => identity.to_string(),
            None => hostname(),
        };
        if !subject::is_valid_name(&identity) {
            return Err(config.error(
                "identity",
                format!("identity {identity:?} cannot contain spaces, '*', '>' or empty dot-separated parts"),
            ));
        }
        let main_collective = config
            .get("main_collective")
            .unwrap_or("mcollective")
            .to_string();
        let mut collectives = config.list("collectives");
        if collectives.is_empty() {
            collectives.push(main_collective.clone());
        }
        for collective in &collectives {
            if !subject::is_valid_name(collective) || collective.contains('.') {
                return Err(config.error(
                    "collectives",
                    format!("collective {collective:?} must be one word without dots or wildcards"),
                ));
            }
        }
        if !collectives.contains(&main_collective) {
            return Err(config.error(
                if config.get("main_collective").is_some() {
                    "main_collective"
                } else {
                    "collectives"
                },
                format!(
                    "main_collective {main_collective:?} is not one of collectives {collectives:?}"
                ),
            ));
        }
        let factsource = match config.get("factsource").unwrap_or("yaml") {
            "yaml" | "json" => FactSource::Native,
            "facter" => FactSource::Facter {
                command: config
                    .get("plugin.facter.command")
                    .unwrap_or("facter")
                    .into(),
                refresh: std::time::Duration::from_secs(
                    config
                        .number("plugin.facter.refresh_interval")?
                        .unwrap_or(300)
                        .max(1),
                ),
            },
            other => {
                return Err(config.error(
                    "factsource",
                    format!("unknown factsource {other:?} (this build knows: yaml, facter)"),
                ))
            }
        };
        let fact_files = config
            .list("plugin.yaml")
            .into_iter()
            .map(PathBuf::from)
            .collect();
        let loglevel = config
            .get("loglevel")
            .unwrap_or("info")
            .to_ascii_lowercase();
        if !["trace", "debug", "info", "warn", "error", "fatal"].contains(&loglevel.as_str()) {
            return Err(config.error(
                "loglevel",
                format!(
                    "loglevel must be one of debug, info, warn, error, fatal; found {loglevel:?}"
                ),
            ));
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
            PathBuf::from(DEFAULT_SSLDIR),
            identity.clone(),
        )?;
        if !muster_protocol::identity::may_act_as(&security.certname, &identity) {
            return Err(config.error(
                if config.get("plugin.security.certname").is_some() {
                    "plugin.security.certname"
                } else {
                    "identity"
                },
                format!(
                    "a node with certificate {:?} cannot answer as identity {identity:?}: the broker and \
                     the clients accept a node's replies only under its certificate's name",
                    security.certname
                ),
            ));
        }
        Ok(ServerConfig {
            file: None,
            nats_auth: muster_connector::Auth::from_config(config, base)?,
            security,
            identity,
            collectives,
            main_collective,
            factsource,
            fact_files,
            classes_file: config.get("classesfile").map(PathBuf::from),
            servers,
            logfile: config.get("logfile").map(PathBuf::from),
            loglevel,
            max_ttl: config
                .number("plugin.security.max_ttl")?
                .unwrap_or(DEFAULT_MAX_TTL),
            replay_cache_size: config
                .number("plugin.security.replay_cache_size")?
                .map(|n| n.clamp(1, 10_000_000) as usize)
                .unwrap_or(crate::replay::DEFAULT_CAPACITY),
            max_in_flight: config
                .number("max_in_flight")?
                .map(|n| n.clamp(1, 100_000) as usize)
                .unwrap_or(crate::node::DEFAULT_MAX_IN_FLIGHT),
            max_agent_processes: config
                .number("max_agent_processes")?
                .map(|n| n.clamp(1, 10_000) as usize)
                .unwrap_or(crate::node::DEFAULT_MAX_AGENT_PROCESSES),
            actionpolicy: crate::policy::Settings::from_config(config)?,
            rpcaudit: crate::audit::Settings::from_config(config)?,
            settings: config.clone(),
            prometheus_listen: config.get("plugin.prometheus.listen").map(str::to_string),
        })
    }
}

/// The longest ttl (seconds) a node accepts unless `plugin.security.max_ttl`
/// says otherwise: minutes, because every accepted id is remembered that long.
pub const DEFAULT_MAX_TTL: u64 = 300;

/// Where a node's certificates live unless `plugin.security.ssldir` says otherwise.
pub(crate) const DEFAULT_SSLDIR: &str = "/etc/muster/ssl";

/// The machine's host name, the default identity.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ServerConfig, ConfigError> {
        ServerConfig::from_config(&Config::parse(text)?)
    }

    #[test]
    fn full_config() {
        let config = parse(
            "identity = web1\ncollectives = mcollective, compute\nmain_collective = mcollective\n\
             factsource = yaml\nplugin.yaml = /a.yaml, /b.json\nclassesfile = /c.txt\n\
             plugin.nats.servers = nats://127.0.0.1:4222, nats://127.0.0.1:4223\n\
             loglevel = DEBUG\nplugin.security.ssldir = /ssl\n",
        )
        .unwrap();
        assert_eq!(config.identity, "web1");
        assert_eq!(config.collectives, vec!["mcollective", "compute"]);
        assert_eq!(
            config.fact_files,
            vec![PathBuf::from("/a.yaml"), PathBuf::from("/b.json")]
        );
        assert_eq!(config.servers.len(), 2);
        assert_eq!(config.loglevel, "debug");
        assert_eq!(config.security.ssldir.root(), Path::new("/ssl"));
        assert_eq!(config.security.certname, "web1");
    }

    #[test]
    fn defaults() {
        let config = parse("").unwrap();
        assert_eq!(config.identity, hostname());
        assert_eq!(config.collectives, vec!["mcollective"]);
        assert_eq!(config.main_collective, "mcollective");
        assert_eq!(config.servers, vec![muster_connector::DEFAULT_SERVER]);
        assert_eq!(config.security.ssldir.root(), Path::new(DEFAULT_SSLDIR));
        assert_eq!(config.security.certname, config.identity);
    }

    #[test]
    fn mistakes_name_their_line() {
        let cases = [
            ("identity = web 1", 1, "identity"),
            ("collectives = a, b\nmain_collective = c", 2, "not one of"),
            ("\n\nfactsource = puppetdb", 3, "unknown factsource"),
            (
                "factsource = facter\nplugin.facter.refresh_interval = often",
                2,
                "whole number",
            ),
            ("loglevel = loud", 1, "loglevel must be"),
            ("plugin.nats.servers = nats://[::1", 1, "invalid broker URL"),
            ("collectives = a.b", 1, "one word"),
            (
                "identity = web1\nplugin.security.certname = web2",
                2,
                "cannot answer as",
            ),
            (
                "identity = web1\nplugin.security.certname = ops.mcollective",
                2,
                "cannot answer as",
            ),
            (
                "identity = web1\nplugin.security.provider = ssl",
                2,
                "replaces MCollective's ssl",
            ),
            (
                "identity = web1\nplugin.nats.user = ops",
                2,
                "needs plugin.nats.password",
            ),
        ];
        for (text, line, message) in cases {
            let err = parse(text).unwrap_err();
            assert_eq!(err.line, Some(line), "{text}: {err}");
            assert!(err.message.contains(message), "{text}: {err}");
        }
    }

    #[test]
    fn unreadable_file_is_named() {
        let err = ServerConfig::load(Path::new("/nonexistent/server.cfg")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("/nonexistent/server.cfg: cannot read"),
            "{err}"
        );
    }
}
