//! A real nats-server cluster on loopback, and leaf sites connected to it.
//!
//! Every member's config comes from [`muster_pki::nats_config::NatsConfig`],
//! the generator behind `mco broker nats-config`, so the tests run the
//! configuration an operator would: client TLS with per-certificate users,
//! routes with mutual TLS admitted by the DNS name in the route URLs
//! (`localhost`, which the test broker certificate carries), leaf sites
//! admitted by certificate name. Members are nats-server processes, killed
//! by PID (SIGKILL) on demand and when the cluster is dropped.
//!
//! nats-server knows only the certificates issued when its config was
//! written: issue the nodes' and callers' certificates before starting.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use muster_pki::nats_config::{Cluster, LeafnodeListen, NatsConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{free_port, TestPki};

/// The certificate name of every leaf site's nats-server.
pub const LEAF_NAME: &str = "leaf.test";

/// How long a member may take to start, connect its routes or leaf.
const STARTUP: Duration = Duration::from_secs(20);

/// One nats-server process and its ports.
struct Server {
    client: SocketAddr,
    monitor: SocketAddr,
    leaf: u16,
    child: Option<Child>,
    dir: PathBuf,
}

impl Server {
    fn ports(dir: PathBuf) -> Server {
        let loopback = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        Server {
            client: loopback(free_port()),
            monitor: loopback(free_port()),
            leaf: free_port(),
            child: None,
            dir,
        }
    }

    /// Writes `config` (adding the monitoring listener) and starts
    /// nats-server on it. An error (with nats-server's log) when it exits
    /// or does not listen within [`STARTUP`]: a port [`free_port`] handed
    /// out may have been taken again meanwhile, and the caller retries.
    async fn start(&mut self, mut config: NatsConfig) -> Result<(), String> {
        config.extra = format!("http: \"{}\"\n", self.monitor);
        let text = config.render().expect("nats-server config");
        std::fs::create_dir_all(&self.dir).expect("member dir");
        let path = self.dir.join("nats-server.conf");
        std::fs::write(&path, text).expect("write nats-server config");
        let child = Command::new("nats-server")
            .arg("-c")
            .arg(&path)
            .arg("-l")
            .arg(self.dir.join("nats-server.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start nats-server");
        self.child = Some(child);
        let deadline = Instant::now() + STARTUP;
        for addr in [self.client, self.monitor] {
            while tokio::net::TcpStream::connect(addr).await.is_err() {
                let exited = self
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten());
                if exited.is_some() || Instant::now() > deadline {
                    self.kill();
                    return Err(format!(
                        "nats-server did not listen on {addr} ({exited:?}):\n{}",
                        self.log()
                    ));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Child::kill is SIGKILL to this process's PID: a member dying
            // without saying goodbye to its routes or clients.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn url(&self) -> String {
        format!("tls://{}", self.client)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("nats-server.log")).unwrap_or_default()
    }

    fn config(&self) -> String {
        std::fs::read_to_string(self.dir.join("nats-server.conf")).unwrap_or_default()
    }

    /// A monitoring page (`/routez`, `/connz?auth=1`, `/leafz`) as JSON.
    async fn monitor(&self, page: &str) -> Result<serde_json::Value, String> {
        http_get_json(self.monitor, page).await
    }
}

/// A cluster of nats-server members on loopback ephemeral ports, each
/// also accepting leaf sites whose server presents [`LEAF_NAME`].
pub struct TestCluster {
    pki: TestPki,
    members: Vec<Server>,
    route_ports: Vec<u16>,
    dir: tempfile::TempDir,
}

impl TestCluster {
    /// Starts `size` members trusting `pki` and waits (at most 20 s) until
    /// every member has a route to every other.
    pub async fn start(size: usize, pki: TestPki) -> TestCluster {
        pki.issue_with(LEAF_NAME, &["127.0.0.1".into(), "localhost".into()]);
        let mut failures = Vec::new();
        // Fresh ports for every attempt: one may be taken between
        // free_port() and nats-server binding it.
        for _attempt in 0..3 {
            let dir = tempfile::tempdir().expect("temp dir");
            let members: Vec<Server> = (0..size)
                .map(|i| Server::ports(dir.path().join(format!("member{i}"))))
                .collect();
            let route_ports: Vec<u16> = (0..size).map(|_| free_port()).collect();
            let mut cluster = TestCluster {
                pki: pki.clone(),
                members,
                route_ports,
                dir,
            };
            let mut started = Ok(());
            for i in 0..size {
                let config = cluster.member_config(i);
                started = cluster.members[i].start(config).await;
                if started.is_err() {
                    break;
                }
            }
            match started {
                Ok(()) => {
                    cluster.wait_for_routes().await;
                    return cluster;
                }
                Err(e) => {
                    eprintln!("starting the cluster again on other ports: {e}");
                    failures.push(e);
                }
            }
        }
        panic!("no cluster after 3 attempts: {}", failures.join("\n---\n"));
    }

    /// Member `i`'s config: the same routes list on every member, by the
    /// DNS name `localhost` that the broker certificate carries.
    fn member_config(&self, i: usize) -> NatsConfig {
        let member = &self.members[i];
        NatsConfig {
            ssldir: self.pki.ssldir().clone(),
            certname: self.pki.broker_name().into(),
            issued: self.pki.issued_dir(),
            listen: member.client.to_string(),
            max_connections: 65_536,
            cluster: Some(Cluster {
                name: "muster-test".into(),
                listen: format!("127.0.0.1:{}", self.route_ports[i]),
                routes: self.route_urls(),
            }),
            leafnodes: Some(LeafnodeListen {
                listen: format!("127.0.0.1:{}", member.leaf),
                certnames: vec![LEAF_NAME.into()],
            }),
            leaf_remotes: Vec::new(),
            extra: String::new(),
        }
    }

    /// Waits until every running member reports a route to every other
    /// running member (nats-server's `/routez`).
    pub async fn wait_for_routes(&self) {
        let running: Vec<usize> = (0..self.members.len())
            .filter(|i| self.members[*i].child.is_some())
            .collect();
        let deadline = Instant::now() + STARTUP;
        for &i in &running {
            loop {
                let peers = self.peers(i).await;
                if peers.as_ref().is_ok_and(|p| p.len() + 1 >= running.len()) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "member {i} has routes to {peers:?}, not to all {} others after {STARTUP:?}\n{}",
                    running.len() - 1,
                    self.log(i)
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// The server ids member `i` has routes to (`/routez`), sorted.
    pub async fn peers(&self, i: usize) -> Result<Vec<String>, String> {
        let routez = self.members[i].monitor("/routez").await?;
        let mut ids: Vec<String> = routez["routes"]
            .as_array()
            .map(|routes| {
                routes
                    .iter()
                    .filter_map(|r| r["remote_id"].as_str())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    /// Every member's route URL, by the DNS name `localhost`, as each
    /// member's `cluster.routes` lists them.
    pub fn route_urls(&self) -> Vec<String> {
        self.route_ports
            .iter()
            .map(|port| format!("nats-route://localhost:{port}"))
            .collect()
    }

    /// Every member's leafnode URL (`tls://127.0.0.1:PORT`).
    pub fn leaf_urls(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("tls://127.0.0.1:{}", m.leaf))
            .collect()
    }

    /// How many members were started.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the cluster has no members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Member `i`'s client URL (`tls://127.0.0.1:PORT`).
    pub fn url(&self, i: usize) -> String {
        self.members[i].url()
    }

    /// Every member's client URL, member `i`'s first, as a comma-separated
    /// `plugin.nats.servers` value: the participant prefers its own member
    /// and moves on to the others when it is gone.
    pub fn servers_from(&self, i: usize) -> String {
        let n = self.members.len();
        (0..n)
            .map(|k| self.url((i + k) % n))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Kills member `i` with SIGKILL (by its PID) and waits for it to exit.
    pub fn kill(&mut self, i: usize) {
        self.members[i].kill();
    }

    /// Member `i`'s nats-server log so far.
    pub fn log(&self, i: usize) -> String {
        self.members[i].log()
    }

    /// Member `i`'s config as written.
    pub fn config(&self, i: usize) -> String {
        self.members[i].config()
    }

    /// The identities connected to member `i` (the users their
    /// certificates map to, from `/connz?auth=1`), sorted.
    pub async fn users(&self, i: usize) -> Result<Vec<String>, String> {
        let connz = self.members[i].monitor("/connz?auth=1&limit=1000").await?;
        let mut users: Vec<String> = connz["connections"]
            .as_array()
            .map(|conns| {
                conns
                    .iter()
                    .filter_map(|c| c["authorized_user"].as_str())
                    .map(|u| u.trim_start_matches("CN=").to_string())
                    .collect()
            })
            .unwrap_or_default();
        users.sort();
        Ok(users)
    }

    /// Starts a leaf site: one more nats-server, with the same users, that
    /// connects to every member's leafnode listener (member order) with
    /// the [`LEAF_NAME`] certificate. Waits until its leaf connection is up.
    pub async fn start_leaf(&self) -> TestLeaf {
        let mut failures = Vec::new();
        let mut server = None;
        for attempt in 0..3 {
            let mut leaf = Server::ports(self.dir.path().join(format!("leaf{attempt}")));
            let config = NatsConfig {
                ssldir: self.pki.ssldir().clone(),
                certname: LEAF_NAME.into(),
                issued: self.pki.issued_dir(),
                listen: leaf.client.to_string(),
                max_connections: 65_536,
                cluster: None,
                leafnodes: None,
                leaf_remotes: self.leaf_urls(),
                extra: String::new(),
            };
            match leaf.start(config).await {
                Ok(()) => {
                    server = Some(leaf);
                    break;
                }
                Err(e) => {
                    eprintln!("starting the leaf site again on other ports: {e}");
                    failures.push(e);
                }
            }
        }
        let Some(server) = server else {
            panic!("the leaf site did not start: {}", failures.join("\n---\n"));
        };
        let deadline = Instant::now() + STARTUP;
        loop {
            let leafz = server.monitor("/leafz").await;
            if leafz
                .as_ref()
                .is_ok_and(|l| l["leafnodes"].as_u64().unwrap_or(0) >= 1)
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the leaf site did not connect to the hub within {STARTUP:?}: {leafz:?}\n{}",
                server.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        TestLeaf { server }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for member in &mut self.members {
            member.kill();
        }
    }
}

/// A leaf site's nats-server, connected to a [`TestCluster`]; killed when dropped.
pub struct TestLeaf {
    server: Server,
}

impl TestLeaf {
    /// Its client URL (`tls://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Its nats-server log so far.
    pub fn log(&self) -> String {
        self.server.log()
    }

    /// Its config as written.
    pub fn config(&self) -> String {
        self.server.config()
    }
}

impl Drop for TestLeaf {
    fn drop(&mut self) {
        self.server.kill();
    }
}

/// GET `page` from a monitoring listener on loopback, bounded by 5 s,
/// and parse the body as JSON.
async fn http_get_json(addr: SocketAddr, page: &str) -> Result<serde_json::Value, String> {
    let fetch = async {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let request = format!("GET {page} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("send to {addr}: {e}"))?;
        let mut response = Vec::new();
        stream
            .read_to_end(&mut response)
            .await
            .map_err(|e| format!("read from {addr}: {e}"))?;
        let text = String::from_utf8_lossy(&response);
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, body)| body)
            .ok_or_else(|| format!("{addr}{page}: no HTTP body in {text:?}"))?;
        serde_json::from_str(body).map_err(|e| format!("{addr}{page}: {e}: {body:?}"))
    };
    tokio::time::timeout(Duration::from_secs(5), fetch)
        .await
        .map_err(|_| format!("{addr}{page}: no answer within 5 s"))?
}
