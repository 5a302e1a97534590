//! The node checks every request against the agent's DDL before the
//! agent runs (docs/architecture.md#agents-and-ddls): signed requests go through `Node::handle` on a
//! simulated node, and the answers carry MCollective's status codes.

use muster_pki::Credential;
use muster_protocol::{ddl, Envelope, Reply, Request, StatusCode};
use muster_server::agents::Rpcutil;
use muster_server::fleet::simulated_node;
use muster_server::node::Outcome;
use muster_server::{Agent, Node};
use muster_testkit::TestPki;
use serde_json::{json, Map, Value};

/// `simulated_node(_, 1, _)` has OS family Debian and role db; it trusts
/// the shared test CA, whose `alice.mcollective` is the caller.
fn node() -> (Node, Credential) {
    let pki = TestPki::shared();
    let node = simulated_node("node01", 1, pki.authority());
    (node, pki.credential("alice.mcollective"))
}

fn object(value: &Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap_or_default()
}

/// Sends one signed rpcutil request and returns the node's reply.
async fn call(node: &Node, caller: &Credential, action: &str, inputs: &Value) -> Reply {
    muster_testkit::ask(node, caller, "rpcutil", action, inputs.clone()).await
}

#[tokio::test]
async fn requests_are_checked_against_the_ddl_before_the_agent_runs() {
    let (node, caller) = node();
    // (what, action, inputs, status, words the status message must contain)
    let cases: &[(&str, &str, Value, StatusCode, &[&str])] = &[
        (
            "required input missing",
            "get_fact",
            json!({}),
            StatusCode::MissingData,
            &["missing required input \"fact\""],
        ),
        (
            "fails the DDL's regex",
            "get_fact",
            json!({"fact": "a b"}),
            StatusCode::InvalidData,
            &["input \"fact\"", "\"a b\""],
        ),
        (
            "longer than maxlength",
            "get_fact",
            json!({"fact": "a".repeat(91)}),
            StatusCode::InvalidData,
            &["input \"fact\"", "91 characters"],
        ),
        (
            "unknown action",
            "nosuch",
            json!({}),
            StatusCode::UnknownAction,
            &["\"nosuch\""],
        ),
        (
            "input not in the DDL",
            "get_fact",
            json!({"fact": "os.family", "extra": 1}),
            StatusCode::InvalidData,
            &["unknown input \"extra\"", "fact"],
        ),
        (
            "wrong type",
            "get_facts",
            json!({"facts": ["role"]}),
            StatusCode::InvalidData,
            &["input \"facts\" must be a string"],
        ),
        (
            "inputs to an action that takes none",
            "ping",
            json!({"when": "now"}),
            StatusCode::InvalidData,
            &["unknown input \"when\""],
        ),
        (
            "good request",
            "get_fact",
            json!({"fact": "os.family"}),
            StatusCode::Ok,
            &["OK"],
        ),
    ];
    for (what, action, inputs, code, words) in cases {
        let reply = call(&node, &caller, action, inputs).await;
        assert_eq!(reply.statuscode, *code, "{what}: {reply:?}");
        for word in *words {
            assert!(
                reply.statusmsg.contains(word),
                "{what}: {:?} lacks {word:?}",
                reply.statusmsg
            );
        }
        if code.is_ok() {
            assert_eq!(reply.data, json!({"fact": "os.family", "value": "Debian"}));
        } else {
            assert_eq!(reply.data, json!({}), "{what}: no data on refusal");
        }
    }
}

#[tokio::test]
async fn the_agent_sees_the_converted_inputs() {
    // The DDL types `fact` as a string: a number becomes its text before
    // the agent sees it, as on the client.
    let (node, caller) = node();
    let reply = call(&node, &caller, "get_fact", &json!({"fact": 5})).await;
    assert_eq!(reply.statuscode, StatusCode::Ok, "{reply:?}");
    assert_eq!(reply.data["fact"], "5");
}

/// Inputs that pass the rpcutil DDL, per action that takes any.
fn valid_inputs(action: &str) -> Value {
    match action {
        "get_fact" => json!({"fact": "role"}),
        "get_facts" => json!({"facts": "role, os.family"}),
        "get_data" => json!({"source": "fact", "query": "role"}),
        "get_config_item" => json!({"item": "main_collective"}),
        _ => json!({}),
    }
}

#[tokio::test]
async fn every_rpcutil_ddl_action_is_implemented() {
    let (node, caller) = node();
    let rpcutil = ddl::builtin("rpcutil").expect("built in");
    assert!(!rpcutil.actions.is_empty());
    for action in rpcutil.action_names() {
        let inputs = valid_inputs(&action);
        let mut checked = object(&inputs);
        rpcutil
            .validate(&action, &mut checked)
            .unwrap_or_else(|e| panic!("the test's inputs for {action} are invalid: {e}"));
        let reply = call(&node, &caller, &action, &inputs).await;
        assert_ne!(
            reply.statuscode,
            StatusCode::UnknownAction,
            "{action} is in the DDL but not implemented: {}",
            reply.statusmsg
        );
        assert_eq!(reply.statuscode, StatusCode::Ok, "{action}: {reply:?}");
    }
}

#[tokio::test]
async fn every_action_rpcutil_implements_is_in_its_ddl() {
    // The agent is called directly, past the node's DDL check, with every
    // action name MCollective's and Choria's rpcutil have had and a few
    // that no rpcutil has: whatever it answers for must be in the DDL.
    let (node, caller) = node();
    let agent = Rpcutil;
    let rpcutil = agent.ddl();
    let candidates = [
        "ping",
        "inventory",
        "get_fact",
        "get_facts",
        "agent_inventory",
        "collective_info",
        "daemon_stats",
        "get_data",
        "get_config_item",
        "get_agent",
        "stats",
        "facts",
        "shutdown",
        "reload_agents",
        "",
        "nosuch",
    ];
    let mut implemented = Vec::new();
    for action in candidates {
        let request = Request::new("client1", caller.name(), "mcollective", "rpcutil", action)
            .with_data(object(&valid_inputs(action)));
        match agent.call(&node, action, &request).await {
            Err(e) if e.code == StatusCode::UnknownAction => {}
            _ => implemented.push(action.to_string()),
        }
    }
    for action in &implemented {
        assert!(
            rpcutil.action(action).is_some(),
            "rpcutil implements {action:?} but its DDL does not list it"
        );
    }
    let mut listed = rpcutil.action_names();
    listed.sort();
    implemented.sort();
    assert_eq!(implemented, listed, "implemented and described differ");
}

/// Every built-in agent serves exactly the actions its DDL lists: each
/// DDL action, given valid inputs, is not "unknown" (the tools behind it
/// are pointed at paths that do not exist, so nothing on this machine
/// changes), and an action outside the DDL is unknown to the agent too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_builtin_agent_implements_exactly_its_ddl() {
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("files");
    std::fs::create_dir(&files).unwrap();
    let text = format!(
        "identity = node01\nplugin.package.provider = apt\nplugin.package.dpkg_query = /nonexistent/dpkg-query\n\
         plugin.package.apt_get = /nonexistent/apt-get\nplugin.service.provider = sysv\n\
         plugin.service.initd = {}\nplugin.puppet.command = /nonexistent/puppet\n\
         plugin.filemgr.allowed_paths = {}\n",
        dir.path().display(),
        files.display()
    );
    let config = muster_server::ServerConfig::from_config(
        &muster_protocol::config::Config::parse(&text).unwrap(),
    )
    .unwrap();
    let (mut node, caller) = node();
    let agents = muster_server::agents::for_config(&config).unwrap();
    for agent in &agents {
        node.add_agent(agent.clone());
    }
    let names: Vec<String> = agents
        .iter()
        .map(|a| a.ddl().metadata.name.clone())
        .collect();
    for builtin in ["filemgr", "package", "puppet", "service"] {
        assert!(
            names.contains(&builtin.to_string()),
            "{builtin} is not registered: {names:?}"
        );
    }
    let file = files.join("x").display().to_string();
    let candidates = [
        json!("muster-none"),
        json!(file),
        json!("file"),
        json!(true),
        json!(1),
        json!({"ensure": "file"}),
    ];
    for agent in agents
        .iter()
        .filter(|a| names.contains(&a.ddl().metadata.name))
    {
        let ddl = agent.ddl();
        let name = &ddl.metadata.name;
        for action in &ddl.actions {
            let mut inputs = Map::new();
            for (input, spec) in &action.input {
                if spec.optional || spec.default.is_some() {
                    continue;
                }
                let good = candidates.iter().find(|value| {
                    let mut trial = inputs.clone();
                    trial.insert(input.clone(), (*value).clone());
                    match action.validate(&mut trial) {
                        Ok(()) => true,
                        Err(e) => e.input != *input,
                    }
                });
                let good = good.unwrap_or_else(|| {
                    panic!("no test value fits {name} {} {input}", action.action)
                });
                inputs.insert(input.clone(), good.clone());
            }
            let request = Request::new("c", caller.name(), "mcollective", name, &action.action)
                .with_data(inputs.clone());
            let reply = match node
                .handle(&Envelope::seal(&request, &caller).unwrap().to_bytes())
                .await
            {
                Outcome::Reply { reply, .. } => reply,
                other => panic!("{name} {}: {other:?}", action.action),
            };
            assert_ne!(
                reply.statuscode,
                StatusCode::UnknownAction,
                "{name} {} with {inputs:?}: {}",
                action.action,
                reply.statusmsg
            );
        }
        let request = Request::new("c", caller.name(), "mcollective", name, "not_in_any_ddl");
        let outside = agent.call(&node, "not_in_any_ddl", &request).await;
        assert_eq!(
            outside.err().map(|e| e.code),
            Some(StatusCode::UnknownAction),
            "{name}"
        );
    }
}

/// Answers with the inputs the node let through, under the DDL of the
/// `typed` fixture (Choria's layout, every input type and validator).
struct Echo {
    ddl: muster_protocol::ddl::Ddl,
}

impl Agent for Echo {
    fn ddl(&self) -> &muster_protocol::ddl::Ddl {
        &self.ddl
    }

    fn call(
        &self,
        _node: &Node,
        _action: &str,
        request: &Request,
    ) -> muster_server::agent::ActionFuture {
        let data = Value::Object(request.data.clone());
        Box::pin(async move { Ok(json!({ "status": "ok", "request": data })) })
    }
}

#[tokio::test]
async fn a_choria_ddl_is_enforced_by_the_node_as_choria_does() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../protocol/tests/fixtures/choria-ddl/typed.json");
    let text = std::fs::read_to_string(&path).expect("the typed fixture");
    let ddl = muster_protocol::ddl::Ddl::from_json(&text).expect("it parses");
    let (mut node, caller) = node();
    node.add_agent(std::sync::Arc::new(Echo { ddl }));
    let ask = |action: &'static str, inputs: Value| {
        let (node, caller) = (&node, &caller);
        async move { muster_testkit::ask(node, caller, "typed", action, inputs).await }
    };

    // What a Choria client sends: typed values, defaults it added itself
    // (one failing its own validation), JSON text in a string input.
    let reply = ask(
        "echo",
        json!({"config": "{\"a\":\"b\"}", "format": "json", "count": 3, "label": "",
               "options": {"k": 1}, "names": ["x"]}),
    )
    .await;
    assert_eq!(reply.statuscode, StatusCode::Ok, "{reply:?}");
    assert_eq!(
        reply.data["request"],
        json!({"config": "{\"a\":\"b\"}", "format": "json", "count": 3, "label": "",
               "options": {"k": 1}, "names": ["x"], "force": false})
    );
    // What a client without the DDL sends: text, typed by the node.
    let reply = ask(
        "echo",
        json!({"count": "3", "options": "{\"k\":1}", "names": "[\"x\"]", "force": "yes"}),
    )
    .await;
    assert_eq!(reply.statuscode, StatusCode::Ok, "{reply:?}");
    assert_eq!(reply.data["request"]["count"], 3);
    assert_eq!(reply.data["request"]["options"], json!({"k": 1}));
    assert_eq!(reply.data["request"]["names"], json!(["x"]));
    assert_eq!(reply.data["request"]["force"], true);

    // (action, inputs, words the refusal must contain)
    let refused: &[(&str, Value, &[&str])] = &[
        (
            "echo",
            json!({"format": "yaml"}),
            &["must be one of ddl, json"],
        ),
        (
            "echo",
            json!({"format": ["json"]}),
            &["must be one of ddl, json"],
        ),
        ("echo", json!({"config": {"a": "b"}}), &["must be a string"]),
        (
            "echo",
            json!({"label": "Upper"}),
            &["failed validation ^[a-z]+$"],
        ),
        (
            "check",
            json!({"service": "a b"}),
            &["not a valid service name"],
        ),
        (
            "check",
            json!({"command": "a && b"}),
            &["may not contain '&&'"],
        ),
        ("check", json!({"interval": "soon"}), &["not a duration"]),
    ];
    for (action, inputs, words) in refused {
        let reply = ask(action, inputs.clone()).await;
        assert_eq!(
            reply.statuscode,
            StatusCode::InvalidData,
            "{inputs}: {reply:?}"
        );
        for word in *words {
            assert!(
                reply.statusmsg.contains(word),
                "{inputs}: {:?}",
                reply.statusmsg
            );
        }
    }
    let accepted = json!({"service": "nginx", "site": "x; y", "ipv4": "::ffff:10.0.0.1",
                          "version": "1.2", "tags": "a,b::c", "server": "[::1]:8140"});
    let reply = ask("check", accepted.clone()).await;
    assert_eq!(reply.statuscode, StatusCode::Ok, "{reply:?}");
}
