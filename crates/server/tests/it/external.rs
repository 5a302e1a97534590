//! External agents with real processes: the example agent shipped in
//! `examples/agents`, and agents written by each test into a temporary
//! directory that hang, fail, lie or shout — each loaded through
//! `agents::for_config` and called through `Node::handle` like any request.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use muster_pki::Credential;
use muster_protocol::config::Config;
use muster_protocol::{Envelope, Reply, Request, StatusCode};
use muster_server::fleet::simulated_node;
use muster_server::node::Outcome;
use muster_server::{agents, Agent, Node, ServerConfig};
use muster_testkit::TestPki;
use serde_json::{json, Map, Value};

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/agents")
}

/// The agents `for_config` loads with `plugin.external.agents_dir = dirs`.
fn load(dirs: &[&Path]) -> Result<Vec<Arc<dyn Agent>>, String> {
    let dirs: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    let text = format!(
        "identity = node01\nplugin.external.agents_dir = {}\n",
        dirs.join(", ")
    );
    let settings = Config::parse(&text).map_err(|e| e.to_string())?;
    let config = ServerConfig::from_config(&settings).map_err(|e| e.to_string())?;
    agents::for_config(&config).map_err(|e| e.to_string())
}

/// Only the agents loaded from agent directories, by name.
fn external_names(agents: &[Arc<dyn Agent>]) -> Vec<String> {
    let mut names: Vec<String> = agents
        .iter()
        .map(|a| a.ddl().metadata.name.clone())
        .filter(|n| !muster_protocol::ddl::builtin_names().contains(&n.as_str()))
        .collect();
    names.sort();
    names
}

/// A node trusting the shared test CA, running the agents found in
/// `dirs`, and its caller `alice.mcollective`.
struct Fixture {
    node: Node,
    alice: Credential,
}

impl Fixture {
    fn new(dirs: &[&Path]) -> Fixture {
        let pki = TestPki::shared();
        let alice = pki.credential("alice.mcollective");
        let mut node = simulated_node("node01", 1, pki.authority());
        for agent in load(dirs).unwrap_or_else(|e| panic!("loading agents: {e}")) {
            node.add_agent(agent);
        }
        Fixture { node, alice }
    }

    async fn call(&self, agent: &str, action: &str, inputs: Value) -> Reply {
        let Value::Object(data) = inputs else {
            panic!("inputs must be an object");
        };
        self.request(
            Request::new("client1", self.alice.name(), "mcollective", agent, action)
                .with_data(data),
        )
        .await
    }

    async fn request(&self, request: Request) -> Reply {
        let envelope = Envelope::seal(&request, &self.alice).expect("a request signs");
        match self.node.handle(&envelope.to_bytes()).await {
            Outcome::Reply { reply, .. } => {
                assert_eq!(reply.request_id, request.id);
                reply
            }
            other => panic!("expected a reply, got {other:?}"),
        }
    }
}

/// A temporary agents directory the test writes agents into.
struct AgentDir {
    dir: tempfile::TempDir,
}

impl AgentDir {
    fn new() -> AgentDir {
        AgentDir {
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `<name>.json` with one action per entry of `actions` (each
    /// taking an optional string input `text` and giving an output
    /// `answer` that defaults to 42) and the program `<name>` running
    /// `script`.
    fn agent(&self, name: &str, timeout: u64, actions: &[&str], script: &str) -> PathBuf {
        self.ddl(name, &ddl(name, timeout, actions));
        self.program(name, script, 0o755)
    }

    fn ddl(&self, file_stem: &str, ddl: &str) {
        write(&self.path().join(format!("{file_stem}.json")), ddl, 0o644);
    }

    fn program(&self, name: &str, script: &str, mode: u32) -> PathBuf {
        let path = self.path().join(name);
        write(&path, script, mode);
        path
    }
}

/// A fresh file each time, closed before it is made executable.
fn write(path: &Path, text: &str, mode: u32) {
    let mut file = std::fs::File::create(path).expect("create");
    file.write_all(text.as_bytes()).expect("write");
    file.sync_all().expect("sync");
    drop(file);
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn ddl(name: &str, timeout: u64, actions: &[&str]) -> String {
    let actions: Vec<Value> = actions
        .iter()
        .map(|action| {
            json!({
                "action": action,
                "description": "test action",
                "input": {"text": {"prompt": "Text", "description": "anything", "type": "string", "optional": true}},
                "output": {"answer": {"description": "an answer", "display_as": "Answer", "default": 42}},
            })
        })
        .collect();
    json!({
        "metadata": {"name": name, "description": "test agent", "author": "tests", "version": "1.0",
                     "license": "Apache-2.0", "timeout": timeout},
        "actions": actions,
    })
    .to_string()
}

fn data(reply: &Reply) -> &Map<String, Value> {
    reply
        .data
        .as_object()
        .unwrap_or_else(|| panic!("reply data is not an object: {reply:?}"))
}

/// Whether a process still runs (a zombie waiting for its reaper does not).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        Ok(stat) => {
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.trim().chars().next());
            !matches!(state, Some('Z') | Some('X') | None)
        }
    }
}

fn read_pid(path: &Path) -> i32 {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("{}: {text:?}: {e}", path.display()))
}

#[tokio::test]
async fn example_agent_echoes_and_reports_the_hostname() {
    let examples = examples_dir();
    let f = Fixture::new(&[&examples]);

    let reply = f.call("hello", "echo", json!({"message": "hi"})).await;
    assert_eq!(reply.statuscode, StatusCode::Ok, "{reply:?}");
    assert_eq!(reply.statusmsg, "OK");
    assert_eq!(reply.data, json!({"message": "hi", "length": 2}));

    // Characters, not bytes.
    let reply = f
        .call("hello", "echo", json!({"message": "héllo wörld"}))
        .await;
    assert_eq!(reply.statuscode, StatusCode::Ok, "{reply:?}");
    assert_eq!(reply.data, json!({"message": "héllo wörld", "length": 11}));

    let reply = f.call("hello", "hostname", json!({})).await;
    assert_eq!(reply.statuscode, StatusCode::Ok, "{reply:?}");
    assert_eq!(reply.data, json!({"hostname": muster_server::hostname()}));

    let reply = f.call("hello", "nosuch", json!({})).await;
    assert_eq!(reply.statuscode, StatusCode::UnknownAction, "{reply:?}");
}

#[test]
fn example_ddl_is_choria_layout_with_an_aggregate() {
    let text = std::fs::read_to_string(examples_dir().join("hello.json")).expect("hello.json");
    let ddl = muster_protocol::ddl::Ddl::from_json(&text).expect("hello.json parses");
    assert_eq!(ddl.metadata.name, "hello");
    assert_eq!(ddl.action_names(), ["echo", "hostname"]);
    let echo = ddl.action("echo").expect("echo");
    assert!(!echo.input["message"].optional);
    assert!(echo.output.contains_key("message") && echo.output.contains_key("length"));
    assert_eq!(echo.aggregate[0].function, "summary");
    assert_eq!(echo.aggregate[0].args, [json!("message")]);
    let loaded = load(&[&examples_dir()]).expect("loads");
    assert_eq!(external_names(&loaded), ["hello"]);
}

#[tokio::test]
async fn hung_agent_is_killed_with_its_children_at_the_timeout() {
    let dir = AgentDir::new();
    let pid_file = dir.path().join("sleepy.pid");
    let child_file = dir.path().join("sleepy.child");
    dir.agent(
        "sleepy",
        1,
        &["run"],
        &format!(
            "#!/bin/sh\necho $$ > {}\nsleep 30 &\necho $! > {}\nwait\n",
            pid_file.display(),
            child_file.display()
        ),
    );
    let f = Fixture::new(&[dir.path()]);

    let started = Instant::now();
    let reply = f.call("sleepy", "run", json!({})).await;
    let took = started.elapsed();
    assert_eq!(reply.statuscode, StatusCode::Aborted, "{reply:?}");
    assert_eq!(reply.statusmsg, "agent sleepy timed out after 1 s");
    assert!(
        took >= Duration::from_millis(900),
        "answered after {took:?}"
    );
    assert!(took < Duration::from_secs(5), "answered after {took:?}");

    let pids = [read_pid(&pid_file), read_pid(&child_file)];
    let deadline = Instant::now() + Duration::from_secs(3);
    while pids.iter().any(|&p| alive(p)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for pid in pids {
        assert!(!alive(pid), "process {pid} survived the timeout");
    }
}

#[tokio::test]
async fn failing_agents_give_clear_failed_replies() {
    let dir = AgentDir::new();
    dir.agent(
        "crash",
        5,
        &["run"],
        "#!/bin/sh\necho 'checking the disk' >&2\necho 'disk on fire' >&2\nexit 3\n",
    );
    dir.agent("mute", 5, &["run"], "#!/bin/sh\nexit 1\n");
    dir.agent(
        "garbage",
        5,
        &["run"],
        "#!/bin/sh\necho 'this is not json'\n",
    );
    dir.agent("shout", 10, &["run"], "#!/bin/sh\nexec yes\n");
    dir.agent(
        "denied",
        5,
        &["run"],
        "#!/bin/sh\necho '{\"statuscode\": 4, \"statusmsg\": \"no such user\", \"data\": {}}'\n",
    );
    let f = Fixture::new(&[dir.path()]);

    let reply = f.call("crash", "run", json!({})).await;
    assert_eq!(reply.statuscode, StatusCode::Aborted, "{reply:?}");
    assert_eq!(
        reply.statusmsg,
        "agent crash exited with code 3: disk on fire"
    );

    let reply = f.call("mute", "run", json!({})).await;
    assert_eq!(reply.statuscode, StatusCode::Aborted, "{reply:?}");
    assert_eq!(
        reply.statusmsg,
        "agent mute exited with code 1 (nothing on stderr)"
    );

    let reply = f.call("garbage", "run", json!({})).await;
    assert_eq!(reply.statuscode, StatusCode::UnknownError, "{reply:?}");
    assert!(
        reply
            .statusmsg
            .starts_with("agent garbage wrote invalid JSON: "),
        "{reply:?}"
    );
    assert!(reply.statusmsg.contains("this is not json"), "{reply:?}");

    // Stopped as soon as it passes the cap, not at its 10 s timeout.
    let started = Instant::now();
    let reply = f.call("shout", "run", json!({})).await;
    assert_eq!(reply.statuscode, StatusCode::UnknownError, "{reply:?}");
    assert_eq!(
        reply.statusmsg,
        "agent shout wrote more than 1048576 bytes to stdout"
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    let reply = f.call("denied", "run", json!({})).await;
    assert_eq!(reply.statuscode, StatusCode::InvalidData, "{reply:?}");
    assert_eq!(reply.statusmsg, "no such user");
}

#[tokio::test]
async fn agent_that_ignores_stdin_still_answers() {
    let dir = AgentDir::new();
    dir.agent("deaf", 5, &["run"], "#!/bin/sh\necho '{\"ok\": true}'\n");
    let f = Fixture::new(&[dir.path()]);
    // More than a pipe buffer, so writing it would block if nobody reads.
    let text = "x".repeat(300 * 1024);
    for inputs in [json!({}), json!({ "text": text })] {
        let reply = f.call("deaf", "run", inputs).await;
        assert_eq!(reply.statuscode, StatusCode::Ok, "{reply:?}");
        assert_eq!(reply.data, json!({"ok": true, "answer": 42}));
    }
}

#[tokio::test]
async fn request_arrives_on_stdin_in_a_clean_environment() {
    let dir = AgentDir::new();
    dir.agent(
        "inspect",
        5,
        &["look"],
        "#!/usr/bin/env python3\nimport json, os, sys\n\
         request = json.load(sys.stdin)\n\
         json.dump({\"stdin\": request, \"env\": dict(os.environ), \"cwd\": os.getcwd()}, sys.stdout)\n",
    );
    let f = Fixture::new(&[dir.path()]);
    // The request claims a caller; the agent sees the certificate's name.
    let mut request = Request::new("laptop-7", "user=alice", "storage", "inspect", "look")
        .with_data(Map::from_iter([("text".to_string(), json!("hi"))]));
    request.id = "0123456789abcdef0123456789abcdef".to_string();
    let reply = f.request(request).await;
    assert_eq!(reply.statuscode, StatusCode::Ok, "{reply:?}");
    let data = data(&reply);
    assert_eq!(
        data["stdin"],
        json!({
            "protocol": 1,
            "agent": "inspect",
            "action": "look",
            "data": {"text": "hi"},
            "caller": "alice.mcollective",
            "request_id": "0123456789abcdef0123456789abcdef",
            "sender": "laptop-7",
            "collective": "storage",
        })
    );
    let env = data["env"].as_object().expect("env");
    assert_eq!(env["MUSTER_AGENT"], "inspect");
    assert_eq!(env["MUSTER_ACTION"], "look");
    assert_eq!(env["MUSTER_REQUEST_ID"], "0123456789abcdef0123456789abcdef");
    assert!(env.contains_key("PATH"), "{env:?}");
    for hidden in ["HOME", "CARGO_MANIFEST_DIR", "CARGO_PKG_NAME"] {
        assert!(!env.contains_key(hidden), "{hidden} leaked: {env:?}");
    }
    assert_eq!(data["cwd"], "/");
}

#[tokio::test]
async fn replies_are_enveloped_or_bare_data_and_checked() {
    let dir = AgentDir::new();
    // Prints its `text` input verbatim, so each case is one reply.
    dir.agent(
        "parrot",
        5,
        &["say"],
        "#!/usr/bin/env python3\nimport json, sys\nsys.stdout.write(json.load(sys.stdin)[\"data\"].get(\"text\", \"\"))\n",
    );
    let f = Fixture::new(&[dir.path()]);
    type Expected = (StatusCode, &'static str, Value);
    let ok = |data: Value| (StatusCode::Ok, "OK", data);
    let failed = |code: StatusCode, message: &'static str| (code, message, json!({}));
    let cases: Vec<(&str, Expected)> = vec![
        (r#"{"message": "hi"}"#, ok(json!({"message": "hi", "answer": 42}))),
        (r#"{"data": {"answer": 7}}"#, ok(json!({"answer": 7}))),
        (
            r#"{"statuscode": 0, "statusmsg": "OK", "data": {"a": 1}}"#,
            ok(json!({"a": 1, "answer": 42})),
        ),
        ("{\"a\": 1}\n\n", ok(json!({"a": 1, "answer": 42}))),
        // An output called "data" beside other outputs is just data.
        (r#"{"data": 1, "size": 2}"#, ok(json!({"data": 1, "size": 2, "answer": 42}))),
        (
            r#"{"statuscode": 1, "statusmsg": "could not do it"}"#,
            failed(StatusCode::Aborted, "could not do it"),
        ),
        (r#"{"statuscode": 3}"#, failed(StatusCode::MissingData, "agent parrot failed")),
        (
            r#"{"statuscode": 6}"#,
            failed(
                StatusCode::UnknownError,
                "agent parrot wrote an invalid reply: statuscode must be a whole number 0-5, found 6",
            ),
        ),
        (
            r#"{"statuscode": -1}"#,
            failed(
                StatusCode::UnknownError,
                "agent parrot wrote an invalid reply: statuscode must be a whole number 0-5, found -1",
            ),
        ),
        (
            r#"{"statuscode": 0, "size": 2}"#,
            failed(
                StatusCode::UnknownError,
                "agent parrot wrote an invalid reply: unknown key \"size\" beside statuscode (put outputs under \"data\")",
            ),
        ),
        (
            r#"{"statuscode": 0, "data": [1]}"#,
            failed(
                StatusCode::UnknownError,
                "agent parrot wrote an invalid reply: data must be an object, found an array",
            ),
        ),
        (
            "[1, 2]",
            failed(
                StatusCode::UnknownError,
                "agent parrot wrote invalid JSON: expected an object, found an array",
            ),
        ),
        (
            "",
            failed(
                StatusCode::UnknownError,
                "agent parrot wrote invalid JSON: nothing on stdout",
            ),
        ),
    ];
    for (printed, (code, message, data)) in cases {
        let reply = f.call("parrot", "say", json!({ "text": printed })).await;
        assert_eq!(reply.statuscode, code, "{printed:?}: {reply:?}");
        assert_eq!(reply.statusmsg, message, "{printed:?}: {reply:?}");
        assert_eq!(reply.data, data, "{printed:?}: {reply:?}");
    }
}

#[test]
fn broken_agents_are_skipped_and_good_ones_load() {
    let first = AgentDir::new();
    let good = ddl("good", 5, &["run"]);
    first.agent("good", 5, &["run"], "#!/bin/sh\necho '{}'\n");
    first.ddl("broken", "{\"metadata\": {\"name\": \"broken\"");
    first.program("broken", "#!/bin/sh\n", 0o755);
    first.ddl("named", &ddl("other", 5, &["run"]));
    first.program("named", "#!/bin/sh\n", 0o755);
    first.ddl("noexec", &ddl("noexec", 5, &["run"]));
    first.program("noexec", "#!/bin/sh\n", 0o644);
    first.ddl("orphan", &ddl("orphan", 5, &["run"]));
    first.agent("rpcutil", 5, &["ping"], "#!/bin/sh\necho '{}'\n");
    // Not a DDL: ignored without a word.
    first.program("README", "not an agent", 0o644);

    let second = AgentDir::new();
    second.ddl("good", &good);
    second.program("good", "#!/bin/sh\necho '{\"second\": true}'\n", 0o755);
    second.agent("other", 5, &["run"], "#!/bin/sh\necho '{}'\n");

    let loaded = load(&[first.path(), second.path()]).expect("broken agents do not stop loading");
    assert_eq!(external_names(&loaded), ["good", "other"]);
    // rpcutil stays the built-in one.
    let rpcutil = loaded
        .iter()
        .filter(|a| a.ddl().metadata.name == "rpcutil")
        .count();
    assert_eq!(rpcutil, 0, "an external agent replaced rpcutil");

    let empty = AgentDir::new();
    assert_eq!(
        external_names(&load(&[empty.path()]).expect("empty dir")),
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn the_first_directory_wins_a_name_clash() {
    let first = AgentDir::new();
    first.agent(
        "twice",
        5,
        &["run"],
        "#!/bin/sh\necho '{\"from\": \"first\"}'\n",
    );
    let second = AgentDir::new();
    second.agent(
        "twice",
        5,
        &["run"],
        "#!/bin/sh\necho '{\"from\": \"second\"}'\n",
    );
    let f = Fixture::new(&[first.path(), second.path()]);
    let reply = f.call("twice", "run", json!({})).await;
    assert_eq!(reply.data["from"], "first", "{reply:?}");
}

#[test]
fn unreadable_agents_directory_is_an_error_naming_the_setting() {
    let dir = AgentDir::new();
    let missing = dir.path().join("nosuch");
    let err = match load(&[dir.path(), &missing]) {
        Ok(_) => panic!("a missing agents directory must be an error"),
        Err(e) => e,
    };
    assert!(err.contains("config:2:"), "{err}");
    assert!(
        err.contains(&format!(
            "cannot read agents directory {}",
            missing.display()
        )),
        "{err}"
    );
}
