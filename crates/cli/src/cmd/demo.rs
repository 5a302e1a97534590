//! `mco demo`: an embedded broker, a simulated fleet, and a short tour.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use muster_broker::{Broker, BrokerConfig};
use muster_client::{Call, ClientConfig};
use muster_server::fleet::{Fleet, FleetSpec};
use muster_server::TrustStore;

use crate::args::{Common, Selectors};

#[derive(clap::Args, Debug)]
pub struct Args {
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

pub async fn run(args: Args) -> anyhow::Result<u8> {
    super::init_logging("warn");
    let dir = std::env::temp_dir().join(format!("muster-demo-{}", std::process::id()));
    let result = demo(&args, &dir).await;
    if !args.keep || result.is_err() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

async fn demo(args: &Args, dir: &Path) -> anyhow::Result<u8> {
    let broker = Broker::start(BrokerConfig {
        listen: args.listen,
        ..BrokerConfig::default()
    })
    .await
    .with_context(|| format!("cannot start the broker on {}", args.listen))?;

    // A caller key for the tour, trusted by every simulated node.
    let config_file = write_client_setup(dir, &broker.url())?;
    let config = ClientConfig::load(Some(&config_file))?;
    let trust =
        Arc::new(TrustStore::from_dir(dir.join("trusted_keys")).map_err(anyhow::Error::msg)?);
    let fleet = Fleet::start(FleetSpec::new(vec![broker.url()], args.nodes, trust)).await?;
    println!(
        "Started an embedded broker on {} and {} simulated nodes (node01 ... {}).\n",
        broker.url(),
        args.nodes,
        fleet.identities().last().cloned().unwrap_or_default()
    );
    let client = crate::args::connect(config).await?;

    let mut out = std::io::stdout();
    let common = |selectors: Selectors| Common {
        config: Some(config_file.clone()),
        timeout: None,
        discovery_timeout: 2.0,
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

/// Writes `client.cfg`, a key pair, and a trusted_keys directory holding
/// the public key; returns the config file.
fn write_client_setup(dir: &Path, url: &str) -> anyhow::Result<PathBuf> {
    let trusted = dir.join("trusted_keys");
    std::fs::create_dir_all(&trusted)
        .with_context(|| format!("cannot create {}", trusted.display()))?;
    let key = dir.join("keys").join("demo");
    muster_client::keys::load_or_create(&key)?;
    std::fs::copy(
        muster_client::keys::public_key_path(&key),
        trusted.join("demo.pub"),
    )
    .context("cannot trust the demo key")?;
    let config_file = dir.join("client.cfg");
    std::fs::write(
        &config_file,
        format!("plugin.nats.servers = {url}\nplugin.security.key = keys/demo\nplugin.security.caller = user=demo\n"),
    )
    .with_context(|| format!("cannot write {}", config_file.display()))?;
    Ok(config_file)
}
