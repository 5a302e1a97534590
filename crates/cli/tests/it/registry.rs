//! End to end: real `mco server` processes registering every second, a
//! real `mco registry` collecting them into SQLite, and `--dm registry`
//! selecting what broadcast selects.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use muster_testkit::{
    stderr, stdout, BrokerKind, Caller, NodeSetup, ServerProcess, TestBroker, TestPki,
};

const MCO: &str = env!("CARGO_BIN_EXE_mco");

async fn mco(args: &[&str]) -> Output {
    muster_testkit::run_mco(MCO, args).await
}

/// `mco registry` as a child process, killed when dropped.
struct RegistryProcess {
    child: Child,
    dir: tempfile::TempDir,
}

impl RegistryProcess {
    /// Writes its config (certificate `registry` from `pki`, the store
    /// under `state/`, ageing out after 2 intervals) and starts it;
    /// `prepare` may put files in its directory first.
    fn start(url: &str, pki: &TestPki, prepare: impl FnOnce(&Path)) -> RegistryProcess {
        pki.issue("registry");
        let dir = tempfile::tempdir().expect("temp dir");
        prepare(dir.path());
        let config = dir.path().join("registry.cfg");
        std::fs::write(
            &config,
            format!(
                "identity = registry\ncollectives = mcollective, eu\nmain_collective = mcollective\n\
                 plugin.nats.servers = {url}\nplugin.security.ssldir = {}\n\
                 plugin.registry.store = {}\nplugin.registry.expire_intervals = 2\n\
                 logfile = {}\nloglevel = debug\n",
                pki.ssldir().root().display(),
                dir.path().join("state/registry.db").display(),
                dir.path().join("registry.log").display(),
            ),
        )
        .expect("registry config");
        let child = Command::new(MCO)
            .arg("registry")
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("registry.log")).expect("log file"),
            ))
            .spawn()
            .expect("cannot start mco registry");
        RegistryProcess { child, dir }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for RegistryProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn server(
    url: &str,
    pki: &TestPki,
    identity: &str,
    facts: &str,
    classes: &[&str],
    collectives: &[&str],
) -> ServerProcess {
    ServerProcess::start(
        Path::new(MCO),
        url,
        pki,
        &NodeSetup {
            identity,
            facts_yaml: facts,
            classes,
            collectives,
            settings: "registerinterval = 1\nregistration_splay = true\n",
        },
    )
}

/// Runs `mco find` with `args` until its output is `expected` (at most 30 s).
async fn wait_for_find(args: &[&str], expected: &str, registry: &RegistryProcess) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = mco(args).await;
        if stdout(&found) == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "mco find {args:?} still says {:?} / {} after 30 s, not {expected:?}\nregistry log:\n{}",
            stdout(&found),
            stderr(&found),
            registry.log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_learns_real_nodes_selects_like_broadcast_and_ages_one_out() {
    let broker = TestBroker::start(BrokerKind::Embedded).await;
    let url = broker.url();
    let caller = Caller::new("registrar");
    let pki = caller.pki();
    let config = caller.client_config(&url);
    let mut text = std::fs::read_to_string(&config).expect("client config");
    text.push_str("collectives = mcollective, eu\n");
    std::fs::write(&config, text).expect("client config");
    let c = config.display().to_string();
    let c = c.as_str();

    let _web1 = server(
        &url,
        pki,
        "web1",
        "role: web\nmem: 4096\nos:\n  family: Debian\ndc: eu1\nversion: '1.10'\n",
        &["base", "httpd"],
        &[],
    );
    let _web2 = server(
        &url,
        pki,
        "web2",
        "role: web\nmem: 8192\nos:\n  family: RedHat\ndc: us1\nversion: '1.9'\n",
        &["base", "httpd", "php"],
        &["mcollective", "eu"],
    );
    let _db1 = server(
        &url,
        pki,
        "db1",
        "role: db\nmem: 16384\nos:\n  family: Debian\ndc: eu1\nversion: '2.0'\n",
        &["base", "mysql"],
        &["mcollective", "eu"],
    );
    let mut cache1 = server(
        &url,
        pki,
        "cache1",
        "role: cache\nmem: 2048\nos:\n  family: RedHat\ndc: us1\nversion: '1.10'\n",
        &["base", "redis"],
        &[],
    );
    // No collector yet: the error says what to check.
    let none = mco(&["find", "--config", c, "--dm", "registry", "--dt", "0.5"]).await;
    assert!(!none.status.success());
    assert!(
        stderr(&none).contains("is mco registry running"),
        "{}",
        stderr(&none)
    );
    let registry = RegistryProcess::start(&url, pki, |_| {});

    let everyone = "cache1\ndb1\nweb1\nweb2\n";
    wait_for_find(&["find", "--config", c], everyone, &registry).await;
    wait_for_find(
        &["find", "--config", c, "--dm", "registry"],
        everyone,
        &registry,
    )
    .await;

    // Secure by default: the store and the directory it made are private.
    let store = registry.dir.path().join("state/registry.db");
    let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&store), 0o600);
    assert_eq!(mode(&registry.dir.path().join("state")), 0o700);

    // The whole filter language but data plugins: the same nodes both ways.
    let filters: &[(&[&str], &str)] = &[
        (&["-I", "web1"], "web1\n"),
        (&["-I", "/^web/"], "web1\nweb2\n"),
        (&["-F", "role=web"], "web1\nweb2\n"),
        (&["-F", "role==db"], "db1\n"),
        (&["-F", "role!=web"], "cache1\ndb1\n"),
        (&["-F", "mem>4096"], "db1\nweb2\n"),
        (&["-F", "mem>=4096"], "db1\nweb1\nweb2\n"),
        (&["-F", "mem<8192"], "cache1\nweb1\n"),
        (&["-F", "mem<=8192"], "cache1\nweb1\nweb2\n"),
        (&["-F", "os.family=~Hat$"], "cache1\nweb2\n"),
        (&["-F", "dc=/eu/"], "db1\nweb1\n"),
        (&["-F", "version>1.9"], "db1\n"),
        (&["-C", "httpd"], "web1\nweb2\n"),
        (&["-C", "/^my/"], "db1\n"),
        (&["-A", "rpcutil"], everyone),
        (&["-W", "httpd role=web mem>4096"], "web2\n"),
        (
            &["-S", "(httpd or redis) and not os.family=Debian"],
            "cache1\nweb2\n",
        ),
        (&["-S", "mysql or mem<4096"], "cache1\ndb1\n"),
        (&["-C", "base", "-T", "eu"], "db1\nweb2\n"),
    ];
    for (args, expected) in filters {
        let mut broadcast = vec!["find", "--config", c];
        broadcast.extend_from_slice(args);
        let mut registered = broadcast.clone();
        registered.extend_from_slice(&["--dm", "registry"]);
        let by_broadcast = mco(&broadcast).await;
        let by_registry = mco(&registered).await;
        assert_eq!(
            stdout(&by_broadcast),
            *expected,
            "broadcast {args:?}: {}",
            stderr(&by_broadcast)
        );
        assert_eq!(
            stdout(&by_registry),
            stdout(&by_broadcast),
            "--dm registry {args:?}: {}",
            stderr(&by_registry)
        );
    }

    // Data plugins need the nodes: refused with the reason.
    let data = mco(&[
        "find",
        "--config",
        c,
        "--dm",
        "registry",
        "-S",
        "fstat('/etc/hosts').size>0",
    ])
    .await;
    assert!(!data.status.success());
    assert!(stderr(&data).contains("data plugins"), "{}", stderr(&data));

    // An RPC discovered through the registry reaches the nodes.
    let ping = mco(&[
        "rpc", "rpcutil", "ping", "--config", c, "--dm", "registry", "-C", "httpd",
    ])
    .await;
    assert!(ping.status.success(), "{}", stderr(&ping));
    assert!(
        stdout(&ping).contains("web1") && stdout(&ping).contains("web2"),
        "{}",
        stdout(&ping)
    );

    // mco inventory reads the nodes the registry selects.
    let inventory = mco(&[
        "inventory",
        "--config",
        c,
        "--dm",
        "registry",
        "-C",
        "mysql",
    ])
    .await;
    assert!(inventory.status.success(), "{}", stderr(&inventory));
    assert!(
        stdout(&inventory).contains("Inventory for db1:"),
        "{}",
        stdout(&inventory)
    );
    assert!(
        !stdout(&inventory).contains("web1"),
        "{}",
        stdout(&inventory)
    );

    // Its counters: nothing refused from real nodes.
    let status = mco(&[
        "rpc", "registry", "status", "--config", c, "-I", "registry", "--json",
    ])
    .await;
    assert!(status.status.success(), "{}", stderr(&status));
    let text = stdout(&status);
    assert!(text.contains(r#""store": "ok""#), "{text}");
    assert!(text.contains(r#""total": 0"#), "{text}");

    // Stopped, cache1 is aged out after 2 of its 1 s intervals.
    nix_kill(&mut cache1);
    wait_for_find(
        &["find", "--config", c, "--dm", "registry"],
        "db1\nweb1\nweb2\n",
        &registry,
    )
    .await;
    assert!(registry.log().contains("aged out"), "{}", registry.log());

    // A node that answers but never registered: `--expect registry`
    // keeps the ping a broadcast and names it as not expected.
    let _stray = ServerProcess::start(
        Path::new(MCO),
        &url,
        pki,
        &NodeSetup {
            identity: "stray1",
            facts_yaml: "role: web\n",
            classes: &[],
            collectives: &[],
            settings: "",
        },
    );
    wait_for_find(
        &["find", "--config", c],
        "db1\nstray1\nweb1\nweb2\n",
        &registry,
    )
    .await;
    let checked = mco(&["ping", "--config", c, "--expect", "registry"]).await;
    let text = stdout(&checked);
    let unexpected = text
        .split_once("Unexpected replies from:")
        .map(|(_, names)| names.to_string());
    assert_eq!(
        unexpected.as_deref().map(str::trim),
        Some("stray1"),
        "{text}{}",
        stderr(&checked)
    );
    assert!(!text.contains("No response from"), "{text}");
    for node in ["db1", "web1", "web2"] {
        assert!(text.contains(node), "{node}: {text}");
    }
}

/// Stops the node for good (the process, as a crashed host would).
fn nix_kill(server: &mut ServerProcess) {
    let _ = Command::new("kill")
        .args(["-KILL", &server.pid().to_string()])
        .status();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_store_keeps_the_collector_running_and_queries_say_so() {
    let broker = TestBroker::start(BrokerKind::Embedded).await;
    let url = broker.url();
    let caller = Caller::new("registrar");
    let pki = caller.pki();
    let c = caller.client_config(&url).display().to_string();
    // The store's file is garbage before the collector starts.
    let registry = RegistryProcess::start(&url, pki, |dir| {
        std::fs::create_dir_all(dir.join("state")).expect("state dir");
        std::fs::write(dir.join("state/registry.db"), vec![0x5a; 8192]).expect("garbage");
    });
    let _node = server(&url, pki, "lonely1", "role: web\n", &["base"], &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = mco(&["find", "--config", &c, "--dm", "registry"]).await;
        let said = stderr(&found);
        if said.contains("store is unavailable") {
            assert!(!found.status.success());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no store error after 30 s: {said}\n{}",
            registry.log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Still running and still learning, and its log says what is wrong.
    assert!(
        registry.log().contains("registry store unavailable"),
        "{}",
        registry.log()
    );
    let status = mco(&[
        "rpc", "registry", "status", "--config", &c, "-I", "registry", "--json",
    ])
    .await;
    assert!(status.status.success(), "{}", stderr(&status));
    assert!(
        stdout(&status).contains("unavailable"),
        "{}",
        stdout(&status)
    );
}

/// `mco fleet` registering every `interval` seconds, killed when dropped.
struct RegisteringFleet(Child);

impl RegisteringFleet {
    fn start(url: &str, caller: &Caller, nodes: usize, interval: u64) -> RegisteringFleet {
        caller.pki().issue("node.fleet");
        let child = Command::new(MCO)
            .args(["fleet", "--nodes", &nodes.to_string(), "--server", url])
            .args([
                "--certname",
                "node.fleet",
                "--registerinterval",
                &interval.to_string(),
            ])
            .arg("--ssldir")
            .arg(caller.pki().ssldir().root())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start mco fleet");
        RegisteringFleet(child)
    }
}

impl Drop for RegisteringFleet {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A simulated fleet registers through its `node.fleet` certificate, and
/// the registry selects what broadcast selects from it; with `nodes` of
/// 10 000 this is the measurement quoted in docs/discovery.md.
async fn fleet_registers_and_registry_matches_broadcast(nodes: usize, interval: u64, report: bool) {
    let broker = TestBroker::start(BrokerKind::Embedded).await;
    let url = broker.url();
    let caller = Caller::new("registrar");
    let c = caller.client_config(&url).display().to_string();
    let c = c.as_str();
    let registry = RegistryProcess::start(&url, caller.pki(), |_| {});
    let _fleet = RegisteringFleet::start(&url, &caller, nodes, interval);
    let deadline = Instant::now() + Duration::from_secs(30 + 2 * interval);
    loop {
        let found = mco(&["find", "--config", c, "--dm", "registry"]).await;
        if stdout(&found).lines().count() == nodes {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the registry knows {} of {nodes} nodes: {}\n{}",
            stdout(&found).lines().count(),
            stderr(&found),
            registry.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for filter in [
        &["-F", "role=db"][..],
        &["-C", "redis", "-F", "memorysize_mb>=8192"],
        &["-S", "(role::web or redis) and os.family=Debian"],
        &["-I", "/^node0*1/"],
    ] {
        let mut broadcast = vec!["find", "--config", c, "--dt", "30"];
        broadcast.extend_from_slice(filter);
        let mut registered = broadcast.clone();
        registered.extend_from_slice(&["--dm", "registry"]);
        let started = Instant::now();
        let by_broadcast = mco(&broadcast).await;
        let broadcast_time = started.elapsed();
        let started = Instant::now();
        let by_registry = mco(&registered).await;
        let registry_time = started.elapsed();
        assert!(by_registry.status.success(), "{}", stderr(&by_registry));
        assert_eq!(stdout(&by_registry), stdout(&by_broadcast), "{filter:?}");
        if report {
            println!(
                "{nodes} nodes, mco find {filter:?}: {} selected; broadcast {:.0} ms, --dm registry {:.0} ms (whole process)",
                stdout(&by_registry).lines().count(),
                broadcast_time.as_secs_f64() * 1000.0,
                registry_time.as_secs_f64() * 1000.0
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulated_fleet_registers_and_the_registry_selects_like_broadcast() {
    fleet_registers_and_registry_matches_broadcast(20, 1, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: 10 000 simulated nodes; run with --ignored --nocapture"]
async fn bench_registry_discovery_of_10000_simulated_nodes() {
    fleet_registers_and_registry_matches_broadcast(10_000, 10, true).await;
}
