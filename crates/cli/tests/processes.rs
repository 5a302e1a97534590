//! End to end: the real `mco` binary as broker client and as node daemon,
//! with separate `mco server` processes, against the embedded broker and
//! against a real nats-server. Every scenario runs on both.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use futures::StreamExt;
use muster_protocol::{subject, Filter, KeyPair, Reply, Request};
use muster_testkit::{
    nats_server_available, stderr, stdout, BrokerKind, Caller, NodeSetup, ServerProcess, TestBroker,
};
use serde_json::Value;

const MCO: &str = env!("CARGO_BIN_EXE_mco");

async fn mco(args: &[&str]) -> Output {
    muster_testkit::run_mco(MCO, args).await
}

/// The identities in `mco ping` output.
fn pinged(output: &Output) -> Vec<String> {
    let mut nodes: Vec<String> = stdout(output)
        .lines()
        .filter(|l| l.contains(" time="))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    nodes.sort();
    nodes
}

/// A broker, a trusted caller, and three `mco server` processes.
struct Setup {
    broker: TestBroker,
    caller: Caller,
    config: String,
    servers: Vec<ServerProcess>,
}

const NODES: &[(&str, &str, &[&str], &[&str])] = &[
    (
        "node1",
        "role: web\nos:\n  family: Debian\nmemorysize_mb: 4096\n",
        &["httpd", "base"],
        &["mcollective", "compute"],
    ),
    (
        "node2",
        "role: db\nos:\n  family: RedHat\nmemorysize_mb: 16384\n",
        &["mysql", "base"],
        &["mcollective", "storage"],
    ),
    (
        "node3",
        "role: cache\nos:\n  family: Debian\nmemorysize_mb: 8192\n",
        &["redis", "base"],
        &["mcollective"],
    ),
];

impl Setup {
    /// Starts everything and waits until a ping sees all three nodes.
    async fn start(kind: BrokerKind) -> Setup {
        let broker = TestBroker::start(kind).await;
        let caller = Caller::new("tester");
        let config = caller.client_config(&broker.url()).display().to_string();
        let servers = NODES
            .iter()
            .map(|(identity, facts, classes, collectives)| {
                ServerProcess::start(
                    Path::new(MCO),
                    &broker.url(),
                    &caller.trusted_keys(),
                    &NodeSetup {
                        identity,
                        facts_yaml: facts,
                        classes,
                        collectives,
                        settings: "",
                    },
                )
            })
            .collect();
        let setup = Setup {
            broker,
            caller,
            config,
            servers,
        };
        setup.wait_for_nodes(3).await;
        setup
    }

    async fn wait_for_nodes(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let output = mco(&["ping", "--config", &self.config]).await;
            if pinged(&output).len() == n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "only {:?} of {n} nodes answer after 20 s; node1 log:\n{}",
                pinged(&output),
                self.servers[0].log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn rpc_json(&self, args: &[&str]) -> (Output, Vec<Value>) {
        let mut all = vec!["rpc", "--config", &self.config, "--json"];
        all.extend_from_slice(args);
        let output = mco(&all).await;
        let document = serde_json::from_slice::<Value>(&output.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", stdout(&output), stderr(&output)));
        let replies = document["replies"]
            .as_array()
            .unwrap_or_else(|| panic!("no \"replies\" in {document}"))
            .clone();
        (output, replies)
    }

    async fn daemon_stats(&self, node: &str) -> Value {
        let (_, replies) = self
            .rpc_json(&["rpcutil", "daemon_stats", "-I", node])
            .await;
        assert_eq!(replies.len(), 1, "{replies:?}");
        replies[0]["data"].clone()
    }

    /// Sends one signed request straight onto the wire and returns the
    /// replies that arrive within `wait`.
    async fn raw_request(
        &self,
        envelope_bytes: Vec<u8>,
        request: &Request,
        node: &str,
        wait: Duration,
    ) -> Vec<Reply> {
        let nats = async_nats::connect(self.broker.url())
            .await
            .expect("connect");
        let reply_to = subject::reply(&request.collective, &request.sender, &request.id);
        let mut replies = nats.subscribe(reply_to.clone()).await.expect("subscribe");
        nats.publish_with_reply(
            subject::node("mcollective", node),
            reply_to,
            envelope_bytes.into(),
        )
        .await
        .expect("publish");
        nats.flush().await.expect("flush");
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(Some(message)) = tokio::time::timeout_at(deadline, replies.next()).await {
            if let Ok(reply) = serde_json::from_slice::<Reply>(&message.payload) {
                got.push(reply);
            }
        }
        got
    }
}

async fn ping_finds_all_and_identity_narrows(kind: BrokerKind) {
    let setup = Setup::start(kind).await;
    let all = mco(&["ping", "--config", &setup.config]).await;
    assert!(all.status.success(), "{}", stderr(&all));
    assert_eq!(pinged(&all), vec!["node1", "node2", "node3"]);
    assert!(stdout(&all).contains("---- ping statistics ----"));
    assert!(stdout(&all).contains("3 replies max:"), "{}", stdout(&all));

    let one = mco(&["ping", "--config", &setup.config, "-I", "node2"]).await;
    assert_eq!(pinged(&one), vec!["node2"]);
    let regex = mco(&["ping", "--config", &setup.config, "-I", "/node[13]/"]).await;
    assert_eq!(pinged(&regex), vec!["node1", "node3"]);
    let several = mco(&[
        "ping",
        "--config",
        &setup.config,
        "--wi",
        "node1",
        "-I",
        "node2",
    ])
    .await;
    assert_eq!(pinged(&several), vec!["node1", "node2"]);
    let class = mco(&["ping", "--config", &setup.config, "-C", "redis"]).await;
    assert_eq!(pinged(&class), vec!["node3"]);
    let collective = mco(&["ping", "--config", &setup.config, "-T", "storage"]).await;
    assert_eq!(pinged(&collective), vec!["node2"]);

    let nobody = mco(&[
        "ping",
        "--config",
        &setup.config,
        "-I",
        "nosuchnode",
        "-t",
        "1",
    ])
    .await;
    assert_eq!(nobody.status.code(), Some(4), "no node matched");
    assert!(stdout(&nobody).contains("No responses received"));
}

async fn rpc_inventory_returns_what_the_node_knows(kind: BrokerKind) {
    let setup = Setup::start(kind).await;
    let (output, replies) = setup
        .rpc_json(&["rpcutil", "inventory", "-I", "node2"])
        .await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(replies.len(), 1);
    let reply = &replies[0];
    assert_eq!(reply["sender"], "node2");
    assert_eq!(reply["statuscode"], 0);
    let data = &reply["data"];
    assert_eq!(data["facts"]["role"], "db");
    assert_eq!(data["facts"]["os"]["family"], "RedHat");
    assert_eq!(data["classes"], serde_json::json!(["mysql", "base"]));
    assert_eq!(
        data["collectives"],
        serde_json::json!(["mcollective", "storage"])
    );
    assert_eq!(data["main_collective"], "mcollective");
    assert!(data["agents"]
        .as_array()
        .unwrap()
        .contains(&Value::from("rpcutil")));

    // Text output: per-node results and the summary line.
    let text = mco(&[
        "rpc",
        "--config",
        &setup.config,
        "rpcutil",
        "get_fact",
        "fact=os.family",
    ])
    .await;
    let out = stdout(&text);
    assert!(out.contains("Value: RedHat"), "{out}");
    assert!(out.contains("Finished processing 3 / 3 hosts"), "{out}");

    // A node that does not exist is named, and the exit code says so.
    let missing = mco(&[
        "rpc",
        "--config",
        &setup.config,
        "rpcutil",
        "ping",
        "-I",
        "node1",
        "-I",
        "ghost",
        "-t",
        "2",
    ])
    .await;
    let out = stdout(&missing);
    assert_eq!(missing.status.code(), Some(3), "{out}");
    assert!(out.contains("Finished processing 1 / 2 hosts"), "{out}");
    assert!(
        out.contains("No response from:") && out.contains("    ghost"),
        "{out}"
    );

    // An action the DDL does not know is refused before anything is sent;
    // an agent the client has no DDL for is asked, and answers status 2.
    let unknown_action = mco(&[
        "rpc",
        "--config",
        &setup.config,
        "rpcutil",
        "nosuch",
        "-I",
        "node1",
    ])
    .await;
    assert_eq!(unknown_action.status.code(), Some(2));
    assert!(
        stderr(&unknown_action).contains("unknown action \"nosuch\""),
        "{}",
        stderr(&unknown_action)
    );
    let bad_input = mco(&[
        "rpc",
        "--config",
        &setup.config,
        "rpcutil",
        "get_fact",
        "fact=a b",
        "-I",
        "node1",
    ])
    .await;
    assert_eq!(bad_input.status.code(), Some(2));
    assert!(
        stderr(&bad_input).contains("input \"fact\""),
        "{}",
        stderr(&bad_input)
    );
    let (unknown, replies) = setup
        .rpc_json(&["nosuchagent", "ping", "-I", "node1"])
        .await;
    assert_eq!(unknown.status.code(), Some(1));
    assert_eq!(replies[0]["statuscode"], 2);
    assert!(replies[0]["statusmsg"]
        .as_str()
        .unwrap()
        .contains("nosuchagent"));
}

async fn untrusted_and_replayed_requests_are_refused(kind: BrokerKind) {
    let setup = Setup::start(kind).await;

    // A caller whose key no server trusts gets no answers.
    let stranger = Caller::new("stranger");
    let stranger_config = stranger
        .client_config(&setup.broker.url())
        .display()
        .to_string();
    let refused = mco(&["ping", "--config", &stranger_config, "-t", "1"]).await;
    assert_eq!(pinged(&refused), Vec::<String>::new());
    assert_eq!(refused.status.code(), Some(4), "nobody answered");

    // A replayed request: the first copy is answered, the second is not.
    let request = Request::new("replayer", "user=tester", "mcollective", "rpcutil", "ping")
        .with_filter(Filter::default());
    let bytes = setup.caller.keys.sign(&request).unwrap().to_bytes();
    let first = setup
        .raw_request(bytes.clone(), &request, "node1", Duration::from_secs(2))
        .await;
    assert_eq!(first.len(), 1);
    assert!(first[0].statuscode.is_ok());
    let second = setup
        .raw_request(bytes, &request, "node1", Duration::from_millis(500))
        .await;
    assert!(second.is_empty(), "a replay was answered: {second:?}");

    // An expired request and a forged signature are refused too.
    let mut old =
        Request::new("replayer", "user=tester", "mcollective", "rpcutil", "ping").with_ttl(1);
    old.time -= 5_000;
    let expired = setup
        .raw_request(
            setup.caller.keys.sign(&old).unwrap().to_bytes(),
            &old,
            "node1",
            Duration::from_millis(500),
        )
        .await;
    assert!(expired.is_empty());
    let forged_request = Request::new("forger", "user=tester", "mcollective", "rpcutil", "ping");
    let mut forged = KeyPair::generate().sign(&forged_request).unwrap();
    forged.signer = setup.caller.keys.public().to_hex();
    let forged = setup
        .raw_request(
            forged.to_bytes(),
            &forged_request,
            "node1",
            Duration::from_millis(500),
        )
        .await;
    assert!(forged.is_empty());

    // Garbage on the wire is counted, not fatal.
    let nats = async_nats::connect(setup.broker.url()).await.unwrap();
    nats.publish("mcollective.node.node1", "this is not json".into())
        .await
        .unwrap();
    nats.flush().await.unwrap();

    let stats = setup.daemon_stats("node1").await;
    let rejected = &stats["rejected"];
    assert!(rejected["untrusted"].as_u64().unwrap() >= 1, "{stats}");
    assert_eq!(rejected["replay"], 1, "{stats}");
    assert_eq!(rejected["expired"], 1, "{stats}");
    assert_eq!(rejected["signature"], 1, "{stats}");
    assert_eq!(rejected["malformed"], 1, "{stats}");
    assert!(
        setup.servers[0].log().contains("refused a request"),
        "{}",
        setup.servers[0].log()
    );
}

async fn servers_reconnect_after_the_broker_returns(kind: BrokerKind) {
    let mut setup = Setup::start(kind).await;
    setup.broker.stop().await;
    let down = mco(&["ping", "--config", &setup.config, "-t", "1"]).await;
    assert_eq!(down.status.code(), Some(2), "{}", stderr(&down));
    assert!(
        stderr(&down).contains(&setup.broker.url()),
        "{}",
        stderr(&down)
    );
    setup.broker.resume().await;
    setup.wait_for_nodes(3).await;
}

async fn selectors_are_evaluated_by_server_processes(kind: BrokerKind) {
    let setup = Setup::start(kind).await;
    let marker = setup.caller.dir.path().join("marker.txt");
    std::fs::write(&marker, "x").unwrap();
    let marker = marker.display().to_string();
    let fstat = format!("fstat('{marker}').type=file and fstat('{marker}').size=1");
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (vec!["-F", "os.family=Debian"], vec!["node1", "node3"]),
        (vec!["--wf", "memorysize_mb>=8192"], vec!["node2", "node3"]),
        (vec!["-F", "memorysize_mb<8192"], vec!["node1"]),
        (vec!["-F", "role=/^(web|db)$/"], vec!["node1", "node2"]),
        (
            vec!["-F", "role=~^ca", "-F", "os.family!=RedHat"],
            vec!["node3"],
        ),
        (vec!["-W", "base role=cache"], vec!["node3"]),
        (vec!["-I", "node[12]"], vec!["node1", "node2"]),
        (vec!["-S", "httpd or mysql"], vec!["node1", "node2"]),
        (
            vec!["-S", "base and not (redis or os.family=RedHat)"],
            vec!["node1"],
        ),
        (vec!["-S", &fstat], vec!["node1", "node2", "node3"]),
        (vec!["-S", "fstat('/nonexistent/muster').present=1"], vec![]),
        (
            vec!["-S", "collective('storage').member=true"],
            vec!["node2"],
        ),
        (vec!["-S", "fact('role').value=web"], vec!["node1"]),
        (
            vec![
                "-S",
                "agent('rpcutil').name=rpcutil and process('mco').exists=true",
            ],
            vec!["node1", "node2", "node3"],
        ),
        (
            vec!["-S", "sysctl('kernel.ostype').value=Linux", "-C", "redis"],
            vec!["node3"],
        ),
    ];
    for (selectors, expected) in cases {
        let mut args = vec!["ping", "--config", &setup.config, "-t", "1"];
        args.extend(selectors.iter());
        let output = mco(&args).await;
        assert_eq!(
            pinged(&output),
            expected,
            "{selectors:?}: {}",
            stderr(&output)
        );
    }
    let bad = mco(&["ping", "--config", &setup.config, "-S", "httpd and (redis"]).await;
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("expected ')'") && stderr(&bad).contains('^'),
        "{}",
        stderr(&bad)
    );
}

macro_rules! on_both_brokers {
    ($($scenario:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(super::BrokerKind::Embedded).await;
                }
            )*
        }
        mod nats_server {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    if !super::nats_server_available() {
                        eprintln!("skipped: nats-server is not installed");
                        return;
                    }
                    super::$scenario(super::BrokerKind::NatsServer).await;
                }
            )*
        }
    };
}

on_both_brokers!(
    ping_finds_all_and_identity_narrows,
    rpc_inventory_returns_what_the_node_knows,
    untrusted_and_replayed_requests_are_refused,
    servers_reconnect_after_the_broker_returns,
    selectors_are_evaluated_by_server_processes,
);

#[tokio::test]
async fn bad_input_is_an_error_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    // An -I regex that does not compile.
    let bad_regex = mco(&["ping", "-I", "/node(/"]).await;
    assert_eq!(bad_regex.status.code(), Some(2));
    assert!(
        stderr(&bad_regex).contains("invalid regular expression"),
        "{}",
        stderr(&bad_regex)
    );

    // A server config with a mistake names its line.
    let config = dir.path().join("server.cfg");
    std::fs::write(&config, "identity = node1\nthis is wrong\n").unwrap();
    let server = mco(&["server", "--config", config.to_str().unwrap()]).await;
    assert_eq!(server.status.code(), Some(2));
    assert!(
        stderr(&server).contains(&format!("{}:2:", config.display())),
        "{}",
        stderr(&server)
    );

    // An unreachable broker is named, and the client gives up.
    let port = muster_testkit::free_port();
    let client_config = dir.path().join("client.cfg");
    std::fs::write(
        &client_config,
        format!("plugin.nats.servers = nats://127.0.0.1:{port}\nplugin.security.key = key\n"),
    )
    .unwrap();
    let unreachable = mco(&["ping", "--config", client_config.to_str().unwrap()]).await;
    assert_eq!(unreachable.status.code(), Some(2));
    assert!(
        stderr(&unreachable).contains(&format!("nats://127.0.0.1:{port}")),
        "{}",
        stderr(&unreachable)
    );
    // The key was created on first use, and the user was told how to trust it.
    assert!(dir.path().join("key").exists() && dir.path().join("key.pub").exists());
    assert!(
        stderr(&unreachable).contains("trusted_keys"),
        "{}",
        stderr(&unreachable)
    );

    // Inputs that are not key=value.
    let bad_input = mco(&["rpc", "rpcutil", "get_fact", "fact"]).await;
    assert_eq!(bad_input.status.code(), Some(2));
    assert!(
        stderr(&bad_input).contains("not key=value"),
        "{}",
        stderr(&bad_input)
    );
}

#[tokio::test]
async fn demo_runs_its_tour_and_exits() {
    let output = mco(&["demo", "--nodes", "12"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let out = stdout(&output);
    assert!(out.contains("12 replies max:"), "{out}");
    assert!(
        out.contains("$ mco rpc rpcutil inventory -I node07"),
        "{out}"
    );
    assert!(out.contains("Finished processing 1 / 1 hosts"), "{out}");
    assert!(
        out.contains("Value: Debian") || out.contains("Value: RedHat"),
        "{out}"
    );
}
