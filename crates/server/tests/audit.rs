//! The audit log through `Node::handle`: a node built from a real config
//! file writes one JSON line per request that reaches an agent (DESIGN §6).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use muster_pki::{Authority, Credential};
use muster_protocol::{Envelope, Filter, Reply, Request, StatusCode};
use muster_server::node::Outcome;
use muster_server::stats::Rejection;
use muster_server::{Node, ServerConfig};
use muster_testkit::{ask, TestPki};
use serde_json::{json, Value};

/// A node that trusts the shared test CA, lets only `alice.mcollective`
/// call rpcutil, and audits to `log` with `password`, `token` and `query`
/// redacted; `alice.mcollective` and `bob.mcollective` call it.
struct Setup {
    _dir: tempfile::TempDir,
    node: Arc<Node>,
    log: PathBuf,
    alice: Credential,
    bob: Credential,
}

fn config_text(dir: &Path, log: &Path) -> String {
    format!(
        "identity = node1\nplugin.security.ssldir = {}\nplugin.actionpolicy.dir = {}\n\
         rpcaudit = 1\nplugin.rpcaudit.logfile = {}\nplugin.rpcaudit.redact = password, token, query\n",
        TestPki::shared().ssldir().root().display(),
        dir.join("policies").display(),
        log.display(),
    )
}

/// A node as the config file at `path` describes it, trusting the CA in
/// its `plugin.security.ssldir`.
fn node_from(path: &Path) -> Result<Node, String> {
    let config = ServerConfig::load(path).map_err(|e| e.to_string())?;
    let authority = Authority::load(&config.security.ssldir).map_err(|e| e.to_string())?;
    Node::from_config(&config, Arc::new(authority))
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::shared();
    let alice = pki.credential("alice.mcollective");
    let bob = pki.credential("bob.mcollective");
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::write(
        dir.path().join("policies/rpcutil.policy"),
        "policy default deny\nallow\talice.mcollective\t*\t*\t*\n",
    )
    .unwrap();
    let log = dir.path().join("audit.log");
    let config = dir.path().join("server.cfg");
    std::fs::write(&config, config_text(dir.path(), &log)).unwrap();
    let node = node_from(&config).unwrap();
    Setup {
        _dir: dir,
        node: Arc::new(node),
        log,
        alice,
        bob,
    }
}

/// `rpcutil <action>` signed by `caller` but claiming to come from `claim`.
async fn ask_claiming(
    node: &Node,
    caller: &Credential,
    claim: &str,
    action: &str,
    inputs: Value,
) -> Reply {
    let Value::Object(data) = inputs else {
        panic!("inputs must be an object");
    };
    let request = Request::new("client1", claim, "mcollective", "rpcutil", action).with_data(data);
    match node
        .handle(&Envelope::seal(&request, caller).unwrap().to_bytes())
        .await
    {
        Outcome::Reply { reply, .. } => reply,
        other => panic!("{action}: expected a reply, got {other:?}"),
    }
}

/// Every line of the log, each of which must be a JSON object.
fn lines(log: &std::path::Path) -> Vec<Value> {
    let text = std::fs::read_to_string(log).unwrap();
    assert!(text.is_empty() || text.ends_with('\n'), "{text}");
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

#[tokio::test]
async fn one_line_per_request_with_its_outcome() {
    let s = setup();
    let cases = [
        // (who, action, inputs, outcome, statuscode)
        ("alice", "ping", json!({}), "ok", 0),
        ("alice", "no_such_action", json!({}), "invalid", 2),
        ("alice", "get_fact", json!({}), "invalid", 3),
        (
            "alice",
            "get_data",
            json!({"source": "sysctl", "query": "kernel.no_such_key"}),
            "failed",
            1,
        ),
        ("bob", "ping", json!({}), "denied", 1),
    ];
    let mut ids = Vec::new();
    for (who, action, inputs, _, status) in &cases {
        let caller = if *who == "alice" { &s.alice } else { &s.bob };
        // Every request claims to be alice; the log says who really signed.
        let reply = ask_claiming(&s.node, caller, "user=alice", action, inputs.clone()).await;
        assert_eq!(u8::from(reply.statuscode), *status, "{action}: {reply:?}");
        ids.push(reply.request_id);
    }
    let lines = lines(&s.log);
    assert_eq!(lines.len(), cases.len(), "{lines:?}");
    for ((line, (who, action, _, outcome, status)), id) in lines.iter().zip(&cases).zip(&ids) {
        let fields: Vec<&str> = line
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut expected_fields = vec![
            "time",
            "request_id",
            "caller",
            "claimed_caller",
            "sender",
            "agent",
            "action",
            "data",
            "collective",
            "outcome",
            "statuscode",
        ];
        expected_fields.sort_unstable();
        let mut sorted = fields.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, expected_fields);
        assert_eq!(line["request_id"], **id);
        assert_eq!(line["caller"], format!("{who}.mcollective"));
        assert_eq!(line["claimed_caller"], "user=alice");
        assert_eq!(line["sender"], "client1");
        assert_eq!(line["agent"], "rpcutil");
        assert_eq!(line["action"], *action);
        assert_eq!(line["collective"], "mcollective");
        assert_eq!(line["outcome"], *outcome, "{line}");
        assert_eq!(line["statuscode"], *status, "{line}");
        let time = line["time"].as_str().unwrap();
        assert_eq!(time.len(), "2026-01-01T00:00:00.000Z".len(), "{time}");
        assert!(time.starts_with("20") && time.ends_with('Z'), "{time}");
        assert_eq!(&time[10..11], "T", "{time}");
    }
    assert_eq!(lines[3]["data"]["source"], "sysctl");
}

#[tokio::test]
async fn refused_and_filtered_requests_are_not_audited() {
    let s = setup();
    // A certificate from another CA, and a node's certificate from this one.
    let stranger = TestPki::new().credential("eve.mcollective");
    let node9 = TestPki::shared().credential("node9");
    for (signer, refused) in [(&stranger, 1), (&node9, 2)] {
        let request = Request::new("client1", signer.name(), "mcollective", "rpcutil", "ping");
        let outcome = s
            .node
            .handle(&Envelope::seal(&request, signer).unwrap().to_bytes())
            .await;
        assert!(
            matches!(outcome, Outcome::Rejected(Rejection::Untrusted, _)),
            "{}: {outcome:?}",
            signer.name()
        );
        assert_eq!(s.node.stats().rejected(Rejection::Untrusted), refused);
    }
    let elsewhere = Request::new("client1", s.alice.name(), "mcollective", "rpcutil", "ping")
        .with_filter(Filter::default().identity("node2").unwrap());
    let outcome = s
        .node
        .handle(&Envelope::seal(&elsewhere, &s.alice).unwrap().to_bytes())
        .await;
    assert!(matches!(outcome, Outcome::Filtered), "{outcome:?}");
    assert!(lines(&s.log).is_empty());
}

#[tokio::test]
async fn named_inputs_are_redacted() {
    let s = setup();
    let reply = ask(
        &s.node,
        &s.alice,
        "rpcutil",
        "get_data",
        json!({"source": "sysctl", "query": "kernel.ostype"}),
    )
    .await;
    assert_eq!(reply.statuscode, StatusCode::Ok, "{reply:?}");
    // Inputs the DDL refuses are audited as received, and redacted too.
    let reply = ask(
        &s.node,
        &s.alice,
        "rpcutil",
        "ping",
        json!({"Password": "hunter2", "token": {"nested": "s3cret"}, "note": "kept"}),
    )
    .await;
    assert_eq!(reply.statuscode, StatusCode::InvalidData, "{reply:?}");

    let text = std::fs::read_to_string(&s.log).unwrap();
    for secret in ["kernel.ostype", "hunter2", "s3cret"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    let lines = lines(&s.log);
    assert_eq!(
        lines[0]["data"],
        json!({"source": "sysctl", "query": "[redacted]"})
    );
    assert_eq!(
        lines[1]["data"],
        json!({"Password": "[redacted]", "token": "[redacted]", "note": "kept"})
    );
    assert_eq!(lines[1]["outcome"], "invalid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_give_complete_lines() {
    let s = setup();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let node = s.node.clone();
        let (caller, action) = if i % 5 == 0 {
            (s.bob.clone(), "ping")
        } else {
            (s.alice.clone(), "inventory")
        };
        tasks.push(tokio::spawn(async move {
            ask(&node, &caller, "rpcutil", action, json!({}))
                .await
                .request_id
        }));
    }
    let mut sent = HashSet::new();
    for task in tasks {
        sent.insert(task.await.unwrap());
    }
    let lines = lines(&s.log);
    assert_eq!(lines.len(), 50);
    let logged: HashSet<String> = lines
        .iter()
        .map(|l| l["request_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(logged, sent);
    let denied = lines.iter().filter(|l| l["outcome"] == "denied").count();
    assert_eq!(denied, 10);
}

#[test]
fn an_unopenable_log_is_a_start_up_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("no/such/dir/audit.log");
    let config = dir.path().join("server.cfg");
    std::fs::write(&config, config_text(dir.path(), &log)).unwrap();
    let err = node_from(&config).err().unwrap();
    assert!(err.contains(&log.display().to_string()), "{err}");
}

#[test]
fn appends_to_an_existing_log() {
    let s = setup();
    drop(s.node);
    std::fs::write(&s.log, "{\"earlier\":true}\n").unwrap();
    let config = s.log.with_file_name("server.cfg");
    let node = node_from(&config).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(ask(&node, &s.alice, "rpcutil", "ping", json!({})));
    let lines = lines(&s.log);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["earlier"], true);
    assert_eq!(lines[1]["outcome"], "ok");
}
