//! `mco fleet`: many simulated nodes in one process, for trying muster
//! out and for measuring it at scale against any broker.

use std::path::PathBuf;

use muster_pki::{Settings, Ssldir};
use muster_server::fleet::{Fleet, FleetSpec};

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// How many nodes
    #[arg(long, short = 'n', default_value_t = 50)]
    pub nodes: usize,
    /// Broker URL
    #[arg(long, default_value = muster_connector::DEFAULT_SERVER)]
    pub server: String,
    /// The ssldir with the CA and the simulator's certificate
    #[arg(long, value_name = "DIR")]
    pub ssldir: PathBuf,
    /// The simulator's certificate: PREFIX.fleet (mco ca issue PREFIX --role fleet)
    #[arg(long, value_name = "NAME")]
    pub certname: Option<String>,
    /// Identity prefix; nodes are PREFIX01, PREFIX02, ...
    #[arg(long, default_value = "node")]
    pub prefix: String,
    /// Every node sends a signed registration this often (seconds), for mco registry
    #[arg(long, value_name = "SECONDS")]
    pub registerinterval: Option<u64>,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<u8> {
    super::init_logging("warn");
    let settings = Settings {
        ssldir: Ssldir::new(&args.ssldir),
        certname: args.certname.clone().unwrap_or_else(|| {
            format!("{}{}", args.prefix, muster_protocol::identity::FLEET_SUFFIX)
        }),
    };
    let identity = settings.load()?;
    let probe = format!("{}1", args.prefix);
    if !muster_protocol::identity::may_act_as(identity.credential.name(), &probe) {
        anyhow::bail!(
            "certificate {:?} cannot answer as {probe:?}: a simulator needs the certificate {}{} (mco ca issue {} --role fleet)",
            identity.credential.name(),
            args.prefix,
            muster_protocol::identity::FLEET_SUFFIX,
            args.prefix
        );
    }
    let tls = identity.client_tls()?;
    let mut spec = FleetSpec::new(vec![args.server.clone()], args.nodes, identity);
    spec.prefix = args.prefix;
    spec.register = args
        .registerinterval
        .filter(|&s| s > 0)
        .map(std::time::Duration::from_secs);
    spec.transport = muster_connector::Transport {
        tls: Some(tls),
        auth: Default::default(),
    };
    let fleet = Fleet::start(spec).await?;
    println!(
        "{} simulated nodes serving on {}",
        fleet.nodes().len(),
        muster_connector::redact(&args.server)
    );
    super::shutdown_signal().await;
    fleet.stop().await;
    Ok(super::EXIT_OK)
}
