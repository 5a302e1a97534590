//! `mco plugin ddl2json` on real MCollective Ruby DDLs (Choria's service
//! and package agents, unchanged), and a converted DDL serving a running
//! external agent through the broker.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use muster_protocol::ddl::Ddl;
use muster_testkit::{stderr, stdout, BrokerKind, Caller, NodeSetup, ServerProcess, TestBroker};
use serde_json::{Map, Value};

const MCO: &str = env!("CARGO_BIN_EXE_mco");

async fn mco(args: &[&str]) -> Output {
    muster_testkit::run_mco(MCO, args).await
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/ruby_ddl")
        .join(name)
}

/// `name` copied into a fresh directory, converted there.
async fn convert(name: &str, dir: &Path) -> (Output, PathBuf) {
    let ddl = dir.join(name);
    std::fs::copy(fixture(name), &ddl).expect("copy the fixture");
    let out = mco(&["plugin", "ddl2json", ddl.to_str().expect("utf-8")]).await;
    (out, ddl.with_extension("json"))
}

fn load(path: &Path) -> (Ddl, Value) {
    let text = std::fs::read_to_string(path).expect("the JSON was written");
    let ddl = Ddl::from_json(&text).unwrap_or_else(|e| panic!("muster loads {text}: {e}"));
    (ddl, serde_json::from_str(&text).expect("JSON"))
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

#[tokio::test]
async fn choria_service_ddl_converts_with_its_loop_unrolled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (out, json) = convert("service.ddl", dir.path()).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let (ddl, value) = load(&json);

    assert_eq!(value["$schema"], muster_protocol::ruby_ddl::SCHEMA);
    assert_eq!(ddl.metadata.name, "service");
    assert_eq!(ddl.metadata.version, "3.2.0");
    assert_eq!(ddl.metadata.timeout, 60);
    assert_eq!(
        ddl.action_names(),
        ["restart", "start", "status", "stop"],
        "{value}"
    );
    // As Choria's own service.json words them.
    for (action, display, description, after) in [
        (
            "restart",
            "failed",
            "Restart a service",
            "The status of the service after restarting",
        ),
        (
            "start",
            "failed",
            "Start a service",
            "The status of the service after starting",
        ),
        (
            "stop",
            "failed",
            "Stop a service",
            "The status of the service after stopping",
        ),
        (
            "status",
            "always",
            "Gets the status of a service",
            "The status of the service",
        ),
    ] {
        let found = value["actions"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["action"] == action))
            .unwrap_or_else(|| panic!("{action} in {value}"));
        assert_eq!(found["display"], display, "{action}");
        assert_eq!(found["description"], description, "{action}");
        assert_eq!(found["output"]["status"]["description"], after, "{action}");
        assert_eq!(found["output"]["status"]["default"], "unknown", "{action}");
        assert_eq!(found["input"]["service"]["validation"], "service_name");
        assert_eq!(found["input"]["service"]["maxlength"], 90);
        assert_eq!(found["input"]["service"]["optional"], false);
        assert_eq!(
            found["aggregate"],
            serde_json::json!([{ "function": "summary", "args": ["status"] }])
        );
    }

    // The one line with no JSON equivalent is named with its place.
    let err = stderr(&out);
    assert!(
        err.contains("service.ddl:9: requires :mcollective => \"2.2.1\" (left out"),
        "{err}"
    );
    assert!(err.contains("wrote "), "{err}");

    // The converted DDL checks requests as Choria does: a missing input is
    // refused, and `service_name` is the named validator, not a regex.
    let mut missing = Map::new();
    assert!(ddl.validate("restart", &mut missing).is_err());
    let mut nginx = Map::new();
    nginx.insert("service".into(), Value::from("nginx"));
    ddl.validate("restart", &mut nginx)
        .expect("service_name accepts nginx");
    let mut hostile = Map::new();
    hostile.insert("service".into(), Value::from("nginx; rm -rf /"));
    assert!(ddl.validate("restart", &mut hostile).is_err());
}

#[tokio::test]
async fn choria_package_ddl_converts_every_action() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (out, json) = convert("package.ddl", dir.path()).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let (ddl, value) = load(&json);
    assert_eq!(ddl.actions.len(), 14, "{value}");
    let install = ddl.action("install").expect("install");
    assert!(install.input.contains_key("version"), "{value}");
    assert_eq!(install.description, "Install a package");
    // `if act == 'install'` kept version to install alone.
    assert!(!ddl
        .action("update")
        .expect("update")
        .input
        .contains_key("version"));
    let clean = &value["actions"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["action"] == "yum_clean").cloned())
        .expect("yum_clean");
    assert_eq!(clean["input"]["mode"]["type"], "list");
    assert_eq!(clean["input"]["mode"]["list"][6], "expire-cache");
    assert_eq!(clean["display"], "failed");
    let status = ddl.action("status").expect("status");
    assert_eq!(status.aggregate.len(), 2);
    let mut good = object(serde_json::json!({ "package": "vim", "version": "2:9.0" }));
    ddl.validate("install", &mut good).expect("a good request");
    let mut hostile = object(serde_json::json!({ "package": "vim;reboot" }));
    assert!(ddl.validate("install", &mut hostile).is_err());

    // muster's own package agent answers every action the upstream DDL has.
    let builtin = muster_protocol::ddl::builtin("package").expect("built in");
    assert_eq!(builtin.action_names(), ddl.action_names());
    for action in &ddl.actions {
        let ours = builtin.action(&action.action).expect("the same action");
        for input in action.input.keys() {
            assert!(ours.input.contains_key(input), "{} {input}", action.action);
        }
        for output in action.output.keys() {
            assert!(
                ours.output.contains_key(output),
                "{} {output}",
                action.action
            );
        }
    }
}

/// Objects compared whatever their key order; arrays of actions by name.
fn same(ours: &Value, theirs: &Value, at: &str) {
    match (ours, theirs) {
        (Value::Object(a), Value::Object(b)) => {
            let keys = |m: &Map<String, Value>| {
                let mut k: Vec<String> = m.keys().cloned().collect();
                k.sort();
                k
            };
            assert_eq!(keys(a), keys(b), "{at}");
            for (key, value) in a {
                same(value, &b[key], &format!("{at}.{key}"));
            }
        }
        _ => assert_eq!(ours, theirs, "{at}"),
    }
}

#[tokio::test]
async fn a_conversion_agrees_with_the_json_choria_ships_beside_the_ddl() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (out, json) = convert("scout.ddl", dir.path()).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("left out") && !stderr(&out).contains("kept"),
        "{}",
        stderr(&out)
    );
    // muster's loader takes scout's `array` inputs: no warning.
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
    let ours: Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("written")).expect("JSON");
    let theirs: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("scout.json")).expect("scout.json"))
            .expect("JSON");
    same(&ours["metadata"], &theirs["metadata"], "metadata");
    let theirs_actions = theirs["actions"].as_array().expect("actions");
    for action in ours["actions"].as_array().expect("actions") {
        let name = action["action"].as_str().expect("a name");
        let upstream = theirs_actions
            .iter()
            .find(|a| a["action"] == name)
            .unwrap_or_else(|| panic!("{name} is not in Choria's JSON"));
        for key in ["display", "description", "input", "output"] {
            same(&action[key], &upstream[key], &format!("{name}.{key}"));
        }
        // Upstream's two files word the formats differently; the shape
        // (output name, then {"format": ...}) is the same.
        let shape = |a: &Value| -> Vec<(Value, Value, bool)> {
            a["aggregate"]
                .as_array()
                .map(|list| {
                    list.iter()
                        .map(|x| {
                            (
                                x["function"].clone(),
                                x["args"][0].clone(),
                                x["args"][1]["format"].is_string(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        assert_eq!(shape(action), shape(upstream), "{name}.aggregate");
    }
    assert_eq!(theirs_actions.len(), 5);
}

#[tokio::test]
async fn existing_json_is_kept_and_stdout_is_an_option() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (out, json) = convert("service.ddl", dir.path()).await;
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::write(&json, "{}").expect("write");
    let ddl = dir.path().join("service.ddl");
    let again = mco(&["plugin", "ddl2json", ddl.to_str().expect("utf-8")]).await;
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("exists; not overwritten"),
        "{}",
        stderr(&again)
    );
    assert_eq!(std::fs::read_to_string(&json).expect("read"), "{}");

    let printed = mco(&["plugin", "ddl2json", ddl.to_str().expect("utf-8"), "-"]).await;
    assert!(printed.status.success(), "{}", stderr(&printed));
    let value: Value = serde_json::from_str(&stdout(&printed)).expect("JSON on stdout");
    assert_eq!(value["metadata"]["name"], "service");

    let forced = mco(&[
        "plugin",
        "ddl2json",
        ddl.to_str().expect("utf-8"),
        "--force",
    ])
    .await;
    assert!(forced.status.success(), "{}", stderr(&forced));
    load(&json);
}

#[tokio::test]
async fn a_file_with_nothing_usable_fails_and_says_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ddl = dir.path().join("odd.ddl");
    std::fs::write(&ddl, "module MCollective\n  puts 'hi'\nend\n").expect("write");
    let out = mco(&["plugin", "ddl2json", ddl.to_str().expect("utf-8")]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("odd.ddl:1-3: module MCollective (left out"),
        "{err}"
    );
    assert!(err.contains("nothing usable"), "{err}");
    assert!(!ddl.with_extension("json").exists());

    let missing = mco(&["plugin", "ddl2json", "/nonexistent/muster/x.ddl"]).await;
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("/nonexistent/muster/x.ddl"),
        "{}",
        stderr(&missing)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_converted_ddl_serves_a_running_external_agent() {
    // The example agent with only a Ruby DDL beside it, converted in place.
    let agents = tempfile::tempdir().expect("tempdir");
    let program = agents.path().join("hello");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/agents/hello"),
        &program,
    )
    .expect("copy the example agent");
    let (out, json) = convert("hello.ddl", agents.path()).await;
    assert!(out.status.success(), "{}", stderr(&out));
    load(&json);

    let broker = TestBroker::start(BrokerKind::Embedded).await;
    let caller = Caller::new("tester");
    let agents_dir = format!("plugin.external.agents_dir = {}\n", agents.path().display());
    let server = ServerProcess::start(
        Path::new(MCO),
        &broker.url(),
        caller.pki(),
        &NodeSetup {
            identity: "node1",
            facts_yaml: "role: web\n",
            classes: &[],
            collectives: &[],
            settings: &agents_dir,
        },
    );
    let config = caller.client_config(&broker.url());
    let mut text = std::fs::read_to_string(&config).expect("client config");
    text.push_str(&agents_dir);
    std::fs::write(&config, text).expect("client config");
    let config = config.display().to_string();

    let deadline = Instant::now() + Duration::from_secs(30);
    let reply = loop {
        let out = mco(&[
            "rpc",
            "hello",
            "echo",
            "message=from a Ruby DDL",
            "--config",
            &config,
            "-I",
            "node1",
        ])
        .await;
        if out.status.success() && stdout(&out).contains("node1") {
            break out;
        }
        assert!(
            Instant::now() < deadline,
            "hello never answered: {}\n{}\n{}",
            stdout(&out),
            stderr(&out),
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let shown = stdout(&reply);
    assert!(shown.contains("from a Ruby DDL"), "{shown}");
    assert!(shown.contains("Summary of Message"), "{shown}");

    // The converted DDL's checks apply on the client.
    let bad = mco(&["rpc", "hello", "echo", "--config", &config, "-I", "node1"]).await;
    assert_eq!(bad.status.code(), Some(2), "{}", stdout(&bad));
    assert!(
        stderr(&bad).contains("missing required input \"message\""),
        "{}",
        stderr(&bad)
    );
}
