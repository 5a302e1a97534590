//! A real nats-server cluster with member loss, and a leaf site, end to
//! end: configs from `mco broker nats-config`'s generator, real `mco
//! server` processes spread over the members (each lists its own member
//! first, then the others), clients on another member.
//!
//! Skipped, saying so, where nats-server is not installed (a failure
//! under `CI`). Every wait is bounded; every port is ephemeral; every
//! process is stopped by PID.

use crate::common::{json, senders, timed_mco};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use muster_testkit::{
    nats_server_available, stderr, stdout, Caller, NodeSetup, ServerProcess, TestCluster, TestPki,
};

const MCO: &str = env!("CARGO_BIN_EXE_mco");

/// How long nodes may take to (re)connect and be found.
const FOUND_WITHIN: Duration = Duration::from_secs(30);

/// An external agent whose `nap` action sleeps `seconds`, writing
/// `started` next to itself first.
const SLEEPER: &str = r#"#!/usr/bin/env python3
import json, os, sys, time
here = os.path.dirname(os.path.abspath(sys.argv[0]))
request_file, reply_file, protocol = sys.argv[1:4]
def reply(answer):
    with open(reply_file, "w") as f:
        json.dump(answer, f)
if protocol == "io.choria.mcorpc.external.v1.activation_request":
    reply({"activate": True})
    sys.exit(0)
request = json.load(open(request_file))
seconds = int(request["data"]["seconds"])
open(os.path.join(here, "started"), "w").write(str(os.getpid()))
time.sleep(seconds)
reply({"statuscode": 0, "statusmsg": "OK", "data": {"slept": seconds}})
"#;

const SLEEPER_DDL: &str = r#"{
  "metadata": {"name": "sleeper", "description": "Sleeps", "author": "muster",
    "version": "1.0.0", "license": "Apache-2.0", "url": "https://example.org", "timeout": 60},
  "actions": [{"action": "nap", "description": "Sleep a while", "display": "always",
    "input": {"seconds": {"prompt": "Seconds", "description": "How long", "type": "integer",
      "optional": false}},
    "output": {"slept": {"description": "Seconds slept", "display_as": "Slept", "type": "integer"}}}]
}"#;

fn skip() -> bool {
    if nats_server_available() {
        return false;
    }
    eprintln!("skipped: nats-server is not installed (Debian package nats-server)");
    true
}

/// Starts `mco server` for `identity` with `servers` as its
/// `plugin.nats.servers` and `settings` as more config lines.
fn node(pki: &TestPki, identity: &str, servers: &str, settings: &str) -> ServerProcess {
    ServerProcess::start(
        Path::new(MCO),
        servers,
        pki,
        &NodeSetup {
            identity,
            facts_yaml: "role: web\n",
            classes: &[],
            collectives: &[],
            settings,
        },
    )
}

/// Pings (`mco ping --json`) until exactly `expected` answer, at most
/// [`FOUND_WITHIN`]; returns how long that took.
async fn ping_until(config: &str, expected: &[&str], why: impl Fn() -> String) -> Duration {
    let started = Instant::now();
    loop {
        let (output, _) = timed_mco(&["ping", "--config", config, "--json"]).await;
        let found = if output.status.success() {
            senders(&json(&output))
        } else {
            Vec::new()
        };
        if found == expected {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < FOUND_WITHIN,
            "after {FOUND_WITHIN:?} ping finds {found:?}, not {expected:?}: {}\n{}",
            stderr(&output),
            why()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Nodes' logs, for failure messages.
fn logs(nodes: &[ServerProcess]) -> String {
    nodes
        .iter()
        .map(|n| n.log())
        .collect::<Vec<_>>()
        .join("\n---\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_config_for_cluster_members_and_leaf_sites_is_accepted_by_nats_server() {
    if skip() {
        return;
    }
    let pki = TestPki::shared().clone();
    let broker = pki.broker_name();
    let ssldir = pki.ssldir().root().display().to_string();
    let dir = tempfile::tempdir().expect("temp dir");
    let hub = [
        "broker",
        "nats-config",
        "--ssldir",
        &ssldir,
        "--certname",
        broker,
        "--listen",
        "127.0.0.1:4222",
        "--cluster-name",
        "east",
        "--cluster-listen",
        "127.0.0.1:6222",
        "--routes",
        "nats-route://broker1.example.net:6222,nats-route://broker2.example.net:6222",
        "--leafnode-listen",
        "127.0.0.1:7422",
        "--leaf-certnames",
        "site1.broker,site2.broker",
    ];
    let leaf = [
        "broker",
        "nats-config",
        "--ssldir",
        &ssldir,
        "--certname",
        broker,
        "--leaf-remote",
        "tls://broker1.example.net:7422,tls://broker2.example.net:7422",
    ];
    for (name, args) in [("hub", &hub[..]), ("leaf", &leaf[..])] {
        let (output, _) = timed_mco(args).await;
        assert!(output.status.success(), "{name}: {}", stderr(&output));
        let text = stdout(&output);
        let file = dir.path().join(format!("{name}.conf"));
        std::fs::write(&file, &text).expect("write config");
        let test = std::process::Command::new("nats-server")
            .arg("-t")
            .arg("-c")
            .arg(&file)
            .output()
            .expect("nats-server -t");
        assert!(
            test.status.success(),
            "nats-server refuses the {name} config: {}{}\n{text}",
            stdout(&test),
            stderr(&test)
        );
    }

    // Options that nats-server would take but that could never connect.
    let mut by_ip = hub.to_vec();
    by_ip[13] = "nats-route://10.0.0.2:6222";
    let (output, _) = timed_mco(&by_ip).await;
    assert_ne!(output.status.code(), Some(0));
    assert!(
        stderr(&output).contains("names an IP address"),
        "{}",
        stderr(&output)
    );
    let (output, _) = timed_mco(&hub[..hub.len() - 2]).await;
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("--leaf-certnames"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_of_a_killed_member_move_to_the_others_and_answer_again() {
    if skip() {
        return;
    }
    let pki = TestPki::shared().clone();
    let caller = Caller::with_pki("cluster-tester", pki.clone());
    let names = ["cnode1", "cnode2", "cnode3", "cnode4", "cnode5", "cnode6"];
    for name in names {
        pki.issue(name);
    }
    let started = Instant::now();
    let mut cluster = TestCluster::start(3, pki.clone()).await;
    let cluster_up = started.elapsed();
    // cnodeN on member (N-1) % 3: two nodes on each member.
    let nodes: Vec<ServerProcess> = names
        .iter()
        .enumerate()
        .map(|(i, name)| node(&pki, name, &cluster.servers_from(i % 3), ""))
        .collect();
    // The client on member 2; it never loses its member.
    let config = caller
        .client_config(&cluster.servers_from(2))
        .display()
        .to_string();
    let first = ping_until(&config, &names, || logs(&nodes)).await;
    for member in 0..3 {
        let users = cluster.users(member).await.expect("connz");
        for name in [names[member], names[member + 3]] {
            assert!(
                users.iter().any(|u| u == name),
                "{name} is not on its own member {member}: {users:?}"
            );
        }
    }
    let (rpc, _) = timed_mco(&["rpc", "rpcutil", "ping", "--config", &config, "--json"]).await;
    assert_eq!(rpc.status.code(), Some(0), "{}", stderr(&rpc));
    assert_eq!(senders(&json(&rpc)), names);

    // SIGKILL member 0: cnode1 and cnode4 lose their member and go to
    // the next one in their list; a later ping finds everyone again.
    let killed = Instant::now();
    cluster.kill(0);
    let again = ping_until(&config, &names, || {
        format!("{}\nmember 1:\n{}", logs(&nodes), cluster.log(1))
    })
    .await;
    let mut moved = cluster.users(1).await.expect("connz");
    moved.extend(cluster.users(2).await.expect("connz"));
    for name in ["cnode1", "cnode4"] {
        assert!(
            moved.iter().any(|u| u == name),
            "{name} did not move: {moved:?}"
        );
        assert!(
            nodes[names.iter().position(|n| *n == name).unwrap_or(0)]
                .log()
                .contains("lost the broker; reconnecting"),
            "{name} did not log the loss"
        );
    }
    let (rpc, _) = timed_mco(&["rpc", "rpcutil", "ping", "--config", &config, "--json"]).await;
    assert_eq!(rpc.status.code(), Some(0), "{}", stderr(&rpc));
    assert_eq!(senders(&json(&rpc)), names);
    eprintln!(
        "cluster up in {cluster_up:?}; all 6 nodes found {first:?} after starting them; \
         again {again:?} after SIGKILL of member 0 ({:?} in all)",
        killed.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_when_a_member_dies() {
    if skip() {
        return;
    }
    let pki = TestPki::shared().clone();
    let caller = Caller::with_pki("inflight-tester", pki.clone());
    let names = ["fnode1", "fnode2", "fnode3"];
    for name in names {
        pki.issue(name);
    }
    let mut cluster = TestCluster::start(3, pki.clone()).await;
    let agents_of = |name: &str| -> PathBuf {
        let agents = caller.dir.path().join(format!("agents-{name}"));
        std::fs::create_dir_all(&agents).expect("agents dir");
        let program = agents.join("sleeper");
        std::fs::write(&program, SLEEPER).expect("agent");
        std::fs::set_permissions(
            &program,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod");
        std::fs::write(agents.join("sleeper.json"), SLEEPER_DDL).expect("ddl");
        agents
    };
    // fnode1 on member 0 with the others to move to; fnode2 on member 1;
    // fnode3 on member 0 only, so it stays away once member 0 is gone.
    let setups = [
        ("fnode1", cluster.servers_from(0)),
        ("fnode2", cluster.servers_from(1)),
        ("fnode3", cluster.url(0)),
    ];
    let nodes: Vec<ServerProcess> = setups
        .iter()
        .map(|(name, servers)| {
            let agents = agents_of(name);
            let settings = format!("plugin.external.agents_dir = {}\n", agents.display());
            node(&pki, name, servers, &settings)
        })
        .collect();
    let config = caller.client_config(&cluster.servers_from(2));
    let mut text = std::fs::read_to_string(&config).expect("client config");
    text.push_str(&format!(
        "plugin.external.agents_dir = {}\n",
        agents_of("client").display()
    ));
    std::fs::write(&config, text).expect("client config");
    let config = config.display().to_string();
    ping_until(&config, &names, || logs(&nodes)).await;

    // Every node is running the action when member 0 dies. The call waits
    // for fnode3 until -t: its reply has no way out.
    let call = {
        let config = config.clone();
        tokio::spawn(async move {
            timed_mco(&[
                "rpc",
                "sleeper",
                "nap",
                "seconds=3",
                "-I",
                "fnode1",
                "-I",
                "fnode2",
                "-I",
                "fnode3",
                "-t",
                "8",
                "--json",
                "--config",
                &config,
            ])
            .await
        })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    for name in names {
        let started = caller.dir.path().join(format!("agents-{name}/started"));
        while !started.exists() {
            assert!(
                Instant::now() < deadline,
                "{name} never started the action: {}",
                logs(&nodes)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    cluster.kill(0);
    let (output, took) = call.await.expect("the call's task");
    // fnode1 reconnected to member 1 before its action ended and its reply
    // went out there; fnode3 has no member to reply through.
    let document = json(&output);
    assert_eq!(senders(&document), ["fnode1", "fnode2"], "{document}");
    assert_eq!(
        document["statistics"]["no_responses"],
        serde_json::json!(["fnode3"]),
        "{document}"
    );
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(took >= Duration::from_secs(3), "{took:?}");

    // A request sent while a node has no member is lost to it: nats-server
    // answers "no responders" for its subject, so the call ends at once
    // and names it instead of waiting for -t.
    let (output, took) = timed_mco(&[
        "rpc", "rpcutil", "ping", "-I", "fnode1", "-I", "fnode2", "-I", "fnode3", "-t", "20",
        "--config", &config,
    ])
    .await;
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(3), "{text}{}", stderr(&output));
    assert!(
        text.contains("\nNo response from:\n\n    fnode3\n"),
        "{text}"
    );
    assert!(took < Duration::from_secs(20), "waited for -t: {took:?}");
    eprintln!("in-flight call took {took:?} after the member died");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_on_a_leaf_site_answers_a_client_on_the_hub() {
    if skip() {
        return;
    }
    let pki = TestPki::shared().clone();
    let caller = Caller::with_pki("leaf-tester", pki.clone());
    for name in ["hubnode1", "leafnode1"] {
        pki.issue(name);
    }
    let cluster = TestCluster::start(3, pki.clone()).await;
    let leaf = cluster.start_leaf().await;
    // The site holds its clients to the same users as the hub (and to
    // certificates other tests issued meanwhile from the shared CA).
    let users = |config: &str| {
        config
            .lines()
            .filter(|l| l.trim_start().starts_with("{ user: \"") && l.contains("permissions"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let site = users(&leaf.config());
    let hub = users(&cluster.config(0));
    assert!(hub.iter().any(|u| u.contains("\"leafnode1\"")), "{hub:?}");
    for user in &hub {
        assert!(site.contains(user), "{user} is not a user of the leaf site");
    }

    let nodes = [
        node(&pki, "hubnode1", &cluster.servers_from(0), ""),
        node(&pki, "leafnode1", &leaf.url(), ""),
    ];
    let config = caller
        .client_config(&cluster.servers_from(1))
        .display()
        .to_string();
    ping_until(&config, &["hubnode1", "leafnode1"], || {
        format!("{}\nleaf:\n{}", logs(&nodes), leaf.log())
    })
    .await;
    let (rpc, _) = timed_mco(&["rpc", "rpcutil", "ping", "--config", &config, "--json"]).await;
    assert_eq!(rpc.status.code(), Some(0), "{}", stderr(&rpc));
    assert_eq!(senders(&json(&rpc)), ["hubnode1", "leafnode1"]);
    // And the other way: a client at the site reaches the hub's node.
    let site = caller.client_config(&leaf.url()).display().to_string();
    ping_until(&site, &["hubnode1", "leafnode1"], || leaf.log()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_of_the_ca_that_no_route_or_leaf_list_names_cannot_join() {
    if skip() {
        return;
    }
    let pki = TestPki::shared().clone();
    pki.issue_with("intruder.test", &["127.0.0.1".into()]);
    let cluster = TestCluster::start(2, pki.clone()).await;
    let members_before = cluster.peers(0).await.expect("routez");
    // A nats-server with a good certificate of the CA, but not one a
    // route's host or the hub's leaf list names: neither as a route
    // (which no user's permissions would hold) nor as a leaf site.
    let dir = tempfile::tempdir().expect("temp dir");
    let config = muster_pki::nats_config::NatsConfig {
        ssldir: pki.ssldir().clone(),
        certname: "intruder.test".into(),
        issued: pki.issued_dir(),
        listen: format!("127.0.0.1:{}", muster_testkit::free_port()),
        max_connections: 10,
        cluster: Some(muster_pki::nats_config::Cluster {
            name: "muster-test".into(),
            listen: format!("127.0.0.1:{}", muster_testkit::free_port()),
            routes: cluster.route_urls(),
        }),
        leafnodes: None,
        leaf_remotes: cluster.leaf_urls(),
        extra: String::new(),
    }
    .render()
    .expect("intruder config");
    let file = dir.path().join("intruder.conf");
    std::fs::write(&file, config).expect("write config");
    let log = dir.path().join("intruder.log");
    let mut intruder = std::process::Command::new("nats-server")
        .arg("-c")
        .arg(&file)
        .arg("-l")
        .arg(&log)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start nats-server");
    // Each member refuses the route and the leaf connection, and says so
    // (nats-server 2.9's words).
    let refused = |log: &str| {
        log.contains("Router connection closed: Authentication Failure")
            && log.contains("Leafnode connection closed: Authentication Failure")
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    let intruder_log = || std::fs::read_to_string(&log).unwrap_or_default();
    while !(refused(&cluster.log(0)) && refused(&cluster.log(1))) {
        if Instant::now() > deadline {
            let _ = intruder.kill();
            let _ = intruder.wait();
            panic!(
                "no refusal within 15 s\nmember 0:\n{}\nintruder:\n{}",
                cluster.log(0),
                intruder_log()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let peers = cluster.peers(0).await;
    let _ = intruder.kill();
    let _ = intruder.wait();
    assert_eq!(
        peers.as_ref().ok(),
        Some(&members_before),
        "{}",
        cluster.log(0)
    );
    assert!(
        intruder_log().contains("Leafnode Error 'Authorization Violation'"),
        "{}",
        intruder_log()
    );
}
