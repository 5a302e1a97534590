//! External agents with real processes, speaking Choria's external-agent
//! protocol: the example agent shipped in `examples/agents`, and agents
//! written by each test into a temporary directory that hang, fail, lie or
//! decline to activate — each loaded through `agents::for_config` and
//! called through `Node::handle` like any request.

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

const ACTIVATION: &str = "io.choria.mcorpc.external.v1.activation_request";
const RPC: &str = "io.choria.mcorpc.external.v1.rpc_request";

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/agents")
}

/// The agents `for_config` loads with `plugin.external.agents_dir = dirs`
/// and the `extra` settings.
fn load_with(dirs: &[&Path], extra: &str) -> Result<Vec<Arc<dyn Agent>>, String> {
    let dirs: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    let text = format!(
        "identity = node01\nplugin.external.agents_dir = {}\n{extra}",
        dirs.join(", ")
    );
    let settings = Config::parse(&text).map_err(|e| e.to_string())?;
    let config = ServerConfig::from_config(&settings).map_err(|e| e.to_string())?;
    agents::for_config(&config).map_err(|e| e.to_string())
}

fn load(dirs: &[&Path]) -> Result<Vec<Arc<dyn Agent>>, String> {
    load_with(dirs, "")
}

/// Only the agents loaded from agent directories, by name.
fn external_names(agents: &[Arc<dyn Agent>]) -> Vec<String> {
    let mut names: Vec<String> = agents
        .iter()
        .filter(|a| a.origin() != muster_server::agent::Origin::Builtin)
        .map(|a| a.ddl().metadata.name.clone())
        .collect();
    names.sort();
    names
}

/// Every agent's name, with `+` for an external one.
fn all_names(agents: &[Arc<dyn Agent>]) -> Vec<String> {
    let mut names: Vec<String> = agents
        .iter()
        .map(|a| match a.origin() {
            muster_server::agent::Origin::Builtin => a.ddl().metadata.name.clone(),
            _ => format!("+{}", a.ddl().metadata.name),
        })
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
    /// `answer` that defaults to 42) and the shell program `<name>`, which
    /// activates and then runs `body` for each request.
    fn agent(&self, name: &str, timeout: u64, actions: &[&str], body: &str) -> PathBuf {
        self.ddl(name, &ddl(name, timeout, actions));
        self.program(name, &shell_agent(body), 0o755)
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

/// A shell agent that says yes to the activation check and runs `body`
/// for requests; `$2` is the reply file.
fn shell_agent(body: &str) -> String {
    format!(
        "#!/bin/sh\nif [ \"$CHORIA_EXTERNAL_PROTOCOL\" = {ACTIVATION} ]; then\n  \
         echo '{{\"activate\": true}}' > \"$CHORIA_EXTERNAL_REPLY\"\n  exit 0\nfi\n{body}\n"
    )
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
        "$schema": "https://choria.io/schemas/mcorpc/ddl/v1/agent.json",
        "metadata": {"name": name, "description": "test agent", "author": "tests", "version": "1.0",
                     "license": "Apache-2.0", "timeout": timeout, "provider": "external"},
        "actions": actions,
    })
    .to_string()
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
async fn the_request_file_arguments_and_environment_are_choria_s() {
    let dir = AgentDir::new();
    let seen = dir.path().join("seen.json");
    dir.ddl("inspect", &ddl("inspect", 5, &["look"]));
    dir.program(
        "inspect",
        &format!(
            "#!/usr/bin/env python3\nimport json, os, sys\n\
             protocol = os.environ['CHORIA_EXTERNAL_PROTOCOL']\n\
             with open(sys.argv[1]) as f: request = json.load(f)\n\
             with open(os.environ['CHORIA_EXTERNAL_FACTS']) as f: facts = json.load(f)\n\
             seen = {{'request': request, 'argv': sys.argv[1:], 'env': dict(os.environ),\n\
                      'cwd': os.getcwd(), 'cwd_entries': sorted(os.listdir('.')), 'facts': facts}}\n\
             with open({seen:?}, 'a') as f: f.write(json.dumps(seen) + '\\n')\n\
             print('this line is a log, not the reply')\n\
             reply = {{'activate': True}} if protocol == '{ACTIVATION}' else \\\n\
                 {{'statuscode': 0, 'statusmsg': 'OK', 'data': {{'answer': 1}}}}\n\
             with open(sys.argv[2], 'w') as f: json.dump(reply, f)\n",
            seen = seen.display().to_string()
        ),
        0o755,
    );
    let f = Fixture::new(&[dir.path()]);
    // The request claims a caller; the agent sees the certificate's name.
    let mut request = Request::new("laptop-7", "user=alice", "storage", "inspect", "look")
        .with_data(Map::from_iter([("text".to_string(), json!("hi"))]));
    request.id = "0123456789abcdef0123456789abcdef".to_string();
    request.ttl = 30;
    let reply = f.request(request.clone()).await;
    assert_eq!(reply.statuscode, StatusCode::Ok, "{reply:?}");
    assert_eq!(reply.data, json!({"answer": 1}));

    let text = std::fs::read_to_string(&seen).expect("the agent ran");
    let runs: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(runs.len(), 2, "the activation check, then the request");
    let (activation, run) = (&runs[0], &runs[1]);
    assert_eq!(
        activation["request"],
        json!({
            "$schema": "https://choria.io/schemas/mcorpc/external/v1/activation_request.json",
            "protocol": ACTIVATION,
            "agent": "inspect",
        })
    );
    assert_eq!(activation["argv"][2], ACTIVATION);
    assert_eq!(
        run["request"],
        json!({
            "$schema": "https://choria.io/schemas/mcorpc/external/v1/rpc_request.json",
            "protocol": RPC,
            "agent": "inspect",
            "action": "look",
            "requestid": "0123456789abcdef0123456789abcdef",
            "senderid": "laptop-7",
            "callerid": "alice.mcollective",
            "collective": "storage",
            "ttl": 30,
            "msgtime": request.time / 1000,
            "data": {"text": "hi"},
        })
    );
    let env = run["env"].as_object().expect("env");
    let argv: Vec<&str> = run["argv"]
        .as_array()
        .expect("argv")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(argv.len(), 3, "{argv:?}");
    assert_eq!(env["CHORIA_EXTERNAL_REQUEST"], argv[0]);
    assert_eq!(env["CHORIA_EXTERNAL_REPLY"], argv[1]);
    assert_eq!(argv[2], RPC);
    assert_eq!(env["CHORIA_EXTERNAL_PROTOCOL"], RPC);
    assert_eq!(
        env["CHORIA_EXTERNAL_CONFIG"],
        "/etc/muster/plugin.d/inspect"
    );
    assert!(env.contains_key("CHORIA_EXTERNAL_FACTS"), "{env:?}");
    assert!(env.contains_key("PATH"), "{env:?}");
    for hidden in ["HOME", "CARGO_MANIFEST_DIR", "CARGO_PKG_NAME"] {
        assert!(!env.contains_key(hidden), "{hidden} leaked: {env:?}");
    }
    // A fresh working directory holding the run's files, gone afterwards.
    let cwd = run["cwd"].as_str().expect("cwd");
    assert_ne!(cwd, activation["cwd"].as_str().expect("cwd"));
    for file in &argv[..2] {
        assert_eq!(Path::new(file).parent(), Some(Path::new(cwd)), "{file}");
    }
    assert_eq!(
        run["cwd_entries"],
        json!(["facts.json", "reply.json", "request.json"])
    );
    assert!(!Path::new(cwd).exists(), "{cwd} was left behind");
    // The node's facts.
    assert_eq!(run["facts"], *f.node.facts());
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
            "echo $$ > {}\nsleep 30 &\necho $! > {}\nwait\n",
            pid_file.display(),
            child_file.display()
        ),
    );
    let f = Fixture::new(&[dir.path()]);

    let started = Instant::now();
    let reply = f.call("sleepy", "run", json!({})).await;
    let took = started.elapsed();
    assert_eq!(reply.statuscode, StatusCode::Aborted, "{reply:?}");
    assert_eq!(
        reply.statusmsg,
        "cannot call external agent sleepy#run: it did not finish within 1 s and was killed"
    );
    assert!(
        took >= Duration::from_millis(900),
        "answered after {took:?}"
    );

    let pids = [read_pid(&pid_file), read_pid(&child_file)];
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids.iter().any(|&p| alive(p)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for pid in pids {
        assert!(!alive(pid), "process {pid} survived the timeout");
    }
}

#[tokio::test]
async fn misbehaving_agents_give_clear_failed_replies() {
    let dir = AgentDir::new();
    dir.agent(
        "crash",
        5,
        &["run"],
        "echo 'checking the disk' >&2\necho 'disk on fire' >&2\necho '{\"statuscode\": 0}' > \"$2\"\nexit 3",
    );
    dir.agent("mute", 5, &["run"], "exit 1");
    dir.agent("silent", 5, &["run"], "echo 'all done, honest'");
    dir.agent("vanish", 5, &["run"], "rm \"$2\"");
    dir.agent("garbage", 5, &["run"], "echo 'this is not json' > \"$2\"");
    dir.agent("endless", 5, &["run"], "rm \"$2\"; ln -s /dev/zero \"$2\"");
    dir.agent(
        "huge",
        5,
        &["run"],
        "head -c 1100000 /dev/zero | tr '\\0' x > \"$2\"",
    );
    // Megabytes on stdout are a log (its end is kept), not a failure.
    dir.agent(
        "chatty",
        10,
        &["run"],
        "yes | head -c 3000000\necho '{\"data\": {\"answer\": 1}}' > \"$2\"",
    );
    dir.agent(
        "denied",
        5,
        &["run"],
        "echo '{\"statuscode\": 4, \"statusmsg\": \"no such user\", \"data\": {\"user\": \"bob\"}}' > \"$2\"",
    );
    let f = Fixture::new(&[dir.path()]);

    let cases = [
        ("crash", "it exited with code 3: disk on fire"),
        ("mute", "it exited with code 1 (nothing on stderr)"),
        ("silent", "it wrote no reply (the reply file is empty)"),
        ("vanish", "cannot read its reply file: No such file or directory"),
        ("garbage", "its reply is not JSON: expected ident at line 1 column 2 (it began \"this is not json\")"),
        ("huge", "its reply file holds 1100000 bytes, more than the 1048576 allowed"),
        ("endless", "its reply file was replaced by something that is not a regular file"),
    ];
    for (agent, why) in cases {
        let reply = f.call(agent, "run", json!({})).await;
        assert_eq!(reply.statuscode, StatusCode::Aborted, "{agent}: {reply:?}");
        let expected = format!("cannot call external agent {agent}#run: {why}");
        assert!(
            reply.statusmsg.starts_with(&expected),
            "{agent}: {:?} should start {expected:?}",
            reply.statusmsg
        );
    }

    let reply = f.call("chatty", "run", json!({})).await;
    assert_eq!(reply.statuscode, StatusCode::Ok, "{reply:?}");
    assert_eq!(reply.data, json!({"answer": 1}));

    // The agent's own failure passes through, data and all.
    let reply = f.call("denied", "run", json!({})).await;
    assert_eq!(reply.statuscode, StatusCode::InvalidData, "{reply:?}");
    assert_eq!(reply.statusmsg, "no such user");
    assert_eq!(reply.data, json!({"user": "bob", "answer": 42}));
}

#[tokio::test]
async fn replies_are_read_from_the_reply_file_and_checked() {
    let dir = AgentDir::new();
    // Writes its `text` input verbatim to the reply file.
    dir.ddl("parrot", &ddl("parrot", 5, &["say"]));
    dir.program(
        "parrot",
        &format!(
            "#!/usr/bin/env python3\nimport json, os, sys\n\
             request = json.load(open(sys.argv[1]))\n\
             out = '{{\"activate\": true}}' if sys.argv[3] == '{ACTIVATION}' else request['data'].get('text', '')\n\
             open(sys.argv[2], 'w').write(out)\n"
        ),
        0o755,
    );
    let f = Fixture::new(&[dir.path()]);
    type Expected = (StatusCode, &'static str, Value);
    let ok = |data: Value| (StatusCode::Ok, "OK", data);
    let aborted = |message: &'static str| (StatusCode::Aborted, message, json!({}));
    let cases: Vec<(&str, Expected)> = vec![
        (r#"{"data": {"answer": 7}}"#, ok(json!({"answer": 7}))),
        (
            r#"{"statuscode": 0, "statusmsg": "", "data": {"a": 1}}"#,
            ok(json!({"a": 1, "answer": 42})),
        ),
        // What Choria ignores, muster ignores.
        (
            r#"{"statuscode": 0, "data": {"a": 1}, "disableresponse": false}"#,
            ok(json!({"a": 1, "answer": 42})),
        ),
        ("{}\n\n", ok(json!({"answer": 42}))),
        (
            r#"{"statuscode": 1, "statusmsg": "could not do it"}"#,
            (StatusCode::Aborted, "could not do it", json!({"answer": 42})),
        ),
        (
            r#"{"statuscode": 3}"#,
            (StatusCode::MissingData, "agent parrot failed", json!({"answer": 42})),
        ),
        (
            r#"{"statuscode": 6}"#,
            aborted("cannot call external agent parrot#say: its reply's statuscode must be a whole number 0-5, found 6"),
        ),
        (
            r#"{"statuscode": 0, "data": [1]}"#,
            aborted("cannot call external agent parrot#say: its reply's data must be an object, found an array"),
        ),
        (
            r#"{"message": "hi"}"#,
            aborted("cannot call external agent parrot#say: its reply has none of statuscode, statusmsg and data (it has message); put outputs under \"data\""),
        ),
        (
            "[1, 2]",
            aborted("cannot call external agent parrot#say: its reply must be a JSON object, found an array"),
        ),
    ];
    for (written, (code, message, data)) in cases {
        let reply = f.call("parrot", "say", json!({ "text": written })).await;
        assert_eq!(reply.statuscode, code, "{written:?}: {reply:?}");
        assert_eq!(reply.statusmsg, message, "{written:?}: {reply:?}");
        assert_eq!(reply.data, data, "{written:?}: {reply:?}");
    }
}

#[test]
fn only_agents_whose_activation_check_says_yes_are_offered() {
    let dir = AgentDir::new();
    dir.agent("willing", 5, &["run"], "exit 0");
    let check = |name: &str, activation: &str| {
        dir.ddl(name, &ddl(name, 5, &["run"]));
        dir.program(
            name,
            &format!("#!/bin/sh\nif [ \"$3\" = {ACTIVATION} ]; then\n{activation}\nfi\nexit 0\n"),
            0o755,
        );
    };
    check("declines", "echo '{\"activate\": false}' > \"$2\"; exit 0");
    check("garbled", "echo 'sure, why not' > \"$2\"; exit 0");
    check("unsure", "echo '{\"activate\": \"yes\"}' > \"$2\"; exit 0");
    check("wordless", "exit 0");
    check("failing", "echo '{\"activate\": true}' > \"$2\"; exit 2");
    check("stuck", "sleep 20");
    let started = Instant::now();
    let loaded = load(&[dir.path()]).expect("loads");
    assert_eq!(external_names(&loaded), ["willing"]);
    // The stuck one was given up on at its 2 s limit, not waited for.
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[test]
fn broken_agents_are_skipped_and_good_ones_load() {
    let first = AgentDir::new();
    let good = ddl("good", 5, &["run"]);
    first.agent("good", 5, &["run"], "echo '{}' > \"$2\"");
    first.ddl("broken", "{\"metadata\": {\"name\": \"broken\"");
    first.program("broken", &shell_agent(""), 0o755);
    first.ddl("named", &ddl("other", 5, &["run"]));
    first.program("named", &shell_agent(""), 0o755);
    first.ddl("noexec", &ddl("noexec", 5, &["run"]));
    first.program("noexec", &shell_agent(""), 0o644);
    first.ddl("orphan", &ddl("orphan", 5, &["run"]));
    first.agent("rpcutil", 5, &["ping"], "echo '{}' > \"$2\"");
    // Another of Choria's providers: not an external agent.
    first.ddl(
        "compiled",
        &ddl("compiled", 5, &["run"]).replace("\"external\"", "\"golang\""),
    );
    first.program("compiled", &shell_agent(""), 0o755);
    // Not a DDL: ignored without a word.
    first.program("README", "not an agent", 0o644);

    let second = AgentDir::new();
    second.ddl("good", &good);
    second.program(
        "good",
        &shell_agent("echo '{\"data\": {\"second\": true}}' > \"$2\""),
        0o755,
    );
    second.agent("other", 5, &["run"], "echo '{}' > \"$2\"");

    let loaded = load(&[first.path(), second.path()]).expect("broken agents do not stop loading");
    assert_eq!(external_names(&loaded), ["good", "other"]);
    // rpcutil stays the built-in one (Node::new adds it).
    assert!(!all_names(&loaded).iter().any(|n| n.contains("rpcutil")));

    let empty = AgentDir::new();
    assert_eq!(
        external_names(&load(&[empty.path()]).expect("empty dir")),
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn choria_s_directory_layouts_and_platform_programs_load() {
    let dir = AgentDir::new();
    // <dir>/<name>/<name>.json with its program beside it.
    let nested = dir.path().join("nested");
    std::fs::create_dir(&nested).expect("mkdir");
    write(
        &nested.join("nested.json"),
        &ddl("nested", 5, &["run"]),
        0o644,
    );
    write(
        &nested.join("nested"),
        &shell_agent("echo '{\"data\": {\"answer\": \"nested\"}}' > \"$2\""),
        0o755,
    );
    // A program built for this platform only, Go-style name.
    let platform = match (std::env::consts::OS, std::env::consts::ARCH) {
        ("linux", "x86_64") => "linux_amd64",
        ("linux", "aarch64") => "linux_arm64",
        (os, arch) => {
            eprintln!("skipping the platform program on {os}/{arch}");
            ""
        }
    };
    if !platform.is_empty() {
        dir.ddl("built", &ddl("built", 5, &["run"]));
        dir.program(
            &format!("built-{platform}"),
            &shell_agent("echo '{\"data\": {\"answer\": \"built\"}}' > \"$2\""),
            0o755,
        );
        // Another platform's build is not this one's.
        dir.ddl("foreign", &ddl("foreign", 5, &["run"]));
        dir.program("foreign-plan9_386", &shell_agent(""), 0o755);
    }
    let f = Fixture::new(&[dir.path()]);
    let reply = f.call("nested", "run", json!({})).await;
    assert_eq!(reply.data, json!({"answer": "nested"}), "{reply:?}");
    if !platform.is_empty() {
        let reply = f.call("built", "run", json!({})).await;
        assert_eq!(reply.data, json!({"answer": "built"}), "{reply:?}");
        assert_eq!(
            external_names(&load(&[dir.path()]).expect("loads")),
            ["built", "nested"]
        );
    }
}

#[tokio::test]
async fn the_first_directory_wins_a_name_clash() {
    let first = AgentDir::new();
    first.agent(
        "twice",
        5,
        &["run"],
        "echo '{\"data\": {\"from\": \"first\"}}' > \"$2\"",
    );
    let second = AgentDir::new();
    second.agent(
        "twice",
        5,
        &["run"],
        "echo '{\"data\": {\"from\": \"second\"}}' > \"$2\"",
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

#[tokio::test]
async fn activate_agent_turns_a_built_in_off_so_an_external_one_replaces_it() {
    let dir = AgentDir::new();
    dir.agent(
        "package",
        5,
        &["status"],
        "echo '{\"data\": {\"answer\": \"external package\"}}' > \"$2\"",
    );
    dir.agent("extra", 5, &["run"], "echo '{}' > \"$2\"");

    // By default the built-in runs and the external one is skipped.
    let loaded = load(&[dir.path()]).expect("loads");
    assert_eq!(
        all_names(&loaded),
        ["+extra", "filemgr", "package", "puppet", "service"]
    );

    for off in ["0", "n", "false", "no"] {
        let loaded = load_with(
            &[dir.path()],
            &format!("plugin.package.activate_agent = {off}\n"),
        )
        .expect("loads");
        assert_eq!(
            all_names(&loaded),
            ["+extra", "+package", "filemgr", "puppet", "service"],
            "{off}"
        );
    }

    // activate_agents = false turns every agent off but those turned on
    // one by one; rpcutil is not among them (Node::new always adds it).
    let loaded = load_with(
        &[dir.path()],
        "activate_agents = false\nplugin.service.activate_agent = 1\n",
    )
    .expect("loads");
    assert_eq!(all_names(&loaded), ["+package", "service"]);
    let loaded = load_with(
        &[dir.path()],
        "activate_agents = false\nplugin.extra.activate_agent = yes\n",
    )
    .expect("loads");
    assert_eq!(all_names(&loaded), ["+extra", "+package"]);
    // A turned-off built-in's settings are not read.
    let loaded = load_with(
        &[dir.path()],
        "plugin.puppet.activate_agent = 0\nplugin.extra.activate_agent = 0\n",
    )
    .expect("loads");
    assert_eq!(all_names(&loaded), ["filemgr", "package", "service"]);

    // A node with the replacement serves it, and says so in agent_inventory.
    let pki = TestPki::shared();
    let alice = pki.credential("alice.mcollective");
    let mut node = simulated_node("node01", 1, pki.authority());
    for agent in load_with(&[dir.path()], "plugin.package.activate_agent = 0\n").expect("loads") {
        node.add_agent(agent);
    }
    let f = Fixture { node, alice };
    let reply = f.call("package", "status", json!({})).await;
    assert_eq!(
        reply.data,
        json!({"answer": "external package"}),
        "{reply:?}"
    );
    let reply = f.call("rpcutil", "agent_inventory", json!({})).await;
    assert_eq!(reply.statuscode, StatusCode::Ok, "{reply:?}");
    let agents = reply.data["agents"].as_array().expect("agents");
    let entry = |name: &str| {
        agents
            .iter()
            .find(|a| a["agent"] == name)
            .unwrap_or_else(|| panic!("{name} in {agents:?}"))
    };
    assert_eq!(entry("package")["provider"], "external");
    assert_eq!(
        entry("package")["executable"],
        dir.path().join("package").display().to_string()
    );
    assert_eq!(
        entry("package")["ddl"],
        dir.path().join("package.json").display().to_string()
    );
    assert_eq!(entry("package")["name"], "package");
    assert_eq!(entry("package")["version"], "1.0");
    assert_eq!(entry("rpcutil")["provider"], "builtin");
    assert!(entry("rpcutil").get("executable").is_none());
}

#[test]
fn activation_settings_must_be_flags_and_are_checked_for_any_agent() {
    let dir = AgentDir::new();
    let err = match load_with(&[dir.path()], "plugin.package.activate_agent = maybe\n") {
        Ok(_) => panic!("maybe is not a flag"),
        Err(e) => e,
    };
    assert!(err.contains("config:3"), "{err}");
    let config = Config::parse(
        "plugin.package.activate_agent = 0\nplugin.my_agent.activate_agent = 1\nactivate_agents = n\n",
    )
    .expect("parses");
    let report = config.check(muster_protocol::config::ConfigFile::Server);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let config = Config::parse("plugin.package.activate_agent = sometimes\n").expect("parses");
    let report = config.check(muster_protocol::config::ConfigFile::Server);
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
}

#[test]
fn output_is_logged_bounded_and_ruby_ddls_are_warned_about_once() {
    let dir = AgentDir::new();
    dir.agent(
        "noisy",
        10,
        &["run"],
        "i=1\nwhile [ $i -le 300 ]; do echo \"line $i\"; i=$((i+1)); done\n\
         echo 'a word on stderr' >&2\necho '{\"data\": {\"answer\": 1}}' > \"$2\"",
    );
    std::fs::write(
        dir.path().join("legacy.ddl"),
        "metadata :name => \"legacy\"\n",
    )
    .expect("ddl");
    // A Ruby DDL with its JSON one beside it is not worth a word.
    std::fs::write(
        dir.path().join("noisy.ddl"),
        "metadata :name => \"noisy\"\n",
    )
    .expect("ddl");
    let (reply, logs) = muster_testkit::Logs::capturing(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        // Loaded twice, as a reload does: still one warning.
        let _ = load(&[dir.path()]).expect("loads");
        let f = Fixture::new(&[dir.path()]);
        runtime.block_on(f.call("noisy", "run", json!({})))
    });
    assert_eq!(reply.statuscode, StatusCode::Ok, "{reply:?}");
    assert_eq!(reply.data, json!({"answer": 1}));

    let warnings = logs.at(tracing::Level::WARN);
    let ruby: Vec<&String> = warnings
        .iter()
        .filter(|l| l.contains("mco plugin ddl2json"))
        .collect();
    assert_eq!(ruby.len(), 1, "{warnings:#?}");
    assert!(ruby[0].contains("legacy.ddl"), "{}", ruby[0]);
    assert!(
        warnings
            .iter()
            .any(|l| l.contains("stderr: a word on stderr")),
        "{warnings:#?}"
    );
    let infos = logs.at(tracing::Level::INFO);
    assert!(
        infos.iter().any(|l| l.contains("stdout: line 300")),
        "{infos:#?}"
    );
    assert!(
        !infos.iter().any(|l| l.contains("stdout: line 100 ")),
        "{infos:#?}"
    );
    assert!(
        infos.iter().any(|l| l.contains("stdout: line 101 ")),
        "{infos:#?}"
    );
    assert!(
        warnings
            .iter()
            .any(|l| l.contains("stdout: 100 earlier lines not logged")),
        "{warnings:#?}"
    );
}
