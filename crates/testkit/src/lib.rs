//! Test support shared by muster's integration tests and benchmarks.
//!
//! Starts the real parts a test needs and stops them when dropped: the
//! embedded broker or a real `nats-server` on an ephemeral loopback port
//! ([`TestBroker`]), a caller with a key pair and its client config
//! ([`Caller`]), and `mco server` processes ([`ServerProcess`]).

pub mod apt;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use muster_broker::{Broker, BrokerConfig, BrokerHandle};
use muster_protocol::KeyPair;

/// Which broker a scenario runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerKind {
    Embedded,
    NatsServer,
}

/// Whether a `nats-server` binary can be run here. In CI (`CI` set) its
/// absence is a failure, not a skip: `.ci/run` installs it.
pub fn nats_server_available() -> bool {
    let found = Command::new("nats-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !found && std::env::var_os("CI").is_some() {
        panic!("nats-server is not installed; .ci/run installs the Debian package nats-server");
    }
    found
}

/// A free loopback port (bind, read, release).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

/// A broker on loopback for one test.
pub struct TestBroker {
    kind: BrokerKind,
    addr: SocketAddr,
    embedded: Option<BrokerHandle>,
    nats: Option<Child>,
    _dir: tempfile::TempDir,
}

impl TestBroker {
    /// Starts a broker of `kind` on a free port.
    pub async fn start(kind: BrokerKind) -> TestBroker {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port())
            .parse()
            .expect("loopback address");
        let mut broker = TestBroker {
            kind,
            addr,
            embedded: None,
            nats: None,
            _dir: tempfile::tempdir().expect("temp dir"),
        };
        broker.resume().await;
        broker
    }

    pub fn kind(&self) -> BrokerKind {
        self.kind
    }

    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// Stops the broker, keeping its address for [`TestBroker::resume`].
    pub async fn stop(&mut self) {
        if let Some(handle) = self.embedded.take() {
            handle.shutdown().await;
        }
        if let Some(mut child) = self.nats.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same address.
    pub async fn resume(&mut self) {
        match self.kind {
            BrokerKind::Embedded => {
                let config = BrokerConfig {
                    listen: self.addr,
                    ..BrokerConfig::default()
                };
                let deadline = Instant::now() + Duration::from_secs(10);
                loop {
                    match Broker::start(config.clone()).await {
                        Ok(handle) => {
                            self.embedded = Some(handle);
                            break;
                        }
                        Err(e) if Instant::now() < deadline => {
                            let _ = e;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Err(e) => panic!("cannot start the embedded broker on {}: {e}", self.addr),
                    }
                }
            }
            BrokerKind::NatsServer => {
                let log = self._dir.path().join("nats-server.log");
                let child = Command::new("nats-server")
                    .args(["-a", "127.0.0.1", "-p", &self.addr.port().to_string(), "-l"])
                    .arg(&log)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("cannot start nats-server");
                self.nats = Some(child);
                wait_for_port(self.addr).await;
            }
        }
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(mut child) = self.nats.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn wait_for_port(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "nothing listens on {addr} after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A caller: a key pair, a trusted_keys directory that trusts it, and a
/// client config pointing at a broker.
pub struct Caller {
    pub dir: tempfile::TempDir,
    pub keys: KeyPair,
    pub name: String,
}

impl Caller {
    pub fn new(name: &str) -> Caller {
        let dir = tempfile::tempdir().expect("temp dir");
        let key_file = dir.path().join("keys").join(name);
        let (keys, _) = muster_client::keys::load_or_create(&key_file).expect("caller key");
        std::fs::create_dir_all(dir.path().join("trusted_keys")).expect("trusted_keys dir");
        std::fs::copy(
            muster_client::keys::public_key_path(&key_file),
            dir.path().join("trusted_keys").join(format!("{name}.pub")),
        )
        .expect("trust the caller");
        Caller {
            dir,
            keys,
            name: name.to_string(),
        }
    }

    /// The directory of keys this caller is trusted by.
    pub fn trusted_keys(&self) -> PathBuf {
        self.dir.path().join("trusted_keys")
    }

    /// Writes a client config for `url` and returns its path.
    pub fn client_config(&self, url: &str) -> PathBuf {
        let path = self.dir.path().join(format!(
            "client-{}.cfg",
            url.rsplit(':').next().unwrap_or("x")
        ));
        std::fs::write(
            &path,
            format!(
                "plugin.nats.servers = {url}\nplugin.security.key = keys/{}\nplugin.security.caller = user={}\n\
                 # generous, so a busy test machine does not end discovery early\n\
                 discovery_window_ms = 500\n",
                self.name, self.name
            ),
        )
        .expect("write client config");
        path
    }
}

/// Runs the `mco` binary at `mco` with `args` and no user config, bounded by 30 s.
pub async fn run_mco(mco: &str, args: &[&str]) -> std::process::Output {
    run_mco_env(mco, args, &[]).await
}

/// [`run_mco`] with more environment variables set.
pub async fn run_mco_env(
    mco: &str,
    args: &[&str],
    env: &[(&str, &std::ffi::OsStr)],
) -> std::process::Output {
    let child = tokio::process::Command::new(mco)
        .args(args)
        .envs(env.iter().copied())
        .env_remove("MCO_CONFIG")
        .env("XDG_CONFIG_HOME", "/nonexistent-muster-test")
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(30), child)
        .await
        .expect("mco did not finish within 30 s")
        .expect("cannot run mco")
}

/// A process's standard output as text.
pub fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A process's standard error as text.
pub fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The built-in agent `name` as a server config's `settings` lines set
/// it up (an error names the bad setting's line).
pub fn agent_from(
    settings: &str,
    name: &str,
) -> Result<std::sync::Arc<dyn muster_server::Agent>, String> {
    let text = format!("identity = node01\n{settings}\n");
    let config = muster_protocol::config::Config::parse(&text).map_err(|e| e.to_string())?;
    let server = muster_server::ServerConfig::from_config(&config).map_err(|e| e.to_string())?;
    muster_server::agents::for_config(&server)?
        .into_iter()
        .find(|agent| agent.ddl().metadata.name == name)
        .ok_or_else(|| format!("for_config has no {name} agent"))
}

/// A simulated node running `agent`, and a caller it trusts.
pub fn node_with(
    agent: std::sync::Arc<dyn muster_server::Agent>,
) -> (muster_server::Node, KeyPair) {
    let caller = KeyPair::generate();
    let trust = muster_server::TrustStore::fixed([(caller.public(), "alice".to_string())]);
    let mut node = muster_server::fleet::simulated_node("node01", 1, std::sync::Arc::new(trust));
    node.add_agent(agent);
    (node, caller)
}

/// Signs a request for `agent action` with `inputs` (a JSON object) as
/// `caller`, hands it to `node` as the broker would, and returns the reply.
pub async fn ask(
    node: &muster_server::Node,
    caller: &KeyPair,
    agent: &str,
    action: &str,
    inputs: serde_json::Value,
) -> muster_protocol::Reply {
    let data = match inputs {
        serde_json::Value::Object(map) => map,
        other => panic!("inputs must be a JSON object, not {other}"),
    };
    let request =
        muster_protocol::Request::new("client1", "user=alice", "mcollective", agent, action)
            .with_data(data);
    let envelope = caller.sign(&request).expect("a request signs");
    match node.handle(&envelope.to_bytes()).await {
        muster_server::node::Outcome::Reply { reply, .. } => {
            assert_eq!(reply.request_id, request.id);
            reply
        }
        other => panic!("{agent} {action}: expected a reply, got {other:?}"),
    }
}

/// `mco fleet` as a child process: `nodes` simulated nodes that trust
/// `caller`, killed when dropped.
pub struct FleetProcess(Child);

impl FleetProcess {
    /// Starts the fleet and waits (at most 20 s) until `mco find` sees every node.
    pub async fn start(mco: &str, broker_url: &str, caller: &Caller, nodes: usize) -> FleetProcess {
        let child = Command::new(mco)
            .args([
                "fleet",
                "--nodes",
                &nodes.to_string(),
                "--server",
                broker_url,
                "--trusted-keys",
            ])
            .arg(caller.trusted_keys())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start mco fleet");
        let fleet = FleetProcess(child);
        let config = caller.client_config(broker_url).display().to_string();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let found = run_mco(mco, &["find", "--config", &config]).await;
            if stdout(&found).lines().count() == nodes {
                return fleet;
            }
            assert!(
                Instant::now() < deadline,
                "the fleet did not answer within 20 s: {}",
                stderr(&found)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for FleetProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One node's setup for an `mco server` process.
pub struct NodeSetup<'a> {
    pub identity: &'a str,
    pub facts_yaml: &'a str,
    pub classes: &'a [&'a str],
    pub collectives: &'a [&'a str],
    /// More config lines, e.g. agents' `plugin.*` settings.
    pub settings: &'a str,
}

/// A running `mco server` process, killed when dropped.
pub struct ServerProcess {
    child: Child,
    pub dir: tempfile::TempDir,
}

impl ServerProcess {
    /// Writes the node's files and config, and starts `mco server`.
    pub fn start(mco: &Path, url: &str, trusted_keys: &Path, node: &NodeSetup) -> ServerProcess {
        let dir = tempfile::tempdir().expect("temp dir");
        let facts = dir.path().join("facts.yaml");
        std::fs::write(&facts, node.facts_yaml).expect("facts");
        let classes = dir.path().join("classes.txt");
        std::fs::write(&classes, node.classes.join("\n")).expect("classes");
        let config = dir.path().join("server.cfg");
        let collectives = if node.collectives.is_empty() {
            "mcollective".to_string()
        } else {
            node.collectives.join(",")
        };
        std::fs::write(
            &config,
            format!(
                "identity = {}\ncollectives = {collectives}\nmain_collective = mcollective\n\
                 factsource = yaml\nplugin.yaml = {}\nclassesfile = {}\nplugin.nats.servers = {url}\n\
                 plugin.security.trusted_keys = {}\nlogfile = {}\nloglevel = debug\n{}\n",
                node.identity,
                facts.display(),
                classes.display(),
                trusted_keys.display(),
                dir.path().join("server.log").display(),
                node.settings,
            ),
        )
        .expect("server config");
        let child = Command::new(mco)
            .arg("server")
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start mco server");
        ServerProcess { child, dir }
    }

    /// The daemon's log so far, for assertions and failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
