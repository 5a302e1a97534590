//! A real PuppetDB for one test: Debian's `puppetdb` on a private
//! PostgreSQL 15 cluster, both on loopback ports of their own, started by
//! `scripts/start-puppetdb.sh` and stopped (by PID) by
//! `scripts/stop-puppetdb.sh` when dropped. Facts and catalogs go in
//! through PuppetDB's command API, as a puppetserver would send them.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The script that starts PuppetDB (its header lists the settings).
pub const START_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/start-puppetdb.sh");

/// The script that stops what [`START_SCRIPT`] started.
pub const STOP_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/stop-puppetdb.sh");

/// The environment variable that makes the PuppetDB tier mandatory:
/// set, a missing PuppetDB fails the tests instead of skipping them.
pub const TIER_ENV: &str = "MUSTER_PUPPETDB_TIER";

const JAR: &str = "/usr/share/puppetdb/puppetdb.jar";
const INITDB: &str = "/usr/lib/postgresql/15/bin/initdb";

/// Whether Debian's PuppetDB and PostgreSQL 15 are installed (what
/// [`TestPuppetDb::start`] runs), whatever the tier's switch says.
pub fn puppetdb_installed() -> bool {
    Path::new(JAR).is_file() && Path::new(INITDB).is_file()
}

/// Whether the PuppetDB tier runs: only with [`TIER_ENV`] set (PuppetDB
/// takes a minute to start, so the main suite leaves it to the tier,
/// which `.ci/run` runs after it). With the variable set, PuppetDB and
/// PostgreSQL 15 missing is a failure; without it, the test says it
/// skipped.
pub fn puppetdb_available() -> bool {
    let found = puppetdb_installed();
    if std::env::var_os(TIER_ENV).is_none() {
        eprintln!(
            "SKIPPED: the PuppetDB tier runs with {TIER_ENV}=1 (PuppetDB {}; README.md)",
            if found {
                "is installed"
            } else {
                "is not installed: install puppetdb dbconfig-no-thanks postgresql-15"
            }
        );
        return false;
    }
    assert!(
        found,
        "{TIER_ENV} is set but PuppetDB is not installed ({JAR}, {INITDB}); \
         .ci/run installs puppetdb and postgresql-15 (--no-install-recommends)"
    );
    true
}

/// A running PuppetDB, stopped when dropped.
pub struct TestPuppetDb {
    url: String,
    https_url: Option<String>,
    state: tempfile::TempDir,
    /// How long the start took.
    pub started_in: Duration,
}

impl TestPuppetDb {
    /// Starts PostgreSQL and PuppetDB on free ports (about 20-60 s: the
    /// JVM compiles PuppetDB at every start). Panics with the script's
    /// output if it does not come up within 300 s.
    pub fn start() -> TestPuppetDb {
        TestPuppetDb::start_with(None)
    }

    /// [`TestPuppetDb::start`], also serving HTTPS as a production
    /// PuppetDB does on 8081: with the `puppet.test` certificate of the
    /// Puppet CA whose ssldir is `ssldir`, wanting client certificates
    /// from that CA ([`TestPuppetDb::https_url`]).
    pub fn start_with(ssldir: Option<&Path>) -> TestPuppetDb {
        let state = tempfile::Builder::new()
            .prefix("pdb")
            .tempdir()
            .expect("temp dir");
        let begun = Instant::now();
        let https_port = crate::free_port();
        let mut command = Command::new(START_SCRIPT);
        if let Some(ssldir) = ssldir {
            command
                .env("PDB_SSL_DIR", ssldir)
                .env("PDB_SSL_PORT", https_port.to_string())
                .env("PDB_SSL_CERTNAME", crate::PUPPET_SERVER_NAME);
        }
        let output = command
            .env("PDB_STATE", state.path())
            .env("PDB_PORT", crate::free_port().to_string())
            .env("PG_PORT", crate::free_port().to_string())
            .env("PDB_INSTALL", "0")
            .env("PDB_TIMEOUT", "300")
            .stdin(Stdio::null())
            .output()
            .expect("cannot run start-puppetdb.sh");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "start-puppetdb.sh failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let url = stdout
            .lines()
            .find_map(|l| l.strip_prefix("PUPPETDB_URL="))
            .expect("start-puppetdb.sh printed no PUPPETDB_URL")
            .to_string();
        TestPuppetDb {
            url,
            https_url: ssldir.map(|_| format!("https://127.0.0.1:{https_port}")),
            state,
            started_in: begun.elapsed(),
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `https://127.0.0.1:<port>`, when started with an ssldir.
    pub fn https_url(&self) -> Option<&str> {
        self.https_url.as_deref()
    }

    /// PuppetDB's own log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.state.path().join("puppetdb/log/puppetdb.log"))
            .unwrap_or_default()
    }

    /// Stores `facts` (a JSON object) as `certname`'s facts.
    pub fn replace_facts(&self, certname: &str, facts: &Value) {
        self.command(
            "replace_facts",
            5,
            certname,
            &json!({
                "certname": certname,
                "environment": "production",
                "producer_timestamp": now(),
                "producer": "muster-testkit",
                "values": facts,
            }),
        );
    }

    /// Stores a catalog for `certname` declaring `classes` (names as
    /// Puppet writes them to classes.txt: `mysql::server`), plus the
    /// classes every catalog has (`Settings`, `main`).
    pub fn replace_catalog(&self, certname: &str, classes: &[&str]) {
        let mut titles = vec!["Settings".to_string(), "main".to_string()];
        titles.extend(classes.iter().map(|c| class_title(c)));
        let mut resources = vec![json!({
            "type": "Stage", "title": "main", "exported": false, "tags": ["stage"], "parameters": {}
        })];
        let mut edges = Vec::new();
        for title in &titles {
            let mut tags = vec!["class".to_string()];
            tags.extend(title.to_lowercase().split("::").map(str::to_string));
            resources.push(json!({
                "type": "Class", "title": title, "exported": false, "tags": tags, "parameters": {}
            }));
            edges.push(json!({
                "source": {"type": "Stage", "title": "main"},
                "target": {"type": "Class", "title": title},
                "relationship": "contains"
            }));
        }
        self.command(
            "replace_catalog",
            9,
            certname,
            &json!({
                "certname": certname,
                "version": "1",
                "environment": "production",
                "transaction_uuid": null,
                "catalog_uuid": null,
                "code_id": null,
                "job_id": null,
                "producer_timestamp": now(),
                "producer": "muster-testkit",
                "resources": resources,
                "edges": edges,
            }),
        );
    }

    /// Deactivates `certname`, as `puppet node deactivate` does.
    pub fn deactivate(&self, certname: &str) {
        self.command(
            "deactivate_node",
            3,
            certname,
            &json!({"certname": certname, "producer_timestamp": now()}),
        );
    }

    /// POSTs one command and waits (at most 30 s) until it is stored.
    fn command(&self, command: &str, version: u32, certname: &str, body: &Value) {
        let url = format!(
            "{}/pdb/cmd/v1?command={command}&version={version}&certname={certname}&secondsToWaitForCompletion=30",
            self.url
        );
        let mut child = Command::new("curl")
            .args(["-sS", "--max-time", "60", "-X", "POST"])
            .args([
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                "@-",
            ])
            .arg(&url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot run curl");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("curl stdin");
            stdin
                .write_all(body.to_string().as_bytes())
                .expect("write to curl");
        }
        let output = child.wait_with_output().expect("curl");
        let answer = String::from_utf8_lossy(&output.stdout);
        let stored = serde_json::from_str::<Value>(&answer)
            .map(|v| v["processed"] == json!(true) && v["timed_out"] == json!(false))
            .unwrap_or(false);
        assert!(
            output.status.success() && stored,
            "{command} for {certname} was not stored: {answer} {}\n{}",
            String::from_utf8_lossy(&output.stderr),
            self.log()
        );
    }
}

impl Drop for TestPuppetDb {
    fn drop(&mut self) {
        let _ = Command::new(STOP_SCRIPT)
            .env("PDB_STATE", self.state.path())
            .env("PDB_CLEAN", "1")
            .stdout(Stdio::null())
            .status();
    }
}

/// Puppet's title for a class name: `mysql::server` is `Mysql::Server`.
fn class_title(name: &str) -> String {
    name.split("::")
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|c| c.to_uppercase().chain(chars).collect())
                .unwrap_or_default()
        })
        .collect::<Vec<String>>()
        .join("::")
}

/// Now as PuppetDB's timestamps, e.g. `2026-12-01T17:39:41.000Z`.
fn now() -> String {
    let output = Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%S.000Z"])
        .output()
        .expect("date");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}
