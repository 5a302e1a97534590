//! `server.cfg`: what a node is and where it connects.

use std::path::{Path, PathBuf};

use muster_protocol::config::{redact_url, Config, ConfigError, ConfigErrors, ConfigFile, Report};
use muster_protocol::subject;

/// Where a node's system facts come from; fact files are merged over them.
#[derive(Debug, Clone, PartialEq)]
pub enum FactSource {
    /// Gathered natively from /proc, /sys and /etc (`factsource = yaml`, the default).
    Native,
    /// `facter -j`, cached and re-run every `refresh` (`factsource = facter`).
    Facter {
        /// `plugin.facter.command`.
        command: PathBuf,
        /// `plugin.facter.refresh_interval`.
        refresh: std::time::Duration,
    },
}

/// Everything `mco server` reads from its config file.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// The file this came from, reported by `daemon_stats`.
    pub file: Option<PathBuf>,
    /// The node's name (`identity`, default the host name).
    pub identity: String,
    /// Every collective the node belongs to; includes `main_collective`.
    pub collectives: Vec<String>,
    /// The collective requests go to by default.
    pub main_collective: String,
    /// Where system facts come from.
    pub factsource: FactSource,
    /// Fact files (YAML or JSON), merged in order over the system facts.
    pub fact_files: Vec<PathBuf>,
    /// The configuration manager's classes file (`classesfile`).
    pub classes_file: Option<PathBuf>,
    /// Broker URLs (`plugin.nats.servers`).
    pub servers: Vec<String>,
    /// NATS credentials beyond the certificate, when the broker wants them.
    pub nats_auth: muster_connector::Auth,
    /// Where the daemon logs; stderr when unset.
    pub logfile: Option<PathBuf>,
    /// `loglevel`, lower case.
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
    /// Keys that are ignored (another file's, plugins muster lacks), each
    /// naming its line: the daemon logs them at start.
    pub warnings: Vec<ConfigError>,
    /// Every setting as written, for agents' own `plugin.<agent>.*` keys.
    pub settings: Config,
    /// How long requests still running when the daemon is told to stop get
    /// to finish before their programs are stopped (`soft_shutdown_timeout`,
    /// seconds, default 60): below systemd's default 90 s stop timeout, so
    /// SIGTERM, SIGKILL 5 s later, the replies and the audit lines all fit
    /// in before systemd kills the daemon.
    pub soft_shutdown_timeout: std::time::Duration,
    /// How log lines are written (`log_format`): text, or one JSON object
    /// per line for a log collector.
    pub log_format: LogFormat,
    /// `plugin.prometheus.listen`: `host:port` where `mco server` serves
    /// Prometheus `/metrics` (unset: not served).
    pub prometheus_listen: Option<String>,
}

/// The `log_format` of the daemon's log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (the default).
    Text,
    /// One JSON object per line.
    Json,
}

impl ServerConfig {
    /// Reads and checks a config file; every error in it is reported, each
    /// with its line. Relative paths are taken from the file's directory.
    pub fn load(path: &Path) -> Result<ServerConfig, ConfigErrors> {
        // Relative paths in the file are taken from its directory, not from
        // wherever the daemon was started.
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            line: None,
            message: format!("cannot read: {e}"),
        })?;
        let (config, errors) = Config::parse_file(&text, &absolute);
        let mut server = ServerConfig::interpret(config, errors)?;
        server.file = Some(path.to_path_buf());
        Ok(server)
    }

    /// Interprets parsed settings; paths are taken as written.
    pub fn from_config(config: &Config) -> Result<ServerConfig, ConfigErrors> {
        ServerConfig::interpret(config.clone(), Vec::new())
    }

    /// Checks every key against the table, then reads each setting,
    /// collecting every error rather than stopping at the first.
    fn interpret(
        config: Config,
        parse_errors: Vec<ConfigError>,
    ) -> Result<ServerConfig, ConfigErrors> {
        let (mut errors, warnings) = config.start_checking(ConfigFile::Server, parse_errors);
        let config = &config;

        let identity = match config.get("identity") {
            Some(identity) => identity.to_string(),
            None => hostname(),
        };
        let identity_ok = subject::is_valid_name(&identity);
        if !identity_ok {
            errors.push(config.error(
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
        if let Some(collective) = collectives
            .iter()
            .find(|c| !subject::is_valid_name(c) || c.contains('.'))
        {
            errors.push(config.error(
                "collectives",
                format!("collective {collective:?} must be one word without dots or wildcards"),
            ));
        } else if !collectives.contains(&main_collective) {
            errors.push(config.error(
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
        let factsource = match config
            .get("factsource")
            .unwrap_or("yaml")
            .to_ascii_lowercase()
            .as_str()
        {
            "facter" => FactSource::Facter {
                command: config
                    .get("plugin.facter.command")
                    .unwrap_or("facter")
                    .into(),
                refresh: std::time::Duration::from_secs(
                    errors
                        .take(config.number("plugin.facter.refresh_interval"))
                        .flatten()
                        .unwrap_or(300)
                        .max(1),
                ),
            },
            // yaml and json; anything else was reported by the table check.
            _ => FactSource::Native,
        };
        let loglevel = config
            .get("loglevel")
            .unwrap_or("info")
            .to_ascii_lowercase();
        let mut servers = config.list("plugin.nats.servers");
        if servers.is_empty() {
            servers.push(muster_connector::DEFAULT_SERVER.to_string());
        }
        if let Err(e) = muster_connector::parse_servers(&servers) {
            errors.push(config.error("plugin.nats.servers", e.to_string()));
        }
        // The certname defaults to the identity: a bad identity is one error, not two.
        let security = (identity_ok || config.get("plugin.security.certname").is_some())
            .then(|| {
                errors.take(muster_pki::Settings::from_config(
                    config,
                    None,
                    PathBuf::from(DEFAULT_SSLDIR),
                    identity.clone(),
                ))
            })
            .flatten();
        if let Some(security) = &security {
            if !muster_protocol::identity::may_act_as(&security.certname, &identity) {
                errors.push(config.error(
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
        }
        let nats_auth = errors.take(muster_connector::Auth::from_config(config, None));
        let mut number = |key: &str| errors.take(config.number(key)).flatten();
        let max_ttl = number("plugin.security.max_ttl").unwrap_or(DEFAULT_MAX_TTL);
        let replay_cache_size = number("plugin.security.replay_cache_size")
            .map(|n| n.clamp(1, 10_000_000) as usize)
            .unwrap_or(crate::replay::DEFAULT_CAPACITY);
        let max_in_flight = number("max_in_flight")
            .map(|n| n.clamp(1, 100_000) as usize)
            .unwrap_or(crate::node::DEFAULT_MAX_IN_FLIGHT);
        let max_agent_processes = number("max_agent_processes")
            .map(|n| n.clamp(1, 10_000) as usize)
            .unwrap_or(crate::node::DEFAULT_MAX_AGENT_PROCESSES);
        let actionpolicy = errors.take(crate::policy::Settings::from_config(config));
        let rpcaudit = errors.take(crate::audit::Settings::from_config(config));

        errors.into_result(&warnings)?;
        let (Some(security), Some(nats_auth), Some(actionpolicy), Some(rpcaudit)) =
            (security, nats_auth, actionpolicy, rpcaudit)
        else {
            // Each None above recorded its error, so into_result returned.
            return Err(ConfigErrors::from(
                config.error("identity", "inconsistent settings"),
            ));
        };
        Ok(ServerConfig {
            file: None,
            nats_auth,
            security,
            identity,
            collectives,
            main_collective,
            factsource,
            fact_files: config.paths("plugin.yaml"),
            classes_file: config.path("classesfile"),
            servers,
            logfile: config.path("logfile"),
            loglevel,
            max_ttl,
            replay_cache_size,
            max_in_flight,
            max_agent_processes,
            actionpolicy,
            rpcaudit,
            warnings,
            settings: config.clone(),
            soft_shutdown_timeout: std::time::Duration::from_secs(
                config
                    .number("soft_shutdown_timeout")?
                    .unwrap_or(DEFAULT_SOFT_SHUTDOWN_TIMEOUT),
            ),
            log_format: match config.get("log_format").unwrap_or("text") {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                other => {
                    return Err(config
                        .error(
                            "log_format",
                            format!("log_format must be text or json; found {other:?}"),
                        )
                        .into())
                }
            },
            prometheus_listen: config.get("plugin.prometheus.listen").map(str::to_string),
        })
    }

    /// Reads a config file as [`ServerConfig::load`] does, then checks what
    /// it points at ([`ServerConfig::verify`]) — also when the file itself
    /// has errors, so `--check-config` lists every problem in one pass.
    pub fn check(path: &Path) -> Result<ServerConfig, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            line: None,
            message: format!("cannot read: {e}"),
        })?;
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let (config, errors) = Config::parse_file(&text, &absolute);
        let verified = verify_settings(&config);
        let mut server =
            verified.joined(ServerConfig::interpret(config, errors), |s| &mut s.warnings)?;
        server.file = Some(path.to_path_buf());
        Ok(server)
    }

    /// Checks what the settings point at without starting anything: fact
    /// and classes files readable, the certificate and key loadable and
    /// vouched for by the CA, agent and log directories present. Each
    /// problem names the line of the setting that leads to it.
    pub fn verify(&self) -> Report {
        verify_settings(&self.settings)
    }

    /// One line for the daemon to log at start: who it is, where it
    /// connects (credentials redacted) and what guards it.
    pub fn summary(&self, agents: &[String]) -> String {
        let brokers: Vec<String> = self.servers.iter().map(|s| redact_url(s)).collect();
        let mut agents = agents.to_vec();
        agents.sort();
        format!(
            "identity {} brokers {} certname {} collectives {} agents {} policy dir {} audit {}",
            self.identity,
            brokers.join(","),
            self.security.certname,
            self.collectives.join(","),
            if agents.is_empty() {
                "-".to_string()
            } else {
                agents.join(",")
            },
            self.actionpolicy.dir.display(),
            match &self.rpcaudit {
                Some(audit) => audit.file.display().to_string(),
                None => "off".to_string(),
            },
        )
    }
}

/// [`ServerConfig::verify`] on settings that may have errors of their
/// own: each check uses what could be read and skips the rest.
fn verify_settings(config: &Config) -> Report {
    let mut report = Report::default();
    for file in config.paths("plugin.yaml") {
        if let Err(e) = crate::facts::fact_files(vec![file]) {
            report
                .errors
                .push(config.error("plugin.yaml", format!("fact file {e}")));
        }
    }
    if let Some(file) = config.path("classesfile") {
        if let Err(e) = std::fs::File::open(&file) {
            report.warnings.push(config.error(
                "classesfile",
                format!(
                    "classes file {}: {e} (the node has no classes until it exists)",
                    file.display()
                ),
            ));
        }
    }
    let identity = config
        .get("identity")
        .map(str::to_string)
        .unwrap_or_else(hostname);
    let security =
        muster_pki::Settings::from_config(config, None, PathBuf::from(DEFAULT_SSLDIR), identity);
    if let Ok(security) = security {
        if let Err(e) = security.load() {
            let key = ["plugin.security.ssldir", "plugin.security.certname"]
                .into_iter()
                .find(|key| config.line(key).is_some())
                .unwrap_or("plugin.security.ssldir");
            report
                .errors
                .push(config.error(key, format!("cannot load this node's certificate: {e}")));
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
    if let Ok(policy) = crate::policy::Settings::from_config(config) {
        if !policy.dir.is_dir() {
            report.warnings.push(config.error(
                "plugin.actionpolicy.dir",
                format!(
                    "policy directory {} does not exist: {}",
                    policy.dir.display(),
                    if policy.allow_unconfigured {
                        "every agent may be called by every caller"
                    } else {
                        "every request will be refused"
                    }
                ),
            ));
        }
    }
    let audit = crate::audit::Settings::from_config(config)
        .ok()
        .flatten()
        .map(|a| a.file);
    for (key, file) in [
        ("logfile", config.path("logfile")),
        ("plugin.rpcaudit.logfile", audit),
    ] {
        let Some(parent) = file.as_deref().and_then(Path::parent) else {
            continue;
        };
        if !parent.as_os_str().is_empty() && !parent.is_dir() {
            report.errors.push(config.error(
                key,
                format!("directory {} does not exist", parent.display()),
            ));
        }
    }
    report
}

/// The longest ttl (seconds) a node accepts unless `plugin.security.max_ttl`
/// says otherwise: minutes, because every accepted id is remembered that long.
pub const DEFAULT_MAX_TTL: u64 = 300;

/// Seconds running requests get on shutdown unless `soft_shutdown_timeout` says otherwise.
pub(crate) const DEFAULT_SOFT_SHUTDOWN_TIMEOUT: u64 = 60;

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

    fn parse(text: &str) -> Result<ServerConfig, ConfigErrors> {
        let (config, errors) = Config::parse_all(text, "config");
        ServerConfig::interpret(config, errors)
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
        assert!(config.warnings.is_empty());
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
            (
                "\n\nfactsource = puppetdb",
                3,
                "factsource must be one of yaml, json, facter",
            ),
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
            ("identiy = web1", 1, "did you mean identity?"),
            (
                "plugin.nats.server = nats://a:4222",
                1,
                "did you mean plugin.nats.servers?",
            ),
        ];
        for (text, line, message) in cases {
            let err = parse(text).unwrap_err();
            assert_eq!(err.errors.len(), 1, "{text}: {err}");
            assert_eq!(err.errors[0].line, Some(line), "{text}: {err}");
            assert!(err.errors[0].message.contains(message), "{text}: {err}");
        }
    }

    #[test]
    fn every_mistake_is_reported_at_once() {
        let err = parse(
            "identiy = web1\nloglevel = loud\nmax_in_flight = many\nplugin.nats.server = x\n\
             collectives = a.b\nloglevel = info\n",
        )
        .unwrap_err();
        let lines: Vec<_> = err.errors.iter().map(|e| e.line).collect();
        assert_eq!(
            lines,
            vec![Some(1), Some(2), Some(3), Some(4), Some(5), Some(6)],
            "{err}"
        );
        assert!(err.errors[5]
            .message
            .contains("set twice, on line 2 and on line 6"));
    }

    #[test]
    fn ignored_keys_are_warnings() {
        let config = parse(
            "identity = web1\nplugin.choria.srv_domain = x\nttl = 30\nlibdir = /usr/share/mcollective\n",
        )
        .unwrap();
        let lines: Vec<_> = config.warnings.iter().map(|w| w.line).collect();
        assert_eq!(lines, vec![Some(2), Some(3), Some(4)]);
    }

    #[test]
    fn relative_paths_resolve_from_the_files_directory() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("server.cfg");
        std::fs::write(
            &file,
            "identity = web1\nplugin.yaml = facts.yaml\nclassesfile = classes.txt\n\
             plugin.security.ssldir = ssl\nlogfile = server.log\n",
        )
        .unwrap();
        let config = ServerConfig::load(&file).unwrap();
        assert_eq!(config.fact_files, vec![dir.path().join("facts.yaml")]);
        assert_eq!(config.classes_file, Some(dir.path().join("classes.txt")));
        assert_eq!(config.security.ssldir.root(), dir.path().join("ssl"));
        assert_eq!(config.logfile, Some(dir.path().join("server.log")));
    }

    #[test]
    fn verify_names_the_line_of_a_missing_fact_file_and_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("server.cfg");
        std::fs::write(
            &file,
            "identity = web1\nplugin.yaml = facts.yaml\nplugin.security.ssldir = ssl\n",
        )
        .unwrap();
        let config = ServerConfig::load(&file).unwrap();
        let report = config.verify();
        let lines: Vec<_> = report.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![Some(2), Some(3)], "{:?}", report.errors);
        assert!(report.errors[0].message.contains("facts.yaml"));
    }

    #[test]
    fn summary_redacts_broker_passwords() {
        let config = parse(
            "identity = web1\nplugin.nats.servers = nats://ops:hunter2@127.0.0.1:4222\nrpcaudit = 1\n",
        )
        .unwrap();
        let line = config.summary(&["rpcutil".into(), "package".into()]);
        assert!(!line.contains("hunter2"), "{line}");
        assert!(
            line.contains(
                "identity web1 brokers nats://ops:[redacted]@127.0.0.1:4222 certname web1"
            ),
            "{line}"
        );
        assert!(line.contains("agents package,rpcutil"), "{line}");
        assert!(line.contains("audit /var/log/muster/audit.log"), "{line}");
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
