//! Flags shared by the client applications.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use muster_client::{Client, ClientConfig, Discovery, DiscoverySettings};
use muster_protocol::Filter;

/// Node selectors, as MCollective spells them.
#[derive(clap::Args, Debug, Clone, Default)]
pub(crate) struct Selectors {
    /// Identity: exact name, glob (web*, node[12]?) or /regex/ (repeatable; any may match)
    #[arg(
        short = 'I',
        long = "with-identity",
        visible_alias = "wi",
        value_name = "IDENTITY"
    )]
    pub identity: Vec<String>,
    /// Fact: fact=value, ==, =~regex, =/regex/, !=, <, >, <=, >= (repeatable; all must match)
    #[arg(
        short = 'F',
        long = "with-fact",
        visible_alias = "wf",
        value_name = "FACT"
    )]
    pub fact: Vec<String>,
    /// Class: exact name or /regex/ (repeatable; all must match)
    #[arg(
        short = 'C',
        long = "with-class",
        visible_alias = "wc",
        value_name = "CLASS"
    )]
    pub class: Vec<String>,
    /// Agent the node must run: exact name or /regex/ (repeatable)
    #[arg(
        short = 'A',
        long = "with-agent",
        visible_alias = "wa",
        value_name = "AGENT"
    )]
    pub with_agent: Vec<String>,
    /// Combined: space-separated fact comparisons and classes (repeatable; all must match)
    #[arg(short = 'W', long = "with", value_name = "FILTER")]
    pub with: Vec<String>,
    /// Compound: and, or, not, parentheses, classes, facts, data plugins (repeatable)
    #[arg(short = 'S', long = "select", value_name = "EXPRESSION")]
    pub select: Vec<String>,
    /// Collective to address (default: main_collective)
    #[arg(short = 'T', long = "target", value_name = "COLLECTIVE")]
    pub target: Option<String>,
}

impl Selectors {
    /// The filter these flags describe; bad text is an error before anything is sent.
    pub(crate) fn filter(&self) -> anyhow::Result<Filter> {
        let mut filter = Filter::default();
        for i in &self.identity {
            filter = filter.identity(i).context("bad -I identity filter")?;
        }
        for f in &self.fact {
            filter = filter.fact(f).context("bad -F fact filter")?;
        }
        for c in &self.class {
            filter = filter.class(c).context("bad -C class filter")?;
        }
        for a in &self.with_agent {
            filter = filter.agent(a).context("bad -A agent filter")?;
        }
        for w in &self.with {
            filter = filter.with(w).context("bad -W filter")?;
        }
        for s in &self.select {
            filter = filter.compound(s).context("bad -S filter")?;
        }
        Ok(filter)
    }
}

/// Flags every client application takes.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct Common {
    /// Client config file (default: $MCO_CONFIG, else ~/.config/muster/client.cfg)
    #[arg(long, short = 'c', value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// Seconds to wait for replies [default: the action's DDL timeout plus 2 s]
    #[arg(short = 't', long = "timeout", value_name = "SECONDS")]
    pub timeout: Option<f64>,
    /// Upper bound, in seconds, for discovery (it ends sooner when replies stop) [default: discovery_timeout in client.cfg, else 2]
    #[arg(long = "dt", alias = "discovery-timeout", value_name = "SECONDS")]
    pub discovery_timeout: Option<f64>,
    /// Print every reply and the statistics as one JSON document
    #[arg(long, short = 'j', conflicts_with = "jsonl")]
    pub json: bool,
    /// Print each reply as one JSON line as it arrives, then a statistics line
    #[arg(long)]
    pub jsonl: bool,
    /// Whose results to print (default: failures, and OK results as the DDL says)
    #[arg(long, value_enum, value_name = "WHICH")]
    pub display: Option<DisplayMode>,
    /// Keep only replies for which this jq expression is true, e.g. '.data.ensure != "2.3.4"'
    #[arg(long = "filter-replies", value_name = "EXPR")]
    pub filter_replies: Option<String>,
    /// No progress bar, even on a terminal
    #[arg(long = "no-progress", visible_alias = "np")]
    pub no_progress: bool,
    /// Verbose statistics: round trips and the request id
    #[arg(short = 'v', long)]
    pub verbose: bool,
    #[command(flatten)]
    pub selectors: Selectors,
    #[command(flatten)]
    pub discovery: DiscoveryFlags,
    #[command(flatten)]
    pub batching: crate::batching::BatchFlags,
}

/// Which nodes' results `--display` prints.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DisplayMode {
    /// Only nodes that answered OK
    Ok,
    /// Only nodes that failed
    Failed,
    /// Every node that answered
    All,
}

/// The discovery methods `--dm` names.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    /// Ask the fleet; matching nodes answer
    Broadcast,
    /// Identities from --nodes FILE
    Flatfile,
    /// Node records from --inventory FILE, filtered locally
    Inventory,
    /// Identities printed by --discovery-program PROG
    External,
    /// PuppetDB, asked in PQL (plugin.puppetdb.url in client.cfg)
    Puppetdb,
    /// Nodes `mco registry` collected, filtered there
    Registry,
}

/// How to find the nodes (see docs/discovery.md).
#[derive(clap::Args, Debug, Clone, Default)]
pub(crate) struct DiscoveryFlags {
    /// Discovery method (default: what --nodes/--inventory/--discovery-program imply, else default_discovery_method in client.cfg, else broadcast)
    #[arg(
        long = "dm",
        visible_alias = "discovery-method",
        value_enum,
        value_name = "METHOD"
    )]
    pub method: Option<Method>,
    /// Identities one per line, or mco's --json/--jsonl output, find or inventory JSON, for --dm flatfile ('-': stdin)
    #[arg(long = "nodes", value_name = "FILE")]
    pub nodes: Option<PathBuf>,
    /// Node records as `mco inventory --json` writes them, for --dm inventory
    #[arg(long = "inventory", value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    /// Program printing identities, for --dm external (gets the filter as JSON on stdin)
    #[arg(long = "discovery-program", value_name = "PROG")]
    pub program: Option<PathBuf>,
    /// Cross-check a broadcast against the nodes that should answer: METHOD (as client.cfg sets it up, e.g. registry or inventory), METHOD:INPUT (e.g. inventory:fleet.json) or a FILE of identities; the silent ones are named, strangers marked unexpected
    #[arg(long = "expect", value_name = "SOURCE")]
    pub expect: Option<String>,
}

impl DiscoveryFlags {
    /// The method these flags describe, client.cfg's `settings` filling in
    /// what they leave out; a method without its input, or an input for
    /// another method, is an error.
    pub(crate) fn discovery(&self, settings: &DiscoverySettings) -> anyhow::Result<Discovery> {
        let implied = match (&self.nodes, &self.inventory, &self.program) {
            (None, None, None) => None,
            (Some(_), None, None) => Some(Method::Flatfile),
            (None, Some(_), None) => Some(Method::Inventory),
            (None, None, Some(_)) => Some(Method::External),
            _ => anyhow::bail!("--nodes, --inventory and --discovery-program each pick a discovery method: give one"),
        };
        let method = match (self.method, implied) {
            (Some(method), Some(implied)) if method != implied => {
                anyhow::bail!(
                    "--dm {} does not use {}",
                    method_name(method),
                    input_flag(implied)
                )
            }
            (Some(method), _) => Some(method),
            (None, implied) => implied,
        };
        let input = self
            .nodes
            .as_deref()
            .or(self.inventory.as_deref())
            .or(self.program.as_deref());
        Ok(settings.choose(method.map(method_name), input)?)
    }
}

fn method_name(method: Method) -> &'static str {
    match method {
        Method::Broadcast => "broadcast",
        Method::Flatfile => "flatfile",
        Method::Inventory => "inventory",
        Method::External => "external",
        Method::Puppetdb => "puppetdb",
        Method::Registry => "registry",
    }
}

fn input_flag(method: Method) -> &'static str {
    match method {
        Method::Flatfile => "--nodes",
        Method::Inventory => "--inventory",
        Method::External => "--discovery-program",
        Method::Broadcast | Method::Puppetdb | Method::Registry => "an input file",
    }
}

impl Common {
    /// `-t`, when given; `None` leaves the wait to the action's DDL.
    pub(crate) fn timeout(&self) -> anyhow::Result<Option<Duration>> {
        self.timeout.map(|t| seconds(t, "-t")).transpose()
    }

    pub(crate) fn timeout_or(&self, default: Duration) -> anyhow::Result<Duration> {
        match self.timeout {
            None => Ok(default),
            Some(t) => seconds(t, "-t"),
        }
    }

    /// `--dt`, else `discovery_timeout` in client.cfg, else 2 s.
    pub(crate) fn discovery_timeout(&self) -> anyhow::Result<Duration> {
        match self.discovery_timeout {
            Some(t) => seconds(t, "--dt"),
            None => Ok(self.discovery_settings()?.timeout(None)),
        }
    }

    /// client.cfg's discovery settings, which the flags override.
    pub(crate) fn discovery_settings(&self) -> anyhow::Result<DiscoverySettings> {
        Ok(ClientConfig::load(self.config.as_deref())?.discovery)
    }

    /// The filter and discovery method, checked before anything is sent.
    pub(crate) fn plan(&self) -> anyhow::Result<(Filter, Discovery)> {
        let filter = self.selectors.filter()?;
        let discovery = self.discovery.discovery(&self.discovery_settings()?)?;
        self.discovery_timeout()?;
        self.reply_filter()?;
        if matches!(discovery, Discovery::Inventory(_)) && filter.uses_data() {
            anyhow::bail!(muster_client::DiscoveryError::DataPlugins {
                method: "inventory"
            });
        }
        if matches!(discovery, Discovery::PuppetDb(_)) {
            // Refuse what PQL cannot say before anything is sent.
            muster_client::puppetdb::query(&filter, "", None)
                .map_err(muster_client::DiscoveryError::from)?;
        }
        Ok((filter, discovery))
    }

    /// The compiled `--filter-replies` expression; one that does not
    /// compile is an error before anything is sent.
    pub(crate) fn reply_filter(&self) -> anyhow::Result<Option<crate::render::ReplyFilter>> {
        self.filter_replies
            .as_deref()
            .map(crate::render::ReplyFilter::new)
            .transpose()
    }

    /// Finds the matching nodes with the chosen method, sorted.
    pub(crate) async fn discover(
        &self,
        client: &Client,
        filter: &Filter,
        discovery: &Discovery,
    ) -> anyhow::Result<Vec<String>> {
        // ping and the RPC commands handle --expect before they get here.
        if self.discovery.expect.is_some() && discovery.is_broadcast() {
            anyhow::bail!("--expect cross-checks the replies of mco ping or an RPC; this command does not take it");
        }
        let discover = async {
            client
                .discover_with(
                    discovery,
                    filter,
                    self.selectors.target.as_deref(),
                    self.discovery_timeout()?,
                    client.config().window,
                )
                .await
                .with_context(|| format!("{} discovery failed", discovery.name()))
        };
        crate::cmd::interrupt::unless_interrupted("discovery", discover).await
    }

    /// Reads the config, creating and announcing the key on first use, and connects.
    pub(crate) async fn connect(&self) -> anyhow::Result<Client> {
        let config = ClientConfig::load(self.config.as_deref())?;
        connect(config).await
    }
}

/// Connects with `config`, saying where to get a certificate when there is none.
pub(crate) async fn connect(config: ClientConfig) -> anyhow::Result<Client> {
    let identity = config.security.load().map_err(|e| {
        let from = match &config.file {
            Some(file) => format!("plugin.security.ssldir and .certname in {}", file.display()),
            None => "the defaults (no client config was found)".to_string(),
        };
        anyhow::anyhow!(
            "{e}\n(the certificate comes from {from}; a Puppet shop points plugin.security.ssldir \
             at Puppet's ssldir, others use mco ca: see mco help ca)"
        )
    })?;
    let source = match &config.file {
        Some(file) => format!("plugin.nats.servers in {} names the broker", file.display()),
        None => format!(
            "no client config was found, so the default was tried; set plugin.nats.servers in {} or pass --config FILE",
            muster_client::default_dir().join("client.cfg").display()
        ),
    };
    Client::connect_with(config, identity, Duration::from_secs(5))
        .await
        .map_err(|e| match e {
            muster_client::ClientError::Connect(_) => anyhow::anyhow!(
                "{e}\n({source}; `mco broker` runs a broker, `mco demo --keep` a whole test fleet)"
            ),
            other => other.into(),
        })
}

fn seconds(value: f64, flag: &str) -> anyhow::Result<Duration> {
    if !value.is_finite() || value <= 0.0 || value > 86_400.0 {
        anyhow::bail!("{flag} must be a number of seconds between 0 and 86400, got {value}");
    }
    Ok(Duration::from_secs_f64(value))
}
