//! Flags shared by the client applications.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use muster_client::{Client, ClientConfig};
use muster_protocol::Filter;

/// Node selectors, as MCollective spells them.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Selectors {
    /// Identity: exact name or /regex/ (repeatable; any may match)
    #[arg(short = 'I', long = "with-identity", visible_alias = "wi", value_name = "IDENTITY")]
    pub identity: Vec<String>,
    /// Class: exact name or /regex/ (repeatable; all must match)
    #[arg(short = 'C', long = "with-class", visible_alias = "wc", value_name = "CLASS")]
    pub class: Vec<String>,
    /// Agent the node must run: exact name or /regex/ (repeatable)
    #[arg(short = 'A', long = "with-agent", visible_alias = "wa", value_name = "AGENT")]
    pub with_agent: Vec<String>,
    /// Collective to address (default: main_collective)
    #[arg(short = 'T', long = "target", value_name = "COLLECTIVE")]
    pub target: Option<String>,
}

impl Selectors {
    /// The filter these flags describe; bad text is an error before anything is sent.
    pub fn filter(&self) -> anyhow::Result<Filter> {
        let mut filter = Filter::default();
        for i in &self.identity {
            filter = filter.identity(i).context("bad -I identity filter")?;
        }
        for c in &self.class {
            filter = filter.class(c).context("bad -C class filter")?;
        }
        for a in &self.with_agent {
            filter = filter.agent(a).context("bad -A agent filter")?;
        }
        Ok(filter)
    }
}

/// Flags every client application takes.
#[derive(clap::Args, Debug, Clone)]
pub struct Common {
    /// Client config file (default: $MCO_CONFIG, else ~/.config/muster/client.cfg)
    #[arg(long, short = 'c', value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// Seconds to wait for replies
    #[arg(short = 't', long = "timeout", value_name = "SECONDS")]
    pub timeout: Option<f64>,
    /// Upper bound, in seconds, for discovery (it ends sooner when replies stop)
    #[arg(long = "dt", alias = "discovery-timeout", value_name = "SECONDS", default_value_t = 2.0)]
    pub discovery_timeout: f64,
    /// Print results as JSON
    #[arg(long, short = 'j')]
    pub json: bool,
    #[command(flatten)]
    pub selectors: Selectors,
}

impl Common {
    pub fn timeout_or(&self, default: Duration) -> anyhow::Result<Duration> {
        match self.timeout {
            None => Ok(default),
            Some(t) => seconds(t, "-t"),
        }
    }

    pub fn discovery_timeout(&self) -> anyhow::Result<Duration> {
        seconds(self.discovery_timeout, "--dt")
    }

    /// Reads the config, creating and announcing the key on first use, and connects.
    pub async fn connect(&self) -> anyhow::Result<Client> {
        let config = ClientConfig::load(self.config.as_deref())?;
        connect(config).await
    }
}

/// Connects with `config`, telling the user about a newly created key.
pub async fn connect(config: ClientConfig) -> anyhow::Result<Client> {
    let (keys, created) = muster_client::keys::load_or_create(&config.key_file)?;
    if created {
        crate::render::announce_new_key(&config);
    }
    Ok(Client::connect_with(config, keys, Duration::from_secs(5)).await?)
}

fn seconds(value: f64, flag: &str) -> anyhow::Result<Duration> {
    if !value.is_finite() || value <= 0.0 || value > 86_400.0 {
        anyhow::bail!("{flag} must be a number of seconds between 0 and 86400, got {value}");
    }
    Ok(Duration::from_secs_f64(value))
}
