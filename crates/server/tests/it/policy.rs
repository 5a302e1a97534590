//! Authorization through `Node::handle`: a node built from a real config
//! file, with real policy files in a real directory (docs/architecture.md#security).

use muster_testkit::Logs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use muster_pki::{Authority, Credential};
use muster_protocol::{Envelope, Request, StatusCode};
use muster_server::node::Outcome;
use muster_server::policy::{Policies, Settings, DENIED};
use muster_server::watched::CHECK_INTERVAL;
use muster_server::{Node, ServerConfig};
use muster_testkit::{ask, TestPki};
use serde_json::json;

/// Callers `alice.mcollective` and `bob.mcollective` of the shared test
/// CA, a directory with a facts file (role web, env prod), a classes file
/// (base, role::web) and a policies directory; `node` builds a node from
/// it with extra settings, trusting the CA in its ssldir.
struct Setup {
    dir: tempfile::TempDir,
    alice: Credential,
    bob: Credential,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let pki = TestPki::shared();
        let alice = pki.credential("alice.mcollective");
        let bob = pki.credential("bob.mcollective");
        std::fs::write(dir.path().join("facts.yaml"), "role: web\nenv: prod\n").unwrap();
        std::fs::write(dir.path().join("classes.txt"), "base\nrole::web\n").unwrap();
        std::fs::create_dir(dir.path().join("policies")).unwrap();
        Setup { dir, alice, bob }
    }

    fn policies(&self) -> PathBuf {
        self.dir.path().join("policies")
    }

    fn write_policy(&self, name: &str, text: &str) {
        std::fs::write(self.policies().join(format!("{name}.policy")), text).unwrap();
    }

    fn node(&self, settings: &str) -> Result<Node, String> {
        let path = self.dir.path();
        let config = path.join("server.cfg");
        std::fs::write(
            &config,
            format!(
                "identity = node1\nplugin.yaml = {}\nclassesfile = {}\n\
                 plugin.security.ssldir = {}\nplugin.actionpolicy.dir = {}\n{settings}\n",
                path.join("facts.yaml").display(),
                path.join("classes.txt").display(),
                TestPki::shared().ssldir().root().display(),
                self.policies().display(),
            ),
        )
        .unwrap();
        let config = ServerConfig::load(&config).map_err(|e| e.to_string())?;
        let authority = Authority::load(&config.security.ssldir).map_err(|e| e.to_string())?;
        Node::from_config(&config, Arc::new(authority)).map_err(|e| e.to_string())
    }
}

/// The status `caller` gets for `rpcutil <action>`; a denial must carry
/// MCollective's message.
async fn status(node: &Node, caller: &Credential, action: &str) -> StatusCode {
    status_of(node, caller, "rpcutil", action, json!({})).await
}

/// The status `caller` gets for `agent <action>` with `inputs`; a status
/// 1 must be the policy's denial, not the agent's own failure.
async fn status_of(
    node: &Node,
    caller: &Credential,
    agent: &str,
    action: &str,
    inputs: serde_json::Value,
) -> StatusCode {
    let reply = ask(node, caller, agent, action, inputs).await;
    if reply.statuscode == StatusCode::Aborted {
        assert_eq!(reply.statusmsg, DENIED, "{agent} {action}: {reply:?}");
    }
    reply.statuscode
}

const OK: StatusCode = StatusCode::Ok;
const DENY: StatusCode = StatusCode::Aborted;

#[tokio::test]
async fn rules_by_caller_action_fact_class_and_compound() {
    let s = Setup::new();
    // (rpcutil.policy, who, action, expected). Callers are certificate
    // names; each request claims its signer's name (testkit::ask), and
    // the_claimed_caller_is_never_trusted shows the claim does not count.
    let cases: &[(&str, &str, &str, StatusCode)] = &[
        (
            "policy default deny\nallow\talice.mcollective\t*\t*\t*",
            "alice",
            "ping",
            OK,
        ),
        (
            "policy default deny\nallow\talice.mcollective\t*\t*\t*",
            "bob",
            "ping",
            DENY,
        ),
        // No `policy default` line: deny.
        ("allow\talice.mcollective\t*\t*\t*", "bob", "ping", DENY),
        // The user name alone is not the caller: its certificate name is.
        ("allow\talice\t*\t*\t*", "alice", "ping", DENY),
        (
            "allow\tcert=alice.mcollective uid=bob.mcollective\tping\t*\t*",
            "bob",
            "ping",
            OK,
        ),
        (
            "allow\tchoria=alice.mcollective\t*\t*\t*",
            "alice",
            "ping",
            OK,
        ),
        (
            "allow\tcert=alice.mcollective\tping\t*\t*",
            "alice",
            "inventory",
            DENY,
        ),
        ("allow\t*\tping inventory\t*\t*", "bob", "inventory", OK),
        // Facts and classes: every one must hold.
        ("allow\t*\t*\trole=web env=prod\t*", "bob", "ping", OK),
        ("allow\t*\t*\trole=web env=dev\t*", "bob", "ping", DENY),
        ("allow\t*\t*\trole=/^w/\t*", "bob", "ping", OK),
        ("allow\t*\t*\t*\tbase role::web", "bob", "ping", OK),
        ("allow\t*\t*\t*\tbase nosuch", "bob", "ping", DENY),
        ("allow\t*\t*\trole=web\tnosuch", "bob", "ping", DENY),
        // The 4-field form: an `-S` expression, or facts and classes.
        ("allow\t*\t*\trole=web and not nosuch", "bob", "ping", OK),
        (
            "allow\t*\t*\t(role=db or env=prod) and base",
            "bob",
            "ping",
            OK,
        ),
        ("allow\t*\t*\trole=db or nosuch", "bob", "ping", DENY),
        ("allow\t*\t*\trole=web role::web", "bob", "ping", OK),
        // Single-word fields may be separated by spaces.
        ("allow bob.mcollective ping * *", "bob", "ping", OK),
        ("allow bob.mcollective ping * *", "alice", "ping", DENY),
        // The first matching rule wins.
        (
            "deny\tbob.mcollective\t*\t*\t*\nallow\t*\t*\t*\t*",
            "bob",
            "ping",
            DENY,
        ),
        (
            "deny\tbob.mcollective\t*\t*\t*\nallow\t*\t*\t*\t*",
            "alice",
            "ping",
            OK,
        ),
        (
            "allow\t*\t*\t*\t*\ndeny\tbob.mcollective\t*\t*\t*",
            "bob",
            "ping",
            OK,
        ),
        // Default allow, with exceptions.
        (
            "policy default allow\ndeny\tbob.mcollective\tinventory\t*\t*",
            "bob",
            "ping",
            OK,
        ),
        (
            "policy default allow\ndeny\tbob.mcollective\tinventory\t*\t*",
            "bob",
            "inventory",
            DENY,
        ),
        (
            "policy default allow\ndeny\tbob.mcollective\tinventory\t*\t*",
            "alice",
            "inventory",
            OK,
        ),
    ];
    for (policy, who, action, expected) in cases {
        s.write_policy("rpcutil", &format!("# a comment\n\n{policy}\n"));
        let node = s.node("").unwrap();
        let caller = if *who == "alice" { &s.alice } else { &s.bob };
        assert_eq!(
            status(&node, caller, action).await,
            *expected,
            "{policy:?}: {who} {action}"
        );
    }
}

#[tokio::test]
async fn agents_without_a_policy_file() {
    let s = Setup::new();
    // No file: allowed, unless allow_unconfigured is off.
    assert_eq!(status(&s.node("").unwrap(), &s.bob, "ping").await, OK);
    let strict = s
        .node("plugin.actionpolicy.allow_unconfigured = 0")
        .unwrap();
    assert_eq!(status(&strict, &s.bob, "ping").await, DENY);

    // default.policy applies only when enabled, and only to agents
    // without a file of their own.
    s.write_policy(
        "default",
        "policy default deny\nallow\talice.mcollective\t*\t*\t*\n",
    );
    assert_eq!(status(&s.node("").unwrap(), &s.bob, "ping").await, OK);
    let with_default =
        "plugin.actionpolicy.enable_default = 1\nplugin.actionpolicy.default_name = default";
    let node = s.node(with_default).unwrap();
    assert_eq!(status(&node, &s.alice, "ping").await, OK);
    assert_eq!(status(&node, &s.bob, "ping").await, DENY);
    s.write_policy("rpcutil", "allow\tbob.mcollective\t*\t*\t*\n");
    let node = s.node(with_default).unwrap();
    assert_eq!(status(&node, &s.bob, "ping").await, OK);
    assert_eq!(status(&node, &s.alice, "ping").await, DENY);

    // A default_name of another file.
    std::fs::remove_file(s.policies().join("rpcutil.policy")).unwrap();
    s.write_policy("site", "allow\tbob.mcollective\t*\t*\t*\n");
    let node = s
        .node("plugin.actionpolicy.enable_default = y\nplugin.actionpolicy.default_name = site")
        .unwrap();
    assert_eq!(status(&node, &s.bob, "ping").await, OK);
    assert_eq!(status(&node, &s.alice, "ping").await, DENY);
}

#[tokio::test]
async fn an_unparseable_file_denies_everything_for_its_agent() {
    let s = Setup::new();
    for broken in [
        "allow alice.mcollective",
        "policy default allow\nallow\talice.mcollective\t*\t(role=web\n",
        "permit * * * *",
        // Strict parsing: every one of these used to be read as some
        // other rule (or, for the first, as a rule against a caller
        // named `ping`), so the default let everything through.
        "policy default allow\ndeny bob.mcollective\tping\t*\t*\n",
        "policy default allow\ndeny\tbob.mcollective\tping\t*\t*  # bob: no ping\n",
        "policy default allow\ndeny\tbob.mcollective\tping\n",
        "policy default allow\ndeny\tbob.mcollective\tping\t*\t*\t*\n",
        "policy default allow\nalow\talice.mcollective\t*\t*\t*\n",
        "policy default allow\ndeny\tbob.mcollective\t \t*\t*\n",
        "policy default allow\ndeny\tbob.mcollective\tping\t* *\n",
        "policy default allow\npolicy default deny\n",
        "policy default allow # for now\n",
    ] {
        s.write_policy("rpcutil", broken);
        let node = s.node("").unwrap();
        assert_eq!(status(&node, &s.alice, "ping").await, DENY, "{broken:?}");
        assert_eq!(status(&node, &s.bob, "inventory").await, DENY, "{broken:?}");
    }
    // A directory where the file should be fails closed too.
    std::fs::remove_file(s.policies().join("rpcutil.policy")).unwrap();
    std::fs::create_dir(s.policies().join("rpcutil.policy")).unwrap();
    assert_eq!(status(&s.node("").unwrap(), &s.alice, "ping").await, DENY);
}

fn wait_for_next_check() {
    std::thread::sleep(CHECK_INTERVAL + Duration::from_millis(100));
}

#[tokio::test]
async fn changed_files_apply_after_the_watch_interval() {
    let s = Setup::new();
    s.write_policy(
        "rpcutil",
        "policy default deny\nallow\talice.mcollective\t*\t*\t*\n",
    );
    let node = s.node("").unwrap();
    assert_eq!(status(&node, &s.bob, "ping").await, DENY);

    s.write_policy(
        "rpcutil",
        "policy default deny\nallow\talice.mcollective bob.mcollective\t*\t*\t*\n",
    );
    wait_for_next_check();
    assert_eq!(status(&node, &s.bob, "ping").await, OK);

    // Broken: unlike facts, the last good version is not kept.
    s.write_policy("rpcutil", "allow bob.mcollective");
    wait_for_next_check();
    assert_eq!(status(&node, &s.bob, "ping").await, DENY);
    assert_eq!(status(&node, &s.alice, "ping").await, DENY);

    // Removed: unconfigured again, so allowed.
    std::fs::remove_file(s.policies().join("rpcutil.policy")).unwrap();
    wait_for_next_check();
    assert_eq!(status(&node, &s.bob, "ping").await, OK);
}

#[tokio::test]
async fn denials_are_counted_in_daemon_stats() {
    let s = Setup::new();
    s.write_policy("rpcutil", "allow\talice.mcollective\t*\t*\t*\n");
    let node = s.node("").unwrap();
    for _ in 0..3 {
        assert_eq!(status(&node, &s.bob, "ping").await, DENY);
    }
    let stats = ask(&node, &s.alice, "rpcutil", "daemon_stats", json!({})).await;
    assert_eq!(stats.statuscode, OK);
    assert_eq!(stats.data["unauthorized"], 3, "{}", stats.data);
    // Denied requests are answered: they passed the security checks.
    assert_eq!(stats.data["passed"], 4, "{}", stats.data);
}

#[tokio::test]
async fn the_claimed_caller_is_never_trusted() {
    let s = Setup::new();
    s.write_policy("rpcutil", "allow\talice.mcollective\t*\t*\t*\n");
    let node = s.node("").unwrap();
    for claim in [
        "alice.mcollective",
        "alice",
        "user=alice",
        "cert=alice.mcollective",
    ] {
        let request = Request::new("client1", claim, "mcollective", "rpcutil", "ping");
        let envelope = Envelope::seal(&request, &s.bob).unwrap();
        let outcome = node.handle(&envelope.to_bytes()).await;
        match outcome {
            Outcome::Reply { reply, .. } => assert_eq!(reply.statuscode, DENY, "{claim}"),
            other => panic!("{other:?}"),
        }
    }
}

/// Data plugins in a policy run off the async worker on a multi-thread
/// runtime, as they do in filters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_plugins_in_a_policy() {
    let s = Setup::new();
    let marker = s.dir.path().join("maintenance");
    let policy = |path: &Path| {
        format!(
            "policy default allow\ndeny\t*\t*\tfstat('{}').present=1\n",
            path.display()
        )
    };
    s.write_policy("rpcutil", &policy(&marker));
    let node = s.node("").unwrap();
    assert_eq!(status(&node, &s.bob, "ping").await, OK);
    std::fs::write(&marker, "").unwrap();
    assert_eq!(status(&node, &s.bob, "ping").await, DENY);
}

#[test]
fn bad_settings_name_their_line() {
    let s = Setup::new();
    let err = s
        .node("plugin.actionpolicy.enable_default = sometimes")
        .err()
        .unwrap();
    assert!(err.contains("server.cfg:6"), "{err}");
    let err = s
        .node("plugin.actionpolicy.default_name = ../etc/passwd")
        .err()
        .unwrap();
    assert!(err.contains("must be a file name"), "{err}");
}

/// An init script for service `victim` of the sysv provider: running
/// while `<dir>/running` exists; `stop` removes it and appends to
/// `<dir>/stopped`, so a test can tell whether a stop really ran.
fn install_victim(s: &Setup) -> String {
    let dir = s.dir.path();
    let initd = dir.join("init.d");
    std::fs::create_dir_all(&initd).unwrap();
    let script = format!(
        "#!/bin/sh\ncase \"$1\" in\n\
         status) [ -f '{d}/running' ] && exit 0; exit 3 ;;\n\
         start) touch '{d}/running'; echo started ;;\n\
         stop) rm -f '{d}/running'; echo stopped >> '{d}/stopped'; echo stopped ;;\n\
         *) exit 2 ;;\nesac\n",
        d = dir.display()
    );
    let path = initd.join("victim");
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(dir.join("running"), "").unwrap();
    format!(
        "plugin.service.provider = sysv\nplugin.service.initd = {}",
        initd.display()
    )
}

/// The attack strict parsing stops. With `policy default allow`, the rule
/// `deny alice.mcollective<SPACE>…` — a space where the first tab belongs
/// — was read as "deny the caller named `stop`", so alice's `service stop`
/// ran. Now the line is an error: the whole file denies, alice's stop is
/// refused and so is everything else for the service agent, and the
/// error names the file and the line.
#[tokio::test]
async fn a_space_for_a_tab_denies_the_whole_agent_instead_of_failing_open() {
    let s = Setup::new();
    let service = install_victim(&s);
    let victim = || json!({"service": "victim"});
    let stopped = s.dir.path().join("stopped");
    s.write_policy(
        "service",
        "# alice may not stop services\npolicy default allow\n\
         deny alice.mcollective\tstop\t*\t*\n",
    );
    let logs = Logs::default();
    let node = {
        let _logs = tracing::subscriber::set_default(logs.clone());
        s.node(&service).unwrap()
    };
    let file = s.policies().join("service.policy");
    let at = format!("{}:3: ", file.display());

    // Reported at start-up, at error, with the file and line.
    let startup = logs.take();
    assert!(
        startup.iter().any(|l| l.starts_with("ERROR")
            && l.contains(&at)
            && l.contains("\"deny alice.mcollective\"")),
        "{startup:#?}"
    );

    for (who, action) in [
        (&s.alice, "stop"),
        (&s.alice, "status"),
        (&s.bob, "stop"),
        (&s.bob, "status"),
    ] {
        let got = status_of(&node, who, "service", action, victim()).await;
        assert_eq!(got, DENY, "{action}");
    }
    assert!(
        !stopped.exists(),
        "a denied stop must not run the init script"
    );
    // Other agents keep their own policies (rpcutil has none: allowed).
    assert_eq!(status(&node, &s.alice, "ping").await, OK);

    // The reason a denial carries (and the node logs) is the parse error.
    let policies = Policies::new(
        Settings {
            dir: s.policies(),
            default_policy: None,
            allow_unconfigured: true,
        },
        ["service"],
    );
    let decision = policies.check("service", "alice.mcollective", "stop", &node);
    assert!(!decision.allowed);
    assert!(decision.reason.starts_with(&at), "{decision:?}");
    assert!(
        decision.reason.contains("exactly `allow` or `deny`"),
        "{decision:?}"
    );

    // With the tab where it belongs, the rule is what its author meant.
    s.write_policy(
        "service",
        "# alice may not stop services\npolicy default allow\n\
         deny\talice.mcollective\tstop\t*\t*\n",
    );
    let node = s.node(&service).unwrap();
    assert_eq!(
        status_of(&node, &s.alice, "service", "stop", victim()).await,
        DENY
    );
    assert!(!stopped.exists());
    assert_eq!(
        status_of(&node, &s.alice, "service", "status", victim()).await,
        OK
    );
    assert_eq!(
        status_of(&node, &s.bob, "service", "stop", victim()).await,
        OK
    );
    assert!(stopped.exists(), "bob's stop ran");
}

/// A file edited on Windows: `\r\n` line ends are line ends.
#[tokio::test]
async fn crlf_policy_files_work() {
    let s = Setup::new();
    s.write_policy(
        "rpcutil",
        "# from notepad\r\npolicy default deny\r\n\r\nallow\talice.mcollective\tping\t*\t*\r\n",
    );
    let node = s.node("").unwrap();
    assert_eq!(status(&node, &s.alice, "ping").await, OK);
    assert_eq!(status(&node, &s.alice, "inventory").await, DENY);
    assert_eq!(status(&node, &s.bob, "ping").await, DENY);
}

/// A file that becomes broken under a running node denies everything
/// from the next check on (the last good version is not kept), is
/// reported when re-read, and allows again once fixed.
#[tokio::test]
async fn a_file_broken_and_fixed_while_the_node_runs() {
    let s = Setup::new();
    let good = "policy default allow\ndeny\tbob.mcollective\tinventory\t*\t*\n";
    s.write_policy("rpcutil", good);
    let logs = Logs::default();
    let _logs = tracing::subscriber::set_default(logs.clone());
    let node = s.node("").unwrap();
    assert_eq!(status(&node, &s.alice, "ping").await, OK);
    assert_eq!(status(&node, &s.bob, "ping").await, OK);
    assert_eq!(status(&node, &s.bob, "inventory").await, DENY);
    assert!(
        !logs.take().iter().any(|l| l.starts_with("ERROR")),
        "a good file logs no error"
    );

    // Broken: a comment after the rule (the file grows, so the watch sees
    // the change whatever the clock's resolution).
    s.write_policy(
        "rpcutil",
        "policy default allow\ndeny\tbob.mcollective\tinventory\t*\t*   # bob: no inventory\n",
    );
    wait_for_next_check();
    assert_eq!(status(&node, &s.alice, "ping").await, DENY);
    assert_eq!(status(&node, &s.bob, "ping").await, DENY);
    let file = s.policies().join("rpcutil.policy");
    let reread = logs.take();
    let errors: Vec<&String> = reread.iter().filter(|l| l.starts_with("ERROR")).collect();
    assert_eq!(errors.len(), 1, "logged once per change: {reread:#?}");
    assert!(
        errors[0].contains(&format!("{}:2: ", file.display()))
            && errors[0].contains("comments must be on their own line"),
        "{reread:#?}"
    );
    // Every denial's warning names the line too.
    assert!(
        reread
            .iter()
            .any(|l| l.starts_with("WARN") && l.contains(&format!("{}:2: ", file.display()))),
        "{reread:#?}"
    );

    // Fixed: the comment on a line of its own.
    s.write_policy("rpcutil", &format!("# bob: no inventory\n{good}"));
    wait_for_next_check();
    assert_eq!(status(&node, &s.alice, "ping").await, OK);
    assert_eq!(status(&node, &s.bob, "ping").await, OK);
    assert_eq!(status(&node, &s.bob, "inventory").await, DENY);
    assert!(!logs.take().iter().any(|l| l.starts_with("ERROR")));
}

/// The upstream policy fixtures, ported to `tests/fixtures/actionpolicy`:
/// `mcollective/` from puppetlabs/mcollective-actionpolicy-auth's spec,
/// `choria/` from choria-io/go-choria's `providers/agent/mcorpc/testdata`
/// (with its `policies/groups`). Upstream file `exampleN` is the policy of
/// agent `exampleN` here.
fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/actionpolicy")
}

/// A real node reading `facts` and `classes`, whose puppet agent keeps
/// its state below `puppet` (disabled when `puppet_disabled`): the
/// [`NodeView`](muster_protocol::NodeView) a policy is decided against.
fn node_reading(facts: &Path, classes: &Path, puppet: &Path, puppet_disabled: bool) -> Node {
    let state = puppet.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let lock = state.join("agent_disabled.lock");
    if puppet_disabled {
        std::fs::write(&lock, r#"{"disabled_message":"maintenance"}"#).unwrap();
    } else {
        let _ = std::fs::remove_file(&lock);
    }
    // Choria's "missing classes file" case: a node without classes.
    let classes = if classes.exists() {
        format!("classesfile = {}", classes.display())
    } else {
        String::new()
    };
    let config = puppet.join("server.cfg");
    std::fs::write(
        &config,
        format!(
            "identity = node1\nplugin.yaml = {}\n{classes}\nplugin.security.ssldir = {}\n\
             plugin.puppet.command = /bin/sh\nplugin.puppet.statedir = {}\n\
             plugin.puppet.rundir = {}\nplugin.puppet.publicdir = {}\n",
            facts.display(),
            TestPki::shared().ssldir().root().display(),
            state.display(),
            puppet.join("run").display(),
            puppet.join("public").display(),
        ),
    )
    .unwrap();
    let config = ServerConfig::load(&config).unwrap();
    let authority = Authority::load(&config.security.ssldir).unwrap();
    Node::from_config(&config, Arc::new(authority)).unwrap()
}

/// One upstream case: agent (the fixture), caller, action, facts file,
/// classes file, whether Puppet is disabled, and the verdict.
type Case = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    bool,
    bool,
);

/// Decides every case against the suite's fixtures, through a real node
/// (facts, classes and the puppet agent's `puppet()` read from files) and
/// the suite's policy directory with its groups file.
fn decide_upstream(suite: &str, cases: &[Case]) {
    let dir = fixtures().join(suite);
    let puppet = tempfile::tempdir().unwrap();
    let policies = Policies::new(
        Settings {
            dir: dir.join("policies"),
            default_policy: None,
            allow_unconfigured: false,
        },
        cases.iter().map(|c| c.0),
    );
    let mut failures = Vec::new();
    for &(agent, caller, action, facts, classes, disabled, allowed) in cases {
        let node = node_reading(
            &dir.join(facts),
            &dir.join(classes),
            puppet.path(),
            disabled,
        );
        let decision = policies.check(agent, caller, action, &node);
        if decision.allowed != allowed {
            failures.push(format!(
                "{suite}/{agent}: {caller} {action} (facts {facts}, classes {classes}, \
                 puppet disabled {disabled}): expected allowed={allowed}, got {decision:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// MCollective's actionpolicy spec, case by case (its callers `uid=500`
/// are certificate `500` here: what follows the `=` is the name).
#[test]
fn upstream_mcollective_fixtures() {
    let (c, a) = ("rspec_caller", "rspec_action");
    let (none, rspec) = ("facts/none.yaml", "classes/rspec.txt");
    let no_classes = "classes/none.txt";
    let cases: &[Case] = &[
        ("default_allow", c, a, none, no_classes, false, true),
        ("default_deny", c, a, none, no_classes, false, false),
        ("example1", c, a, none, no_classes, false, true),
        ("example2", "500", a, none, no_classes, false, true),
        ("example2", "501", a, none, no_classes, false, false),
        ("example3", c, "rspec", none, no_classes, false, true),
        ("example3", c, "notrspec", none, no_classes, false, false),
        (
            "example4",
            c,
            a,
            "facts/foo_bar.yaml",
            no_classes,
            false,
            true,
        ),
        (
            "example4",
            c,
            a,
            "facts/foo_notbar.yaml",
            no_classes,
            false,
            false,
        ),
        ("example5", c, a, none, rspec, false, true),
        ("example5", c, a, none, no_classes, false, false),
        ("example6", "500", "rspec", none, no_classes, false, true),
        (
            "example6", "501", "notrspec", none, no_classes, false, false,
        ),
        (
            "example7",
            "500",
            a,
            "facts/foo_bar.yaml",
            no_classes,
            false,
            true,
        ),
        (
            "example7",
            "501",
            a,
            "facts/foo_notbar.yaml",
            no_classes,
            false,
            false,
        ),
        ("example8", "500", a, none, rspec, false, true),
        ("example8", "500", a, none, no_classes, false, false),
        (
            "example9",
            "500",
            "rspec",
            "facts/foo_bar.yaml",
            no_classes,
            false,
            true,
        ),
        (
            "example9",
            "501",
            "notrspec",
            "facts/foo_notbar.yaml",
            no_classes,
            false,
            false,
        ),
        ("example10", "500", "rspec", none, rspec, false, true),
        (
            "example10",
            "501",
            "notrspec",
            none,
            no_classes,
            false,
            false,
        ),
        // A space where the first tab belongs: MCollective skips the line
        // (default deny), muster refuses the file; both deny.
        (
            "example11",
            "500",
            "rspec",
            "facts/foo_bar.yaml",
            rspec,
            false,
            false,
        ),
        // A compound expression in the 5-field form's facts field.
        (
            "example12",
            "500",
            "rspec",
            "facts/foo_bar_bar_foo.yaml",
            rspec,
            false,
            true,
        ),
        (
            "example12",
            "500",
            "rspec",
            "facts/foo_bar.yaml",
            rspec,
            false,
            false,
        ),
        // `one and two or three` in the classes field: an expression.
        (
            "example13",
            "500",
            "rspec",
            "facts/foo_bar.yaml",
            "classes/one_two.txt",
            false,
            true,
        ),
        (
            "example13",
            "500",
            "rspec",
            "facts/foo_bar.yaml",
            "classes/one.txt",
            false,
            false,
        ),
        // `foo=bar and one or (two and one)`, two absent.
        (
            "example14",
            "500",
            "rspec",
            "facts/foo_bar.yaml",
            "classes/one.txt",
            false,
            true,
        ),
        (
            "example14",
            "500",
            "rspec",
            none,
            "classes/one.txt",
            false,
            false,
        ),
        // The README's puppet policy, every line.
        (
            "example15",
            "500",
            "anything",
            none,
            no_classes,
            false,
            true,
        ),
        (
            "example15",
            "600",
            "restart",
            "facts/acme_production.yaml",
            "classes/acme_devserver.txt",
            false,
            true,
        ),
        (
            "example15",
            "600",
            "restart",
            "facts/acme_production.yaml",
            no_classes,
            false,
            false,
        ),
        (
            "example15",
            "600",
            "status",
            "facts/acme_production.yaml",
            no_classes,
            false,
            true,
        ),
        (
            "example15",
            "600",
            "status",
            "facts/other_production.yaml",
            no_classes,
            false,
            false,
        ),
        (
            "example15",
            "700",
            "restart",
            "facts/acme_development.yaml",
            no_classes,
            false,
            true,
        ),
        (
            "example15",
            "700",
            "restart",
            "facts/acme_production.yaml",
            no_classes,
            true,
            true,
        ),
        (
            "example15",
            "700",
            "restart",
            "facts/acme_production.yaml",
            no_classes,
            false,
            false,
        ),
        (
            "example15",
            "700",
            "status",
            "facts/acme_development.yaml",
            no_classes,
            false,
            false,
        ),
        (
            "example15",
            "800",
            "status",
            "facts/acme_development.yaml",
            no_classes,
            false,
            false,
        ),
    ];
    decide_upstream("mcollective", cases);
}

/// go-choria's actionpolicy tests, case by case (its caller
/// `choria=ginkgo.mcollective` is certificate `ginkgo.mcollective`).
#[test]
fn upstream_choria_fixtures() {
    let (g, t) = ("ginkgo.mcollective", "test");
    let (facts, classes) = ("facts.json", "classes.txt");
    let (bar, baz) = ("foo_bar_facts.json", "foo_baz_facts.json");
    let classes_2 = "classes_2.txt";
    let cases: &[Case] = &[
        ("default_allow", g, t, facts, classes, false, true),
        ("default_deny", g, t, facts, classes, false, false),
        ("example1", g, t, facts, classes, false, true),
        ("example2", g, t, facts, classes, false, true),
        ("example2", "other", t, facts, classes, false, false),
        // The `/^up=/` caller.
        ("example2", "up=bob", t, facts, classes, false, true),
        ("example3", g, t, facts, classes, false, true),
        ("example3", g, "other", facts, classes, false, false),
        ("example4", g, t, bar, classes, false, true),
        ("example4", g, t, baz, classes, false, false),
        ("example5", g, t, facts, classes, false, true),
        ("example5", g, t, facts, classes_2, false, false),
        ("example6", g, t, facts, classes, false, true),
        ("example6", g, "other", facts, classes, false, false),
        ("example6", "other", t, facts, classes, false, false),
        ("example7", g, t, bar, classes, false, true),
        ("example7", g, t, baz, classes, false, false),
        ("example7", "other", t, bar, classes, false, false),
        ("example8", g, t, facts, classes, false, true),
        ("example8", g, t, facts, classes_2, false, false),
        ("example8", g, t, facts, "missing", false, false),
        ("example8", "other", t, facts, classes, false, false),
        ("example9", g, t, bar, classes, false, true),
        ("example9", "other", t, bar, classes, false, false),
        ("example9", g, t, baz, classes, false, false),
        ("example9", g, "other", bar, classes, false, false),
        ("example10", g, t, facts, classes, false, true),
        ("example10", "other", t, facts, classes, false, false),
        ("example10", g, "other", facts, classes, false, false),
        ("example10", g, t, facts, classes_2, false, false),
        ("example11", g, t, bar, classes, false, true),
        ("example11", "other", t, bar, classes, false, false),
        ("example11", g, "other", bar, classes, false, false),
        ("example11", g, t, baz, classes, false, false),
        ("example11", g, t, bar, classes_2, false, false),
        // Compound lines: Choria skips them (deny); MCollective, and
        // muster, evaluate them. Where the facts do not hold both deny.
        ("example12", g, t, facts, classes, false, false),
        ("example13", g, t, facts, classes, false, false),
        ("example13", g, t, bar, classes, false, true),
        ("example14", g, t, facts, classes, false, true),
        ("example14", g, t, facts, classes_2, false, false),
        ("example15", g, t, facts, classes, false, true),
        ("example15", "other", t, facts, classes, false, false),
        ("example15", "two.mcollective", t, bar, classes, false, true),
        (
            "example15",
            "two.mcollective",
            t,
            baz,
            classes,
            false,
            false,
        ),
        (
            "example15",
            "three.mcollective",
            "enable",
            bar,
            classes,
            false,
            true,
        ),
        (
            "example15",
            "three.mcollective",
            "disable",
            bar,
            classes,
            false,
            true,
        ),
        (
            "example15",
            "three.mcollective",
            "status",
            bar,
            classes,
            false,
            true,
        ),
        (
            "example15",
            "three.mcollective",
            "other",
            bar,
            classes,
            false,
            false,
        ),
        (
            "example15",
            "three.mcollective",
            "status",
            baz,
            classes,
            false,
            false,
        ),
        // No `environment` fact: the expression is false either way.
        (
            "example15",
            "four.mcollective",
            "restart",
            facts,
            classes,
            true,
            false,
        ),
        ("example16", "500", t, facts, classes, false, true),
        ("example16", "600", t, facts, classes, false, true),
        ("example16", "700", t, facts, classes, false, true),
        ("example16", g, t, facts, classes, false, false),
        // `policies/groups`: sysadmin and app_admin.
        ("example17", "sa1", t, facts, classes, false, true),
        ("example17", "aa1", t, facts, classes, false, true),
        ("example17", "cert=sa2", t, facts, classes, false, true),
        ("example17", g, t, facts, classes, false, false),
        ("example17", "rspec", t, facts, classes, false, false),
    ];
    decide_upstream("choria", cases);
}

/// `/regex/` callers and the groups file decide signed requests (the
/// caller is the certificate name); a groups file that changes applies
/// after the watch interval, and one that breaks denies every agent with
/// a policy file, naming its line.
#[tokio::test]
async fn regex_callers_and_the_groups_file() {
    let s = Setup::new();
    let groups = s.policies().join("groups");
    std::fs::write(&groups, "# on call\nops alice.mcollective\n").unwrap();
    s.write_policy(
        "rpcutil",
        "policy default deny\nallow\tops\tping\t*\t*\nallow\t/^b.b\\.mcollective$/\tinventory\t*\t*\n",
    );
    let logs = Logs::default();
    let _logs = tracing::subscriber::set_default(logs.clone());
    let node = s.node("").unwrap();
    assert_eq!(status(&node, &s.alice, "ping").await, OK);
    assert_eq!(status(&node, &s.alice, "inventory").await, DENY);
    assert_eq!(status(&node, &s.bob, "ping").await, DENY);
    assert_eq!(status(&node, &s.bob, "inventory").await, OK);

    // bob joins ops (the file grows, so the watch sees the change).
    std::fs::write(
        &groups,
        "# on call\nops alice.mcollective cert=bob.mcollective\n",
    )
    .unwrap();
    wait_for_next_check();
    assert_eq!(status(&node, &s.bob, "ping").await, OK);

    // A broken groups file: every request to an agent with a policy file
    // is denied, and the error names the groups file's line.
    logs.take();
    std::fs::write(&groups, "# on call\nops alice.mcollective\non:call bob\n").unwrap();
    wait_for_next_check();
    assert_eq!(status(&node, &s.alice, "ping").await, DENY);
    assert_eq!(status(&node, &s.bob, "inventory").await, DENY);
    let errors: Vec<String> = logs
        .take()
        .into_iter()
        .filter(|l| l.starts_with("ERROR"))
        .collect();
    assert!(
        errors
            .iter()
            .any(|l| l.contains(&format!("{}:3: ", groups.display())) && l.contains("on:call")),
        "{errors:#?}"
    );
}

/// A rule naming a data plugin the node does not have never matches, with
/// a warning naming the plugin, the file and the line; the file's other
/// rules still apply (it used to deny the whole file). The issue's
/// `puppet().enabled=false` now parses: puppet is a data plugin.
#[tokio::test]
async fn an_unknown_data_plugin_fails_only_its_rule() {
    let s = Setup::new();
    s.write_policy(
        "rpcutil",
        "policy default deny\ndeny\t*\t*\tnosuch('x').state=1\n\
         allow\tbob.mcollective\tinventory\t*\tpuppet().enabled=false\n\
         allow\talice.mcollective\t*\t*\t*\n",
    );
    let logs = Logs::default();
    let node = {
        let _logs = tracing::subscriber::set_default(logs.clone());
        s.node("").unwrap()
    };
    let file = s.policies().join("rpcutil.policy");
    let warnings: Vec<String> = logs
        .take()
        .into_iter()
        .filter(|l| l.starts_with("WARN"))
        .collect();
    assert!(
        warnings
            .iter()
            .any(|l| l.contains(&format!("{}:2: ", file.display()))
                && l.contains("unknown data plugin \"nosuch\"")),
        "{warnings:#?}"
    );
    assert!(
        !warnings.iter().any(|l| l.contains(":3: ")),
        "puppet is known: {warnings:#?}"
    );
    assert_eq!(status(&node, &s.alice, "ping").await, OK);
    assert_eq!(status(&node, &s.alice, "inventory").await, OK);
    assert_eq!(status(&node, &s.bob, "ping").await, DENY);
}
