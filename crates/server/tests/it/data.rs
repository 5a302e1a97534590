//! Data plugins are bounded whoever asks: `fstat` never opens a FIFO,
//! device, socket or kernel file, never hashes more than `MAX_HASH_BYTES`,
//! and `sysctl` cannot leave `/proc/sys`. Every call that could block runs
//! in a thread waited on with a generous timeout, so a regression fails the
//! test instead of hanging it.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use md5::{Digest, Md5};
use muster_server::data::{self, Properties};
use serde_json::json;

/// Long enough for a loaded CI machine, short enough to tell "blocked".
const PROMPTLY: Duration = Duration::from_secs(10);

/// `f()`, or a failure naming `what` if it does not return within PROMPTLY.
fn promptly<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(PROMPTLY)
        .unwrap_or_else(|_| panic!("{what} did not return within {PROMPTLY:?}: it blocks"))
}

fn fstat_promptly(path: &Path) -> Result<Properties, String> {
    let p = path.to_str().expect("utf-8 path").to_string();
    promptly(&format!("fstat('{p}')"), move || {
        data::fstat(&p).map_err(|e| e.to_string())
    })
}

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(status.success(), "mkfifo {}", path.display());
}

fn md5_hex(bytes: &[u8]) -> String {
    Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn a_fifo_without_a_writer_is_described_not_opened() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("fifo");
    mkfifo(&fifo);
    let r = fstat_promptly(&fifo).expect("fstat");
    assert_eq!(r["present"], 1);
    assert_eq!(r["output"], "present");
    assert_eq!(r["type"], "fifo");
    assert_eq!(r["md5"], 0, "a FIFO is not hashed");
    assert!(r["mode"].as_str().is_some_and(|m| m.starts_with("10")));
}

#[test]
fn a_hundred_concurrent_fstats_of_a_fifo_all_return() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("fifo");
    mkfifo(&fifo);
    let (tx, rx) = mpsc::channel();
    for _ in 0..100 {
        let (tx, fifo) = (tx.clone(), fifo.clone());
        std::thread::spawn(move || {
            let _ = tx.send(data::fstat(fifo.to_str().expect("utf-8")));
        });
    }
    drop(tx);
    let deadline = std::time::Instant::now() + PROMPTLY;
    for i in 0..100 {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let r = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("only {i} of 100 fstat calls returned: they block"))
            .expect("fstat");
        assert_eq!(
            (r["type"].clone(), r["md5"].clone()),
            (json!("fifo"), json!(0))
        );
    }
}

#[test]
fn proc_kmsg_is_stated_not_read() {
    // As root, reading /proc/kmsg blocks until the kernel logs something.
    let kmsg = Path::new("/proc/kmsg");
    if !kmsg.exists() {
        return;
    }
    let r = fstat_promptly(kmsg).expect("fstat");
    assert_eq!(r["present"], 1);
    assert_eq!(r["type"], "file", "the kernel calls it a regular file");
    assert_eq!(r["md5"], 0);
}

#[test]
fn kernel_files_are_not_hashed_even_when_they_could_be_read() {
    for path in [
        "/proc/cpuinfo",
        "/proc/self/status",
        "/sys/kernel/uevent_seqnum",
    ] {
        let path = Path::new(path);
        if !path.exists() {
            continue;
        }
        let r = fstat_promptly(path).expect("fstat");
        assert_eq!(r["type"], "file", "{}", path.display());
        assert_eq!(r["md5"], 0, "{}", path.display());
    }
    // The same file reached through a symlinked directory is still on proc.
    let dir = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::symlink("/proc", dir.path().join("p")).expect("symlink");
    let r = fstat_promptly(&dir.path().join("p/kmsg")).expect("fstat");
    assert_eq!(
        (r["type"].clone(), r["md5"].clone()),
        (json!("file"), json!(0))
    );
}

#[test]
fn devices_are_stated_not_read() {
    for path in ["/dev/zero", "/dev/urandom", "/dev/null"] {
        let path = Path::new(path);
        if !path.exists() {
            continue;
        }
        let r = fstat_promptly(path).expect("fstat");
        assert_eq!(r["type"], "chardev", "{}", path.display());
        assert_eq!(r["md5"], 0, "{}", path.display());
    }
}

#[test]
fn a_file_larger_than_the_cap_is_described_without_a_digest() {
    let dir = tempfile::tempdir().expect("tempdir");
    for size in [data::MAX_HASH_BYTES + 1, 4 << 30] {
        let path = dir.path().join(format!("sparse-{size}"));
        // Sparse: no disk is used, but reading it would take all of `size`.
        std::fs::File::create(&path)
            .and_then(|f| f.set_len(size))
            .expect("sparse file");
        let r = fstat_promptly(&path).expect("fstat");
        assert_eq!(r["type"], "file");
        assert_eq!(r["present"], 1);
        assert_eq!(r["size"], size);
        assert_eq!(r["md5"], 0, "a {size}-byte file is not hashed");
    }
}

#[test]
fn small_files_keep_their_md5() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Several of the 64 KiB reads, and a last partial one.
    let contents: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    for (name, bytes) in [
        ("hosts", &b"127.0.0.1 localhost\n"[..]),
        ("empty", &b""[..]),
        ("binary", &contents[..]),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).expect("write");
        let r = fstat_promptly(&path).expect("fstat");
        assert_eq!(r["type"], "file");
        assert_eq!(r["size"], bytes.len());
        assert_eq!(r["md5"], md5_hex(bytes), "{name}");
    }
}

#[test]
fn symlinks_are_described_themselves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(d.join("target"), "x").expect("write");
    mkfifo(&d.join("fifo"));
    let link = |name: &str, to: &Path| -> PathBuf {
        let p = d.join(name);
        std::os::unix::fs::symlink(to, &p).expect("symlink");
        p
    };
    let target = d.join("target");
    for (path, to) in [
        (link("to-file", &target), target.clone()),
        (link("to-fifo", &d.join("fifo")), d.join("fifo")),
        (link("to-zero", Path::new("/dev/zero")), "/dev/zero".into()),
        (
            link("to-kmsg", Path::new("/proc/kmsg")),
            "/proc/kmsg".into(),
        ),
    ] {
        if !to.exists() {
            continue;
        }
        let r = fstat_promptly(&path).expect("fstat");
        assert_eq!(r["type"], "symlink", "{}", path.display());
        assert_eq!(r["present"], 1);
        assert_eq!(r["md5"], 0);
        // An lstat: the size is the target's path length.
        assert_eq!(r["size"], to.as_os_str().len(), "{}", path.display());
        assert!(r["mode"].as_str().is_some_and(|m| m.starts_with("120")));
    }
    let r = fstat_promptly(&link("dangling", &d.join("nowhere"))).expect("fstat");
    assert_eq!(
        (r["output"].clone(), r["present"].clone()),
        (json!("not present"), json!(0))
    );
}

#[test]
fn a_path_swapped_between_stat_and_open_never_blocks() {
    // Another thread keeps replacing `path` with a regular file, a FIFO and
    // a symlink to a FIFO; every fstat must return, with a digest only when
    // it described a regular file, and the right one then.
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_path_buf();
    let path = d.join("swapped");
    mkfifo(&d.join("fifo"));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = {
        let (d, path, stop) = (d.clone(), path.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let next = d.join(format!("next-{i}"));
                let _ = match i % 3 {
                    0 => std::fs::write(&next, "regular\n"),
                    1 => std::fs::hard_link(d.join("fifo"), &next),
                    _ => std::os::unix::fs::symlink(d.join("fifo"), &next),
                };
                let _ = std::fs::rename(&next, &path);
                i += 1;
            }
        })
    };
    let p = path.clone();
    let outcomes = promptly("fstat of a path being swapped", move || {
        (0..2000)
            .map(|_| data::fstat(p.to_str().expect("utf-8")).map_err(|e| e.to_string()))
            .collect::<Vec<_>>()
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    swapper.join().expect("swapper");
    for outcome in outcomes {
        match outcome {
            Ok(r) if r["type"] == "file" => {
                // Either hashed right, or the file changed under it.
                assert_eq!(r["md5"], md5_hex(b"regular\n"), "{r:?}");
            }
            Ok(r) => assert_eq!(r["md5"], 0, "{r:?}"),
            Err(e) => assert!(
                e.contains("changed while being hashed") || e.contains("No such file"),
                "{e}"
            ),
        }
    }
}

#[test]
fn sysctl_names_cannot_leave_proc_sys() {
    for name in [
        "../../../etc/shadow",
        "..",
        "...etc.shadow",
        "kernel/../../../etc/shadow",
        "/etc/shadow",
        "kernel.ostype/../../../../etc/shadow",
        "..\u{0}.etc.shadow",
        "net.ipv4.. .etc",
    ] {
        let err = data::sysctl(name).expect_err(name).to_string();
        assert!(
            err.starts_with("sysctl('") && !err.contains("root:"),
            "{name}: {err}"
        );
    }
    assert_eq!(
        data::sysctl("kernel.ostype").expect("sysctl")["value"],
        "Linux"
    );
}

#[test]
fn process_still_finds_this_test_promptly() {
    let comm = std::fs::read_to_string("/proc/self/comm").expect("comm");
    let me = u64::from(std::process::id());
    let name = comm.trim().to_string();
    let r = promptly("process", move || data::process(&name)).expect("process");
    assert_eq!(r["exists"], true);
    assert!(r["pids"].as_array().is_some_and(|p| p.contains(&json!(me))));
}

/// A node built from a real config whose puppet agent reads its state
/// below `dir` (`plugin.puppet.command` is any existing file: only the
/// files are read), trusting the shared test CA.
fn puppet_node(dir: &Path, command: &str) -> muster_server::Node {
    let config = dir.join("server.cfg");
    std::fs::write(
        &config,
        format!(
            "identity = node1\nplugin.security.ssldir = {}\nplugin.puppet.command = {command}\n\
             plugin.puppet.statedir = {d}/state\nplugin.puppet.rundir = {d}/run\n\
             plugin.puppet.publicdir = {d}/public\n",
            muster_testkit::TestPki::shared().ssldir().root().display(),
            d = dir.display(),
        ),
    )
    .expect("write config");
    let config = muster_server::ServerConfig::load(&config).expect("config");
    let authority = muster_pki::Authority::load(&config.security.ssldir).expect("the test CA");
    muster_server::Node::from_config(&config, std::sync::Arc::new(authority)).expect("node")
}

/// `puppet()` answers MCollective's properties from the files the puppet
/// agent's `status` reads (Puppet's disable lock, the daemon's pidfile,
/// `last_run_summary.yaml`), and agrees with `status`; `-S` expressions
/// and policies evaluate it through the node.
#[tokio::test]
async fn puppet_data_plugin_answers_from_the_agents_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    for sub in ["state", "run", "public"] {
        std::fs::create_dir(d.join(sub)).expect("mkdir");
    }
    let node = puppet_node(d, "/bin/sh");
    let query =
        |node: &muster_server::Node| node.query_data("puppet", "").expect("puppet() answers");

    // Never run, enabled, no daemon.
    let fresh = query(&node);
    let mut names: Vec<&str> = fresh.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, data::puppet_properties(), "{fresh:?}");
    assert_eq!(names.len(), 8, "MCollective's eight properties: {fresh:?}");
    assert_eq!(fresh["enabled"], true);
    assert_eq!(fresh["applying"], false);
    assert_eq!(fresh["daemon_present"], false);
    assert_eq!(fresh["idling"], false);
    assert_eq!(fresh["status"], "stopped");
    assert_eq!(fresh["lastrun"], 0);
    assert_eq!(fresh["disable_message"], "");

    // Disabled with a message, a daemon (this test's own pid), a run 100 s ago.
    std::fs::write(
        d.join("state/agent_disabled.lock"),
        r#"{"disabled_message":"kernel upgrade"}"#,
    )
    .expect("lock");
    std::fs::write(d.join("run/agent.pid"), std::process::id().to_string()).expect("pid");
    let last_run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        - 100;
    std::fs::write(
        d.join("public/last_run_summary.yaml"),
        format!("---\ntime:\n  last_run: {last_run}\n"),
    )
    .expect("summary");
    let now = query(&node);
    assert_eq!(now["enabled"], false, "{now:?}");
    assert_eq!(now["disable_message"], "kernel upgrade");
    assert_eq!(now["daemon_present"], true);
    assert_eq!(now["idling"], true);
    assert_eq!(now["status"], "disabled");
    assert_eq!(now["lastrun"], last_run);
    assert!(
        now["since_lastrun"].as_u64().is_some_and(|s| s >= 100),
        "{now:?}"
    );

    // The agent's own status says the same.
    let alice = muster_testkit::TestPki::shared().credential("alice.mcollective");
    let status = muster_testkit::ask(&node, &alice, "puppet", "status", json!({})).await;
    assert_eq!(
        status.statuscode,
        muster_protocol::StatusCode::Ok,
        "{status:?}"
    );
    for name in [
        "enabled",
        "applying",
        "daemon_present",
        "idling",
        "status",
        "lastrun",
    ] {
        assert_eq!(status.data[name], now[name], "{name}");
    }

    // `-S` expressions (and so policies) evaluate it through the node.
    let holds = |text: &str| {
        muster_protocol::Compound::parse(text)
            .expect("parses")
            .expr
            .eval(&node)
            .expect("evaluates")
    };
    assert!(holds(
        "puppet().enabled=false and puppet().since_lastrun>=100"
    ));
    assert!(holds("puppet().disable_message=/kernel/"));
    assert!(!holds("puppet().idling=false"));

    // Enabled again: the lock is gone.
    std::fs::remove_file(d.join("state/agent_disabled.lock")).expect("unlock");
    assert!(holds("puppet().enabled=true and puppet().status=idling"));
}

#[test]
fn puppet_data_plugin_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = puppet_node(dir.path(), "/bin/sh");
    let err = node.query_data("puppet", "x").unwrap_err().to_string();
    assert_eq!(err, "puppet('x'): puppet() takes no argument");
    // Without Puppet there is nothing to report: the node does not match.
    let node = puppet_node(dir.path(), "/nonexistent/bin/puppet");
    let err = node.query_data("puppet", "").unwrap_err().to_string();
    assert!(err.contains("puppet is not installed"), "{err}");
}
