//! Test support shared by muster's integration tests and benchmarks.
//!
//! Starts the real parts a test needs and stops them when dropped: a
//! fleet CA ([`TestPki`]), the embedded broker or a real `nats-server` on
//! an ephemeral loopback port, both with TLS and per-certificate
//! permissions ([`TestBroker`]), a caller with a certificate and its
//! client config ([`Caller`]), `mco server` processes ([`ServerProcess`]),
//! a nats-server cluster with leaf sites ([`TestCluster`]), and a TCP
//! proxy that adds a wide-area network's latency ([`LatencyProxy`]).
//!
//! Everything in one test binary shares one CA ([`TestPki::shared`]), so
//! a caller made anywhere is trusted by every node and broker; a test that
//! revokes makes its own [`TestPki`]. [`TestPki::puppet`] makes a real
//! Puppet-style CA instead (`scripts/puppet-ca.sh`), which every helper
//! here accepts as well.

pub mod apt;
pub mod cluster;
mod latency;
mod logs;
mod pki;
pub mod puppetdb;

pub use cluster::{TestCluster, TestLeaf};
pub use latency::LatencyProxy;
pub use logs::Logs;

pub use puppetdb::{puppetdb_available, puppetdb_installed, TestPuppetDb};

pub use pki::{PuppetCaMode, TestPki, PUPPET_CA_SCRIPT, PUPPET_SERVER_NAME};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use muster_broker::{Broker, BrokerConfig, BrokerHandle};
use muster_pki::Credential;

/// Which broker a scenario runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerKind {
    /// muster's own broker, in this process.
    Embedded,
    /// A real nats-server process on a config `mco broker nats-config` wrote.
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

/// Whether Debian's puppetserver is installed, which
/// [`TestPki::puppet`] needs in [`PuppetCaMode::Server`] (the paths
/// `scripts/puppet-ca.sh` uses). In CI (`CI` set) its absence is a
/// failure, not a skip: `.ci/run` installs it.
pub fn puppetserver_available() -> bool {
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| dir.join("puppetserver").is_file())
    });
    let found = on_path
        && Path::new("/usr/share/puppetserver/puppetserver.jar").is_file()
        && Path::new("/etc/puppet/puppetserver/conf.d").is_dir();
    if !found && std::env::var_os("CI").is_some() {
        panic!(
            "puppetserver is not installed; .ci/run installs the Debian package puppetserver \
             (--no-install-recommends)"
        );
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

/// A broker on loopback for one test: TLS with client certificates from
/// its [`TestPki`] and the permissions each certificate name grants.
pub struct TestBroker {
    kind: BrokerKind,
    addr: SocketAddr,
    pki: TestPki,
    certname: &'static str,
    /// No TLS, no admission: only to measure what security costs.
    plaintext: bool,
    embedded: Option<BrokerHandle>,
    nats: Option<Child>,
    dir: tempfile::TempDir,
}

/// The broker's certificate name in every fleet test CA (a Puppet one's
/// broker is its CA server, [`PUPPET_SERVER_NAME`]: [`TestPki::broker_name`]).
pub const BROKER_NAME: &str = "broker.test";

impl TestBroker {
    /// Starts a broker of `kind` on a free port, trusting the shared CA.
    pub async fn start(kind: BrokerKind) -> TestBroker {
        TestBroker::start_with(kind, TestPki::shared().clone()).await
    }

    /// Starts a broker of `kind` on a free port, trusting `pki` and
    /// presenting its [`TestPki::broker_name`] certificate.
    pub async fn start_with(kind: BrokerKind, pki: TestPki) -> TestBroker {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port())
            .parse()
            .expect("loopback address");
        let certname = pki.broker_name();
        let mut broker = TestBroker {
            kind,
            addr,
            pki,
            certname,
            plaintext: false,
            embedded: None,
            nats: None,
            dir: tempfile::tempdir().expect("temp dir"),
        };
        broker.first_start().await;
        broker
    }

    /// Starts the broker for the first time. A nats-server that finds its
    /// port taken (`free_port` released it, and another process got it
    /// first) exits; it gets fresh ports, up to three tries, so the test
    /// neither fails nor talks to somebody else's server.
    async fn first_start(&mut self) {
        if self.kind == BrokerKind::Embedded {
            return self.resume().await;
        }
        for _ in 0..2 {
            match self.start_nats_server().await {
                Ok(()) => return,
                Err(why) => {
                    eprintln!(
                        "nats-server did not start on {} ({why}); trying another port",
                        self.addr
                    );
                    self.addr.set_port(free_port());
                }
            }
        }
        if let Err(why) = self.start_nats_server().await {
            panic!(
                "nats-server did not start on {}: {why}\n{}",
                self.addr,
                self.log()
            );
        }
    }

    /// A broker with no TLS and no admission, for the benchmark's
    /// security-off rows only: every participant connects in plain text.
    pub async fn start_plaintext(kind: BrokerKind) -> TestBroker {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port())
            .parse()
            .expect("loopback address");
        let pki = TestPki::shared().clone();
        let mut broker = TestBroker {
            kind,
            addr,
            certname: pki.broker_name(),
            pki,
            plaintext: true,
            embedded: None,
            nats: None,
            dir: tempfile::tempdir().expect("temp dir"),
        };
        broker.first_start().await;
        broker
    }

    /// Which broker this is.
    pub fn kind(&self) -> BrokerKind {
        self.kind
    }

    /// The CA the broker trusts.
    pub fn pki(&self) -> &TestPki {
        &self.pki
    }

    /// The certificate name the broker presents.
    pub fn certname(&self) -> &'static str {
        self.certname
    }

    /// The nats-server config as last written (empty for the embedded broker).
    pub fn nats_config(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nats-server.conf")).unwrap_or_default()
    }

    /// The URL clients connect to (`tls://` unless plain text).
    pub fn url(&self) -> String {
        let scheme = if self.plaintext { "nats" } else { "tls" };
        format!("{scheme}://{}", self.addr)
    }

    /// The address, for raw sockets.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The embedded broker's counters (`None` for nats-server).
    pub fn stats(&self) -> Option<muster_broker::BrokerStats> {
        self.embedded.as_ref().map(|b| b.stats())
    }

    /// The nats-server log so far (empty for the embedded broker).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nats-server.log")).unwrap_or_default()
    }

    /// nats-server knows only the certificates issued when its config was
    /// written: this rewrites it and makes nats-server reload it (the
    /// embedded broker needs nothing).
    pub async fn reload(&mut self) {
        if let Some(child) = &self.nats {
            self.write_nats_config();
            let pid = child.id().to_string();
            let _ = Command::new("kill").args(["-HUP", &pid]).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            let reloads = || self.log().matches("Reloaded server configuration").count();
            let before = reloads();
            while reloads() == before {
                assert!(
                    Instant::now() < deadline,
                    "nats-server did not reload: {}",
                    self.log()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    fn write_nats_config(&self) -> PathBuf {
        let config = muster_pki::nats_config::NatsConfig {
            ssldir: self.pki.ssldir().clone(),
            certname: self.certname.into(),
            issued: self.pki.issued_dir(),
            listen: self.addr.to_string(),
            max_connections: 65_536,
            cluster: None,
            leafnodes: None,
            leaf_remotes: Vec::new(),
            extra: String::new(),
        };
        let text = config.render().expect("nats-server config");
        let path = self.dir.path().join("nats-server.conf");
        std::fs::write(&path, text).expect("write nats-server config");
        path
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
                let security = (!self.plaintext).then(|| {
                    let identity = self.pki.identity(self.certname);
                    muster_pki::broker::security(&identity).expect("broker TLS")
                });
                let config = BrokerConfig {
                    listen: self.addr,
                    security,
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
                if let Err(why) = self.start_nats_server().await {
                    panic!(
                        "nats-server did not start on {}: {why}\n{}",
                        self.addr,
                        self.log()
                    );
                }
            }
        }
    }

    /// Starts nats-server on `self.addr` and waits until it says it is
    /// ready; `Err` if it exited first (its port taken, say).
    async fn start_nats_server(&mut self) -> Result<(), String> {
        let log = self.dir.path().join("nats-server.log");
        // The log is appended to across restarts: this start is ready when
        // it says so once more than before.
        let readies = |log: &Path| {
            std::fs::read_to_string(log).map_or(0, |text| text.matches("Server is ready").count())
        };
        let before = readies(&log);
        let mut command = Command::new("nats-server");
        if self.plaintext {
            command.args(["-a", "127.0.0.1", "-p", &self.addr.port().to_string()]);
        } else {
            command.arg("-c").arg(self.write_nats_config());
        }
        let mut child = command
            .arg("-l")
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start nats-server");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("it exited: {status}"));
            }
            if readies(&log) > before {
                break;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err("not ready after 10 s".to_string());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.nats = Some(child);
        wait_for_port(self.addr).await;
        Ok(())
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

/// A caller: a certificate `<name>.mcollective` from the shared CA, and
/// client configs pointing at a broker.
pub struct Caller {
    /// Where its ssldir and client configs live.
    pub dir: tempfile::TempDir,
    /// Its certificate and key.
    pub credential: Credential,
    /// The certificate name, `<name>.mcollective`.
    pub name: String,
    pki: TestPki,
}

impl Caller {
    /// `<name>.mcollective` from the shared CA.
    pub fn new(name: &str) -> Caller {
        Caller::with_pki(name, TestPki::shared().clone())
    }

    /// `<name>.mcollective` from `pki`.
    pub fn with_pki(name: &str, pki: TestPki) -> Caller {
        let certname = format!("{name}.mcollective");
        let credential = pki.credential(&certname);
        Caller {
            dir: tempfile::tempdir().expect("temp dir"),
            credential,
            name: certname,
            pki,
        }
    }

    /// The CA this caller's certificate is from.
    pub fn pki(&self) -> &TestPki {
        &self.pki
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
                "plugin.nats.servers = {url}\nplugin.security.ssldir = {}\nplugin.security.certname = {}\n\
                 # generous, so a busy test machine does not end discovery early\n\
                 discovery_window_ms = 500\n",
                self.pki.ssldir().root().display(),
                self.name
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
    muster_server::agents::for_config(&server)
        .map_err(|e| e.to_string())?
        .into_iter()
        .find(|agent| agent.ddl().metadata.name == name)
        .ok_or_else(|| format!("for_config has no {name} agent"))
}

/// A simulated node running `agent`, and a caller it trusts
/// (`alice.mcollective` of the shared CA).
pub fn node_with(
    agent: std::sync::Arc<dyn muster_server::Agent>,
) -> (muster_server::Node, Credential) {
    let pki = TestPki::shared();
    let caller = pki.credential("alice.mcollective");
    let mut node = muster_server::fleet::simulated_node("node01", 1, pki.authority());
    node.add_agent(agent);
    (node, caller)
}

/// Signs a request for `agent action` with `inputs` (a JSON object) as
/// `caller`, hands it to `node` as the broker would, and returns the reply.
pub async fn ask(
    node: &muster_server::Node,
    caller: &Credential,
    agent: &str,
    action: &str,
    inputs: serde_json::Value,
) -> muster_protocol::Reply {
    let data = match inputs {
        serde_json::Value::Object(map) => map,
        other => panic!("inputs must be a JSON object, not {other}"),
    };
    let request =
        muster_protocol::Request::new("client1", caller.name(), "mcollective", agent, action)
            .with_data(data);
    let envelope = muster_protocol::Envelope::seal(&request, caller).expect("a request signs");
    match node.handle(&envelope.to_bytes()).await {
        muster_server::node::Outcome::Reply { reply, .. } => {
            assert_eq!(reply.request_id, request.id);
            reply
        }
        other => panic!("{agent} {action}: expected a reply, got {other:?}"),
    }
}

/// `mco fleet` as a child process: `nodes` simulated nodes with the
/// simulator credential `node.fleet` of `caller`'s CA, killed when dropped.
pub struct FleetProcess(Child);

impl FleetProcess {
    /// Starts the fleet and waits (at most 20 s) until `mco find` sees every node.
    pub async fn start(mco: &str, broker_url: &str, caller: &Caller, nodes: usize) -> FleetProcess {
        caller.pki().issue("node.fleet");
        let child = Command::new(mco)
            .args([
                "fleet",
                "--nodes",
                &nodes.to_string(),
                "--server",
                broker_url,
                "--certname",
                "node.fleet",
                "--ssldir",
            ])
            .arg(caller.pki().ssldir().root())
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
    /// The node's identity (and certificate name).
    pub identity: &'a str,
    /// The facts file's YAML.
    pub facts_yaml: &'a str,
    /// The classes file's lines.
    pub classes: &'a [&'a str],
    /// Its collectives; empty means the default one.
    pub collectives: &'a [&'a str],
    /// More config lines, e.g. agents' `plugin.*` settings.
    pub settings: &'a str,
}

/// A running `mco server` process, killed when dropped.
pub struct ServerProcess {
    child: Child,
    mco: PathBuf,
    /// Its config, ssldir, facts and log.
    pub dir: tempfile::TempDir,
}

impl ServerProcess {
    /// Writes the node's files and config (its certificate from `pki`),
    /// and starts `mco server`.
    pub fn start(mco: &Path, url: &str, pki: &TestPki, node: &NodeSetup) -> ServerProcess {
        pki.issue(node.identity);
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
                 plugin.security.ssldir = {}\nlogfile = {}\nloglevel = debug\n{}\n",
                node.identity,
                facts.display(),
                classes.display(),
                pki.ssldir().root().display(),
                dir.path().join("server.log").display(),
                node.settings,
            ),
        )
        .expect("server config");
        let child = spawn_server(mco, &config);
        ServerProcess {
            child,
            mco: mco.to_path_buf(),
            dir,
        }
    }

    /// Kills the daemon and starts it again with the same config.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn_server(&self.mco, &self.dir.path().join("server.cfg"));
    }

    /// The daemon's process id, to signal it (e.g. SIGSTOP: a node that
    /// hangs without leaving the broker).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The daemon's resident memory, in KiB (from /proc).
    pub fn rss_kb(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse().ok())
            })
            .unwrap_or(0)
    }

    /// The daemon's log so far, for assertions and failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

fn spawn_server(mco: &Path, config: &Path) -> Child {
    Command::new(mco)
        .arg("server")
        .arg("--config")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot start mco server")
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A port somebody else holds (as when `free_port` lost a race): the
    /// nats-server exits, and the broker comes up on another port, its own.
    #[tokio::test]
    async fn a_nats_server_whose_port_is_taken_starts_on_another() {
        if !nats_server_available() {
            eprintln!("SKIPPED: nats-server is not installed");
            return;
        }
        let squatter = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let taken = squatter.local_addr().expect("address");
        let pki = TestPki::shared().clone();
        let mut broker = TestBroker {
            kind: BrokerKind::NatsServer,
            addr: taken,
            certname: pki.broker_name(),
            pki,
            plaintext: false,
            embedded: None,
            nats: None,
            dir: tempfile::tempdir().expect("temp dir"),
        };
        broker.first_start().await;
        assert_ne!(broker.addr(), taken);
        assert!(broker.log().contains("Server is ready"), "{}", broker.log());
        let url = broker.url();
        let client = muster_connector::connect_client(
            &[url],
            "port test",
            Duration::from_secs(5),
            &TestPki::shared().transport(TestPki::shared().broker_name()),
        )
        .await;
        assert!(client.is_ok(), "{:?}", client.err());
        drop(squatter);
    }
}
