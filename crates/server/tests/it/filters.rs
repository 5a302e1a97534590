//! A node built from a real config file — native facts, a facts file,
//! a classes file — selected by fact filters and by `-S` expressions that
//! call each data plugin on this machine.

use std::path::Path;
use std::sync::Arc;

use muster_pki::{Authority, Credential};
use muster_protocol::{Envelope, Filter, Request};
use muster_server::node::Outcome;
use muster_server::{Node, ServerConfig};
use muster_testkit::TestPki;
use serde_json::{json, Value};

struct Setup {
    _dir: tempfile::TempDir,
    node: Arc<Node>,
    caller: Credential,
    file: std::path::PathBuf,
}

/// A node as the config file at `path` describes it, trusting the CA in
/// its `plugin.security.ssldir`.
fn node_from(path: &Path) -> Node {
    let config = ServerConfig::load(path).unwrap();
    let authority = Authority::load(&config.security.ssldir).unwrap();
    Node::from_config(&config, Arc::new(authority)).unwrap()
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::shared();
    let caller = pki.credential("alice.mcollective");
    std::fs::write(
        dir.path().join("facts.yaml"),
        "role: web\nkernel: Plan9\nnested:\n  level: 3\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("classes.txt"), "httpd\nrole::web\n").unwrap();
    let file = dir.path().join("hello.txt");
    std::fs::write(&file, "hello\n").unwrap();
    let config = dir.path().join("server.cfg");
    std::fs::write(
        &config,
        format!(
            "identity = real1\ncollectives = mcollective, compute\nplugin.yaml = {}\nclassesfile = {}\n\
             plugin.security.ssldir = {}\n",
            dir.path().join("facts.yaml").display(),
            dir.path().join("classes.txt").display(),
            pki.ssldir().root().display()
        ),
    )
    .unwrap();
    let node = node_from(&config);
    Setup {
        _dir: dir,
        node: Arc::new(node),
        caller,
        file,
    }
}

impl Setup {
    async fn send(&self, filter: Filter, action: &str, data: Value) -> Option<Value> {
        let request = Request::new(
            "client",
            self.caller.name(),
            "mcollective",
            "rpcutil",
            action,
        )
        .with_filter(filter)
        .with_data(data.as_object().cloned().unwrap_or_default());
        match self
            .node
            .handle(&Envelope::seal(&request, &self.caller).unwrap().to_bytes())
            .await
        {
            Outcome::Reply { reply, .. } => {
                Some(json!({"status": reply.statuscode, "data": reply.data}))
            }
            Outcome::Filtered => None,
            Outcome::Rejected(reason, message) => panic!("rejected: {reason:?} {message}"),
        }
    }

    async fn selected(&self, filter: Filter) -> bool {
        self.send(filter, "ping", json!({})).await.is_some()
    }

    async fn selected_by(&self, expression: &str) -> bool {
        self.selected(Filter::default().compound(expression).unwrap())
            .await
    }
}

fn own_process_name() -> String {
    std::fs::read_to_string("/proc/self/comm")
        .unwrap()
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_facts_are_there_and_fact_files_win() {
    let setup = setup();
    let facts = setup.node.facts();
    assert_eq!(facts["identity"], "real1");
    assert!(facts["os"]["family"].is_string(), "{facts}");
    assert!(facts["processors"]["count"].as_u64().unwrap() >= 1);
    assert_eq!(facts["role"], "web");
    assert_eq!(
        facts["kernel"], "Plan9",
        "the facts file overrides the native fact"
    );

    let family = facts["os"]["family"].as_str().unwrap().to_string();
    assert!(
        setup
            .selected(
                Filter::default()
                    .fact(&format!("os.family={family}"))
                    .unwrap()
            )
            .await
    );
    assert!(
        !setup
            .selected(Filter::default().fact("os.family=Solaris").unwrap())
            .await
    );
    assert!(
        setup
            .selected(Filter::default().fact("processors.count>=1").unwrap())
            .await
    );
    assert!(
        setup
            .selected(Filter::default().fact("nested.level>2").unwrap())
            .await
    );
    assert!(
        setup
            .selected(Filter::default().with("httpd role=web").unwrap())
            .await
    );
    assert!(
        !setup
            .selected(Filter::default().with("httpd role=db").unwrap())
            .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_data_plugin_selects_by_what_is_on_this_machine() {
    let setup = setup();
    let path = setup.file.display().to_string();
    let family = setup.node.facts()["os"]["family"]
        .as_str()
        .unwrap()
        .to_string();
    let process = own_process_name();
    let cases = [
        (format!("fstat('{path}').type=file"), true),
        (format!("fstat('{path}').size=6"), true),
        (format!("fstat('{path}').size>100"), false),
        (format!("fstat('{path}').present=1"), true),
        (
            format!("fstat('{path}').md5=b1946ac92492d2347c6235b4d2611184"),
            true,
        ),
        ("fstat('/nonexistent/x').present=0".to_string(), true),
        ("fstat('/etc').type=directory".to_string(), true),
        (format!("process('{process}').exists=true"), true),
        (
            "process('no-such-process-muster').exists=true".to_string(),
            false,
        ),
        (
            "process('no-such-process-muster').exists=false".to_string(),
            true,
        ),
        ("sysctl('kernel.ostype').value=Linux".to_string(), true),
        (format!("fact('os.family').value={family}"), true),
        ("fact('role').value=db".to_string(), false),
        ("agent('rpcutil').version=/\\d+\\.\\d+/".to_string(), true),
        ("agent('nosuchagent').version=/./".to_string(), false),
        ("collective('compute').member=true".to_string(), true),
        ("collective('storage').member=true".to_string(), false),
        (
            format!(
                "httpd and fstat('{path}').type=file and not collective('storage').member=true"
            ),
            true,
        ),
    ];
    for (expression, expected) in cases {
        assert_eq!(
            setup.selected_by(&expression).await,
            expected,
            "{expression}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_data_plugin_means_no_match_and_is_counted() {
    let setup = setup();
    // A sysctl that does not exist fails on the node.
    assert!(!setup.selected_by("sysctl('no.such.key').value=1").await);
    assert!(!setup.selected_by("not sysctl('no.such.key').value=1").await);
    let stats = setup
        .send(Filter::default(), "daemon_stats", json!({}))
        .await
        .unwrap();
    assert_eq!(stats["data"]["data_errors"], 2, "{stats}");
    assert_eq!(stats["data"]["filtered"], 2, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_data_returns_a_plugins_whole_answer() {
    let setup = setup();
    let reply = setup
        .send(
            Filter::default(),
            "get_data",
            json!({"source": "fstat", "query": setup.file.display().to_string()}),
        )
        .await
        .unwrap();
    assert_eq!(reply["status"], 0, "{reply}");
    assert_eq!(reply["data"]["type"], "file");
    assert_eq!(reply["data"]["size"], 6);
    let unknown = setup
        .send(Filter::default(), "get_data", json!({"source": "nope"}))
        .await
        .unwrap();
    assert_eq!(unknown["status"], 4, "{unknown}");
    let failing = setup
        .send(
            Filter::default(),
            "get_data",
            json!({"source": "sysctl", "query": "no.such.key"}),
        )
        .await
        .unwrap();
    assert_eq!(failing["status"], 1, "{failing}");
    let inventory = setup
        .send(Filter::default(), "inventory", json!({}))
        .await
        .unwrap();
    let plugins = inventory["data"]["data_plugins"].as_array().unwrap();
    assert!(plugins.contains(&json!("fstat")) && plugins.contains(&json!("process")));
}

#[test]
fn facter_factsource_reads_facter_json() {
    if !Path::new("/usr/bin/facter").exists() {
        if std::env::var_os("CI").is_some() {
            panic!("facter is not installed; .ci/run installs the Debian package facter");
        }
        eprintln!("skipped: facter is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("server.cfg");
    std::fs::write(&config, "identity = f1\nfactsource = facter\n").unwrap();
    // No ssldir in the config: facts need no CA, so the node trusts the shared test one.
    let config = ServerConfig::load(&config).unwrap();
    let node = Node::from_config(&config, TestPki::shared().authority()).unwrap();
    let facts = node.facts();
    assert!(facts["os"]["family"].is_string(), "{facts}");
    assert!(facts["kernel"].is_string(), "{facts}");
}
