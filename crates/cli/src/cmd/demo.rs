//! `mco demo`: an embedded broker, a simulated fleet, and a short tour.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use muster_broker::{Broker, BrokerConfig};
use muster_client::{Call, ClientConfig};
use muster_pki::{ca::FleetCa, Settings, Ssldir};
use muster_server::fleet::{Fleet, FleetSpec};

use crate::args::{Common, Selectors};

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// How many simulated nodes
    #[arg(long, short = 'n', default_value_t = 50)]
    pub nodes: usize,
    /// Keep the broker and fleet running after the tour
    #[arg(long)]
    pub keep: bool,
    /// Where the broker listens (port 0: any free port)
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<u8> {
    super::init_logging("warn");
    let dir = std::env::temp_dir().join(format!("muster-demo-{}", std::process::id()));
    let result = demo(&args, &dir).await;
    if !args.keep || result.is_err() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

async fn demo(args: &Args, dir: &Path) -> anyhow::Result<u8> {
    // The real thing, with a throwaway CA: TLS with client certificates on
    // every connection, per-certificate permissions, signed requests.
    let ssldir = Ssldir::new(dir.join("ssl"));
    let ca = FleetCa::init(&ssldir)?;
    ca.issue(
        &ssldir,
        "broker.demo",
        &["127.0.0.1".into(), "localhost".into()],
    )?;
    ca.issue(&ssldir, "demo.mcollective", &[])?;
    ca.issue(&ssldir, "node.fleet", &[])?;
    let load = |certname: &str| {
        Settings {
            ssldir: ssldir.clone(),
            certname: certname.to_string(),
        }
        .load()
    };
    let broker_identity = load("broker.demo")?;
    let broker = Broker::start(BrokerConfig {
        listen: args.listen,
        security: Some(muster_pki::broker::security(&broker_identity)?),
        ..BrokerConfig::default()
    })
    .await
    .with_context(|| format!("cannot start the broker on {}", args.listen))?;
    let url = format!("tls://{}", broker.local_addr());

    let config_file = write_client_setup(dir, &url)?;
    let config = ClientConfig::load(Some(&config_file))?;
    let fleet_identity = load("node.fleet")?;
    let tls = fleet_identity.client_tls()?;
    let mut spec = FleetSpec::new(vec![url.clone()], args.nodes, fleet_identity);
    spec.transport = muster_connector::Transport {
        tls: Some(tls),
        auth: Default::default(),
    };
    let fleet = Fleet::start(spec).await?;
    println!(
        "Started an embedded broker on {url} (TLS, client certificates from a throwaway CA)\n\
         and {} simulated nodes (node01 ... {}).\n",
        args.nodes,
        fleet.identities().last().cloned().unwrap_or_default()
    );
    let client = crate::args::connect(config).await?;

    let mut out = std::io::stdout();
    let common = |selectors: Selectors| Common {
        config: Some(config_file.clone()),
        timeout: None,
        discovery_timeout: Some(2.0),
        json: false,
        jsonl: false,
        display: None,
        filter_replies: None,
        no_progress: false,
        verbose: false,
        selectors,
        discovery: Default::default(),
        batching: Default::default(),
    };

    println!("$ mco ping");
    super::ping::ping(
        &client,
        &common(Selectors::default()),
        Default::default(),
        &mut out,
    )
    .await?;

    let selectors = Selectors {
        identity: vec!["/^node0[1-5]$/".into(), "node42".into()],
        ..Selectors::default()
    };
    println!("\n$ mco ping -I '/^node0[1-5]$/' -I node42");
    super::ping::ping(
        &client,
        &common(selectors.clone()),
        selectors.filter()?,
        &mut out,
    )
    .await?;

    let selectors = Selectors {
        identity: vec!["node07".into()],
        ..Selectors::default()
    };
    println!("\n$ mco rpc rpcutil inventory -I node07");
    let call = Call::new("rpcutil", "inventory").with_filter(selectors.filter()?);
    super::rpc::rpc(&client, &common(selectors), call, &mut out).await?;

    let selectors = Selectors {
        class: vec!["redis".into()],
        ..Selectors::default()
    };
    println!("\n$ mco rpc rpcutil get_fact fact=os.family -C redis");
    let call = Call::new("rpcutil", "get_fact")
        .with_filter(selectors.filter()?)
        .with_data(super::rpc::parse_inputs(&["fact=os.family".into()])?);
    super::rpc::rpc(&client, &common(selectors), call, &mut out).await?;

    if args.keep {
        println!(
            "\nThe broker and fleet keep running. From another terminal:\n\n  \
             export MCO_CONFIG={}\n  mco ping\n  mco rpc rpcutil daemon_stats -I node01\n\nPress Ctrl-C to stop.",
            config_file.display()
        );
        super::shutdown_signal().await;
        let _ = std::fs::remove_dir_all(dir);
    }
    client.close().await;
    fleet.stop().await;
    broker.shutdown().await;
    Ok(super::EXIT_OK)
}

/// Writes `client.cfg` for the demo caller; returns the file.
fn write_client_setup(dir: &Path, url: &str) -> anyhow::Result<PathBuf> {
    let config_file = dir.join("client.cfg");
    std::fs::write(
        &config_file,
        format!(
            "plugin.nats.servers = {url}\nplugin.security.provider = x509\n\
             plugin.security.ssldir = ssl\nplugin.security.certname = demo.mcollective\n"
        ),
    )
    .with_context(|| format!("cannot write {}", config_file.display()))?;
    Ok(config_file)
}
