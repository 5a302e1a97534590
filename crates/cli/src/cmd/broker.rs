//! `mco broker`: the embedded NATS-protocol broker.

use std::net::SocketAddr;

use anyhow::Context;
use muster_broker::{Broker, BrokerConfig};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1:4222")]
    pub listen: SocketAddr,
    /// Largest message accepted, in bytes
    #[arg(long, default_value_t = 1 << 20)]
    pub max_payload: usize,
}

pub async fn run(args: Args) -> anyhow::Result<u8> {
    super::init_logging("info");
    let config = BrokerConfig {
        listen: args.listen,
        max_payload: args.max_payload,
        ..BrokerConfig::default()
    };
    let broker = Broker::start(config)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    println!("muster broker listening on {}", broker.url());
    super::shutdown_signal().await;
    broker.shutdown().await;
    Ok(super::EXIT_OK)
}
