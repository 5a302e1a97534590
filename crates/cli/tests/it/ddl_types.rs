//! End to end: Choria DDL types and validators through a real `mco rpc`
//! and a real `mco server`. The agent is a shell script beside the
//! `typed` DDL fixture (Choria's published layout, in
//! crates/protocol/tests/fixtures/choria-ddl): it answers with the request
//! it was given, so the test sees what the agent receives.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use muster_testkit::{stderr, stdout, BrokerKind, Caller, NodeSetup, ServerProcess, TestBroker};
use serde_json::{json, Value};

const MCO: &str = env!("CARGO_BIN_EXE_mco");

/// Answers with the request it was given. Choria's external-agent
/// protocol passes request and reply files (and asks first whether to
/// activate); muster's older one used stdin and stdout. Either works.
const AGENT: &str = r#"#!/bin/sh
if [ $# -ge 2 ]; then
  request=$(cat "$1")
  case "$request" in
    *activation_request*) printf '{"activate": true}' > "$2"; exit 0 ;;
  esac
  printf '{"statuscode":0,"statusmsg":"OK","data":{"status":"ok","request":%s}}' "$request" > "$2"
else
  request=$(cat)
  printf '{"statuscode":0,"statusmsg":"OK","data":{"status":"ok","request":%s}}\n' "$request"
fi
"#;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../protocol/tests/fixtures/choria-ddl/typed.json")
}

struct Setup {
    _broker: TestBroker,
    _caller: Caller,
    _agents: tempfile::TempDir,
    config: String,
    server: ServerProcess,
}

impl Setup {
    async fn start() -> Setup {
        let broker = TestBroker::start(BrokerKind::Embedded).await;
        let caller = Caller::new("tester");
        let agents = tempfile::tempdir().expect("a temporary directory");
        std::fs::copy(fixture(), agents.path().join("typed.json")).expect("the typed fixture");
        let script = agents.path().join("typed");
        std::fs::write(&script, AGENT).expect("the agent");
        std::process::Command::new("chmod")
            .arg("755")
            .arg(&script)
            .status()
            .expect("chmod");
        let setting = format!("plugin.external.agents_dir = {}\n", agents.path().display());
        let server = ServerProcess::start(
            Path::new(MCO),
            &broker.url(),
            caller.pki(),
            &NodeSetup {
                identity: "node1",
                facts_yaml: "role: web\n",
                classes: &["base"],
                collectives: &[],
                settings: &setting,
            },
        );
        // The client reads the agent's DDL where the node does.
        let config = caller.client_config(&broker.url());
        let mut text = std::fs::read_to_string(&config).expect("client config");
        text.push_str(&setting);
        std::fs::write(&config, text).expect("client config");
        let setup = Setup {
            _broker: broker,
            _caller: caller,
            _agents: agents,
            config: config.display().to_string(),
            server,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ping = setup.run(&["ping", "-t", "1"]).await;
            if stdout(&ping).contains("node1 ") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node1 never answered: {}",
                setup.server.log()
            );
        }
        setup
    }

    async fn run(&self, args: &[&str]) -> Output {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--config", &self.config]);
        muster_testkit::run_mco(MCO, &all).await
    }

    /// Runs `typed ACTION inputs...` and returns the data the agent was given.
    async fn agent_sees(&self, action: &str, inputs: &[&str]) -> Value {
        let mut args = vec!["rpc", "typed", action];
        args.extend(inputs);
        args.push("--jsonl");
        let out = self.run(&args).await;
        assert!(
            out.status.success(),
            "{inputs:?}: exit {:?}\n{}\n{}\n{}",
            out.status.code(),
            stdout(&out),
            stderr(&out),
            self.server.log()
        );
        let text = stdout(&out);
        let reply: Value = text
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|line| line.get("sender").is_some())
            .unwrap_or_else(|| panic!("{inputs:?}: no reply in {text}"));
        reply["data"]["request"]["data"].clone()
    }

    /// Runs `typed ACTION inputs...`, which the client must refuse.
    async fn refused(&self, action: &str, inputs: &[&str], fragment: &str) {
        let mut args = vec!["rpc", "typed", action];
        args.extend(inputs);
        let out = self.run(&args).await;
        assert!(
            !out.status.success(),
            "{inputs:?} accepted: {}",
            stdout(&out)
        );
        assert!(
            stderr(&out).contains(fragment),
            "{inputs:?}: {:?} lacks {fragment:?}",
            stderr(&out)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mco_rpc_types_and_validates_inputs_as_choria_does() {
    let setup = Setup::start().await;

    // Typing follows the DDL: strings keep their text, a list arrives as
    // the chosen value, hash and array inputs as JSON; defaults are added,
    // one failing its own validation included.
    let seen = setup
        .agent_sees(
            "echo",
            &[
                r#"config={"a":"b"}"#,
                "format=ddl",
                "count=3",
                "ratio=0.5",
                "force=true",
                r#"options={"k":1}"#,
                r#"names=["x","y"]"#,
            ],
        )
        .await;
    assert_eq!(
        seen,
        json!({
            "config": r#"{"a":"b"}"#,
            "format": "ddl",
            "count": 3,
            "ratio": 0.5,
            "force": true,
            "options": {"k": 1},
            "names": ["x", "y"],
            "label": "",
        }),
    );
    let seen = setup.agent_sees("echo", &[]).await;
    assert_eq!(seen, json!({"format": "json", "force": false, "label": ""}));

    // Named validators are Choria's, checked by the client before sending.
    let seen = setup
        .agent_sees(
            "check",
            &[
                "service=nginx",
                "tags=apache,mysql::server",
                "server=puppet:8140",
                "interval=1h2m",
                "site=whatever; it is",
            ],
        )
        .await;
    assert_eq!(seen["service"], "nginx");
    assert_eq!(seen["site"], "whatever; it is");
    // A validator muster does not have passes, with a warning naming it.
    let out = setup
        .run(&["rpc", "typed", "check", "site=x", "--jsonl"])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("unknown DDL validator \"site_specific\""),
        "{}",
        stderr(&out)
    );
    setup
        .refused("echo", &["format=yaml"], "must be one of ddl, json")
        .await;
    setup
        .refused(
            "check",
            &["service=nginx; reboot"],
            "not a valid service name",
        )
        .await;
    setup
        .refused("echo", &["names=a,b"], "must be an array")
        .await;

    // Summaries use the DDL's format; an aggregate function muster does
    // not know is named, not dropped silently.
    let out = setup.run(&["rpc", "typed", "echo"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("ok -> 1 node(s)"), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("\"nettest_mma\"") && stderr(&out).contains("\"typed\""),
        "{}",
        stderr(&out)
    );
}
