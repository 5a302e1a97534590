//! The fleet simulator: many real nodes in one process.
//!
//! Each simulated node is a full [`Node`] with its own identity, facts,
//! classes, collectives and subscriptions, so the broker and the client do
//! the same work as for a real fleet; only the processes are shared. Nodes
//! share broker connections in groups to keep file descriptors in check.
//!
//! With security on, the whole fleet connects with one simulator
//! credential, a certificate named `<prefix>.fleet`: the embedded broker
//! lets it answer only as identities that start with `<prefix>`. The nodes
//! share one [`Authority`], so a request's signature is verified once per
//! process rather than once per simulated node: on a real fleet every node
//! verifies in parallel on its own CPU, which this models more faithfully
//! than 10 000 verifications queued on the simulator's two cores.
//!
//! ```no_run
//! # async fn run(identity: muster_pki::Identity) -> Result<(), Box<dyn std::error::Error>> {
//! use muster_server::fleet::{Fleet, FleetSpec};
//! let spec = FleetSpec::new(vec!["tls://127.0.0.1:4222".into()], 1000, identity);
//! let fleet = Fleet::start(spec).await?;
//! assert_eq!(fleet.identities().len(), 1000);
//! fleet.stop().await;
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::task::JoinHandle;

use crate::daemon::{serve, DaemonError};
use crate::facts::{Classes, Facts};
use crate::watched::Source;
use crate::Node;
use muster_pki::{Authority, Credential, Identity};

/// What to simulate.
pub struct FleetSpec {
    /// The brokers the fleet connects to (`nats://host:port`).
    pub servers: Vec<String>,
    /// How many nodes to simulate.
    pub nodes: usize,
    /// Identities are `<prefix><n>`, numbered from 1 and zero-padded.
    pub prefix: String,
    /// How many nodes share one broker connection.
    pub nodes_per_connection: usize,
    /// The CA whose callers the nodes accept.
    pub authority: Arc<Authority>,
    /// The simulator's credential (`<prefix>.fleet`): it signs every reply.
    pub signer: Arc<Credential>,
    /// How the fleet's connections reach the broker (the simulator credential).
    pub transport: muster_connector::Transport,
    /// Every node registers this often (splayed), as `registerinterval`
    /// makes a real node do; `None`: no registration.
    pub register: Option<Duration>,
}

impl FleetSpec {
    /// `nodes` nodes named `node01`... as `identity` (the simulator's
    /// credential and CA), connecting in plain text until
    /// [`FleetSpec::transport`] is set.
    pub fn new(servers: Vec<String>, nodes: usize, identity: Identity) -> FleetSpec {
        FleetSpec {
            servers,
            nodes,
            prefix: "node".into(),
            nodes_per_connection: 100,
            authority: identity.authority,
            signer: Arc::new(identity.credential),
            transport: muster_connector::Transport::default(),
            register: None,
        }
    }
}

/// A running simulated fleet.
pub struct Fleet {
    nodes: Vec<Arc<Node>>,
    clients: Vec<async_nats::Client>,
    tasks: Vec<JoinHandle<()>>,
}

impl Fleet {
    /// Starts every node and returns once the broker has all their
    /// subscriptions, so a request sent next reaches all of them.
    pub async fn start(spec: FleetSpec) -> Result<Fleet, DaemonError> {
        let width = spec.nodes.max(1).to_string().len().max(2);
        let nodes: Vec<Arc<Node>> = (1..=spec.nodes)
            .map(|n| {
                Arc::new(simulated_node(
                    &format!("{}{n:0width$}", spec.prefix),
                    n,
                    spec.authority.clone(),
                ))
            })
            .collect();
        let mut clients = Vec::new();
        let mut tasks = Vec::new();
        for (group, chunk) in nodes.chunks(spec.nodes_per_connection.max(1)).enumerate() {
            let client = muster_connector::connect_client(
                &spec.servers,
                &format!("muster fleet {group}"),
                Duration::from_secs(10),
                &spec.transport,
            )
            .await?;
            for node in chunk {
                tasks.push(serve(node.clone(), client.clone(), spec.signer.clone()).await?);
            }
            if let Some(interval) = spec.register {
                tasks.push(crate::registration::spawn_many(
                    chunk.to_vec(),
                    client.clone(),
                    spec.signer.clone(),
                    interval,
                    true,
                ));
            }
            client.flush().await.map_err(|e| DaemonError::Subscribe {
                subject: "(flush)".into(),
                reason: e.to_string(),
            })?;
            clients.push(client);
        }
        Ok(Fleet {
            nodes,
            clients,
            tasks,
        })
    }

    /// The simulated nodes, in identity order.
    pub fn nodes(&self) -> &[Arc<Node>] {
        &self.nodes
    }

    /// The nodes' identities, in order.
    pub fn identities(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| n.identity().to_string())
            .collect()
    }

    /// Stops every node and closes its connections.
    pub async fn stop(mut self) {
        for task in &self.tasks {
            task.abort();
        }
        for client in std::mem::take(&mut self.clients) {
            muster_connector::close(&client).await;
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

const ROLES: &[(&str, &[&str])] = &[
    ("web", &["httpd", "php"]),
    ("db", &["mysql"]),
    ("cache", &["redis"]),
    ("app", &["httpd", "java"]),
    ("lb", &["haproxy"]),
];
const OSES: &[(&str, &str, &str, &str)] = &[
    ("Debian", "Debian", "12", "12.8"),
    ("Debian", "Ubuntu", "24", "24.04"),
    ("RedHat", "Rocky", "9", "9.4"),
    ("RedHat", "AlmaLinux", "8", "8.10"),
];
const DATACENTERS: &[&str] = &["ams1", "fra2", "nyc3"];

/// A varied but deterministic node: the same `n` always gives the same facts.
pub fn simulated_node(identity: &str, n: usize, authority: Arc<Authority>) -> Node {
    let (role, role_classes) = ROLES[n % ROLES.len()];
    let (family, name, major, full) = OSES[(n / ROLES.len()) % OSES.len()];
    let memory_mb = [2048, 4096, 8192, 16384, 32768][(n * 7) % 5];
    let ip = format!("10.{}.{}.{}", 10 + n / 65536, (n / 256) % 256, n % 256);
    let datacenter = DATACENTERS[n % DATACENTERS.len()];
    let collectives = if n.is_multiple_of(2) {
        vec!["mcollective".to_string(), "compute".to_string()]
    } else {
        vec!["mcollective".to_string(), "storage".to_string()]
    };
    let facts: Value = json!({
        "identity": identity,
        "hostname": identity,
        "fqdn": format!("{identity}.example.net"),
        "role": role,
        "datacenter": datacenter,
        "osfamily": family,
        "operatingsystem": name,
        "os": {"family": family, "name": name, "release": {"major": major, "full": full}},
        "memorysize_mb": memory_mb,
        "processorcount": 2 + (n % 4) * 2,
        "ipaddress": ip,
        "ipaddress_eth0": ip,
        "networking": {"hostname": identity, "ip": ip, "interfaces": {"eth0": {"ip": ip}}},
        "virtual": "simulated",
    });
    let mut classes: Vec<String> = vec!["base".into(), format!("role::{role}")];
    classes.extend(role_classes.iter().map(|c| c.to_string()));
    let facts = Facts::fixed(facts);
    let classes: Classes = Source::fixed(classes);
    Node::new(
        identity,
        collectives,
        "mcollective",
        facts,
        classes,
        authority,
    )
}
