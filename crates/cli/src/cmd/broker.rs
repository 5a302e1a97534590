//! `mco broker`: the embedded NATS-protocol broker, and the same rules
//! written for nats-server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use muster_broker::{Broker, BrokerConfig, BrokerMonitor, ConnzQuery, SubszQuery};
use muster_monitor::{Monitor, MonitorConfig, Page, Query};
use muster_pki::nats_config::{Cluster, LeafnodeListen, NatsConfig};
use muster_pki::{Settings, Ssldir};

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct Args {
    #[command(subcommand)]
    pub action: Option<Action>,
    #[command(flatten)]
    pub serve: Serve,
}

#[derive(clap::Subcommand, Debug)]
pub(crate) enum Action {
    /// Print a nats-server configuration with the same TLS, admission and permissions
    NatsConfig(NatsArgs),
}

#[derive(clap::Args, Debug)]
pub(crate) struct Serve {
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1:4222")]
    pub listen: SocketAddr,
    /// The broker's ssldir: certs/ca.pem, certs/NAME.pem, private_keys/NAME.pem, crl.pem
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "insecure_plaintext"
    )]
    pub ssldir: Option<PathBuf>,
    /// The broker's certificate name (default: this host's name)
    #[arg(long, value_name = "NAME")]
    pub certname: Option<String>,
    /// Largest message accepted, in bytes
    #[arg(long, default_value_t = 1 << 20)]
    pub max_payload: usize,
    /// Most client connections at once
    #[arg(long, default_value_t = 65_536)]
    pub max_connections: usize,
    /// Serve plain TCP with no authentication: anyone who can connect reads and
    /// sends everything. Only for a throwaway broker on a machine of your own.
    #[arg(long, conflicts_with_all = ["ssldir", "certname"])]
    pub insecure_plaintext: bool,
    /// Serve monitoring over HTTP on ADDR: nats-server's /varz, /connz and
    /// /subsz, and Prometheus /metrics (no authentication: keep it on loopback)
    #[arg(long, value_name = "ADDR")]
    pub monitor: Option<SocketAddr>,
}

#[derive(clap::Args, Debug)]
pub(crate) struct NatsArgs {
    /// The broker's ssldir
    #[arg(long, value_name = "DIR")]
    pub ssldir: PathBuf,
    /// The broker's certificate name (default: this host's name)
    #[arg(long, value_name = "NAME")]
    pub certname: Option<String>,
    /// Where the issued certificates are, one user each (default: SSLDIR/certs;
    /// a Puppet CA keeps them in /etc/puppetlabs/puppetserver/ca/signed)
    #[arg(long, value_name = "DIR")]
    pub issued: Option<PathBuf>,
    /// The address nats-server listens on
    #[arg(long, default_value = "0.0.0.0:4222")]
    pub listen: String,
    /// Most client connections at once
    #[arg(long, default_value_t = 65_536)]
    pub max_connections: usize,
    /// Make this server a cluster member: the address other members' routes
    /// connect to
    #[arg(long, value_name = "HOST:PORT")]
    pub cluster_listen: Option<String>,
    /// The cluster's name, the same on every member
    #[arg(
        long,
        value_name = "NAME",
        default_value = "muster",
        requires = "cluster_listen"
    )]
    pub cluster_name: String,
    /// Every member's route URL, the same list on every member, hosts by the
    /// DNS names in the members' certificates (nats-route://broker2:6222,...)
    #[arg(
        long,
        value_name = "URL,URL,...",
        value_delimiter = ',',
        requires = "cluster_listen"
    )]
    pub routes: Vec<String>,
    /// Accept leaf sites on this address (a hub)
    #[arg(long, value_name = "HOST:PORT", requires = "leaf_certnames")]
    pub leafnode_listen: Option<String>,
    /// The certificate names of the leaf sites' servers a hub admits
    #[arg(
        long,
        value_name = "NAME,NAME,...",
        value_delimiter = ',',
        requires = "leafnode_listen"
    )]
    pub leaf_certnames: Vec<String>,
    /// Make this server a leaf site of a hub: the hub members' leafnode URLs
    /// (tls://hub1:7422,...), connected to with this server's certificate
    #[arg(long, value_name = "URL,URL,...", value_delimiter = ',')]
    pub leaf_remote: Vec<String>,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<u8> {
    match args.action {
        Some(Action::NatsConfig(nats)) => nats_config(nats),
        None => serve(args.serve).await,
    }
}

fn nats_config(args: NatsArgs) -> anyhow::Result<u8> {
    let config = NatsConfig {
        ssldir: Ssldir::new(&args.ssldir),
        certname: args.certname.unwrap_or_else(muster_server::hostname),
        issued: args.issued,
        listen: args.listen,
        max_connections: args.max_connections,
        cluster: args.cluster_listen.map(|listen| Cluster {
            name: args.cluster_name,
            listen,
            routes: args.routes,
        }),
        leafnodes: args.leafnode_listen.map(|listen| LeafnodeListen {
            listen,
            certnames: args.leaf_certnames,
        }),
        leaf_remotes: args.leaf_remote,
        extra: String::new(),
    };
    print!("{}", config.render()?);
    Ok(super::EXIT_OK)
}

async fn serve(args: Serve) -> anyhow::Result<u8> {
    super::init_logging("info");
    let security = match &args.ssldir {
        Some(dir) => {
            let settings = Settings {
                ssldir: Ssldir::new(dir),
                certname: args
                    .certname
                    .clone()
                    .unwrap_or_else(muster_server::hostname),
            };
            let identity = settings.load()?;
            Some(muster_pki::broker::security(&identity)?)
        }
        None => {
            tracing::warn!("serving plain TCP with no authentication (--insecure-plaintext)");
            None
        }
    };
    let secure = security.is_some();
    let config = BrokerConfig {
        listen: args.listen,
        max_payload: args.max_payload,
        max_connections: args.max_connections,
        security,
        auth_timeout: Duration::from_secs(2),
        ..BrokerConfig::default()
    };
    let broker = Broker::start(config)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let url = if secure {
        format!("tls://{}", broker.local_addr())
    } else {
        broker.url()
    };
    let monitor = match args.monitor {
        Some(addr) => Some(serve_monitor(addr, broker.monitor()).await?),
        None => None,
    };
    println!("muster broker listening on {url}");
    if let Some(monitor) = &monitor {
        println!(
            "muster broker monitoring on http://{}",
            monitor.local_addr()
        );
    }
    super::shutdown_signal().await;
    if let Some(monitor) = monitor {
        monitor.shutdown().await;
    }
    broker.shutdown().await;
    Ok(super::EXIT_OK)
}

/// Serves the broker's monitoring pages on `addr` (`--monitor`).
async fn serve_monitor(
    addr: SocketAddr,
    broker: BrokerMonitor,
) -> anyhow::Result<muster_monitor::MonitorHandle> {
    let pages = move |path: &str, query: &Query| -> Option<Page> {
        let get = |key: &str| query.get(key);
        let json = |value: serde_json::Result<String>| match value {
            Ok(text) => Page::json(text),
            Err(e) => Page::bad_request(e.to_string()),
        };
        Some(match path {
            "/" => Page::text("muster broker monitoring: /varz /connz /subsz /metrics\n"),
            "/varz" => json(serde_json::to_string_pretty(&broker.varz())),
            "/connz" => match ConnzQuery::from_params(get) {
                Ok(q) => json(serde_json::to_string_pretty(&broker.connz(&q))),
                Err(e) => Page::bad_request(e.to_string()),
            },
            "/subsz" | "/subscriptionsz" => match SubszQuery::from_params(get) {
                Ok(q) => json(serde_json::to_string_pretty(&broker.subsz(&q))),
                Err(e) => Page::bad_request(e.to_string()),
            },
            "/metrics" => Page::prometheus(&broker.metrics()),
            _ => return None,
        })
    };
    Ok(Monitor::start(MonitorConfig::new(addr, "--monitor"), pages).await?)
}
