//! The service agent against a real sysv init script: the test writes one
//! that starts a real background process, and drives it through a node
//! with signed requests (docs/architecture.md#agents-and-ddls, #real-components-in-tests).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use muster_pki::Credential;
use muster_protocol::config::Config;
use muster_protocol::{Reply, StatusCode};
use muster_server::agents::Service;
use muster_server::fleet::simulated_node;
use muster_server::Node;
use muster_testkit::TestPki;
use serde_json::{json, Value};

/// An LSB-style init script: `start` runs `sleep` in the background and
/// records its pid, `stop` kills it, `status` exits 0 while it lives and 3
/// otherwise. `@DIR@` is the test's directory.
const INIT_SCRIPT: &str = r#"#!/bin/sh
PIDFILE="@DIR@/run/daemon.pid"
alive() {
    [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null
}
case "$1" in
    start)
        if alive; then echo "already running"; exit 0; fi
        sleep 1000 </dev/null >/dev/null 2>&1 &
        echo $! > "$PIDFILE"
        echo "started daemon"
        ;;
    stop)
        if [ -f "$PIDFILE" ]; then
            kill "$(cat "$PIDFILE")" 2>/dev/null
            rm -f "$PIDFILE"
        fi
        echo "stopped daemon"
        ;;
    restart)
        "$0" stop
        "$0" start
        ;;
    status)
        if alive; then echo "daemon is running"; exit 0; fi
        echo "daemon is not running"
        exit 3
        ;;
    *)
        echo "usage: $0 start|stop|restart|status" >&2
        exit 2
        ;;
esac
"#;

/// A node with the service agent on a temporary init.d, and a caller it
/// trusts (`alice.mcollective` of the shared test CA).
struct Fixture {
    node: Node,
    caller: Credential,
    dir: tempfile::TempDir,
}

/// Kills whatever daemon the script started, however the test ends.
struct KillDaemon(PathBuf);

impl Drop for KillDaemon {
    fn drop(&mut self) {
        if let Some(pid) = pid_in(&self.0).and_then(rustix::process::Pid::from_raw) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("a temporary directory");
        std::fs::create_dir(dir.path().join("init.d")).expect("init.d");
        std::fs::create_dir(dir.path().join("run")).expect("run");
        let pki = TestPki::shared();
        let caller = pki.credential("alice.mcollective");
        let mut node = simulated_node("node01", 1, pki.authority());
        let settings = Config::parse(&format!(
            "plugin.service.provider = sysv\nplugin.service.initd = {}\n",
            dir.path().join("init.d").display()
        ))
        .expect("settings parse");
        let service = Service::from_settings(&settings).expect("service settings");
        assert_eq!(service.provider(), "sysv");
        node.add_agent(Arc::new(service));
        Fixture { node, caller, dir }
    }

    /// Installs the init script as `name` and returns a guard for its daemon.
    fn install(&self, name: &str) -> KillDaemon {
        let path = self.dir.path().join("init.d").join(name);
        let script = INIT_SCRIPT.replace("@DIR@", &self.dir.path().display().to_string());
        std::fs::write(&path, script).expect("write the init script");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        KillDaemon(self.pidfile())
    }

    fn pidfile(&self) -> PathBuf {
        self.dir.path().join("run/daemon.pid")
    }

    async fn call(&self, action: &str, service: &str) -> Reply {
        muster_testkit::ask(
            &self.node,
            &self.caller,
            "service",
            action,
            json!({ "service": service }),
        )
        .await
    }

    /// Calls and expects success with `status`.
    async fn expect(&self, action: &str, service: &str, status: &str) -> Value {
        let reply = self.call(action, service).await;
        assert_eq!(reply.statuscode, StatusCode::Ok, "{action}: {reply:?}");
        assert_eq!(reply.data["status"], status, "{action}: {reply:?}");
        reply.data
    }
}

fn pid_in(pidfile: &Path) -> Option<i32> {
    std::fs::read_to_string(pidfile)
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|pid| *pid > 0)
}

/// Whether `pid` is a live process (a zombie waiting for its parent is gone).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// Waits briefly for `pid` to go: a killed process may take a moment.
async fn gone(pid: i32) -> bool {
    for _ in 0..50 {
        if !alive(pid) {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn a_sysv_service_is_started_restarted_and_stopped_for_real() {
    let f = Fixture::new();
    let _daemon = f.install("muster-test");

    let data = f.expect("status", "muster-test", "stopped").await;
    assert_eq!(data["output"], "daemon is not running");
    assert!(pid_in(&f.pidfile()).is_none());

    let data = f.expect("start", "muster-test", "running").await;
    assert_eq!(data["output"], "started daemon");
    let first = pid_in(&f.pidfile()).expect("start wrote a pid");
    assert!(alive(first), "the daemon {first} runs");
    f.expect("status", "muster-test", "running").await;

    // Starting a running service changes nothing and is no error.
    f.expect("start", "muster-test", "running").await;
    assert_eq!(pid_in(&f.pidfile()), Some(first));

    f.expect("restart", "muster-test", "running").await;
    let second = pid_in(&f.pidfile()).expect("restart wrote a pid");
    assert_ne!(first, second, "restart started a new process");
    assert!(gone(first).await, "the old daemon {first} is gone");
    assert!(alive(second));

    f.expect("stop", "muster-test", "stopped").await;
    assert!(gone(second).await, "the daemon {second} is gone after stop");
    assert!(pid_in(&f.pidfile()).is_none());
    f.expect("status", "muster-test", "stopped").await;

    // Stopping a stopped service is no error either.
    f.expect("stop", "muster-test", "stopped").await;
}

#[tokio::test]
async fn a_missing_init_script_is_no_such_service() {
    let f = Fixture::new();
    for action in ["status", "start", "stop", "restart"] {
        let reply = f.call(action, "not-installed").await;
        assert_eq!(reply.statuscode, StatusCode::Aborted, "{action}: {reply:?}");
        assert_eq!(reply.statusmsg, "no such service: not-installed");
    }
}

#[tokio::test]
async fn names_that_are_not_shell_safe_are_refused_and_nothing_runs() {
    let f = Fixture::new();
    // A script whose name the hostile ones point at, which must never run.
    let _daemon = f.install("muster-test");
    let hostile = [
        "muster-test; touch /tmp/pwned",
        "muster-test`id`",
        "$(reboot)",
        "../init.d/muster-test",
        "muster test",
        "--help",
        "..",
        "muster-test\n",
        "",
        &"a".repeat(129),
    ];
    for name in hostile {
        let reply = f.call("start", name).await;
        assert_eq!(
            reply.statuscode,
            StatusCode::InvalidData,
            "{name:?}: {reply:?}"
        );
    }
    assert!(
        pid_in(&f.pidfile()).is_none(),
        "no hostile request started the service"
    );
}

#[tokio::test]
async fn a_failing_script_is_reported_with_its_output() {
    let f = Fixture::new();
    let path = f.dir.path().join("init.d/broken");
    std::fs::write(
        &path,
        "#!/bin/sh\necho \"cannot $1: config is broken\" >&2\nexit 1\n",
    )
    .expect("write");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");

    // LSB: a non-zero status other than 0 means not running.
    f.expect("status", "broken", "stopped").await;
    let reply = f.call("start", "broken").await;
    assert_eq!(reply.statuscode, StatusCode::Aborted, "{reply:?}");
    assert_eq!(
        reply.statusmsg,
        "could not start broken: exit code 1: cannot start: config is broken"
    );
}

#[tokio::test]
async fn a_hanging_script_is_killed_at_the_timeout_with_its_children() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::create_dir(dir.path().join("init.d")).expect("init.d");
    let pidfile = dir.path().join("child.pid");
    let path = dir.path().join("init.d/hangs");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nsleep 1000 &\necho $! > {}\necho waiting\nwait\n",
            pidfile.display()
        ),
    )
    .expect("write");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let _child = KillDaemon(pidfile.clone());

    let pki = TestPki::shared();
    let caller = pki.credential("alice.mcollective");
    let mut node = simulated_node("node01", 1, pki.authority());
    let settings = Config::parse(&format!(
        "plugin.service.provider = sysv\nplugin.service.initd = {}\nplugin.service.timeout = 1\n",
        dir.path().join("init.d").display()
    ))
    .expect("settings parse");
    node.add_agent(Arc::new(
        Service::from_settings(&settings).expect("settings"),
    ));
    let f = Fixture { node, caller, dir };

    let started = std::time::Instant::now();
    let reply = f.call("status", "hangs").await;
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(reply.statuscode, StatusCode::Aborted, "{reply:?}");
    assert!(
        reply
            .statusmsg
            .contains("hangs status did not finish within 1 s and was killed: waiting"),
        "{reply:?}"
    );
    let child = pid_in(&pidfile).expect("the script started its child");
    assert!(
        gone(child).await,
        "the script's child {child} was killed too"
    );
}

#[test]
fn an_unknown_provider_is_a_config_error_naming_its_line() {
    let settings = Config::parse("identity = a\nplugin.service.provider = upstart\n").unwrap();
    let err = Service::from_settings(&settings).err().expect("refused");
    assert_eq!(err.line, Some(2));
    assert!(err.message.contains("upstart"), "{err}");
}
