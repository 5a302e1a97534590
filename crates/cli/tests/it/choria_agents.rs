//! Agents written for Choria, run by a real `mco server` through a real
//! broker: an agent built on py-mco-agent from PyPI, unchanged, with its
//! activation check; a built-in agent replaced by an external one through
//! `plugin.<agent>.activate_agent`; a Ruby DDL left in an agents
//! directory; and `mco plugin doc` naming the DDL it shows.
//!
//! The py-mco-agent interpreter is `$MUSTER_PY_MCO_AGENT` (a venv's python
//! with py-mco-agent 0.4.0, which .ci/run makes); without it the
//! py-mco-agent test says loudly that it skipped (in CI it must not).

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use muster_testkit::{stderr, stdout, BrokerKind, Caller, NodeSetup, ServerProcess, TestBroker};
use serde_json::Value;

const MCO: &str = env!("CARGO_BIN_EXE_mco");

/// The agent from py-mco-agent's README, as its users write it: only the
/// `#!` line names the interpreter py-mco-agent is installed in.
const PARROT: &str = r#"
from choria_external.dispatcher import dispatch
from mco_agent import Agent, action, register_actions


# Subclass Agent and decorate it with the @register_actions
@register_actions
class Parrot(Agent):

    # Create a class method for your action and decorate it with @action
    @action
    def echo(self):
        # This example action just repeats the message input back to the caller
        prefix = self.config.get('prefix', '')
        if not prefix:
            self.logger.warning("Using default prefix!")
        self.reply.data['message'] = prefix + self.request.data['message']

    @action
    def invalid(self):
        self.reply.fail(1, "Invalid command")


if __name__ == '__main__':
    dispatch(Parrot)
"#;

/// The parrot DDL in Choria's JSON DDL layout (as py-mco-agent's example).
const PARROT_DDL: &str = r#"{
  "$schema": "https://choria.io/schemas/mcorpc/ddl/v1/agent.json",
  "metadata": {
    "name": "parrot",
    "description": "Example python agent",
    "author": "Ben Roberts <me@benroberts.net>",
    "license": "Apache-2.0",
    "version": "0.1",
    "url": "https://github.com/optiz0r/py-mco-agent",
    "provider": "external",
    "timeout": 10
  },
  "actions": [
    {
      "action": "echo",
      "input": {
        "message": {
          "prompt": "Message",
          "description": "Message to be repeated back",
          "type": "string",
          "optional": false
        }
      },
      "output": {
        "message": {
          "description": "Message",
          "display_as": "Message"
        }
      },
      "display": "always",
      "description": "Example task which returns the given message"
    },
    {
      "action": "invalid",
      "input": {},
      "output": {},
      "display": "failed",
      "description": "Example task which always fails"
    }
  ]
}
"#;

/// An agent that is not for this node: its activation check says no.
const SHY: &str = r#"
from choria_external.dispatcher import dispatch
from mco_agent import Agent, action, register_actions


@register_actions
class Shy(Agent):

    @staticmethod
    def should_activate():
        return False

    @action
    def hide(self):
        self.reply.data['where'] = 'here'


if __name__ == '__main__':
    dispatch(Shy)
"#;

const SHY_DDL: &str = r#"{
  "$schema": "https://choria.io/schemas/mcorpc/ddl/v1/agent.json",
  "metadata": {"name": "shy", "description": "Never activates", "author": "muster",
    "license": "Apache-2.0", "version": "1.0", "url": "https://example.org",
    "provider": "external", "timeout": 10},
  "actions": [{"action": "hide", "input": {}, "output": {"where": {"description": "Where",
    "display_as": "Where"}}, "display": "always", "description": "Hides"}]
}
"#;

/// A replacement package agent in plain shell: Choria's protocol needs
/// no library.
const PACKAGE: &str = r#"#!/bin/sh
if [ "$3" = io.choria.mcorpc.external.v1.activation_request ]; then
  echo '{"activate": true}' > "$2"
  exit 0
fi
echo "replacement package agent: $(cat "$1")"
printf '{"statuscode": 0, "statusmsg": "OK", "data": {"ensure": "from the replacement", "name": "dpkg"}}' > "$2"
"#;

const PACKAGE_DDL: &str = r#"{
  "$schema": "https://choria.io/schemas/mcorpc/ddl/v1/agent.json",
  "metadata": {"name": "package", "description": "A site's own package agent",
    "author": "ops", "license": "Apache-2.0", "version": "9.9.9", "url": "https://example.org",
    "provider": "external", "timeout": 20},
  "actions": [{"action": "status", "description": "Status of a package", "display": "always",
    "input": {"package": {"prompt": "Package", "description": "Package name", "type": "string",
      "validation": "^[a-zA-Z\\-_\\d]+$", "maxlength": 90, "optional": false}},
    "output": {"ensure": {"description": "Its state", "display_as": "Ensure"},
               "name": {"description": "Its name", "display_as": "Name"}}}]
}
"#;

/// A Ruby DDL of the usual shape, left behind from MCollective.
const RUBY_DDL: &str = r#"metadata :name        => "legacy",
         :description => "An agent from MCollective days",
         :author      => "ops",
         :license     => "Apache-2.0",
         :version     => "1.0",
         :url         => "https://example.org",
         :timeout     => 10

action "run", :description => "Runs it" do
    display :always

    output :status,
           :description => "How it went",
           :display_as  => "Status"
end
"#;

async fn mco(args: &[&str]) -> Output {
    muster_testkit::run_mco(MCO, args).await
}

fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}\n{}\n{}",
        output.status.code(),
        stdout(output),
        stderr(output)
    );
    stdout(output)
}

fn write(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode))
        .expect("chmod");
}

/// The python with py-mco-agent, or `None` to skip (never in CI).
fn py_mco_agent() -> Option<PathBuf> {
    let Some(python) = std::env::var_os("MUSTER_PY_MCO_AGENT") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "py-mco-agent is not installed: .ci/run installs it into a venv and sets \
             MUSTER_PY_MCO_AGENT"
        );
        eprintln!(
            "\n*** SKIPPED: py-mco-agent is not installed; set MUSTER_PY_MCO_AGENT to a \
             python with py-mco-agent 0.4.0 (see .ci/run) ***\n"
        );
        return None;
    };
    let python = PathBuf::from(python);
    let imports = std::process::Command::new(&python)
        .args(["-c", "import mco_agent, choria_external"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        imports,
        "MUSTER_PY_MCO_AGENT={} cannot import mco_agent; install py-mco-agent into it",
        python.display()
    );
    Some(python)
}

/// A broker, one `mco server` with the agents in `agents` and `settings`,
/// and a client config that reads the same DDLs.
struct Fleet {
    _broker: TestBroker,
    _caller: Caller,
    server: ServerProcess,
    config: String,
}

impl Fleet {
    async fn start(agents: &Path, settings: &str) -> Fleet {
        let broker = TestBroker::start(BrokerKind::Embedded).await;
        let caller = Caller::new("tester");
        let settings = format!(
            "plugin.external.agents_dir = {}\n{settings}",
            agents.display()
        );
        let server = ServerProcess::start(
            Path::new(MCO),
            &broker.url(),
            caller.pki(),
            &NodeSetup {
                identity: "node1",
                facts_yaml: "role: web\n",
                classes: &["base"],
                collectives: &[],
                settings: &settings,
            },
        );
        let config = caller.client_config(&broker.url());
        let mut text = std::fs::read_to_string(&config).expect("client config");
        text.push_str(&format!(
            "plugin.external.agents_dir = {}\n",
            agents.display()
        ));
        std::fs::write(&config, text).expect("client config");
        let fleet = Fleet {
            _broker: broker,
            _caller: caller,
            server,
            config: config.display().to_string(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ping = mco(&["ping", "--config", &fleet.config, "-t", "1"]).await;
            if stdout(&ping).contains("node1 ") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node1 never answered: {}",
                fleet.server.log()
            );
        }
        fleet
    }

    async fn run(&self, args: &[&str]) -> Output {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--config", &self.config, "-I", "node1"]);
        mco(&all).await
    }

    /// `rpcutil agent_inventory` of node1: agent name -> its entry.
    async fn agent_inventory(&self) -> Vec<Value> {
        let out = ok(&self
            .run(&["rpc", "rpcutil", "agent_inventory", "--json"])
            .await);
        let replies: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        let replies = replies["replies"].as_array().cloned().unwrap_or_default();
        assert_eq!(replies.len(), 1, "{out}");
        replies[0]["data"]["agents"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| panic!("no agents in {out}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_py_mco_agent_agent_runs_unchanged_and_its_activation_check_counts() {
    let Some(python) = py_mco_agent() else {
        return;
    };
    let agents = tempfile::tempdir().expect("tempdir");
    let shebang = format!("#!{}\n", python.display());
    write(
        &agents.path().join("parrot"),
        &format!("{shebang}{PARROT}"),
        0o755,
    );
    write(&agents.path().join("parrot.json"), PARROT_DDL, 0o644);
    write(
        &agents.path().join("shy"),
        &format!("{shebang}{SHY}"),
        0o755,
    );
    write(&agents.path().join("shy.json"), SHY_DDL, 0o644);
    let fleet = Fleet::start(agents.path(), "").await;

    // py-mco-agent reads its settings where CHORIA_EXTERNAL_CONFIG says:
    // plugin.d/parrot beside server.cfg (it also tries parrot.cfg).
    let plugin_d = fleet.server.dir.path().join("plugin.d");
    std::fs::create_dir(&plugin_d).expect("plugin.d");
    std::fs::write(plugin_d.join("parrot.cfg"), "prefix=squawk:\n").expect("parrot.cfg");

    let out = ok(&fleet
        .run(&["rpc", "parrot", "echo", "message=hello", "--json"])
        .await);
    let replies: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(replies["replies"][0]["statuscode"], 0, "{out}");
    assert_eq!(
        replies["replies"][0]["data"]["message"], "squawk:hello",
        "{out}"
    );

    // Its failure is its own, status and message.
    let out = fleet.run(&["rpc", "parrot", "invalid", "--json"]).await;
    let replies: Value =
        serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)));
    assert_eq!(replies["replies"][0]["statuscode"], 1, "{}", stdout(&out));
    assert_eq!(
        replies["replies"][0]["statusmsg"],
        "Invalid command",
        "{}",
        stdout(&out)
    );

    // Declined at its activation check: not offered.
    let inventory = fleet.agent_inventory().await;
    let names: Vec<&str> = inventory
        .iter()
        .filter_map(|a| a["agent"].as_str())
        .collect();
    assert!(names.contains(&"parrot"), "{names:?}");
    assert!(!names.contains(&"shy"), "{names:?}");
    let parrot = inventory
        .iter()
        .find(|a| a["agent"] == "parrot")
        .expect("parrot");
    assert_eq!(parrot["provider"], "external");
    assert_eq!(
        parrot["executable"],
        agents.path().join("parrot").display().to_string()
    );
    let shy = fleet.run(&["rpc", "shy", "hide"]).await;
    assert!(!shy.status.success(), "{}", stdout(&shy));
    assert!(
        stdout(&shy).contains("unknown agent \"shy\""),
        "{}\n{}",
        stdout(&shy),
        stderr(&shy)
    );
    let log = fleet.server.log();
    assert!(
        log.contains("its activation check declined"),
        "the log does not say why shy is missing:\n{log}"
    );
    // What py-mco-agent prints on stdout (its schema directory) is logged,
    // not taken for the reply.
    assert!(log.contains("mco_agent/schemas"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_built_in_agent_turned_off_is_replaced_by_an_external_one() {
    let agents = tempfile::tempdir().expect("tempdir");
    write(&agents.path().join("package"), PACKAGE, 0o755);
    write(&agents.path().join("package.json"), PACKAGE_DDL, 0o644);
    write(&agents.path().join("legacy.ddl"), RUBY_DDL, 0o644);
    let fleet = Fleet::start(agents.path(), "plugin.package.activate_agent = 0\n").await;

    let out = ok(&fleet
        .run(&["rpc", "package", "status", "package=dpkg", "--json"])
        .await);
    let replies: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(
        replies["replies"][0]["data"]["ensure"], "from the replacement",
        "{out}"
    );
    // The client validates with the replacement's DDL: its input, not the built-in's.
    let bad = fleet.run(&["rpc", "package", "status"]).await;
    assert!(
        stderr(&bad).contains("missing required input \"package\""),
        "{}",
        stderr(&bad)
    );

    let inventory = fleet.agent_inventory().await;
    let package = inventory
        .iter()
        .find(|a| a["agent"] == "package")
        .expect("package");
    assert_eq!(package["provider"], "external", "{package}");
    assert_eq!(package["version"], "9.9.9", "{package}");
    let service = inventory
        .iter()
        .find(|a| a["agent"] == "service")
        .expect("service");
    assert_eq!(service["provider"], "builtin", "{service}");

    // mco plugin doc shows the replacement's DDL and says where it is from.
    let doc = ok(&mco(&["plugin", "doc", "package", "--config", &fleet.config]).await);
    assert!(doc.contains("A site's own package agent"), "{doc}");
    assert!(
        doc.contains(&format!(
            "DDL: {} (an external agent's",
            agents.path().join("package.json").display()
        )),
        "{doc}"
    );
    assert!(doc.contains("mco plugin doc package -I NODE"), "{doc}");
    // With a selector, the nodes say which one they run.
    let doc = ok(&fleet.run(&["plugin", "doc", "package"]).await);
    assert!(
        doc.contains(&format!(
            "NODES RUNNING package:\n   node1: external {} (DDL {}, version 9.9.9)",
            agents.path().join("package").display(),
            agents.path().join("package.json").display()
        )),
        "{doc}"
    );
    let doc = ok(&fleet.run(&["plugin", "doc", "service"]).await);
    assert!(doc.contains("   node1: built-in (version "), "{doc}");
    let doc = ok(&mco(&["plugin", "doc", "service", "--config", &fleet.config]).await);
    assert!(doc.contains("DDL: built into muster"), "{doc}");

    // The Ruby DDL is not read, and the log says how to convert it, once.
    let log = fleet.server.log();
    let legacy = agents.path().join("legacy.ddl").display().to_string();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(&legacy) && l.contains("mco plugin ddl2json"))
        .collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(warnings[0].contains("WARN"), "{}", warnings[0]);
    // The replacement's stdout went to the log, tagged with the agent.
    assert!(log.contains("replacement package agent:"), "{log}");
}
