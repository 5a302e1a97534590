//! End to end: the agent applications (`mco filemgr`, `mco package`,
//! `mco service`, `mco puppet`, `mco rpc` on an external agent) through
//! the broker and a real `mco server` process, against the real things:
//! files, dpkg, a sysv init script that starts a real process, puppet.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use muster_testkit::{stderr, stdout, BrokerKind, Caller, NodeSetup, ServerProcess, TestBroker};

const MCO: &str = env!("CARGO_BIN_EXE_mco");

async fn mco(args: &[&str]) -> Output {
    muster_testkit::run_mco(MCO, args).await
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/agents")
}

/// A sysv init script that starts and stops a real background process.
const INIT_SCRIPT: &str = r#"#!/bin/sh
PIDFILE="$(dirname "$0")/../run/mustersvc.pid"
running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }
case "$1" in
  start) running && exit 0
         sleep 1000 >/dev/null 2>&1 </dev/null &
         echo $! > "$PIDFILE"; exit 0 ;;
  stop) running && kill "$(cat "$PIDFILE")"; rm -f "$PIDFILE"; exit 0 ;;
  restart) "$0" stop; "$0" start ;;
  status) if running; then echo "running"; exit 0; else echo "stopped"; exit 3; fi ;;
  *) echo "usage: $0 start|stop|restart|status"; exit 2 ;;
esac
"#;

/// Kills the test service's process, whatever happened.
struct ServiceGuard(PathBuf);

impl ServiceGuard {
    fn pid(&self) -> Option<String> {
        std::fs::read_to_string(&self.0)
            .ok()
            .map(|p| p.trim().to_string())
    }
}

impl Drop for ServiceGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            let _ = std::process::Command::new("kill").arg(&pid).status();
        }
    }
}

/// Whether the process runs (a zombie waiting to be reaped does not).
fn alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit(')')
                .next()
                .map(|rest| rest.trim_start().starts_with('Z'))
        })
        .is_some_and(|zombie| !zombie)
}

/// Waits up to 5 s for a process to end.
async fn ended(pid: &str) -> bool {
    for _ in 0..50 {
        if !alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

struct Setup {
    _broker: TestBroker,
    _caller: Caller,
    dir: tempfile::TempDir,
    config: String,
    server: ServerProcess,
}

impl Setup {
    /// A broker and one `mco server`; `extra` adds settings, with `{dir}`
    /// standing for the test's temporary directory.
    async fn start(extra: &str) -> Setup {
        let broker = TestBroker::start(BrokerKind::Embedded).await;
        let caller = Caller::new("tester");
        let dir = tempfile::tempdir().unwrap();
        for sub in ["init.d", "run", "files"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        let script = dir.path().join("init.d/mustersvc");
        std::fs::write(&script, INIT_SCRIPT).unwrap();
        std::process::Command::new("chmod")
            .arg("755")
            .arg(&script)
            .status()
            .unwrap();
        let settings = format!(
            "plugin.service.provider = sysv\nplugin.service.initd = {}\n\
             plugin.filemgr.allowed_paths = {}\nplugin.external.agents_dir = {}\n{}",
            dir.path().join("init.d").display(),
            dir.path().join("files").display(),
            examples().display(),
            extra.replace("{dir}", &dir.path().display().to_string()),
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
        // The client finds the external agent's DDL where the node does.
        let mut text = std::fs::read_to_string(&config).unwrap();
        text.push_str(&format!(
            "plugin.external.agents_dir = {}\n",
            examples().display()
        ));
        std::fs::write(&config, text).unwrap();
        let setup = Setup {
            _broker: broker,
            _caller: caller,
            dir,
            config: config.display().to_string(),
            server,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ping = mco(&["ping", "--config", &setup.config, "-t", "1"]).await;
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
        all.extend(["--config", &self.config, "-I", "node1"]);
        mco(&all).await
    }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_act_on_the_real_machine_through_the_broker() {
    let setup = Setup::start("").await;

    // filemgr: touch, status with its summary, remove.
    let file = setup.dir.path().join("files/motd");
    let path = file.display().to_string();
    let out = ok(&setup.run(&["filemgr", "touch", "--file", &path]).await);
    assert!(out.contains("node1: created"), "{out}");
    assert!(file.exists());
    let out = ok(&setup.run(&["filemgr", "status", "--file", &path]).await);
    assert!(out.contains("node1: present"), "{out}");
    assert!(out.contains("Summary of"), "{out}");
    assert!(out.contains("Finished processing 1 / 1 hosts"), "{out}");
    ok(&setup.run(&["filemgr", "remove", "--file", &path]).await);
    assert!(!file.exists());
    let outside = setup
        .run(&["filemgr", "touch", "--file", "/tmp/muster-not-allowed"])
        .await;
    assert_eq!(outside.status.code(), Some(1), "{}", stdout(&outside));
    assert!(!Path::new("/tmp/muster-not-allowed").exists());

    // package: the real dpkg answers for an installed package.
    let version = std::process::Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", "dpkg"])
        .output()
        .unwrap();
    let version = String::from_utf8_lossy(&version.stdout).to_string();
    let out = ok(&setup.run(&["package", "dpkg", "status"]).await);
    assert!(out.contains(&format!("node1: {version}")), "{out}");
    assert!(
        out.contains("Summary of Ensure") || out.contains("Summary of ensure"),
        "{out}"
    );
    let out = ok(&setup
        .run(&["package", "status", "muster-no-such-package"])
        .await);
    assert!(out.contains("node1: absent"), "{out}");
    // Not shell-safe: refused by the DDL before anything is sent.
    let refused = setup.run(&["package", "vim;reboot", "status"]).await;
    assert_eq!(refused.status.code(), Some(2));
    assert!(stderr(&refused).contains("package"), "{}", stderr(&refused));

    // service: a real sysv script starting and stopping a real process.
    let guard = ServiceGuard(setup.dir.path().join("run/mustersvc.pid"));
    let out = ok(&setup.run(&["service", "mustersvc", "status"]).await);
    assert!(out.contains("node1: stopped"), "{out}");
    let out = ok(&setup.run(&["service", "start", "mustersvc"]).await);
    assert!(out.contains("node1: running"), "{out}");
    let pid = guard.pid().expect("the init script wrote its pid file");
    assert!(alive(&pid));
    let out = ok(&setup.run(&["service", "mustersvc", "restart"]).await);
    assert!(out.contains("node1: running"), "{out}");
    let new_pid = guard.pid().expect("pid file after restart");
    assert_ne!(pid, new_pid);
    let out = ok(&setup.run(&["service", "mustersvc", "stop"]).await);
    assert!(out.contains("node1: stopped"), "{out}");
    assert!(
        ended(&new_pid).await,
        "the service's process is still running"
    );
    let missing = setup.run(&["service", "nosuchservice", "status"]).await;
    assert_eq!(missing.status.code(), Some(1), "{}", stdout(&missing));

    // An external agent written in Python, validated by its DDL on both sides.
    let out = ok(&setup
        .run(&["rpc", "hello", "echo", "message=hi there"])
        .await);
    assert!(out.contains("hi there"), "{out}");
    assert!(out.contains("Summary of"), "{out}");
    let bad = setup.run(&["rpc", "hello", "echo"]).await;
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("missing required input \"message\""),
        "{}",
        stderr(&bad)
    );

    // The DDLs are documented.
    let doc = ok(&mco(&["plugin", "doc", "package", "--config", &setup.config]).await);
    assert!(
        doc.contains("install action:") && doc.contains("ensure:"),
        "{doc}"
    );
    let doc = ok(&mco(&["plugin", "doc", "hello", "--config", &setup.config]).await);
    assert!(doc.contains("echo action:"), "{doc}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn puppet_runs_and_manages_resources_through_the_broker() {
    if !Path::new("/usr/bin/puppet").exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install puppet (.ci/run does)"
        );
        eprintln!("skipped: puppet is not installed");
        return;
    }
    // Puppet's state, config and code stay in the test's directory.
    let settings = "plugin.puppet.vardir = {dir}/puppet/var\nplugin.puppet.confdir = {dir}/puppet/etc\n\
                    plugin.puppet.codedir = {dir}/puppet/code\nplugin.puppet.logdir = {dir}/puppet/log\n\
                    plugin.puppet.rundir = {dir}/puppet/run\nplugin.puppet.apply_manifest = {dir}/site.pp\n\
                    plugin.puppet.resource_allow_types = file\n";
    let setup = Setup::start(settings).await;
    let dir = setup.dir.path();
    let managed = dir.join("files/managed.txt");
    std::fs::write(
        dir.join("site.pp"),
        format!(
            "file {{ '{}': ensure => file, content => \"from puppet\\n\" }}\n",
            managed.display()
        ),
    )
    .unwrap();

    // One resource, the way `mco puppet resource` is used.
    let motd = dir.join("files/motd");
    let out = ok(&setup
        .run(&[
            "puppet",
            "resource",
            "file",
            &motd.display().to_string(),
            "content=hello",
            "ensure=file",
        ])
        .await);
    assert!(out.contains("Summary of"), "{out}");
    assert_eq!(std::fs::read_to_string(&motd).unwrap(), "hello");
    let denied = setup
        .run(&[
            "puppet",
            "resource",
            "exec",
            "touch-it",
            "command=/bin/true",
        ])
        .await;
    assert_eq!(denied.status.code(), Some(1), "{}", stdout(&denied));

    // A no-op run changes nothing; a real one applies the manifest.
    ok(&setup.run(&["puppet", "runonce", "--noop"]).await);
    assert!(!managed.exists());
    ok(&setup.run(&["puppet", "runall", "1"]).await);
    assert_eq!(std::fs::read_to_string(&managed).unwrap(), "from puppet\n");
    let out = ok(&setup.run(&["puppet", "summary"]).await);
    assert!(out.contains("1 changed, 0 failed"), "{out}");

    // Disabled with a reason: status says so, runs are refused, count agrees.
    ok(&setup
        .run(&["puppet", "disable", "maintenance window"])
        .await);
    let out = ok(&setup.run(&["puppet", "status"]).await);
    assert!(out.contains("maintenance window"), "{out}");
    let refused = setup.run(&["puppet", "runonce"]).await;
    assert_eq!(refused.status.code(), Some(1), "{}", stdout(&refused));
    let out = ok(&setup.run(&["puppet", "count"]).await);
    assert!(out.contains("Nodes currently disabled: 1"), "{out}");
    ok(&setup.run(&["puppet", "enable"]).await);
    let out = ok(&setup.run(&["puppet", "count"]).await);
    assert!(out.contains("Nodes currently enabled: 1"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn package_lifecycle_through_the_broker() {
    use muster_testkit::apt::{dpkg_version, is_root, PurgeOnDrop, Repository, PACKAGE};
    if !is_root() {
        eprintln!("skipped: installing packages needs root");
        return;
    }
    let repository = Repository::build();
    let _purge = PurgeOnDrop;
    let settings = format!(
        "plugin.package.provider = apt\nplugin.package.apt_options = {}\n",
        repository.apt_options
    );
    let setup = Setup::start(&settings).await;

    let out = ok(&setup.run(&["package", PACKAGE, "status"]).await);
    assert!(out.contains("node1: absent"), "{out}");
    let out = ok(&setup
        .run(&["package", "install", PACKAGE, "--pkg-version", "1.0"])
        .await);
    assert!(
        out.contains("node1: 1.0") && out.contains("1.0 = 1"),
        "{out}"
    );
    assert_eq!(dpkg_version().as_deref(), Some("1.0"));
    let out = ok(&setup.run(&["package", PACKAGE, "update"]).await);
    assert!(out.contains("node1: 1.1"), "{out}");
    assert_eq!(dpkg_version().as_deref(), Some("1.1"));
    let out = ok(&setup.run(&["package", PACKAGE, "uninstall"]).await);
    assert!(out.contains("node1: absent"), "{out}");
    assert_eq!(dpkg_version(), None);
    ok(&setup.run(&["package", PACKAGE, "install"]).await);
    let out = ok(&setup.run(&["package", "purge", PACKAGE]).await);
    assert!(out.contains("node1: purged"), "{out}");
    assert_eq!(dpkg_version(), None);
    // A version apt does not have: the node says so, the exit code too.
    let missing = setup
        .run(&["package", "install", PACKAGE, "--pkg-version", "9.9"])
        .await;
    assert_eq!(missing.status.code(), Some(1), "{}", stdout(&missing));
}
