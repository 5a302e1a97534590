//! The `filemgr` agent against real files, through `Node::handle` so the
//! DDL's input checks run as they do in production.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use muster_pki::Credential;
use muster_protocol::{Reply, StatusCode};
use muster_server::Node;
use serde_json::{json, Value};

/// A node running the filemgr agent as `settings` configure it.
struct Harness {
    node: Node,
    caller: Credential,
}

impl Harness {
    fn new(settings: &str) -> Harness {
        let agent = filemgr_from(settings).expect("valid filemgr settings");
        let (node, caller) = muster_testkit::node_with(agent);
        Harness { node, caller }
    }

    async fn call(&self, action: &str, inputs: Value) -> Reply {
        muster_testkit::ask(&self.node, &self.caller, "filemgr", action, inputs).await
    }

    async fn on(&self, action: &str, file: &Path) -> Reply {
        self.call(
            action,
            json!({ "file": file.to_str().expect("utf-8 path") }),
        )
        .await
    }
}

/// The filemgr agent `for_config` builds from these settings.
fn filemgr_from(settings: &str) -> Result<Arc<dyn muster_server::Agent>, String> {
    muster_testkit::agent_from(settings, "filemgr")
}

fn ok(reply: &Reply) -> &Value {
    assert_eq!(reply.statuscode, StatusCode::Ok, "{reply:?}");
    &reply.data
}

fn failed(reply: &Reply, code: StatusCode, text: &str) {
    assert_eq!(reply.statuscode, code, "{reply:?}");
    assert!(
        reply.statusmsg.contains(text),
        "{:?} does not mention {text:?}",
        reply.statusmsg
    );
}

#[tokio::test]
async fn status_describes_a_file_with_owner_names_and_digests() {
    let h = Harness::new("");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("hello.txt");
    std::fs::write(&file, "hello\n").expect("write");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).expect("chmod");

    let reply = h.on("status", &file).await;
    let data = ok(&reply);
    assert_eq!(data["name"], json!(file.to_str()));
    assert_eq!(data["output"], "present");
    assert_eq!(data["present"], 1);
    assert_eq!(data["type"], "file");
    assert_eq!(data["size"], 6);
    assert_eq!(data["mode"], "100640");
    assert_eq!(data["md5"], "b1946ac92492d2347c6235b4d2611184");
    assert_eq!(
        data["sha256"],
        "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
    );
    let uid = owner_uid(&file);
    assert_eq!(data["uid"], uid);
    if uid == 0 {
        assert_eq!(data["owner"], "root");
        assert_eq!(data["gid"], 0);
        assert_eq!(data["group"], "root");
    } else {
        assert!(data["owner"].as_str().is_some_and(|s| !s.is_empty()));
    }
    let mtime = std::fs::metadata(&file)
        .and_then(|m| m.modified())
        .expect("mtime")
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after the epoch")
        .as_secs();
    assert_eq!(data["mtime_seconds"], mtime);
    for key in ["mtime", "ctime", "atime"] {
        assert!(
            data[key].as_str().is_some_and(|t| t.ends_with("+0000")),
            "{key}: {}",
            data[key]
        );
        assert!(data[format!("{key}_seconds")].as_i64().is_some(), "{key}");
    }

    // A directory is present, with no digests.
    let reply = h.on("status", dir.path()).await;
    let data = ok(&reply);
    assert_eq!(data["type"], "directory");
    assert_eq!(data["present"], 1);
    assert_eq!(data["sha256"], 0);

    // A missing file is an answer, not an error.
    let reply = h.on("status", &dir.path().join("missing")).await;
    let data = ok(&reply);
    assert_eq!(data["output"], "not present");
    assert_eq!(data["present"], 0);
    assert_eq!(data["sha256"], 0);
    assert_eq!(data["owner"], "");
}

fn owner_uid(path: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).expect("stat").uid()
}

#[tokio::test]
async fn touch_creates_then_updates_the_modification_time() {
    let h = Harness::new("");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("touched");

    let reply = h.on("touch", &file).await;
    assert_eq!(ok(&reply)["output"], "created");
    assert_eq!(std::fs::read(&file).expect("created").len(), 0);

    let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
    std::fs::File::options()
        .write(true)
        .open(&file)
        .and_then(|f| f.set_modified(old))
        .expect("backdate");
    let reply = h.on("touch", &file).await;
    assert_eq!(ok(&reply)["output"], "touched");
    let modified = std::fs::metadata(&file)
        .and_then(|m| m.modified())
        .expect("mtime");
    let age = std::time::SystemTime::now()
        .duration_since(modified)
        .unwrap_or_default();
    assert!(age.as_secs() < 60, "mtime not updated: {modified:?}");

    // Touching in a directory that does not exist fails cleanly.
    let reply = h.on("touch", &dir.path().join("no/such/dir/file")).await;
    failed(&reply, StatusCode::Aborted, "cannot create");
}

#[tokio::test]
async fn remove_deletes_files_only() {
    let h = Harness::new("");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("doomed");
    std::fs::write(&file, "x").expect("write");

    let reply = h.on("remove", &file).await;
    assert_eq!(ok(&reply)["output"], "removed");
    assert!(!file.exists());

    let reply = h.on("remove", &file).await;
    failed(&reply, StatusCode::Aborted, "not present");

    let sub = dir.path().join("subdir");
    std::fs::create_dir(&sub).expect("mkdir");
    let reply = h.on("remove", &sub).await;
    failed(&reply, StatusCode::Aborted, "directory");
    assert!(sub.is_dir());
}

#[tokio::test]
async fn paths_must_be_absolute_and_present() {
    let h = Harness::new("");
    for action in ["status", "touch", "remove"] {
        let reply = h.call(action, json!({ "file": "relative/path" })).await;
        assert_eq!(
            reply.statuscode,
            StatusCode::InvalidData,
            "{action}: {reply:?}"
        );
        let reply = h.call(action, json!({})).await;
        assert_eq!(
            reply.statuscode,
            StatusCode::MissingData,
            "{action}: {reply:?}"
        );
        let long = format!("/tmp/{}", "a".repeat(600));
        let reply = h.call(action, json!({ "file": long })).await;
        assert_eq!(
            reply.statuscode,
            StatusCode::InvalidData,
            "{action}: {reply:?}"
        );
    }
    assert!(!Path::new("relative/path").exists());
}

#[tokio::test]
async fn allowed_paths_confine_the_agent() {
    let outside = tempfile::tempdir().expect("tempdir");
    let allowed = tempfile::tempdir().expect("tempdir");
    let h = Harness::new(&format!(
        "plugin.filemgr.allowed_paths = {}, /nonexistent/muster",
        allowed.path().display()
    ));
    let secret = outside.path().join("secret");
    std::fs::write(&secret, "secret").expect("write");

    // Inside: every action works.
    let inside = allowed.path().join("ok");
    assert_eq!(ok(&h.on("touch", &inside).await)["output"], "created");
    assert_eq!(ok(&h.on("status", &inside).await)["present"], 1);
    assert_eq!(ok(&h.on("remove", &inside).await)["output"], "removed");

    // Outside, through '..', or through a symlink: refused, untouched.
    let escape = allowed.path().join("link");
    std::os::unix::fs::symlink(outside.path(), &escape).expect("symlink");
    let dotdot = format!(
        "{}/../{}/secret",
        allowed.path().display(),
        outside
            .path()
            .file_name()
            .and_then(|n| n.to_str())
            .expect("name")
    );
    for action in ["status", "touch", "remove"] {
        for path in [secret.clone(), escape.join("secret"), dotdot.clone().into()] {
            let reply = h.on(action, &path).await;
            assert_eq!(
                reply.statuscode,
                StatusCode::InvalidData,
                "{action} {}: {reply:?}",
                path.display()
            );
            assert!(reply.statusmsg.contains("allowed_paths"), "{reply:?}");
        }
    }
    assert_eq!(std::fs::read_to_string(&secret).expect("kept"), "secret");
    // A sibling whose name merely starts with the allowed directory's.
    let sibling = format!("{}-sibling/x", allowed.path().display());
    let reply = h.call("touch", json!({ "file": sibling })).await;
    assert_eq!(reply.statuscode, StatusCode::InvalidData, "{reply:?}");
}

#[test]
fn bad_allowed_paths_setting_names_its_line() {
    let err = filemgr_from("\nplugin.filemgr.allowed_paths = tmp/relative").err();
    let err = err.expect("a relative allowed path is refused");
    assert!(err.contains(":3:"), "{err}");
    assert!(err.contains("absolute"), "{err}");
}
