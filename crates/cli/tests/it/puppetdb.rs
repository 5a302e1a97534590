//! `--dm puppetdb`: the filter as PQL against a real PuppetDB (the
//! PuppetDB tier: skipped, loudly, when PuppetDB is not installed, unless
//! `MUSTER_PUPPETDB_TIER` is set), and against broken peers (a tiny TCP
//! server standing in for a PuppetDB that hangs, fails or talks nonsense).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use muster_testkit::{
    puppetdb_available, stderr, stdout, BrokerKind, Caller, NodeSetup, PuppetCaMode, ServerProcess,
    TestBroker, TestPki, TestPuppetDb,
};
use serde_json::{json, Value};

const MCO: &str = env!("CARGO_BIN_EXE_mco");

async fn mco(args: &[&str]) -> std::process::Output {
    muster_testkit::run_mco(MCO, args).await
}

/// One node of the test fleet: what its `mco server` reads and what
/// PuppetDB is told about it.
struct Node {
    identity: &'static str,
    facts: Value,
    classes: &'static [&'static str],
    collectives: &'static [&'static str],
}

fn fleet() -> Vec<Node> {
    let node = |identity,
                family,
                role,
                cpus: u32,
                virt: bool,
                classes,
                collectives: &'static [&'static str]| Node {
        identity,
        facts: json!({
            "os": {"family": family},
            "role": role,
            "processors": {"count": cpus},
            "is_virtual": virt,
            "mcollective": {"server": {"collectives": collectives}},
        }),
        classes,
        collectives,
    };
    const MAIN: &[&str] = &["mcollective"];
    const EU: &[&str] = &["mcollective", "eu"];
    vec![
        node(
            "web1.example",
            "RedHat",
            "web",
            2,
            true,
            &["base", "httpd"][..],
            MAIN,
        ),
        node(
            "web2.example",
            "RedHat",
            "web",
            4,
            false,
            &["base", "httpd"][..],
            MAIN,
        ),
        node(
            "web3.example",
            "Debian",
            "web",
            8,
            true,
            &["base", "httpd", "nginx"][..],
            MAIN,
        ),
        node(
            "db1.example",
            "Debian",
            "db",
            16,
            false,
            &["base", "mysql::server"][..],
            EU,
        ),
        node(
            "db2.example",
            "RedHat",
            "db",
            4,
            true,
            &["base", "postgresql"][..],
            EU,
        ),
        node(
            "lb1.example",
            "Debian",
            "lb",
            2,
            true,
            &["base", "haproxy"][..],
            MAIN,
        ),
    ]
}

/// Every selector form PuppetDB can answer, each compared with broadcast.
const SELECTORS: &[&[&str]] = &[
    &[],
    &["-I", "web1.example"],
    &["-I", "/^web/"],
    &["-I", "db*"],
    &["-I", "web1.example", "-I", "/^db2/"],
    &["-F", "os.family=RedHat"],
    &["-F", "os.family==Debian"],
    &["-F", "role=/^w/"],
    &["-F", "role=~^d"],
    &["-F", "role=l*"],
    &["-F", "role!=web"],
    &["-F", "processors.count=4"],
    &["-F", "processors.count>=4"],
    &["-F", "processors.count>4"],
    &["-F", "processors.count<4"],
    &["-F", "processors.count<=4"],
    &["-F", "is_virtual=true"],
    &["-F", "role=web", "-F", "os.family=RedHat"],
    &["-C", "httpd"],
    &["-C", "mysql::server"],
    &["-C", "/sql/"],
    &["-C", "http*"],
    &["-C", "httpd", "-C", "nginx"],
    &["-C", "httpd", "-F", "os.family=Debian"],
    &["-W", "role=db base"],
    &["-I", "/^web/", "-C", "httpd", "-F", "processors.count>2"],
    &["-T", "eu"],
    &["-T", "eu", "-F", "os.family=RedHat"],
    &["-F", "role=nothing"],
];

async fn find(config: &str, extra: &[&str], selectors: &[&str]) -> (bool, String, String) {
    let mut args = vec!["find", "--config", config];
    args.extend_from_slice(extra);
    args.extend_from_slice(selectors);
    let out = mco(&args).await;
    // find exits 0 with nodes, 4 (no nodes) without: both are answers.
    let answered = matches!(out.status.code(), Some(0) | Some(4));
    (answered, stdout(&out), stderr(&out))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn puppetdb_discovery_selects_what_broadcast_selects() {
    if !puppetdb_available() {
        return;
    }
    let begun = Instant::now();
    // PuppetDB also serves HTTPS with a Puppet CA's certificates, as on 8081.
    let puppet_pki = tokio::task::spawn_blocking(|| TestPki::puppet(&[], PuppetCaMode::Openssl))
        .await
        .expect("Puppet CA");
    let ssldir = puppet_pki.ssldir().root().to_path_buf();
    let puppetdb = tokio::task::spawn_blocking(move || TestPuppetDb::start_with(Some(&ssldir)))
        .await
        .expect("start PuppetDB");
    eprintln!(
        "PuppetDB started in {:.1} s",
        puppetdb.started_in.as_secs_f64()
    );

    let broker = TestBroker::start(BrokerKind::Embedded).await;
    let caller = Caller::new("pdb");
    let config = caller.client_config(&broker.url());
    let mut text = std::fs::read_to_string(&config).expect("client config");
    text.push_str(&format!(
        "collectives = mcollective, eu\nplugin.puppetdb.url = {}\nplugin.puppetdb.timeout = 20\n",
        puppetdb.url()
    ));
    std::fs::write(&config, text).expect("client config");
    let c = config.display().to_string();

    let nodes = fleet();
    let mut servers = Vec::new();
    for node in &nodes {
        let facts_yaml = serde_json::to_string(&node.facts).expect("facts"); // JSON is YAML
        servers.push(ServerProcess::start(
            std::path::Path::new(MCO),
            &broker.url(),
            caller.pki(),
            &NodeSetup {
                identity: node.identity,
                facts_yaml: &facts_yaml,
                classes: node.classes,
                collectives: node.collectives,
                settings: "",
            },
        ));
    }
    let loading = Instant::now();
    {
        let nodes = nodes
            .iter()
            .map(|n| (n.identity, n.facts.clone(), n.classes))
            .collect::<Vec<_>>();
        let pdb = &puppetdb;
        tokio::task::block_in_place(|| {
            for (identity, facts, classes) in nodes {
                pdb.replace_facts(identity, &facts);
                pdb.replace_catalog(identity, classes);
            }
            // A retired node that matches everything: deactivated, PuppetDB
            // must leave it out, as broadcast (it does not run) does.
            pdb.replace_facts("gone.example", &fleet()[0].facts);
            pdb.replace_catalog("gone.example", &["base", "httpd", "nginx", "mysql::server"]);
            pdb.deactivate("gone.example");
        });
    }
    eprintln!(
        "loaded 7 nodes into PuppetDB in {:.1} s",
        loading.elapsed().as_secs_f64()
    );

    // Every node up before comparing.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, found, _) = find(&c, &[], &[]).await;
        if found.lines().count() == nodes.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the fleet did not answer within 30 s: {found}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    let comparing = Instant::now();
    for selectors in SELECTORS {
        let (ok, broadcast, err) = find(&c, &[], selectors).await;
        assert!(ok, "broadcast {selectors:?}: {err}");
        let (ok, from_pdb, err) = find(&c, &["--dm", "puppetdb"], selectors).await;
        assert!(ok, "--dm puppetdb {selectors:?}: {err}");
        assert_eq!(
            from_pdb, broadcast,
            "--dm puppetdb {selectors:?} differs from broadcast"
        );
    }
    // The same from client.cfg's default_discovery_method.
    let defaulted = caller.dir.path().join("default-puppetdb.cfg");
    std::fs::write(
        &defaulted,
        format!(
            "{}default_discovery_method = puppetdb\n",
            std::fs::read_to_string(&config).expect("client config")
        ),
    )
    .expect("client config");
    let (ok, found, err) = find(&defaulted.display().to_string(), &[], &["-C", "httpd"]).await;
    assert!(ok, "{err}");
    assert_eq!(found, "web1.example\nweb2.example\nweb3.example\n");
    eprintln!(
        "{} selector forms compared in {:.1} s",
        SELECTORS.len() + 1,
        comparing.elapsed().as_secs_f64()
    );

    // Raw PQL, alone and with other selectors.
    let (ok, found, err) = find(
        &c,
        &["--dm", "puppetdb"],
        &["-I", r#"pql:inventory[certname] { facts.role = "db" }"#],
    )
    .await;
    assert!(ok, "{err}");
    assert_eq!(found, "db1.example\ndb2.example\n");
    let (ok, found, err) = find(
        &c,
        &["--dm", "puppetdb"],
        &[
            "-I",
            r#"pql:resources[certname] { type = "Class" and title = "Httpd" }"#,
            "-F",
            "os.family=Debian",
        ],
    )
    .await;
    assert!(ok, "{err}");
    assert_eq!(found, "web3.example\n");

    // A PQL syntax error: PuppetDB's own message, and nothing found.
    let out = mco(&[
        "find",
        "--config",
        &c,
        "--dm",
        "puppetdb",
        "-I",
        "pql:nodes[certname] { certname = }",
    ])
    .await;
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("refused the query (400)"), "{err}");
    assert!(err.contains("PQL parse error at line 1"), "{err}");
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));

    // What PuppetDB cannot answer is refused before anything is sent.
    for (selectors, what) in [
        (&["-A", "rpcutil"][..], "agent filters (-A)"),
        (&["-S", "role=web or role=db"][..], "compound filters (-S)"),
        (&["-S", "fstat('/etc/hosts').size>0"][..], "data plugins"),
    ] {
        let (_, found, err) = find(&c, &["--dm", "puppetdb"], selectors).await;
        assert!(found.is_empty(), "{selectors:?}: {found}");
        assert!(
            err.contains(&format!("PuppetDB discovery cannot answer {what}")),
            "{selectors:?}: {err}"
        );
        assert!(err.contains("identities (-I"), "{err}");
    }

    // A real call to the nodes PuppetDB selected, sent to each directly.
    let out = mco(&[
        "rpc", "rpcutil", "ping", "--config", &c, "--dm", "puppetdb", "-F", "role=web", "--json",
    ])
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let replies: Value = serde_json::from_slice(&out.stdout).expect("rpc --json");
    assert_eq!(replies["statistics"]["discovered"], 3, "{replies}");
    let mut senders: Vec<&str> = replies["replies"]
        .as_array()
        .expect("an array of replies")
        .iter()
        .filter_map(|r| r["sender"].as_str())
        .collect();
    senders.sort();
    assert_eq!(senders, ["web1.example", "web2.example", "web3.example"]);

    // Over HTTPS: the caller's Puppet certificate, key and CA.
    let https = puppetdb.https_url().expect("an https URL");
    let tls_caller = Caller::with_pki("pdbtls", puppet_pki.clone());
    let tls_config = config_for(&tls_caller, https, "plugin.puppetdb.timeout = 20\n");
    let (ok, found, err) = find(
        &tls_config.display().to_string(),
        &["--dm", "puppetdb"],
        &["-C", "httpd"],
    )
    .await;
    assert!(ok, "{err}");
    assert_eq!(found, "web1.example\nweb2.example\nweb3.example\n");
    // A caller of another CA: no TLS session, and the error says where.
    let stranger = config_for(&caller, https, "plugin.puppetdb.timeout = 20\n");
    let err = find_error(&stranger).await;
    assert!(
        err.contains(&format!("cannot query PuppetDB at {https}")),
        "{err}"
    );

    drop(servers);
    let stopping = Instant::now();
    drop(puppetdb);
    eprintln!(
        "PuppetDB stopped in {:.1} s; whole test {:.1} s",
        stopping.elapsed().as_secs_f64(),
        begun.elapsed().as_secs_f64()
    );
}

/// How a [`BrokenPeer`] answers.
#[derive(Clone, Copy)]
enum Answer {
    /// Reads the request, never answers.
    Hang,
    /// An HTTP 500 with a message.
    Error,
    /// HTTP 200 with an HTML page.
    Garbage,
}

/// A loopback TCP server playing a broken PuppetDB; its threads end
/// with the test binary (a hung one after 30 s at most).
fn broken_peer(answer: Answer) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let (status, body) = match answer {
                    Answer::Hang => {
                        std::thread::sleep(Duration::from_secs(30));
                        return;
                    }
                    Answer::Error => ("500 Internal Server Error", "the database is on fire"),
                    Answer::Garbage => ("200 OK", "<html><body>It works!</body></html>"),
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    url
}

/// A client config whose PuppetDB is `url` (the broker is never used).
fn config_for(caller: &Caller, url: &str, extra: &str) -> PathBuf {
    let config = caller.client_config("tls://127.0.0.1:9");
    let path = caller
        .dir
        .path()
        .join(format!("pdb-{}.cfg", muster_testkit::free_port()));
    let text = std::fs::read_to_string(&config).expect("client config");
    std::fs::write(&path, format!("{text}plugin.puppetdb.url = {url}\n{extra}"))
        .expect("client config");
    path
}

async fn find_error(config: &std::path::Path) -> String {
    let out = mco(&[
        "find",
        "--config",
        &config.display().to_string(),
        "--dm",
        "puppetdb",
        "-F",
        "role=web",
    ])
    .await;
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    stderr(&out)
}

#[tokio::test]
async fn puppetdb_unreachable_is_named() {
    let caller = Caller::new("pdb-unreachable");
    let url = format!("http://127.0.0.1:{}", muster_testkit::free_port());
    let err = find_error(&config_for(&caller, &url, "")).await;
    assert!(
        err.contains(&format!("cannot query PuppetDB at {url}")),
        "{err}"
    );
}

#[tokio::test]
async fn puppetdb_that_does_not_answer_times_out() {
    let caller = Caller::new("pdb-slow");
    let url = broken_peer(Answer::Hang);
    let begun = Instant::now();
    let err = find_error(&config_for(
        &caller,
        &url,
        "plugin.puppetdb.timeout = 0.5\n",
    ))
    .await;
    assert!(
        err.contains(&format!("PuppetDB at {url} did not answer within 0.5 s")),
        "{err}"
    );
    // Bounded by the setting, not by the peer's 30 s.
    assert!(begun.elapsed() < Duration::from_secs(25));
}

#[tokio::test]
async fn puppetdb_error_status_shows_its_message() {
    let caller = Caller::new("pdb-error");
    let url = broken_peer(Answer::Error);
    let err = find_error(&config_for(&caller, &url, "")).await;
    assert!(
        err.contains(&format!(
            "PuppetDB at {url} refused the query (500): the database is on fire"
        )),
        "{err}"
    );
    assert!(
        err.contains(
            r#"query: nodes[certname] { (certname in inventory[certname] { facts.role = "web" })"#
        ),
        "{err}"
    );
}

#[tokio::test]
async fn puppetdb_garbage_is_not_a_node_list() {
    let caller = Caller::new("pdb-garbage");
    let url = broken_peer(Answer::Garbage);
    let err = find_error(&config_for(&caller, &url, "")).await;
    assert!(
        err.contains(&format!(
            "PuppetDB at {url} answered something that is not a list of nodes: not JSON"
        )),
        "{err}"
    );
    assert!(err.contains("<html><body>It works!"), "{err}");
}

#[tokio::test]
async fn puppetdb_url_must_be_http() {
    let caller = Caller::new("pdb-url");
    let err = find_error(&config_for(&caller, "ftp://puppetdb:8081", "")).await;
    assert!(
        err.contains(
            r#"plugin.puppetdb.url "ftp://puppetdb:8081" is not an http:// or https:// URL"#
        ),
        "{err}"
    );
}
