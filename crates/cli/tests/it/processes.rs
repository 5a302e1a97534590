//! End to end: the real `mco` binary as broker client and as node daemon,
//! with separate `mco server` processes, against the embedded broker and
//! against a real nats-server. Every scenario runs on both.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use futures::StreamExt;
use muster_protocol::identity::caller_token;
use muster_protocol::{subject, Envelope, Filter, Reply, Request};
use muster_testkit::{
    nats_server_available, stderr, stdout, BrokerKind, Caller, NodeSetup, ServerProcess,
    TestBroker, TestPki,
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
        Setup::start_with(kind, TestPki::shared().clone()).await
    }

    /// [`Setup::start`] with every certificate from `pki`.
    async fn start_with(kind: BrokerKind, pki: TestPki) -> Setup {
        Setup::start_configured(kind, pki, "").await
    }

    /// [`Setup::start_with`] with more `server.cfg` lines for every node.
    async fn start_configured(kind: BrokerKind, pki: TestPki, settings: &str) -> Setup {
        // nats-server knows the certificates issued before it starts.
        let caller = Caller::with_pki("tester", pki.clone());
        for (identity, ..) in NODES {
            pki.issue(identity);
        }
        pki.issue("bob.mcollective");
        let broker = TestBroker::start_with(kind, pki).await;
        let config = caller.client_config(&broker.url()).display().to_string();
        let servers = NODES
            .iter()
            .map(|(identity, facts, classes, collectives)| {
                ServerProcess::start(
                    Path::new(MCO),
                    &broker.url(),
                    caller.pki(),
                    &NodeSetup {
                        identity,
                        facts_yaml: facts,
                        classes,
                        collectives,
                        settings,
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
        self.raw_request_as(&self.caller.name, envelope_bytes, request, node, wait)
            .await
    }

    /// [`Setup::raw_request`] over `caller`'s connection, collecting the
    /// replies a node sends to that caller.
    async fn raw_request_as(
        &self,
        caller: &str,
        envelope_bytes: Vec<u8>,
        request: &Request,
        node: &str,
        wait: Duration,
    ) -> Vec<Reply> {
        let nats = self.connect_as(caller).await;
        let token = caller_token(caller);
        let mut replies = nats
            .subscribe(subject::replies(&request.collective, &token, &request.id))
            .await
            .expect("subscribe");
        nats.publish_with_reply(
            subject::node("mcollective", node),
            subject::no_responders(&request.collective, &token, &request.id),
            envelope_bytes.into(),
        )
        .await
        .expect("publish");
        nats.flush().await.expect("flush");
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(Some(message)) = tokio::time::timeout_at(deadline, replies.next()).await {
            if let Ok(reply) =
                muster_protocol::SignedReply::from_bytes(&message.payload).and_then(|s| s.reply())
            {
                got.push(reply);
            }
        }
        got
    }

    /// A NATS connection with `name`'s certificate from the setup's CA.
    async fn connect_as(&self, name: &str) -> async_nats::Client {
        muster_connector::connect_client(
            &[self.broker.url()],
            name,
            Duration::from_secs(10),
            &self.caller.pki().transport(name),
        )
        .await
        .unwrap_or_else(|e| panic!("{name} cannot connect: {e}"))
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

    // A caller with a certificate from another CA is not even admitted.
    let stranger = Caller::with_pki("stranger", TestPki::new());
    let stranger_config = stranger
        .client_config(&setup.broker.url())
        .display()
        .to_string();
    let refused = mco(&["ping", "--config", &stranger_config, "-t", "1"]).await;
    assert_eq!(pinged(&refused), Vec::<String>::new());
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    // Its request, carried by an admitted connection, is refused by the node.
    let request = Request::new("stranger", &stranger.name, "mcollective", "rpcutil", "ping")
        .with_targets(vec!["node1".into()]);
    let untrusted = setup
        .raw_request(
            Envelope::seal(&request, &stranger.credential)
                .unwrap()
                .to_bytes(),
            &request,
            "node1",
            Duration::from_millis(500),
        )
        .await;
    assert!(untrusted.is_empty(), "{untrusted:?}");

    // A replayed request: the first copy is answered, the second is not.
    let request = Request::new(
        "replayer",
        &setup.caller.name,
        "mcollective",
        "rpcutil",
        "ping",
    )
    .with_targets(vec!["node1".into()])
    .with_filter(Filter::default());
    let bytes = Envelope::seal(&request, &setup.caller.credential)
        .unwrap()
        .to_bytes();
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
    let mut old = Request::new(
        "replayer",
        &setup.caller.name,
        "mcollective",
        "rpcutil",
        "ping",
    )
    .with_targets(vec!["node1".into()])
    .with_ttl(1);
    old.time -= 5_000;
    let expired = setup
        .raw_request(
            Envelope::seal(&old, &setup.caller.credential)
                .unwrap()
                .to_bytes(),
            &old,
            "node1",
            Duration::from_millis(500),
        )
        .await;
    assert!(expired.is_empty());
    // Signed by the stranger, presenting the tester's certificate.
    let forged_request = Request::new(
        "forger",
        &setup.caller.name,
        "mcollective",
        "rpcutil",
        "ping",
    )
    .with_targets(vec!["node1".into()]);
    let mut forged = Envelope::seal(&forged_request, &stranger.credential).unwrap();
    forged.certificate = Envelope::seal(&forged_request, &setup.caller.credential)
        .unwrap()
        .certificate;
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
    let nats = setup.connect_as(&setup.caller.name).await;
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

/// Messages a subscription got within `wait`.
async fn drain(sub: &mut async_nats::Subscriber, wait: Duration) -> Vec<async_nats::Message> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Some(message)) = tokio::time::timeout_at(deadline, sub.next()).await {
        got.push(message);
    }
    got
}

async fn unauthenticated_connections_are_refused(kind: BrokerKind) {
    let setup = Setup::start(kind).await;
    // Plain text, no certificate: refused before it can read anything.
    let plain = format!("nats://{}", setup.broker.addr());
    let refused =
        tokio::time::timeout(Duration::from_secs(10), async_nats::connect(plain.as_str())).await;
    assert!(
        !matches!(refused, Ok(Ok(_))),
        "a plain-text client was admitted"
    );
    // The raw protocol: a sniffer sending CONNECT and SUB > in clear.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut raw = tokio::net::TcpStream::connect(setup.broker.addr())
        .await
        .unwrap();
    raw.write_all(b"CONNECT {}\r\nSUB > 1\r\n").await.unwrap();
    let mut seen = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buf = [0u8; 4096];
        while let Ok(n) = raw.read(&mut buf).await {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    // Now real traffic flows; the sniffer must see none of it.
    let ping = mco(&["ping", "--config", &setup.config]).await;
    assert_eq!(pinged(&ping), vec!["node1", "node2", "node3"]);
    let seen = String::from_utf8_lossy(&seen);
    assert!(!seen.contains("MSG"), "the sniffer read: {seen}");
    assert!(
        seen.contains("TLS") || seen.is_empty() || seen.contains("INFO"),
        "{seen}"
    );
}

async fn nodes_and_callers_read_only_their_own(kind: BrokerKind) {
    let setup = Setup::start(kind).await;
    // node1's credentials try to read everything, and node2's requests.
    let node1 = setup.connect_as("node1").await;
    let mut everything = node1.subscribe(">").await.unwrap();
    let mut node2s = node1.subscribe("mcollective.node.node2").await.unwrap();
    let mut all_replies = node1.subscribe("mcollective.reply.>").await.unwrap();
    // bob, another caller, tries to read the tester's replies.
    let bob = setup.connect_as("bob.mcollective").await;
    let token = caller_token(&setup.caller.name);
    let mut testers = bob
        .subscribe(format!("mcollective.reply.{token}.>"))
        .await
        .unwrap();
    let mut bobs_all = bob.subscribe("mcollective.reply.>").await.unwrap();
    node1.flush().await.unwrap();
    bob.flush().await.unwrap();

    let (output, replies) = setup
        .rpc_json(&["rpcutil", "get_fact", "fact=role", "-I", "node2"])
        .await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(replies.len(), 1);
    let ping = mco(&["ping", "--config", &setup.config]).await;
    assert_eq!(pinged(&ping), vec!["node1", "node2", "node3"]);
    for (what, sub) in [
        ("node1 on >", &mut everything),
        ("node1 on node2's subject", &mut node2s),
        ("node1 on all replies", &mut all_replies),
        ("bob on the tester's replies", &mut testers),
        ("bob on all replies", &mut bobs_all),
    ] {
        let got = drain(sub, Duration::from_millis(300)).await;
        assert!(
            got.is_empty(),
            "{what} read {} messages: {:?}",
            got.len(),
            got.first()
        );
    }
    // nats-server answers the same -ERR but does not count violations.
    if let Some(stats) = setup.broker.stats() {
        assert!(stats.permission_violations >= 5, "{stats:?}");
    }
}

async fn a_node_cannot_answer_for_another(kind: BrokerKind) {
    let setup = Setup::start(kind).await;
    // A rogue process with node2's certificate answers every broadcast as
    // node1 (on node1's subject, and on its own) and as a node that does not exist.
    let rogue = setup.connect_as("node2").await;
    // Signed with node2's own certificate, as a compromised node2 could.
    let node2 = setup.caller.pki().credential("node2");
    let mut requests = rogue
        .subscribe("mcollective.broadcast.agent.rpcutil")
        .await
        .unwrap();
    rogue.flush().await.unwrap();
    let forger = tokio::spawn(async move {
        while let Some(message) = requests.next().await {
            let Ok(envelope) = Envelope::from_bytes(&message.payload) else {
                continue;
            };
            let Ok(request) = envelope.request() else {
                continue;
            };
            let token = caller_token(&request.caller);
            for (subject_identity, claimed) in [
                ("node1", "node1"),
                ("node2", "node1"),
                ("ghost", "ghost"),
                ("node2", "ghost"),
            ] {
                let reply = Reply::ok(
                    &request.id,
                    claimed,
                    serde_json::json!({"value": "9.9.9-forged", "pong": 1}),
                );
                let subject = subject::reply("mcollective", &token, &request.id, subject_identity);
                let _ = rogue
                    .publish(
                        subject,
                        muster_protocol::SignedReply::seal(&reply, &node2)
                            .unwrap()
                            .to_bytes()
                            .into(),
                    )
                    .await;
            }
            let _ = rogue.flush().await;
        }
    });
    let ping = mco(&["ping", "--config", &setup.config]).await;
    assert_eq!(
        pinged(&ping),
        vec!["node1", "node2", "node3"],
        "{}",
        stdout(&ping)
    );
    let (output, replies) = setup
        .rpc_json(&["rpcutil", "get_fact", "fact=role", "-v"])
        .await;
    let text = stdout(&output);
    assert!(!text.contains("9.9.9-forged"), "{text}");
    let mut senders: Vec<&str> = replies
        .iter()
        .filter_map(|r| r["sender"].as_str())
        .collect();
    senders.sort();
    assert_eq!(senders, vec!["node1", "node2", "node3"], "{replies:?}");
    forger.abort();
}

async fn a_revoked_certificate_is_refused(kind: BrokerKind) {
    let pki = TestPki::new();
    pki.issue("revoked.mcollective");
    pki.revoke("revoked.mcollective");
    let setup = Setup::start_with(kind, pki.clone()).await;
    let revoked = Caller::with_pki("revoked", pki);
    let config = revoked
        .client_config(&setup.broker.url())
        .display()
        .to_string();
    let refused = mco(&["ping", "--config", &config, "-t", "1"]).await;
    assert_eq!(refused.status.code(), Some(2), "{}", stdout(&refused));
    assert!(pinged(&refused).is_empty());
    // Its signed request, carried by an admitted caller, is refused by the node.
    let request = Request::new("x", &revoked.name, "mcollective", "rpcutil", "ping")
        .with_targets(vec!["node1".into()]);
    let got = setup
        .raw_request(
            Envelope::seal(&request, &revoked.credential)
                .unwrap()
                .to_bytes(),
            &request,
            "node1",
            Duration::from_millis(500),
        )
        .await;
    assert!(got.is_empty(), "{got:?}");
    let stats = setup.daemon_stats("node1").await;
    assert!(
        stats["rejected"]["untrusted"].as_u64().unwrap() >= 1,
        "{stats}"
    );
    assert!(
        setup.servers[0].log().contains("revoked"),
        "{}",
        setup.servers[0].log()
    );

    // Revoked while the nodes run: they read the new crl.pem and refuse.
    const BOB: &str = "bob.mcollective";
    let bob = setup.caller.pki().credential(BOB);
    let ask = |request: &Request| Envelope::seal(request, &bob).unwrap().to_bytes();
    let before =
        Request::new("x", BOB, "mcollective", "rpcutil", "ping").with_targets(vec!["node1".into()]);
    let got = setup
        .raw_request_as(BOB, ask(&before), &before, "node1", Duration::from_secs(2))
        .await;
    assert_eq!(got.len(), 1, "bob is trusted before the revocation");
    setup.caller.pki().revoke("bob.mcollective");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let request = Request::new("x", BOB, "mcollective", "rpcutil", "ping")
            .with_targets(vec!["node1".into()]);
        let got = setup
            .raw_request_as(
                BOB,
                ask(&request),
                &request,
                "node1",
                Duration::from_millis(500),
            )
            .await;
        if got.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node1 still answers bob 15 s after the revocation"
        );
    }
}

async fn replays_misaddressing_and_floods_fail(kind: BrokerKind) {
    // Only the tester may use rpcutil; bob is denied everything.
    let policies = tempfile::tempdir().unwrap();
    std::fs::write(
        policies.path().join("rpcutil.policy"),
        "policy default deny\nallow\ttester.mcollective\t*\t*\t*\n",
    )
    .unwrap();
    let settings = format!("plugin.actionpolicy.dir = {}\n", policies.path().display());
    let mut setup = Setup::start_configured(kind, TestPki::shared().clone(), &settings).await;
    let tester = setup.caller.name.clone();
    let seal = |request: &Request| {
        Envelope::seal(request, &setup.caller.credential)
            .unwrap()
            .to_bytes()
    };
    let ping = || Request::new("x", &tester, "mcollective", "rpcutil", "ping");
    let short = Duration::from_millis(500);

    // 1. A directed request for node1, replayed to node2: refused.
    let for_node1 = ping().with_targets(vec!["node1".into()]);
    let bytes = seal(&for_node1);
    let got = setup
        .raw_request(bytes.clone(), &for_node1, "node1", Duration::from_secs(2))
        .await;
    assert_eq!(got.len(), 1, "node1 answers its own request");
    let got = setup.raw_request(bytes, &for_node1, "node2", short).await;
    assert!(got.is_empty(), "node2 ran node1's request: {got:?}");
    // A broadcast copy moved onto node3's directed subject: refused too.
    let broadcast = ping();
    let got = setup
        .raw_request(seal(&broadcast), &broadcast, "node3", short)
        .await;
    assert!(got.is_empty(), "{got:?}");
    assert_eq!(
        setup.daemon_stats("node2").await["rejected"]["misaddressed"],
        1
    );
    assert_eq!(
        setup.daemon_stats("node3").await["rejected"]["misaddressed"],
        1
    );

    // 2. Replay after a restart: node3 refuses what it may have run before.
    let for_node3 = ping().with_targets(vec!["node3".into()]);
    let bytes = seal(&for_node3);
    let got = setup
        .raw_request(bytes.clone(), &for_node3, "node3", Duration::from_secs(2))
        .await;
    assert_eq!(got.len(), 1);
    setup.servers[2].restart();
    setup.wait_for_nodes(3).await;
    let got = setup.raw_request(bytes, &for_node3, "node3", short).await;
    assert!(got.is_empty(), "replayed after a restart: {got:?}");
    assert!(
        setup.servers[2].log().contains("before this node started"),
        "{}",
        setup.servers[2].log()
    );

    // 2b. Replay after a reload (SIGHUP): the node keeps what it ran.
    let for_node2 = ping().with_targets(vec!["node2".into()]);
    let bytes = seal(&for_node2);
    let got = setup
        .raw_request(bytes.clone(), &for_node2, "node2", Duration::from_secs(2))
        .await;
    assert_eq!(got.len(), 1);
    let reloads = setup.servers[1].log().matches("reloaded:").count();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &setup.servers[1].pid().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while setup.servers[1].log().matches("reloaded:").count() == reloads {
        assert!(
            std::time::Instant::now() < deadline,
            "node2 did not reload: {}",
            setup.servers[1].log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = setup.raw_request(bytes, &for_node2, "node2", short).await;
    assert!(got.is_empty(), "replayed after a reload: {got:?}");
    assert_eq!(setup.daemon_stats("node2").await["rejected"]["replay"], 1);

    // 3. Huge ids from an allowed caller cost nothing to remember.
    let before = setup.servers[0].rss_kb();
    let nats = setup.connect_as(&tester).await;
    for _ in 0..100 {
        let mut huge = ping().with_targets(vec!["node1".into()]);
        huge.id = "a".repeat(900_000);
        nats.publish("mcollective.node.node1", seal(&huge).into())
            .await
            .unwrap();
    }
    // 4. A flood of garbage and of forgeries, with trusted pings during it.
    let mallory = TestPki::new().credential("mallory.mcollective");
    for i in 0..2000 {
        let payload: Vec<u8> = if i % 2 == 0 {
            format!("garbage {i}").into_bytes()
        } else {
            Envelope::seal(&ping(), &mallory).unwrap().to_bytes()
        };
        nats.publish("mcollective.broadcast.agent.rpcutil", payload.into())
            .await
            .unwrap();
    }
    nats.flush().await.unwrap();
    let during = mco(&["ping", "--config", &setup.config]).await;
    assert_eq!(pinged(&during), vec!["node1", "node2", "node3"]);
    let stats = setup.daemon_stats("node1").await;
    let rejected = &stats["rejected"];
    assert!(rejected["malformed"].as_u64().unwrap() >= 1100, "{stats}");
    assert!(rejected["untrusted"].as_u64().unwrap() >= 1000, "{stats}");
    let after = setup.servers[0].rss_kb();
    eprintln!("node1 resident memory before the flood {before} KiB, after {after} KiB");
    assert!(
        after < before + 64 * 1024,
        "node1 grew from {before} KiB to {after} KiB"
    );
    // Refusals are logged at warn once per reason and signer, not per message.
    let log = setup.servers[0].log();
    let warned = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("refused a request"))
        .count();
    assert!(warned < 20, "{warned} warnings:\n{log}");

    // 5. A caller denied everything makes no node evaluate a data plugin,
    // and learns nothing from who answers.
    let bob = Caller::with_pki("bob", TestPki::shared().clone());
    let bob_config = bob.client_config(&setup.broker.url()).display().to_string();
    let marker = setup.caller.dir.path().join("exists.txt");
    std::fs::write(&marker, "x").unwrap();
    let probe = format!("fstat('{}').size>0", marker.display());
    let denied = mco(&["ping", "--config", &bob_config, "-S", &probe, "-t", "1"]).await;
    assert!(pinged(&denied).is_empty(), "{}", stdout(&denied));
    for node in ["node1", "node2", "node3"] {
        let stats = setup.daemon_stats(node).await;
        assert!(
            stats["rejected"]["denied"].as_u64().unwrap() >= 1,
            "{stats}"
        );
        assert_eq!(stats["data_errors"], 0, "{stats}");
    }
}

async fn policies_fail_closed_and_audit_comes_first(kind: BrokerKind) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    // The misparse that used to fail open: a space where the first tab
    // belongs, under `policy default allow`.
    std::fs::write(
        policies.join("filemgr.policy"),
        "policy default allow\ndeny tester.mcollective\tstatus\t*\t*\n",
    )
    .unwrap();
    let audit = dir.path().join("audit.log");
    let settings = format!(
        "plugin.actionpolicy.dir = {}\nrpcaudit = 1\nplugin.rpcaudit.logfile = {}\n",
        policies.display(),
        audit.display()
    );
    let setup = Setup::start_configured(kind, TestPki::shared().clone(), &settings).await;

    // The broken file denies everything for filemgr, and says where.
    let (output, replies) = setup
        .rpc_json(&["filemgr", "status", "file=/etc/hosts", "-I", "node1"])
        .await;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_eq!(replies[0]["statuscode"], 1, "{replies:?}");
    assert!(
        setup.servers[0].log().contains("filemgr.policy:2:"),
        "{}",
        setup.servers[0].log()
    );
    assert!(
        setup.daemon_stats("node1").await["unauthorized"]
            .as_u64()
            .unwrap()
            >= 1
    );

    // The audit log: private, with an accepted line before the finished one.
    let (output, _) = setup
        .rpc_json(&["rpcutil", "get_fact", "fact=role", "-I", "node2"])
        .await;
    assert!(output.status.success(), "{}", stderr(&output));
    let text = std::fs::read_to_string(&audit).unwrap();
    assert_eq!(
        std::fs::metadata(&audit).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|l: &Value| l["action"] == "get_fact")
        .collect();
    let events: Vec<&str> = lines.iter().filter_map(|l| l["event"].as_str()).collect();
    assert_eq!(events, vec!["accepted", "finished"], "{text}");
    assert_eq!(lines[0]["request_id"], lines[1]["request_id"], "{text}");
    assert_eq!(lines[0]["caller"], "tester.mcollective", "{text}");

    // The log becomes unwritable: the action does not run, and says why.
    std::fs::remove_file(&audit).unwrap();
    std::os::unix::fs::symlink("/dev/full", &audit).unwrap();
    let (output, replies) = setup
        .rpc_json(&["rpcutil", "get_fact", "fact=role", "-I", "node2"])
        .await;
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert_eq!(replies[0]["statuscode"], 1, "{replies:?}");
    assert!(
        replies[0]["statusmsg"]
            .as_str()
            .unwrap_or_default()
            .contains("audit log"),
        "{replies:?}"
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
    unauthenticated_connections_are_refused,
    nodes_and_callers_read_only_their_own,
    a_node_cannot_answer_for_another,
    a_revoked_certificate_is_refused,
    replays_misaddressing_and_floods_fail,
    policies_fail_closed_and_audit_comes_first,
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
    let pki = TestPki::shared();
    pki.issue("tester.mcollective");
    std::fs::write(
        &client_config,
        format!(
            "plugin.nats.servers = tls://ops:hunter2@127.0.0.1:{port}\nplugin.security.ssldir = {}\n\
             plugin.security.certname = tester.mcollective\n",
            pki.ssldir().root().display()
        ),
    )
    .unwrap();
    let unreachable = mco(&["ping", "--config", client_config.to_str().unwrap()]).await;
    assert_eq!(unreachable.status.code(), Some(2));
    assert!(
        stderr(&unreachable).contains(&format!("tls://ops:***@127.0.0.1:{port}")),
        "{}",
        stderr(&unreachable)
    );
    assert!(
        !stderr(&unreachable).contains("hunter2"),
        "{}",
        stderr(&unreachable)
    );
    // No certificate: the error says where it was looked for and how to get one.
    std::fs::write(&client_config, "plugin.security.ssldir = nowhere\n").unwrap();
    let uncertified = mco(&["ping", "--config", client_config.to_str().unwrap()]).await;
    assert_eq!(uncertified.status.code(), Some(2));
    assert!(
        stderr(&uncertified).contains("mco ca init") && stderr(&uncertified).contains("nowhere"),
        "{}",
        stderr(&uncertified)
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

/// Every certificate mistake stops `mco server` at once with a message
/// naming the file and what to do; nothing is sent.
#[tokio::test]
async fn certificate_mistakes_are_named_when_the_daemon_starts() {
    use std::os::unix::fs::PermissionsExt;
    let pki = TestPki::new();
    let other = TestPki::new();
    let now = time::OffsetDateTime::now_utc();
    let dir = tempfile::tempdir().unwrap();
    let ssldir = pki.ssldir().root().to_path_buf();
    let start = |identity: &str| {
        let config = dir.path().join(format!("{identity}.cfg"));
        std::fs::write(
            &config,
            format!(
                "identity = {identity}\nplugin.nats.servers = tls://127.0.0.1:{}\n\
                 plugin.security.ssldir = {}\n",
                muster_testkit::free_port(),
                ssldir.display()
            ),
        )
        .unwrap();
        async move { mco(&["server", "--config", config.to_str().unwrap()]).await }
    };
    // No certificate at all.
    let out = start("nocert").await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("nocert.pem") && stderr(&out).contains("mco ca issue nocert"),
        "{}",
        stderr(&out)
    );
    // A private key every user can read.
    pki.issue("leaky");
    std::fs::set_permissions(
        pki.ssldir().key_file("leaky"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let out = start("leaky").await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("private_keys/leaky.pem") && stderr(&out).contains("chmod 600"),
        "{}",
        stderr(&out)
    );
    // Expired.
    muster_pki::ca::FleetCa::open(pki.ssldir())
        .unwrap()
        .issue_valid(
            pki.ssldir(),
            "old",
            &[],
            now - time::Duration::days(9),
            now - time::Duration::days(1),
        )
        .unwrap();
    let out = start("old").await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("old.pem") && stderr(&out).contains("expired"),
        "{}",
        stderr(&out)
    );
    // From another CA, copied into this ssldir.
    other.issue("stray");
    for (from, to) in [
        (
            other.ssldir().cert_file("stray"),
            pki.ssldir().cert_file("stray"),
        ),
        (
            other.ssldir().key_file("stray"),
            pki.ssldir().key_file("stray"),
        ),
    ] {
        std::fs::copy(from, to).unwrap();
    }
    let out = start("stray").await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("stray.pem") && stderr(&out).contains("not signed by the CA"),
        "{}",
        stderr(&out)
    );
    // Revoked.
    pki.issue("gone");
    pki.revoke("gone");
    let out = start("gone").await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("gone.pem") && stderr(&out).contains("revoked"),
        "{}",
        stderr(&out)
    );
    // A certificate for another name.
    pki.issue("real");
    std::fs::copy(
        pki.ssldir().cert_file("real"),
        pki.ssldir().cert_file("fake"),
    )
    .unwrap();
    std::fs::copy(pki.ssldir().key_file("real"), pki.ssldir().key_file("fake")).unwrap();
    let out = start("fake").await;
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("is for \"real\""), "{}", stderr(&out));
}

/// A TLS client at a plain-text broker, and a plain-text client at a TLS
/// broker, each get an error that says so.
#[tokio::test]
async fn tls_and_plain_text_do_not_mix() {
    let port = muster_testkit::free_port();
    let mut plain = std::process::Command::new(MCO)
        .args([
            "broker",
            "--insecure-plaintext",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // It says where it listens once it does.
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(plain.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert!(line.contains(&format!("nats://127.0.0.1:{port}")), "{line}");
    let caller = Caller::new("tester");
    let config = caller.client_config(&format!("tls://127.0.0.1:{port}"));
    let out = mco(&["ping", "--config", config.to_str().unwrap(), "-t", "1"]).await;
    let _ = plain.kill();
    let _ = plain.wait();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("does not answer in TLS there"),
        "{}",
        stderr(&out)
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
    // Shutting its own broker down is not a lost broker.
    let err = stderr(&output);
    assert!(!err.contains("WARN"), "{err}");
}
