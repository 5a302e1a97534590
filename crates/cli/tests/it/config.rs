//! `mco server --check-config FILE` and `mco check-config` through the
//! real binary: every mistake in a file listed with its line (exit 2), or
//! the effective settings with secrets redacted (exit 0).

use std::path::Path;
use std::process::Output;

use muster_testkit::{run_mco, stderr, stdout};

const MCO: &str = env!("CARGO_BIN_EXE_mco");

async fn mco(args: &[&str]) -> Output {
    run_mco(MCO, args).await
}

/// A CA in `dir/ssl` with a node `node01` and a caller `alice.mcollective`,
/// made by the real `mco ca`.
async fn ssldir(dir: &Path) {
    let ssl = dir.join("ssl");
    let ssl = ssl.to_str().expect("utf-8 temp dir");
    for args in [
        &["ca", "init", "--ssldir", ssl][..],
        &["ca", "issue", "node01", "--ssldir", ssl],
        &["ca", "issue", "alice", "--role", "caller", "--ssldir", ssl],
    ] {
        let out = mco(args).await;
        assert!(out.status.success(), "mco {args:?}: {}", stderr(&out));
    }
}

/// The `file:line:` of every `error:` line on stderr.
fn error_lines(output: &Output, file: &Path) -> Vec<usize> {
    let prefix = format!("error: {}:", file.display());
    stderr(output)
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|rest| rest.split(':').next()?.parse().ok())
        .collect()
}

#[tokio::test]
async fn check_config_lists_every_mistake_with_its_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    ssldir(dir.path()).await;
    // As root every file is readable, so the key "file" is a directory.
    let key = dir.path().join("ssl/private_keys/node01.pem");
    std::fs::remove_file(&key).expect("remove key");
    std::fs::create_dir(&key).expect("key dir");
    let file = dir.path().join("server.cfg");
    std::fs::write(
        &file,
        "identity = node01\n\
         plugin.nats.server = tls://127.0.0.1:4222\n\
         max_in_flight = lots\n\
         plugin.yaml = missing.yaml\n\
         plugin.security.ssldir = ssl\n\
         loglevel = debug\n\
         loglevel = info\n\
         plugin.choria.srv_domain = example.net\n\
         identiy = node02\n",
    )
    .expect("write server.cfg");
    let out = mco(&["server", "--check-config", file.to_str().expect("utf-8")]).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(error_lines(&out, &file), vec![2, 3, 4, 5, 7, 9], "{err}");
    for expected in [
        ":2: unknown setting plugin.nats.server (did you mean plugin.nats.servers?)",
        ":3: max_in_flight must be a whole number, found \"lots\"",
        &format!(
            ":4: fact file {}",
            dir.path().join("missing.yaml").display()
        ),
        ":5: cannot load this node's certificate:",
        "node01.pem",
        ":7: loglevel is set twice, on line 6 and on line 7: keep one",
        ":9: unknown setting identiy (did you mean identity?)",
        "6 errors; nothing was started",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    assert!(
        err.contains(&format!(
            "warning: {}:8: plugin.choria.srv_domain",
            file.display()
        )),
        "{err}"
    );
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
}

#[tokio::test]
async fn a_missing_config_file_is_exit_2() {
    let out = mco(&["server", "--check-config", "/nonexistent/server.cfg"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("/nonexistent/server.cfg: cannot read"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn a_good_server_config_prints_its_settings_with_secrets_redacted() {
    let dir = tempfile::tempdir().expect("temp dir");
    ssldir(dir.path()).await;
    std::fs::write(dir.path().join("facts.yaml"), "role: web\n").expect("facts");
    let file = dir.path().join("server.cfg");
    std::fs::write(
        &file,
        "identity = node01\n\
         plugin.nats.servers = nats://ops:hunter2@127.0.0.1:4222\n\
         plugin.nats.user = ops\n\
         plugin.nats.password = hunter3\n\
         plugin.yaml = facts.yaml\n\
         plugin.security.ssldir = ssl\n\
         ttl = 30\n",
    )
    .expect("write server.cfg");
    let out = mco(&["server", "--check-config", file.to_str().expect("utf-8")]).await;
    let (text, err) = (stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        !text.contains("hunter2") && !text.contains("hunter3"),
        "{text}"
    );
    assert!(!err.contains("hunter"), "{err}");
    assert!(text.contains("OK (2 warnings)"), "{text}\n{err}");
    assert!(
        text.contains(
            "identity node01 brokers nats://ops:[redacted]@127.0.0.1:4222 certname node01"
        ),
        "{text}"
    );
    let setting = |key: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(key))
            .unwrap_or_else(|| panic!("no {key} in:\n{text}"))
            .to_string()
    };
    assert!(setting("plugin.nats.password").contains("= [redacted]    # line 4"));
    // The relative fact file is taken from the config file's directory.
    assert!(setting("plugin.yaml").contains(&format!(
        "= {}    # line 5",
        dir.path().join("facts.yaml").display()
    )));
    assert!(setting("max_in_flight").contains("= 64    # default"));
    assert!(
        err.contains(&format!(
            "warning: {}:7: ttl is a client.cfg setting; server.cfg ignores it",
            file.display()
        )),
        "{err}"
    );
}

#[tokio::test]
async fn client_check_config_reads_the_file_mco_would() {
    let dir = tempfile::tempdir().expect("temp dir");
    ssldir(dir.path()).await;
    let file = dir.path().join("client.cfg");
    let path = file.to_str().expect("utf-8");
    std::fs::write(
        &file,
        "plugin.nats.servers = tls://127.0.0.1:4222\n\
         plugin.security.ssldir = ssl\n\
         plugin.security.certname = alice.mcollective\n\
         plugin.nats.token = sekrit\n",
    )
    .expect("write client.cfg");
    let out = mco(&["--config", path, "check-config"]).await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(text.contains("caller alice.mcollective"), "{text}");
    assert!(!text.contains("sekrit"), "{text}");

    std::fs::write(
        &file,
        "plugin.nats.servers = tls://127.0.0.1:4222\n\
         plugin.security.ssldir = elsewhere\n\
         ttl = soon\n\
         identity = laptop\n",
    )
    .expect("write client.cfg");
    let out = mco(&["--config", path, "check-config"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(error_lines(&out, &file), vec![2, 3], "{}", stderr(&out));
    assert!(
        stderr(&out).contains(":4: identity is a server.cfg setting"),
        "{}",
        stderr(&out)
    );
}
