//! The table of every setting muster reads from server.cfg and client.cfg.
//!
//! One row per key: which file reads it, what kind of value it takes, its
//! default and what it means. The checker ([`super::Config::check`]) uses
//! it to refuse unknown keys and bad values, `mco ... check-config` prints
//! effective settings from it, and docs/configuration.md is tested against
//! it, so a key the code reads and the key the operator reads about are
//! the same row.

/// Which of the two files reads a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Files {
    /// Only `mco server` (server.cfg).
    Server,
    /// Only the client applications (client.cfg).
    Client,
    /// Both files.
    Both,
}

impl Files {
    /// Whether `file` reads keys of this row.
    pub fn includes(self, file: ConfigFile) -> bool {
        matches!(
            (self, file),
            (Files::Both, _)
                | (Files::Server, ConfigFile::Server)
                | (Files::Client, ConfigFile::Client)
        )
    }

    /// How docs/configuration.md names it: `server`, `client` or `both`.
    pub fn name(self) -> &'static str {
        match self {
            Files::Server => "server",
            Files::Client => "client",
            Files::Both => "both",
        }
    }
}

/// One of the two configuration files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigFile {
    /// server.cfg, read by `mco server`.
    Server,
    /// client.cfg, read by every client application.
    Client,
}

impl ConfigFile {
    /// `server.cfg` or `client.cfg`, for messages.
    pub fn name(self) -> &'static str {
        match self {
            ConfigFile::Server => "server.cfg",
            ConfigFile::Client => "client.cfg",
        }
    }
}

/// What a value must look like; checked before any reader sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Free text.
    Text,
    /// A name usable in a NATS subject: no spaces, `*`, `>` or empty dot parts.
    Name,
    /// A comma-separated list of words.
    List,
    /// A whole number (`u64`).
    Number,
    /// A duration in seconds, decimals allowed (`0.5`).
    Seconds,
    /// `true/false`, `yes/no`, `1/0`, `on/off`, `y/n`.
    Flag,
    /// One of these words, compared ignoring case.
    OneOf(&'static [&'static str]),
    /// A file or directory; a relative one is taken from the config file's directory.
    Path,
    /// A comma-separated list of [`Kind::Path`]s.
    Paths,
    /// An absolute path (the reader passes it on to another program).
    AbsPath,
    /// A comma-separated list of absolute paths without `..`.
    AbsPaths,
    /// A program: a name looked up on `PATH`, or a path.
    Command,
    /// Comma-separated broker URLs; a password in one is redacted on display.
    Urls,
    /// A secret: never printed.
    Secret,
    /// `host:port`.
    HostPort,
}

/// Where a key belongs in docs/configuration.md, in MCollective's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Section {
    /// Identity, collectives, limits, the client's own core settings.
    Core,
    /// `plugin.nats.*`: where and how to reach the broker.
    Connector,
    /// `plugin.security.*`: certificates and request bounds.
    Security,
    /// Facts and classes.
    Facts,
    /// Agents' `plugin.<agent>.*` settings.
    Agents,
    /// `rpcaudit`, `plugin.rpcaudit.*`.
    Audit,
    /// `plugin.actionpolicy.*`.
    Policy,
    /// `logfile`, `loglevel`, `log_format`.
    Logging,
    /// `plugin.prometheus.*`.
    Monitoring,
}

/// One setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    /// The key as written in the file.
    pub name: &'static str,
    /// Which file reads it.
    pub files: Files,
    /// What its value must look like.
    pub kind: Kind,
    /// The default, as an operator would say it (empty: unset means off).
    pub default: &'static str,
    /// One line on what it does.
    pub meaning: &'static str,
    /// A value that could be written.
    pub example: &'static str,
    /// Its group in the reference.
    pub section: Section,
}

/// The key named `name`, if muster reads one by that name. A row whose
/// name has an `<agent>` part (`plugin.<agent>.activate_agent`) stands
/// for that key of every agent.
pub fn lookup(name: &str) -> Option<&'static Key> {
    KEYS.iter()
        .find(|key| key.name == name)
        .or_else(|| KEYS.iter().find(|key| matches_pattern(key.name, name)))
}

/// Whether `name` is `pattern` with its `<agent>` part an agent name.
fn matches_pattern(pattern: &str, name: &str) -> bool {
    let (Some((before, after)), false) = (pattern.split_once(AGENT), name.contains('<')) else {
        return false;
    };
    name.strip_prefix(before)
        .and_then(|rest| rest.strip_suffix(after))
        .is_some_and(|agent| {
            agent.starts_with(|c: char| c.is_ascii_lowercase())
                && agent
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
}

/// The placeholder for an agent's name in a per-agent key.
const AGENT: &str = "<agent>";

const fn key(
    name: &'static str,
    files: Files,
    kind: Kind,
    default: &'static str,
    meaning: &'static str,
    example: &'static str,
    section: Section,
) -> Key {
    Key {
        name,
        files,
        kind,
        default,
        meaning,
        example,
        section,
    }
}

use Files::{Both, Client, Server};
use Kind::*;
use Section::*;

/// Every key muster reads. Reading a key that is not here is a bug: debug
/// builds panic in [`super::Config::get`].
#[rustfmt::skip]
pub const KEYS: &[Key] = &[
    // Core
    key("identity", Server, Name, "the machine's host name", "the node's name: what -I matches and what its certificate must be for", "web01.example.net", Core),
    key("main_collective", Both, Name, "mcollective", "the collective requests go to unless -T names another", "mcollective", Core),
    key("collectives", Both, List, "the main_collective", "every collective the node serves, or the client may address", "mcollective, eu_collective", Core),
    key("max_in_flight", Server, Number, "64", "requests a node handles at once; more are answered busy", "64", Core),
    key("max_agent_processes", Server, Number, "8", "agent actions a node runs at once; more are answered busy", "8", Core),
    key("soft_shutdown_timeout", Server, Number, "60", "seconds running requests get to finish when the daemon stops", "60", Core),
    key("ttl", Client, Number, "60", "seconds a request stays valid after it is sent", "60", Core),
    key("default_discovery_method", Client, OneOf(&["broadcast", "flatfile", "inventory", "external", "puppetdb", "registry"]), "broadcast", "how nodes are found when no --dm, --nodes, --inventory or --discovery-program is given", "inventory", Core),
    key("default_discovery_options", Client, Text, "", "MCollective's option for the default method: the node file (flatfile), inventory file (inventory) or program (external); the plugin.choria.discovery.* keys win", "/etc/muster/nodes.txt", Core),
    key("discovery_timeout", Client, Seconds, "2", "seconds discovery may take at most when --dt is not given (decimals allowed)", "1.5", Core),
    key("plugin.choria.discovery.inventory.source", Client, Path, "", "the inventory file (as mco inventory --json writes) for inventory discovery without --inventory", "/etc/muster/inventory.json", Core),
    key("plugin.choria.discovery.external.command", Client, Path, "", "the program for external discovery without --discovery-program", "/usr/local/bin/discover-nodes", Core),
    key("plugin.puppetdb.url", Client, Text, "https://puppet:8081", "PuppetDB for --dm puppetdb: https:// presents the caller's certificate (plugin.security.*), http:// for a local instance", "https://puppetdb.example.net:8081", Core),
    key("plugin.puppetdb.timeout", Client, Seconds, "the discovery timeout", "seconds a PuppetDB query may take (decimals allowed)", "10", Core),
    key("plugin.puppetdb.collectives_fact", Client, Text, "mcollective.server.collectives", "the fact listing a node's collectives in PuppetDB (a string or a list); none: do not filter by collective", "none", Core),
    key("discovery_window_ms", Client, Number, "100", "broadcast discovery ends once replies have been quiet this long (ms, at least)", "250", Core),
    // Connector
    key("plugin.nats.servers", Both, Urls, "tls://127.0.0.1:4222", "broker URLs, tried in turn (nats:// or tls://; TLS is always used)", "tls://nats1.example.net:4222, tls://nats2.example.net:4222", Connector),
    key("plugin.nats.user", Both, Text, "", "user name for brokers that want one besides the certificate (needs plugin.nats.password)", "ops", Connector),
    key("plugin.nats.password", Both, Secret, "", "password for plugin.nats.user", "s3cret", Connector),
    key("plugin.nats.token", Both, Secret, "", "token for brokers that want one", "a-long-token", Connector),
    key("plugin.nats.credentials", Both, Path, "", "a NATS .creds file (JWT and nkey seed)", "node.creds", Connector),
    key("plugin.nats.nkey", Both, Secret, "", "an nkey seed for brokers that use nkeys", "SUAB...", Connector),
    // Security
    key("plugin.security.provider", Both, Text, "x509", "only x509; MCollective's ssl and Choria's puppet providers are refused with a pointer", "x509", Security),
    key("plugin.security.ssldir", Both, Path, "/etc/muster/ssl (server), ~/.config/muster/ssl (client)", "Puppet-layout ssldir with certs/ca.pem, certs/<certname>.pem, private_keys/<certname>.pem", "/etc/puppetlabs/puppet/ssl", Security),
    key("plugin.security.certname", Both, Name, "the identity (server), <login>.mcollective (client)", "which certificate in the ssldir is ours", "web01.example.net", Security),
    key("plugin.security.verify_replies", Client, Flag, "true", "check every reply's signature against the node's certificate", "true", Security),
    key("plugin.security.max_ttl", Server, Number, "300", "longest ttl (s) a node accepts; every accepted request id is remembered that long", "300", Security),
    key("plugin.security.replay_cache_size", Server, Number, "100000", "request ids the replay store holds at most", "100000", Security),
    // Facts
    key("factsource", Server, OneOf(&["yaml", "json", "facter"]), "yaml", "where system facts come from: native (yaml/json) or `facter -j`", "facter", Facts),
    key("plugin.yaml", Server, Paths, "", "fact files (YAML or JSON), merged in order over the system facts", "/etc/muster/facts.yaml", Facts),
    key("classesfile", Server, Path, "", "the configuration manager's classes file, one class per line", "/opt/puppetlabs/puppet/cache/state/classes.txt", Facts),
    key("plugin.facter.command", Server, Command, "facter", "the facter program when factsource = facter", "/opt/puppetlabs/bin/facter", Facts),
    key("plugin.facter.refresh_interval", Server, Number, "300", "seconds between facter runs", "600", Facts),
    // Registration
    key("registerinterval", Server, Number, "0", "seconds between the node's signed registration messages; 0: none are sent", "300", Facts),
    key("registration_splay", Server, Flag, "false", "wait a random time up to registerinterval before the first registration", "true", Facts),
    key("plugin.registry.store", Server, Path, "registry.db beside the config file", "mco registry: the SQLite file it keeps registrations in (created 0600, its directory 0700)", "/var/lib/muster/registry.db", Facts),
    key("plugin.registry.expire_intervals", Server, Number, "3", "mco registry: a node silent for this many of its registerintervals is dropped", "5", Facts),
    key("plugin.registry.identity", Client, Name, "registry", "the identity (certificate name) of the mco registry that --dm registry asks", "registry.example.net", Core),
    // Agents
    key("activate_agents", Server, Flag, "true", "whether agents run unless plugin.<agent>.activate_agent says otherwise (rpcutil always runs)", "false", Agents),
    key("plugin.<agent>.activate_agent", Server, Flag, "activate_agents", "0 turns the built-in <agent> off, so an external agent of that name can take its place; with no built-in of that name, the external agent", "0", Agents),
    key("plugin.external.agents_dir", Both, Paths, "", "directories with external agents (executable plus <agent>.json DDL)", "/etc/muster/agents", Agents),
    key("plugin.filemgr.allowed_paths", Server, AbsPaths, "anywhere", "directories filemgr may touch and remove in", "/tmp, /var/tmp", Agents),
    key("plugin.package.provider", Server, OneOf(&["apt", "dnf", "yum"]), "from the OS family", "package tool family", "apt", Agents),
    key("plugin.package.timeout", Server, Number, "the DDL's timeout", "seconds a package action may run", "600", Agents),
    key("plugin.package.dpkg_query", Server, Command, "dpkg-query", "the dpkg-query program", "/usr/bin/dpkg-query", Agents),
    key("plugin.package.apt_get", Server, Command, "apt-get", "the apt-get program", "/usr/bin/apt-get", Agents),
    key("plugin.package.apt_cache", Server, Command, "apt-cache", "the apt-cache program (search)", "/usr/bin/apt-cache", Agents),
    key("plugin.package.apt_options", Server, Text, "", "extra apt-get options, space-separated", "-o Dpkg::Options::=--force-confold", Agents),
    key("plugin.package.rpm", Server, Command, "rpm", "the rpm program", "/usr/bin/rpm", Agents),
    key("plugin.package.dnf", Server, Command, "dnf", "the dnf program", "/usr/bin/dnf", Agents),
    key("plugin.package.yum", Server, Command, "yum", "the yum program", "/usr/bin/yum", Agents),
    key("plugin.package.yum_options", Server, Text, "", "extra yum/dnf options, space-separated", "--disablerepo=epel", Agents),
    key("plugin.package.yum_clean_mode", Server, OneOf(&["all", "headers", "packages", "metadata", "dbcache", "plugins", "expire-cache"]), "all", "what yum_clean cleans when the request names no mode", "metadata", Agents),
    key("plugin.service.provider", Server, OneOf(&["systemd", "sysv"]), "systemd if running, else sysv", "how services are controlled", "sysv", Agents),
    key("plugin.service.initd", Server, Path, "/etc/init.d", "sysv init scripts directory", "/etc/init.d", Agents),
    key("plugin.service.timeout", Server, Number, "the DDL's timeout", "seconds a service action may run (at most the DDL's)", "60", Agents),
    key("plugin.puppet.command", Server, Command, "/opt/puppetlabs/bin/puppet if present, else puppet", "the puppet program", "/usr/bin/puppet", Agents),
    key("plugin.puppet.confdir", Server, AbsPath, "Puppet's own", "Puppet's --confdir", "/etc/puppet", Agents),
    key("plugin.puppet.codedir", Server, AbsPath, "Puppet's own", "Puppet's --codedir", "/etc/puppet/code", Agents),
    key("plugin.puppet.logdir", Server, AbsPath, "Puppet's own", "Puppet's --logdir", "/var/log/puppet", Agents),
    key("plugin.puppet.vardir", Server, AbsPath, "/var/cache/puppet", "Puppet's --vardir", "/var/cache/puppet", Agents),
    key("plugin.puppet.rundir", Server, AbsPath, "/run/puppet", "Puppet's --rundir", "/run/puppet", Agents),
    key("plugin.puppet.statedir", Server, AbsPath, "<vardir>/state", "Puppet's --statedir", "/var/cache/puppet/state", Agents),
    key("plugin.puppet.publicdir", Server, AbsPath, "/var/cache/puppet/public", "Puppet's --publicdir", "/var/cache/puppet/public", Agents),
    key("plugin.puppet.lastrunfile", Server, AbsPath, "<publicdir>/last_run_summary.yaml", "the last run summary the status action reads", "/var/cache/puppet/public/last_run_summary.yaml", Agents),
    key("plugin.puppet.disabled_lockfile", Server, AbsPath, "<statedir>/agent_disabled.lock", "Puppet's disable lock", "/var/cache/puppet/state/agent_disabled.lock", Agents),
    key("plugin.puppet.catalog_run_lockfile", Server, AbsPath, "<statedir>/agent_catalog_run.lock", "present while a catalog is applied", "/var/cache/puppet/state/agent_catalog_run.lock", Agents),
    key("plugin.puppet.pidfile", Server, AbsPath, "<rundir>/agent.pid", "the Puppet agent daemon's pidfile", "/run/puppet/agent.pid", Agents),
    key("plugin.puppet.apply_manifest", Server, AbsPath, "", "set: runonce runs `puppet apply` on this manifest instead of `puppet agent`", "/etc/puppet/code/site.pp", Agents),
    key("plugin.puppet.resource_allow_types", Server, List, "", "resource types the resource action may manage; * allows all", "file, package", Agents),
    key("plugin.puppet.resource_deny_types", Server, List, "", "resource types it may never manage; wins over the allow list", "exec", Agents),
    key("plugin.puppet.timeout", Server, Number, "300", "seconds a puppet action may run (at most the DDL's)", "300", Agents),
    // Audit
    key("rpcaudit", Server, Flag, "false", "write an audit line before every action and one with its outcome", "1", Audit),
    key("plugin.rpcaudit.logfile", Server, Path, "/var/log/muster/audit.log", "the audit log (created 0600)", "/var/log/muster/audit.log", Audit),
    key("plugin.rpcaudit.redact", Server, List, "", "more input names whose values are logged as [redacted]", "pin, otp", Audit),
    key("plugin.rpcaudit.redact_defaults", Server, Flag, "true", "also redact inputs whose names look like secrets (password, token, key...)", "true", Audit),
    key("plugin.rpcaudit.on_failure", Server, OneOf(&["deny", "allow"]), "deny", "when the audit line cannot be written: refuse the request, or run it anyway", "deny", Audit),
    // Policy
    key("plugin.actionpolicy.dir", Server, Path, "/etc/muster/policies", "directory of <agent>.policy files", "/etc/muster/policies", Policy),
    key("plugin.actionpolicy.enable_default", Server, Flag, "false", "agents without a policy file use the default policy", "true", Policy),
    key("plugin.actionpolicy.default_name", Server, Text, "default", "the default policy's file name, without .policy", "default", Policy),
    key("plugin.actionpolicy.allow_unconfigured", Server, Flag, "true", "whether an agent with no policy at all may be called", "false", Policy),
    // Logging
    key("logfile", Server, Path, "stderr", "where the daemon logs", "/var/log/muster/server.log", Logging),
    key("loglevel", Server, OneOf(&["trace", "debug", "info", "warn", "error", "fatal"]), "info", "the least severe level logged", "debug", Logging),
    key("log_format", Server, OneOf(&["text", "json"]), "text", "text lines, or one JSON object per line", "json", Logging),
    // Monitoring
    key("plugin.prometheus.listen", Server, HostPort, "", "host:port where the daemon serves /metrics; unset: off", "127.0.0.1:9100", Monitoring),
];

/// MCollective and Choria settings muster accepts without using, with why:
/// a migrated config gets a warning for each, not an error. An entry
/// ending in `.` stands for every key it starts.
pub const IGNORED: &[(&str, &str)] = &[
    (
        "libdir",
        "muster's agents are built in or external (plugin.external.agents_dir)",
    ),
    (
        "daemonize",
        "mco server runs in the foreground; let the service manager daemonize it",
    ),
    (
        "connector",
        "muster always speaks NATS (plugin.nats.servers)",
    ),
    (
        "securityprovider",
        "muster always uses x509 certificates (plugin.security.*)",
    ),
    (
        "rpcauthorization",
        "authorization is always on: plugin.actionpolicy.*",
    ),
    (
        "rpcauthprovider",
        "muster's only authorization is the actionpolicy format",
    ),
    (
        "rpcauditprovider",
        "muster's audit log is built in (rpcaudit)",
    ),
    ("logger_type", "logging goes to logfile, or stderr"),
    ("keeplogs", "rotate logfile with logrotate"),
    ("max_log_size", "rotate logfile with logrotate"),
    ("direct_addressing", "directed requests are always on"),
    (
        "registration",
        "muster always sends its own signed record (registerinterval)",
    ),
    ("fact_cache_time", "fact files are re-read when they change"),
    ("color", "colour follows the terminal and NO_COLOR"),
    (
        "plugin.choria.",
        "muster reads no Choria settings but plugin.choria.discovery.inventory.source and .external.command",
    ),
    (
        "plugin.puppetdb.",
        "PuppetDB discovery is not configured from client.cfg",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_agent_rows_stand_for_every_agent_name() {
        for name in [
            "plugin.package.activate_agent",
            "plugin.my_agent2.activate_agent",
        ] {
            let key = lookup(name).unwrap_or_else(|| panic!("{name}"));
            assert_eq!(key.name, "plugin.<agent>.activate_agent");
            assert_eq!(key.kind, Flag);
        }
        for name in [
            "plugin..activate_agent",
            "plugin.Package.activate_agent",
            "plugin.a.b.activate_agent",
            "plugin.package.activate_agents",
            "plugin.2x.activate_agent",
        ] {
            assert!(lookup(name).is_none(), "{name}");
        }
        assert_eq!(
            lookup("plugin.<agent>.activate_agent").map(|k| k.name),
            Some("plugin.<agent>.activate_agent")
        );
    }
}
