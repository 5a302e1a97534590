//! The `package` agent against the machine's real dpkg and apt, through
//! `Node::handle` so the DDL's input checks run as in production.
//!
//! The test builds a tiny `.deb` in two versions with `dpkg-deb`, serves
//! them from a local file repository that apt reads through its own
//! temporary lists (never the network, never the machine's sources), and
//! purges the package again whatever happens. The tests share one lock:
//! dpkg allows one writer, and scripts written while another test forks
//! could be "text file busy".

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use muster_pki::Credential;
use muster_protocol::{Reply, StatusCode};
use muster_server::Node;
use muster_testkit::apt::{dpkg_version, is_root, PurgeOnDrop, Repository, PACKAGE, PAYLOAD};
use serde_json::{json, Value};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A node running the package agent as `settings` configure it.
struct Harness {
    node: Node,
    caller: Credential,
}

impl Harness {
    fn new(settings: &str) -> Harness {
        let agent = package_from(settings).expect("valid package settings");
        let (node, caller) = muster_testkit::node_with(agent);
        Harness { node, caller }
    }

    async fn call(&self, action: &str, inputs: Value) -> Reply {
        muster_testkit::ask(&self.node, &self.caller, "package", action, inputs).await
    }

    /// Runs `action` on the test package and insists it succeeded.
    async fn ok(&self, action: &str, inputs: Value) -> Value {
        let reply = self.call(action, inputs).await;
        assert_eq!(
            reply.statuscode,
            StatusCode::Ok,
            "{action}: {}",
            reply.statusmsg
        );
        reply.data
    }
}

/// The package agent `for_config` builds from these settings.
fn package_from(settings: &str) -> Result<Arc<dyn muster_server::Agent>, String> {
    muster_testkit::agent_from(settings, "package")
}

fn payload() -> Option<String> {
    std::fs::read_to_string(PAYLOAD)
        .ok()
        .map(|s| s.trim().to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn apt_installs_updates_and_removes_a_real_package() {
    let _serial = SERIAL.lock().await;
    if !is_root() {
        eprintln!("skipped: installing packages needs root");
        return;
    }
    let _purge = PurgeOnDrop;
    // A run that crashed before its guard ran left it behind.
    drop(PurgeOnDrop);
    assert_eq!(dpkg_version(), None, "{PACKAGE} is still installed");

    let repo = Repository::build();
    let h = Harness::new(&format!(
        "plugin.package.provider = apt\nplugin.package.apt_options = {}",
        repo.apt_options
    ));
    let package = json!({ "package": PACKAGE });

    let status = h.ok("status", package.clone()).await;
    assert_eq!(status["ensure"], "absent");
    assert_eq!(status["version"], "");
    assert_eq!(status["name"], PACKAGE);
    assert_eq!(status["provider"], "apt");

    let installed = h
        .ok("install", json!({ "package": PACKAGE, "version": "1.0" }))
        .await;
    assert_eq!(installed["ensure"], "1.0");
    assert_eq!(installed["version"], "1.0");
    assert_eq!(installed["arch"], "all");
    assert!(
        installed["output"]
            .as_str()
            .is_some_and(|o| o.contains("Setting up muster-test-pkg (1.0)")),
        "{}",
        installed["output"]
    );
    assert_eq!(dpkg_version().as_deref(), Some("1.0"));
    assert_eq!(payload().as_deref(), Some("1.0"));

    let status = h.ok("status", package.clone()).await;
    assert_eq!(status["ensure"], "1.0");
    assert_eq!(status["arch"], "all");
    assert_eq!(status["epoch"], "0");
    assert_eq!(status["release"], "");

    let updated = h.ok("update", package.clone()).await;
    assert_eq!(updated["ensure"], "1.1");
    assert_eq!(dpkg_version().as_deref(), Some("1.1"));
    assert_eq!(payload().as_deref(), Some("1.1"));

    let removed = h.ok("uninstall", package.clone()).await;
    assert_eq!(removed["ensure"], "absent");
    assert_eq!(dpkg_version(), None);
    assert_eq!(payload(), None);

    // Updating what is not installed fails rather than installing it.
    let reply = h.call("update", package.clone()).await;
    assert_eq!(reply.statuscode, StatusCode::Aborted, "{reply:?}");
    assert!(reply.statusmsg.contains("not installed"), "{reply:?}");
    assert_eq!(dpkg_version(), None);

    // Without a version, install takes the newest.
    let installed = h.ok("install", package.clone()).await;
    assert_eq!(installed["ensure"], "1.1");
    let purged = h.ok("purge", package.clone()).await;
    assert_eq!(purged["ensure"], "purged");
    assert_eq!(dpkg_version(), None);
    assert_eq!(payload(), None);
    assert_eq!(h.ok("status", package.clone()).await["ensure"], "absent");

    // A version the repository does not have: apt's own words, status 1.
    let reply = h
        .call("install", json!({ "package": PACKAGE, "version": "9.9" }))
        .await;
    assert_eq!(reply.statuscode, StatusCode::Aborted, "{reply:?}");
    assert!(
        reply.statusmsg.contains("Version '9.9'") && reply.statusmsg.contains("was not found"),
        "{reply:?}"
    );
    assert_eq!(dpkg_version(), None);
}

/// `dpkg-query --list` as the machine answers it now: the number of
/// installed packages, and the md5 of their lines (what upstream digests).
fn dpkg_listing() -> (String, String) {
    use md5::{Digest, Md5};
    let listing = muster_testkit::apt::run("dpkg-query", &["--list"]);
    let text = String::from_utf8_lossy(&listing.stdout).into_owned();
    let installed: Vec<&str> = text.lines().filter(|l| l.starts_with("ii")).collect();
    let digest = Md5::digest(installed.join("\n").as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    (installed.len().to_string(), digest)
}

#[tokio::test(flavor = "multi_thread")]
async fn apt_counts_searches_and_checks_updates_against_a_local_repository() {
    let _serial = SERIAL.lock().await;
    if !is_root() {
        eprintln!("skipped: installing packages needs root");
        return;
    }
    let _purge = PurgeOnDrop;
    drop(PurgeOnDrop);
    let repo = Repository::build();
    let h = Harness::new(&format!(
        "plugin.package.provider = apt\nplugin.package.apt_options = {} --no-install-recommends",
        repo.apt_options
    ));

    // search asks apt-cache, which gets only the configuration options.
    let found = h.ok("search", json!({ "package": PACKAGE })).await;
    assert_eq!(found["package_count"], 2, "{found}");
    let versions: Vec<&str> = found["available_packages"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|p| {
            assert_eq!(p["package"], PACKAGE);
            assert!(
                p["repo"].as_str().is_some_and(|r| r.starts_with("file:")),
                "{p}"
            );
            p["version"].as_str().expect("a version")
        })
        .collect();
    assert_eq!(versions, ["1.1", "1.0"]);
    let none = h
        .ok("search", json!({ "package": "muster-no-such-pkg" }))
        .await;
    assert_eq!(none["package_count"], 0, "{none}");

    // count and md5 agree with dpkg itself, before and after an install.
    for _ in 0..2 {
        let (count, digest) = dpkg_listing();
        let counted = h.ok("count", json!({})).await;
        assert_eq!(counted["output"], count.as_str());
        assert_eq!(counted["exitcode"], 0);
        let md5 = h.ok("md5", json!({})).await;
        assert_eq!(md5["output"], digest.as_str());
        assert_eq!(md5["exitcode"], 0);
        if dpkg_version().is_none() {
            h.ok("install", json!({ "package": PACKAGE, "version": "1.0" }))
                .await;
        }
    }
    assert_eq!(dpkg_version().as_deref(), Some("1.0"));

    // With 1.0 installed and 1.1 in the repository, every way of checking
    // names the upgrade and makes none. Only the test repository is in
    // apt's sources, so nothing else is outdated.
    let outdated = json!([{ "package": PACKAGE, "version": "1.1" }]);
    for action in ["apt_checkupdates", "checkupdates", "apt_update", "refresh"] {
        let checked = h.ok(action, json!({})).await;
        assert_eq!(checked["package_manager"], "apt", "{action}: {checked}");
        assert_eq!(checked["exitcode"], 0, "{action}: {checked}");
        let listed: Vec<Value> = checked["outdated_packages"]
            .as_array()
            .unwrap_or_else(|| panic!("{action}: {checked}"))
            .iter()
            .map(|p| json!({ "package": p["package"], "version": p["version"] }))
            .collect();
        assert_eq!(Value::from(listed), outdated, "{action}: {checked}");
        assert!(
            checked["output"]
                .as_str()
                .is_some_and(|o| o.contains("Inst muster-test-pkg [1.0] (1.1")),
            "{action}: {checked}"
        );
        assert_eq!(
            dpkg_version().as_deref(),
            Some("1.0"),
            "{action} changed the machine"
        );
    }

    // Up to date: nothing outdated.
    h.ok("update", json!({ "package": PACKAGE })).await;
    let checked = h.ok("checkupdates", json!({})).await;
    assert_eq!(checked["outdated_packages"], json!([]), "{checked}");

    // Not the apt family: answered like upstream on Debian, status 1.
    for action in ["yum_clean", "yum_checkupdates"] {
        let reply = h.call(action, json!({})).await;
        assert_eq!(reply.statuscode, StatusCode::Aborted, "{reply:?}");
        assert!(
            reply.statusmsg.contains("cannot find dnf or yum"),
            "{reply:?}"
        );
    }
}

#[tokio::test]
async fn apt_update_failing_says_why_with_its_exit_code() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let dpkg_query = script(dir.path(), "dpkg-query", "exit 0");
    let apt_get = script(
        dir.path(),
        "apt-get",
        "echo 'E: The repository is not signed.' >&2\nexit 100",
    );
    let h = Harness::new(&format!(
        "plugin.package.provider = apt\nplugin.package.dpkg_query = {}\nplugin.package.apt_get = {}",
        dpkg_query.display(),
        apt_get.display()
    ));
    let reply = h.call("apt_update", json!({})).await;
    assert_eq!(reply.statuscode, StatusCode::Aborted, "{reply:?}");
    assert!(
        reply
            .statusmsg
            .contains("apt-get update failed (exit status 100)"),
        "{reply:?}"
    );
    assert!(reply.statusmsg.contains("not signed"), "{reply:?}");
    assert_eq!(reply.data["exitcode"], 100, "{reply:?}");
}

/// A stand-in `yum` printing what yum 3 and dnf print, recording its
/// arguments in `ran`.
const FAKE_YUM: &str = r#"echo "$@" >> "$RAN"
case "$*" in
  *check-update*)
    printf '\nbash.x86_64                 5.1.8-9.el9               baseos\nopenssl-libs.x86_64   1:3.0.7-27.el9    baseos\nObsoleting Packages\ngrub2-tools.x86_64  1:2.06-70.el9  baseos\n    grub2-tools.x86_64  1:2.06-61.el9  @baseos\n'
    exit 100;;
  *clean*) echo "12 files removed"; exit 0;;
  *"list available"*)
    printf 'Available Packages\nrsync.x86_64   3.2.3-19.el9   baseos\n'; exit 0;;
esac
exit 1"#;

#[tokio::test]
async fn yum_actions_drive_yum_as_upstream_reads_it() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ran = dir.path().join("ran");
    let yum = script(
        dir.path(),
        "yum",
        &format!("RAN={}\n{FAKE_YUM}", ran.display()),
    );
    let rpm = script(
        dir.path(),
        "rpm",
        "printf 'bash-5.1.8-6.el9.x86_64\nrsync-3.2.3-19.el9.x86_64\n'",
    );
    let h = Harness::new(&format!(
        "plugin.package.provider = yum\nplugin.package.yum = {}\nplugin.package.rpm = {}\n\
         plugin.package.yum_options = --disablerepo=epel\nplugin.package.yum_clean_mode = metadata",
        yum.display(),
        rpm.display()
    ));

    for action in ["yum_checkupdates", "checkupdates"] {
        let checked = h.ok(action, json!({})).await;
        assert_eq!(checked["exitcode"], 100, "{checked}");
        assert_eq!(checked["package_manager"], "yum");
        assert_eq!(
            checked["outdated_packages"],
            json!([
                { "package": "bash.x86_64", "version": "5.1.8-9.el9", "repo": "baseos" },
                { "package": "openssl-libs.x86_64", "version": "1:3.0.7-27.el9", "repo": "baseos" }
            ]),
            "{checked}"
        );
    }
    let cleaned = h.ok("yum_clean", json!({})).await;
    assert_eq!(cleaned["exitcode"], 0);
    assert_eq!(cleaned["output"], "12 files removed");
    h.ok("yum_clean", json!({ "mode": "all" })).await;
    let refreshed = h.ok("refresh", json!({})).await;
    assert_eq!(
        refreshed["outdated_packages"].as_array().map(Vec::len),
        Some(2)
    );
    let found = h.ok("search", json!({ "package": "rsync" })).await;
    assert_eq!(found["package_count"], 1);
    assert_eq!(
        found["available_packages"],
        json!([{ "package": "rsync.x86_64", "version": "3.2.3-19.el9", "repo": "baseos" }])
    );
    assert_eq!(h.ok("count", json!({})).await["output"], "2");

    let args = std::fs::read_to_string(&ran).expect("yum ran");
    assert_eq!(
        args.lines().collect::<Vec<_>>(),
        [
            "--disablerepo=epel -q check-update",
            "--disablerepo=epel -q check-update",
            "--disablerepo=epel -q clean metadata",
            "--disablerepo=epel -q clean all",
            "--disablerepo=epel -q clean metadata",
            "--disablerepo=epel -q check-update",
            "--disablerepo=epel -q list available rsync",
        ]
    );

    // A mode yum does not have is refused before yum runs.
    let reply = h.call("yum_clean", json!({ "mode": "everything" })).await;
    assert_eq!(reply.statuscode, StatusCode::InvalidData, "{reply:?}");
    assert_eq!(
        std::fs::read_to_string(&ran).expect("ran").lines().count(),
        7
    );

    // The apt actions need apt, whatever the provider.
    let h = Harness::new(&format!(
        "plugin.package.provider = yum\nplugin.package.yum = {}\nplugin.package.rpm = {}\n\
         plugin.package.apt_get = /nonexistent/muster/apt-get",
        yum.display(),
        rpm.display()
    ));
    for action in ["apt_update", "apt_checkupdates"] {
        let reply = h.call(action, json!({})).await;
        assert_eq!(reply.statuscode, StatusCode::Aborted, "{reply:?}");
        assert!(reply.statusmsg.contains("cannot find apt"), "{reply:?}");
        assert!(
            reply.statusmsg.contains("/nonexistent/muster/apt-get"),
            "{reply:?}"
        );
    }
}

/// An executable script in `dir`.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

#[tokio::test]
async fn names_that_are_not_shell_safe_are_refused_before_anything_runs() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ran = dir.path().join("ran");
    let record = format!("echo \"$@\" >> {}\nexit 1", ran.display());
    let dpkg_query = script(dir.path(), "dpkg-query", &record);
    let apt_get = script(dir.path(), "apt-get", &record);
    let h = Harness::new(&format!(
        "plugin.package.provider = apt\nplugin.package.dpkg_query = {}\nplugin.package.apt_get = {}",
        dpkg_query.display(),
        apt_get.display()
    ));

    let hostile = [
        json!({ "package": "vim;reboot" }),
        json!({ "package": "vim && reboot" }),
        json!({ "package": "$(reboot)" }),
        json!({ "package": "-oAPT::Update::Pre-Invoke::=reboot" }),
        json!({ "package": "vim*" }),
        json!({ "package": "x".repeat(129) }),
        json!({ "package": ["vim"] }),
    ];
    for action in [
        "status",
        "install",
        "update",
        "uninstall",
        "purge",
        "search",
    ] {
        for inputs in &hostile {
            let reply = h.call(action, inputs.clone()).await;
            assert_eq!(
                reply.statuscode,
                StatusCode::InvalidData,
                "{action} {inputs}: {reply:?}"
            );
        }
        let reply = h.call(action, json!({})).await;
        assert_eq!(reply.statuscode, StatusCode::MissingData, "{reply:?}");
    }
    let reply = h
        .call(
            "install",
            json!({ "package": "vim", "version": "1;reboot" }),
        )
        .await;
    assert_eq!(reply.statuscode, StatusCode::InvalidData, "{reply:?}");
    assert!(!ran.exists(), "a tool ran for a refused request");

    // The same node does run its tools for a good name.
    let reply = h.call("status", json!({ "package": "vim" })).await;
    assert_eq!(reply.statuscode, StatusCode::Ok, "{reply:?}");
    assert_eq!(reply.data["ensure"], "absent");
    let args = std::fs::read_to_string(&ran).expect("dpkg-query ran");
    assert!(args.trim_end().ends_with(" vim"), "{args:?}");
}

#[tokio::test]
async fn a_node_without_a_package_tool_says_so() {
    let _serial = SERIAL.lock().await;
    let forced = Harness::new(
        "plugin.package.provider = apt\n\
         plugin.package.dpkg_query = /nonexistent/muster/dpkg-query\n\
         plugin.package.apt_get = /nonexistent/muster/apt-get",
    );
    let detected = Harness::new(
        "plugin.package.dpkg_query = /nonexistent/muster/dpkg-query\n\
         plugin.package.apt_get = /nonexistent/muster/apt-get\n\
         plugin.package.rpm = /nonexistent/muster/rpm\n\
         plugin.package.dnf = /nonexistent/muster/dnf\n\
         plugin.package.yum = /nonexistent/muster/yum",
    );
    for (h, detail) in [
        (&forced, "/nonexistent/muster/dpkg-query"),
        (&detected, "/nonexistent/muster/yum"),
    ] {
        for action in [
            "status",
            "install",
            "update",
            "uninstall",
            "purge",
            "search",
            "count",
            "md5",
            "checkupdates",
            "refresh",
        ] {
            let inputs = match action {
                "count" | "md5" | "checkupdates" | "refresh" => json!({}),
                _ => json!({ "package": "rsync" }),
            };
            let reply = h.call(action, inputs).await;
            assert_eq!(reply.statuscode, StatusCode::Aborted, "{reply:?}");
            assert!(
                reply
                    .statusmsg
                    .contains("no package provider found on this node"),
                "{reply:?}"
            );
            assert!(reply.statusmsg.contains(detail), "{reply:?}");
        }
    }
}

#[tokio::test]
async fn a_hung_tool_is_killed_at_the_timeout() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let pid_file = dir.path().join("pid");
    // The tool's own child must die too: the whole process group is killed.
    let dpkg_query = script(
        dir.path(),
        "dpkg-query",
        &format!("sleep 60 &\necho $! > {}\nwait", pid_file.display()),
    );
    let apt_get = script(dir.path(), "apt-get", "exit 0");
    let h = Harness::new(&format!(
        "plugin.package.provider = apt\nplugin.package.timeout = 1\n\
         plugin.package.dpkg_query = {}\nplugin.package.apt_get = {}",
        dpkg_query.display(),
        apt_get.display()
    ));

    let started = Instant::now();
    let reply = h.call("status", json!({ "package": "rsync" })).await;
    assert!(started.elapsed() < Duration::from_secs(20), "{reply:?}");
    assert_eq!(reply.statuscode, StatusCode::Aborted, "{reply:?}");
    assert!(reply.statusmsg.contains("timed out after 1 s"), "{reply:?}");

    let pid = std::fs::read_to_string(&pid_file).expect("the tool started");
    let proc_dir = PathBuf::from(format!("/proc/{}", pid.trim()));
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(&proc_dir) {
        assert!(
            Instant::now() < deadline,
            "the tool's child {} survived",
            pid.trim()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether a process exists and is not a zombie waiting to be reaped.
fn alive(proc_dir: &Path) -> bool {
    std::fs::read_to_string(proc_dir.join("stat"))
        .map(|stat| {
            stat.rsplit_once(')')
                .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

#[test]
fn bad_settings_name_their_line() {
    let cases = [
        ("plugin.package.provider = zypper", "zypper"),
        ("plugin.package.timeout = soon", "plugin.package.timeout"),
        ("plugin.package.timeout = 0", "at least 1"),
        ("plugin.package.yum_clean_mode = everything", "everything"),
    ];
    for (setting, mention) in cases {
        let err = package_from(&format!("\n{setting}"))
            .err()
            .unwrap_or_else(|| panic!("{setting} was accepted"));
        assert!(err.contains(":3:"), "{setting}: {err}");
        assert!(err.contains(mention), "{setting}: {err}");
    }
}
