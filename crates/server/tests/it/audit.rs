//! The audit log (docs/architecture.md#security): first through `Node::handle`, a node built
//! from a real config file; then through `AuditLog` itself — the accepted
//! line on disk before the action runs, a full disk, file modes, redaction,
//! concurrent writers.

use muster_testkit::Logs;
use std::collections::{HashMap, HashSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use muster_pki::{Authority, Credential};
use muster_protocol::ddl::Ddl;
use muster_protocol::{Envelope, Filter, Reply, Request, StatusCode};
use muster_server::agent::{ready, ActionFuture, Agent};
use muster_server::audit::{self, AuditLog, OnFailure, Settings};
use muster_server::node::Outcome;
use muster_server::stats::Rejection;
use muster_server::{Node, ServerConfig};
use muster_testkit::{ask, TestPki};
use serde_json::{json, Map, Value};

/// A node that trusts the shared test CA, lets only `alice.mcollective`
/// call rpcutil (and the test's `probe` agent), and audits to `log` with
/// `password`, `token` and `query` redacted; `alice.mcollective` and
/// `bob.mcollective` call it.
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
    Node::from_config(&config, Arc::new(authority)).map_err(|e| e.to_string())
}

/// The files of a [`Setup`] in `dir`, auditing to `log`; the config file's path.
fn write_setup(dir: &Path, log: &Path, extra_config: &str) -> PathBuf {
    std::fs::create_dir(dir.join("policies")).unwrap();
    for agent in ["rpcutil", "probe"] {
        std::fs::write(
            dir.join(format!("policies/{agent}.policy")),
            "policy default deny\nallow\talice.mcollective\t*\t*\t*\n",
        )
        .unwrap();
    }
    let config = dir.join("server.cfg");
    std::fs::write(&config, config_text(dir, log) + extra_config).unwrap();
    config
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let config = write_setup(dir.path(), &log, "");
    let node = node_from(&config).unwrap();
    let pki = TestPki::shared();
    Setup {
        _dir: dir,
        node: Arc::new(node),
        log,
        alice: pki.credential("alice.mcollective"),
        bob: pki.credential("bob.mcollective"),
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
fn lines(log: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(log).unwrap();
    assert!(text.is_empty() || text.ends_with('\n'), "{text}");
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

/// A line's field names, sorted.
fn fields(line: &Value) -> Vec<&str> {
    let mut fields: Vec<&str> = line
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    fields
}

/// The fields of accepted lines, of finished lines after them, and of the
/// single finished line of a request refused before it ran.
const ACCEPTED_FIELDS: &[&str] = &[
    "action",
    "agent",
    "caller",
    "claimed_caller",
    "collective",
    "data",
    "event",
    "request_id",
    "sender",
    "time",
];
const FINISHED_FIELDS: &[&str] = &[
    "action",
    "agent",
    "caller",
    "claimed_caller",
    "collective",
    "duration_ms",
    "event",
    "outcome",
    "request_id",
    "sender",
    "statuscode",
    "time",
];
const REFUSED_FIELDS: &[&str] = &[
    "action",
    "agent",
    "caller",
    "claimed_caller",
    "collective",
    "data",
    "duration_ms",
    "event",
    "outcome",
    "request_id",
    "sender",
    "statuscode",
    "time",
];

/// The log's lines by request id, in the order written.
fn by_request(lines: &[Value]) -> HashMap<String, Vec<Value>> {
    let mut requests: HashMap<String, Vec<Value>> = HashMap::new();
    for line in lines {
        let id = line["request_id"].as_str().unwrap().to_string();
        requests.entry(id).or_default().push(line.clone());
    }
    requests
}

#[tokio::test]
async fn accepted_and_finished_lines_per_request() {
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
    let all = lines(&s.log);
    let requests = by_request(&all);
    assert_eq!(requests.len(), cases.len(), "{all:?}");
    for ((who, action, inputs, outcome, status), id) in cases.iter().zip(&ids) {
        let lines = &requests[id];
        // Requests that ran have an accepted line before the finished one;
        // requests refused before running only the finished one, with inputs.
        let ran = matches!(*outcome, "ok" | "failed");
        let finished = lines.last().unwrap();
        if ran {
            assert_eq!(lines.len(), 2, "{lines:?}");
            assert_eq!(lines[0]["event"], "accepted");
            assert_eq!(fields(&lines[0]), ACCEPTED_FIELDS);
            assert_eq!(fields(finished), FINISHED_FIELDS);
            // `query` is listed in plugin.rpcaudit.redact.
            let mut redacted = inputs.clone();
            if redacted.get("query").is_some() {
                redacted["query"] = json!(audit::REDACTED);
            }
            assert_eq!(lines[0]["data"], redacted);
        } else {
            assert_eq!(lines.len(), 1, "{lines:?}");
            assert_eq!(fields(finished), REFUSED_FIELDS);
            assert_eq!(finished["data"], *inputs);
            assert_eq!(finished["duration_ms"], 0);
        }
        assert_eq!(finished["event"], "finished");
        assert_eq!(finished["outcome"], *outcome, "{finished}");
        assert_eq!(finished["statuscode"], *status, "{finished}");
        assert!(finished["duration_ms"].is_u64(), "{finished}");
        for line in lines {
            assert_eq!(line["request_id"], **id);
            assert_eq!(line["caller"], format!("{who}.mcollective"));
            assert_eq!(line["claimed_caller"], "user=alice");
            assert_eq!(line["sender"], "client1");
            assert_eq!(line["agent"], "rpcutil");
            assert_eq!(line["action"], *action);
            assert_eq!(line["collective"], "mcollective");
            let time = line["time"].as_str().unwrap();
            assert_eq!(time.len(), "2026-01-01T00:00:00.000Z".len(), "{time}");
            assert!(time.starts_with("20") && time.ends_with('Z'), "{time}");
            assert_eq!(&time[10..11], "T", "{time}");
        }
    }
    // The log is in request order.
    let order: Vec<&str> = all
        .iter()
        .filter(|l| l["event"] == "finished")
        .map(|l| l["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(order, ids);
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
    // Inputs the DDL refuses are audited as received, and redacted too:
    // the listed names, and the names that look like secrets.
    let reply = ask(
        &s.node,
        &s.alice,
        "rpcutil",
        "ping",
        json!({
            "Password": "hunter2",
            "token": {"nested": "s3cret"},
            "db_password": "pw1",
            "options": {"apiKey": "k3y", "keyboard": "us"},
            "note": "kept",
        }),
    )
    .await;
    assert_eq!(reply.statuscode, StatusCode::InvalidData, "{reply:?}");

    let text = std::fs::read_to_string(&s.log).unwrap();
    for secret in ["kernel.ostype", "hunter2", "s3cret", "pw1", "k3y"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    let lines = lines(&s.log);
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[0]["event"], "accepted");
    assert_eq!(
        lines[0]["data"],
        json!({"source": "sysctl", "query": "[redacted]"})
    );
    assert_eq!(lines[1]["event"], "finished");
    assert!(lines[1].get("data").is_none(), "{}", lines[1]);
    assert_eq!(
        lines[2]["data"],
        json!({
            "Password": "[redacted]",
            "token": "[redacted]",
            "db_password": "[redacted]",
            "options": {"apiKey": "[redacted]", "keyboard": "us"},
            "note": "kept",
        })
    );
    assert_eq!(lines[2]["outcome"], "invalid");
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
    assert_eq!(lines.len(), 40 * 2 + 10);
    let requests = by_request(&lines);
    assert_eq!(requests.keys().cloned().collect::<HashSet<_>>(), sent);
    let denied = requests
        .values()
        .filter(|l| l.len() == 1 && l[0]["outcome"] == "denied")
        .count();
    assert_eq!(denied, 10);
    let ran = requests
        .values()
        .filter(|l| l.len() == 2 && l[0]["event"] == "accepted" && l[1]["outcome"] == "ok")
        .count();
    assert_eq!(ran, 40);
}

#[test]
fn an_unopenable_log_is_a_start_up_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("no/such/dir/audit.log");
    let config = write_setup(dir.path(), &log, "");
    let err = node_from(&config).err().unwrap();
    assert!(err.contains(&log.display().to_string()), "{err}");
    // The directory is not created.
    assert!(!dir.path().join("no").exists());
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
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["earlier"], true);
    assert_eq!(lines[1]["event"], "accepted");
    assert_eq!(lines[2]["outcome"], "ok");
}

/// An agent whose one action, `look`, answers with the audit log's text as
/// it is while the action runs.
struct Probe {
    ddl: Ddl,
    log: PathBuf,
}

impl Probe {
    fn new(log: &Path) -> Probe {
        let ddl = Ddl::from_json(
            r#"{"metadata": {"name": "probe"},
                "actions": [{"action": "look",
                             "input": {"password": {"type": "string", "optional": true}}}]}"#,
        )
        .unwrap();
        Probe {
            ddl,
            log: log.to_path_buf(),
        }
    }
}

impl Agent for Probe {
    fn ddl(&self) -> &Ddl {
        &self.ddl
    }

    fn call(&self, _: &Node, _: &str, _: &Request) -> ActionFuture {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        ready(Ok(json!({ "log": text })))
    }
}

#[tokio::test]
async fn the_accepted_line_is_written_before_the_agent_runs() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let mut node = node_from(&write_setup(dir.path(), &log, "")).unwrap();
    node.add_agent(Arc::new(Probe::new(&log)));
    let alice = TestPki::shared().credential("alice.mcollective");
    let reply = ask(
        &node,
        &alice,
        "probe",
        "look",
        json!({"password": "hunter2"}),
    )
    .await;
    assert_eq!(reply.statuscode, StatusCode::Ok, "{reply:?}");
    // What the agent saw: its own accepted line, and no finished one yet.
    let seen: Vec<Value> = reply.data["log"]
        .as_str()
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["event"], "accepted");
    assert_eq!(seen[0]["request_id"], reply.request_id);
    assert_eq!(seen[0]["data"], json!({"password": "[redacted]"}));
    let after = lines(&log);
    assert_eq!(after.len(), 2);
    assert_eq!(after[1]["event"], "finished");
    assert_eq!(after[1]["outcome"], "ok");
}

#[tokio::test]
async fn a_node_refuses_requests_it_cannot_audit() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    std::os::unix::fs::symlink("/dev/full", &log).unwrap();
    let alice = TestPki::shared().credential("alice.mcollective");
    for (extra, runs) in [("", false), ("plugin.rpcaudit.on_failure = allow\n", true)] {
        let here = tempfile::tempdir_in(dir.path()).unwrap();
        let mut node = node_from(&write_setup(here.path(), &log, extra)).unwrap();
        let probe_log = here.path().join("ran");
        std::fs::write(&probe_log, "ran").unwrap();
        node.add_agent(Arc::new(Probe::new(&probe_log)));
        let reply = ask(&node, &alice, "probe", "look", json!({})).await;
        if runs {
            assert_eq!(reply.statuscode, StatusCode::Ok, "{reply:?}");
            assert_eq!(reply.data["log"], "ran");
        } else {
            assert_eq!(reply.statuscode, StatusCode::Aborted, "{reply:?}");
            assert!(reply.statusmsg.starts_with(audit::REFUSED), "{reply:?}");
            assert!(reply.statusmsg.contains("ENOSPC"), "{reply:?}");
            assert!(reply.data.get("log").is_none(), "{reply:?}");
        }
    }
}

// ---- AuditLog itself ----

/// A request from alice's client, with `inputs`.
fn request(action: &str, inputs: Value) -> Request {
    let Value::Object(data) = inputs else {
        panic!("inputs must be an object");
    };
    Request::new("client1", "user=alice", "mcollective", "service", action).with_data(data)
}

fn inputs(request: &Request) -> &Map<String, Value> {
    &request.data
}

const ALICE: &str = "alice.mcollective";

/// A log at `dir/audit.log` with the default settings but `on_failure`.
fn open_in(dir: &Path, on_failure: OnFailure) -> (AuditLog, PathBuf) {
    let path = dir.join("audit.log");
    let log = AuditLog::open(&Settings {
        on_failure,
        ..Settings::new(&path)
    })
    .unwrap();
    (log, path)
}

/// The log's mode bits.
fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn the_accepted_line_is_on_disk_before_finished() {
    let dir = tempfile::tempdir().unwrap();
    let (log, path) = open_in(dir.path(), OnFailure::Deny);
    let r = request("restart", json!({"service": "nginx"}));
    let entry = log.accepted(&r, ALICE, "user=alice", inputs(&r)).unwrap();
    assert_eq!(entry.request_id(), r.id);
    // The action runs now: the log already says so.
    let during = lines(&path);
    assert_eq!(during.len(), 1, "{during:?}");
    assert_eq!(fields(&during[0]), ACCEPTED_FIELDS);
    assert_eq!(during[0]["event"], "accepted");
    assert_eq!(during[0]["request_id"], r.id);
    assert_eq!(during[0]["caller"], ALICE);
    assert_eq!(during[0]["claimed_caller"], "user=alice");
    assert_eq!(during[0]["agent"], "service");
    assert_eq!(during[0]["action"], "restart");
    assert_eq!(during[0]["data"], json!({"service": "nginx"}));
    std::thread::sleep(Duration::from_millis(30));
    entry.finished(audit::Outcome::Failed, StatusCode::UnknownError);
    let after = lines(&path);
    assert_eq!(after.len(), 2);
    assert_eq!(after[0], during[0]);
    assert_eq!(fields(&after[1]), FINISHED_FIELDS);
    assert_eq!(after[1]["event"], "finished");
    assert_eq!(after[1]["request_id"], r.id);
    assert_eq!(after[1]["caller"], ALICE);
    assert_eq!(after[1]["outcome"], "failed");
    assert_eq!(after[1]["statuscode"], 5);
    let took = after[1]["duration_ms"].as_u64().unwrap();
    assert!((30..10_000).contains(&took), "{took}");
    assert_eq!(log.unwritten(), 0);
}

#[test]
fn a_request_refused_before_running_is_one_finished_line() {
    let dir = tempfile::tempdir().unwrap();
    let (log, path) = open_in(dir.path(), OnFailure::Deny);
    let r = request("restart", json!({"service": "nginx", "token": "t0k"}));
    log.refused(
        &r,
        "bob.mcollective",
        "user=bob",
        inputs(&r),
        audit::Outcome::Denied,
        StatusCode::Aborted,
    );
    let lines = lines(&path);
    assert_eq!(lines.len(), 1);
    assert_eq!(fields(&lines[0]), REFUSED_FIELDS);
    assert_eq!(lines[0]["event"], "finished");
    assert_eq!(lines[0]["outcome"], "denied");
    assert_eq!(lines[0]["statuscode"], 1);
    assert_eq!(lines[0]["duration_ms"], 0);
    assert_eq!(
        lines[0]["data"],
        json!({"service": "nginx", "token": "[redacted]"})
    );
}

/// Set in the child process of the crash test: the log it writes to.
const CRASH_LOG: &str = "MUSTER_AUDIT_TEST_CRASH_LOG";

#[test]
fn a_crash_mid_action_leaves_the_accepted_line() {
    if let Some(path) = std::env::var_os(CRASH_LOG) {
        // The child: accept a request, then die mid-action, unwinding nothing.
        let log = AuditLog::open(&Settings::new(PathBuf::from(path))).unwrap();
        let r = request("stop", json!({"service": "sshd"}));
        let _entry = log.accepted(&r, ALICE, "user=alice", inputs(&r)).unwrap();
        std::process::abort();
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "audit::a_crash_mid_action_leaves_the_accepted_line",
            "--exact",
        ])
        .env(CRASH_LOG, &path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGABRT), "{status:?}");
    let lines = lines(&path);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["event"], "accepted");
    assert_eq!(lines[0]["action"], "stop");
    assert_eq!(lines[0]["data"], json!({"service": "sshd"}));
}

#[test]
fn an_action_that_panics_is_abandoned() {
    let dir = tempfile::tempdir().unwrap();
    let (log, path) = open_in(dir.path(), OnFailure::Deny);
    let r = request("restart", json!({}));
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _entry = log.accepted(&r, ALICE, "user=alice", inputs(&r)).unwrap();
        panic!("the agent panicked");
    }));
    assert!(panicked.is_err());
    let lines = lines(&path);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[1]["event"], "finished");
    assert_eq!(lines[1]["request_id"], r.id);
    assert_eq!(lines[1]["outcome"], "abandoned");
    assert_eq!(lines[1]["statuscode"], 5);
}

/// A log file that is a symlink to `/dev/full`, where every write fails
/// with ENOSPC as on a full disk.
fn full_disk(dir: &Path) -> PathBuf {
    let path = dir.join("audit.log");
    std::os::unix::fs::symlink("/dev/full", &path).unwrap();
    path
}

#[test]
fn on_a_full_disk_deny_refuses_the_request() {
    let dir = tempfile::tempdir().unwrap();
    let path = full_disk(dir.path());
    let log = AuditLog::open(&Settings::new(&path)).unwrap();
    assert_eq!(log.on_failure(), OnFailure::Deny, "the default");
    let ((), logged) = Logs::capturing(|| {
        for _ in 0..3 {
            let r = request("restart", json!({"service": "nginx"}));
            let err = log
                .accepted(&r, ALICE, "user=alice", inputs(&r))
                .err()
                .expect("accepted must fail on a full disk");
            let text = err.to_string();
            assert!(text.contains("ENOSPC"), "{text}");
            assert!(text.contains(&path.display().to_string()), "{text}");
            assert_eq!(err.io_error().raw_os_error(), Some(libc::ENOSPC));
            assert_eq!(err.path(), path);
            let reply = err.reply_message();
            assert!(reply.starts_with(audit::REFUSED), "{reply}");
            assert!(reply.contains("ENOSPC"), "{reply}");
        }
        // Lines for requests that did not run just fail, and count.
        let r = request("restart", json!({}));
        log.refused(
            &r,
            ALICE,
            "user=alice",
            inputs(&r),
            audit::Outcome::Invalid,
            StatusCode::InvalidData,
        );
    });
    assert_eq!(log.unwritten(), 4);
    // One error for the run of failures; the rest at debug.
    let errors = logged.at(tracing::Level::ERROR);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("ENOSPC") && errors[0].contains("on_failure = deny"),
        "{errors:?}"
    );
    assert_eq!(logged.at(tracing::Level::DEBUG).len(), 3);
}

#[test]
fn on_a_full_disk_allow_runs_the_request_with_one_warning() {
    let dir = tempfile::tempdir().unwrap();
    let path = full_disk(dir.path());
    let log = AuditLog::open(&Settings {
        on_failure: OnFailure::Allow,
        ..Settings::new(&path)
    })
    .unwrap();
    let ((), logged) = Logs::capturing(|| {
        for _ in 0..3 {
            let r = request("restart", json!({"service": "nginx"}));
            let entry = log
                .accepted(&r, ALICE, "user=alice", inputs(&r))
                .expect("allow lets the request run");
            entry.finished(audit::Outcome::Ok, StatusCode::Ok);
        }
    });
    assert_eq!(log.unwritten(), 6);
    let warnings = logged.at(tracing::Level::WARN);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("ENOSPC") && warnings[0].contains("unaudited"),
        "{warnings:?}"
    );
    assert!(logged.at(tracing::Level::ERROR).is_empty());
    assert_eq!(logged.at(tracing::Level::DEBUG).len(), 5);
}

#[test]
fn a_removed_file_is_recreated_and_a_removed_directory_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let (log, path) = open_in(&logs, OnFailure::Deny);
    let r = request("restart", json!({}));
    log.accepted(&r, ALICE, "", inputs(&r))
        .unwrap()
        .finished(audit::Outcome::Ok, StatusCode::Ok);

    // Moved away (rotated): the next line starts a new file, mode 0600.
    let rotated = logs.join("audit.log.1");
    std::fs::rename(&path, &rotated).unwrap();
    let r2 = request("restart", json!({}));
    let entry = log.accepted(&r2, ALICE, "", inputs(&r2)).unwrap();
    assert_eq!(lines(&rotated).len(), 2);
    assert_eq!(lines(&path)[0]["request_id"], r2.id);
    assert_eq!(mode(&path), 0o600);

    // Removed: the finished line goes to a new file.
    std::fs::remove_file(&path).unwrap();
    entry.finished(audit::Outcome::Ok, StatusCode::Ok);
    assert_eq!(lines(&path)[0]["event"], "finished");
    assert_eq!(lines(&path)[0]["request_id"], r2.id);

    // Removed with its directory: nowhere to write, so the request is refused.
    std::fs::remove_dir_all(&logs).unwrap();
    let ((), logged) = Logs::capturing(|| {
        let r3 = request("restart", json!({}));
        let err = log.accepted(&r3, ALICE, "", inputs(&r3)).err().unwrap();
        assert!(err.to_string().contains("ENOENT"), "{err}");
        assert!(err.to_string().contains("cannot reopen"), "{err}");
        // The directory comes back: so does the log, with a note.
        std::fs::create_dir(&logs).unwrap();
        let r4 = request("restart", json!({}));
        drop(log.accepted(&r4, ALICE, "", inputs(&r4)).unwrap());
    });
    assert_eq!(lines(&path).len(), 2);
    assert_eq!(logged.at(tracing::Level::ERROR).len(), 1);
    let infos = logged.at(tracing::Level::INFO).join("\n");
    assert!(infos.contains("writable again"), "{infos}");
}

#[test]
fn a_new_log_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, path) = open_in(dir.path(), OnFailure::Deny);
    assert_eq!(mode(&path), 0o600);
}

#[test]
fn an_existing_log_open_to_others_is_kept_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    for (mode_before, warned) in [(0o644, true), (0o640, true), (0o600, false)] {
        std::fs::write(&path, "").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode_before)).unwrap();
        let (log, logged) = Logs::capturing(|| AuditLog::open(&Settings::new(&path)).unwrap());
        drop(log);
        let warnings = logged.at(tracing::Level::WARN);
        assert_eq!(warnings.len(), usize::from(warned), "{warnings:?}");
        if warned {
            assert!(
                warnings[0].contains(&format!("{mode_before:04o}")),
                "{warnings:?}"
            );
        }
        // Not changed behind the operator's back.
        assert_eq!(mode(&path), mode_before);
    }
}

#[test]
fn a_log_that_is_not_a_regular_file_is_not_synced() {
    // fsync on a character device or a pipe fails (EINVAL); that must not
    // refuse requests.
    let log = AuditLog::open(&Settings::new("/dev/null")).unwrap();
    let r = request("restart", json!({}));
    log.accepted(&r, ALICE, "", inputs(&r))
        .unwrap()
        .finished(audit::Outcome::Ok, StatusCode::Ok);
    assert_eq!(log.unwritten(), 0);
}

#[test]
fn secret_looking_names_are_redacted_by_default() {
    let table = [
        // (name, redacted by default)
        ("password", true),
        ("Password", true),
        ("db_password", true),
        ("DBPASSWORD", true),
        ("passwd", true),
        ("ssh_passphrase", true),
        ("token", true),
        ("X-Auth-Token", true),
        ("refresh_tokens", true),
        ("secret", true),
        ("client_secret", true),
        ("credentials", true),
        ("key", true),
        ("api_key", true),
        ("apiKey", true),
        ("APIKEY", true),
        ("sshkey", true),
        ("private-keys", true),
        ("key_id", true),
        ("pass", true),
        ("db_pass", true),
        ("dbPass", true),
        ("pwd", true),
        ("auth", true),
        ("keyboard", false),
        ("keyspace", false),
        ("passive", false),
        ("compass", false),
        ("author", false),
        ("service", false),
        ("query", false),
        ("package", false),
    ];
    for (name, expected) in table {
        assert_eq!(audit::redacted_by_default(name), expected, "{name}");
    }
    let all: Map<String, Value> = table
        .iter()
        .map(|(name, _)| (name.to_string(), json!(format!("value of {name}"))))
        .collect();
    let r = request("restart", Value::Object(all.clone()));
    let logged = |settings: Settings| {
        let log = AuditLog::open(&settings).unwrap();
        drop(log.accepted(&r, ALICE, "", inputs(&r)).unwrap());
        let lines = lines(&settings.file);
        let accepted = lines.iter().rev().find(|l| l["event"] == "accepted");
        accepted.unwrap()["data"].clone()
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.log");

    // The defaults.
    let data = logged(Settings::new(&file));
    for (name, redacted) in table {
        let expected = if redacted {
            json!(audit::REDACTED)
        } else {
            all[name].clone()
        };
        assert_eq!(data[name], expected, "{name}");
    }
    // The defaults and more names.
    let data = logged(Settings {
        redact: vec!["QUERY".into(), "service".into()],
        ..Settings::new(&file)
    });
    assert_eq!(data["query"], audit::REDACTED);
    assert_eq!(data["service"], audit::REDACTED);
    assert_eq!(data["password"], audit::REDACTED);
    assert_eq!(data["keyboard"], all["keyboard"]);
    // Only the names listed.
    let data = logged(Settings {
        redact: vec!["password".into()],
        redact_defaults: false,
        ..Settings::new(&file)
    });
    assert_eq!(data["password"], audit::REDACTED);
    assert_eq!(data["Password"], audit::REDACTED);
    assert_eq!(data["db_password"], all["db_password"]);
    assert_eq!(data["token"], all["token"]);
}

#[test]
fn redaction_reaches_into_objects_and_lists() {
    let dir = tempfile::tempdir().unwrap();
    let (log, path) = open_in(dir.path(), OnFailure::Deny);
    let r = request(
        "resource",
        json!({
            "type": "user",
            "properties": {"name": "bob", "password": "$6$hash", "groups": ["wheel"]},
            "token": {"whole": "object"},
            "hosts": [{"host": "db1", "api_key": "k1"}, "plain"],
        }),
    );
    drop(log.accepted(&r, ALICE, "", inputs(&r)).unwrap());
    let text = std::fs::read_to_string(&path).unwrap();
    for secret in ["$6$hash", "object", "k1"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    assert_eq!(
        lines(&path)[0]["data"],
        json!({
            "type": "user",
            "properties": {"name": "bob", "password": "[redacted]", "groups": ["wheel"]},
            "token": "[redacted]",
            "hosts": [{"host": "db1", "api_key": "[redacted]"}, "plain"],
        })
    );
}

#[test]
fn concurrent_writers_never_interleave() {
    let dir = tempfile::tempdir().unwrap();
    let (log, path) = open_in(dir.path(), OnFailure::Deny);
    const THREADS: usize = 8;
    const EACH: usize = 40;
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let log = &log;
            scope.spawn(move || {
                for i in 0..EACH {
                    // Long lines, each thread's its own letter.
                    let filler = char::from(b'a' + t as u8).to_string().repeat(20_000 + i);
                    let r = request("restart", json!({ "note": filler }));
                    let entry = log.accepted(&r, ALICE, "", inputs(&r)).unwrap();
                    entry.finished(audit::Outcome::Ok, StatusCode::Ok);
                }
            });
        }
    });
    let lines = lines(&path);
    assert_eq!(lines.len(), THREADS * EACH * 2);
    let requests = by_request(&lines);
    assert_eq!(requests.len(), THREADS * EACH);
    for (id, lines) in requests {
        assert_eq!(lines.len(), 2, "{id}");
        assert_eq!(lines[0]["event"], "accepted", "{id}");
        assert_eq!(lines[1]["event"], "finished", "{id}");
        let note = lines[0]["data"]["note"].as_str().unwrap();
        let first = note.chars().next().unwrap();
        assert!(note.chars().all(|c| c == first), "{id}: mixed line");
    }
}
