//! A third-party NATS client, nats.py (PyPI `nats-py`), against the
//! embedded broker with TLS and client certificates: it connects with a
//! certificate from the fleet CA, subscribes and publishes within that
//! certificate's grants, is refused without a certificate, and is told
//! (`-ERR 'Permissions Violation ...'`, nats.py's error callback) when it
//! steps outside its grants, staying connected.
//!
//! The interpreter is `$MUSTER_NATS_PY` (a venv's python with nats-py,
//! as `.ci/run` sets up) or else `python3` if it can `import nats`. With
//! neither the tests are skipped, unless `CI` is set: then they fail.

use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use muster_broker::BrokerStats;
use muster_protocol::identity::caller_token;
use muster_protocol::subject;
use muster_testkit::{BrokerKind, TestBroker, TestPki};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

/// How long one nats.py run may take, start to exit.
const RUN_LIMIT: Duration = Duration::from_secs(30);

/// The nats.py side: `MODE URL CA [CERT KEY]`, one line of stdout per step.
///
/// - `node SUBJECT`: subscribe, print `READY`, then for the first message
///   print `GOT <subject> <payload>` and answer it on its reply subject;
/// - `violation`: subscribe `>` and publish to another node's subject,
///   printing `ERROR <error>` for each error callback, then `STILL CONNECTED`
///   after a round trip;
/// - `nocert` (no CERT/KEY): print `REFUSED <exception>` when connecting fails.
const SCRIPT: &str = r#"
import asyncio
import ssl
import sys

import nats

def out(line):
    print(line, flush=True)


async def main():
    mode, url, ca = sys.argv[1:4]
    rest = sys.argv[4:]
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    if mode != "nocert":
        cert, key = rest[:2]
        rest = rest[2:]
        # The ssldir's keys as they are: muster writes ed25519 keys as
        # PKCS#8 v1, which Debian 12's OpenSSL 3.0 reads.
        ctx.load_cert_chain(cert, key)
    errors = asyncio.Queue()

    async def on_error(e):
        errors.put_nowait(e)

    options = dict(
        servers=[url],
        tls=ctx,
        name="nats-py",
        connect_timeout=5,
        allow_reconnect=False,
        max_reconnect_attempts=0,
        error_cb=on_error,
    )

    if mode == "nocert":
        try:
            nc = await nats.connect(**options)
        except Exception as e:
            out(f"REFUSED {type(e).__name__}: {e}")
            return 0
        out("CONNECTED without a client certificate")
        await nc.close()
        return 1

    nc = await nats.connect(**options)
    if mode == "node":
        sub = await nc.subscribe(rest[0])
        await nc.flush(timeout=10)
        out("READY")
        msg = await sub.next_msg(timeout=20)
        out(f"GOT {msg.subject} {msg.data.decode()}")
        await msg.respond(b"pong from nats-py")
        await nc.flush(timeout=10)
    elif mode == "violation":
        await nc.subscribe(">")
        await nc.flush(timeout=10)
        out(f"ERROR {await asyncio.wait_for(errors.get(), 10)}")
        await nc.publish("mcollective.node.web2", b"not mine to send")
        await nc.flush(timeout=10)
        out(f"ERROR {await asyncio.wait_for(errors.get(), 10)}")
        await nc.flush(timeout=10)
        out("STILL CONNECTED" if nc.is_connected else "DISCONNECTED")
    else:
        out(f"unknown mode {mode}")
        return 2
    await nc.close()
    return 0


sys.exit(asyncio.run(main()))
"#;

/// Whether `python` runs and can import nats.
fn imports_nats(python: &OsStr) -> bool {
    std::process::Command::new(python)
        .args(["-c", "import nats"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// The python interpreter with nats-py, or `None` to skip (never in CI).
fn nats_py() -> Option<OsString> {
    if let Some(python) = std::env::var_os("MUSTER_NATS_PY") {
        assert!(
            imports_nats(&python),
            "MUSTER_NATS_PY={} cannot `import nats`; install nats-py into it",
            Path::new(&python).display()
        );
        return Some(python);
    }
    let python = OsString::from("python3");
    if imports_nats(&python) {
        return Some(python);
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "nats-py is not installed: set MUSTER_NATS_PY to a python with nats-py \
             (.ci/run installs it into a venv and sets MUSTER_NATS_PY)"
        );
    }
    None
}

/// A running nats.py script, killed if dropped before it exits.
struct Script {
    child: Child,
    stdout: Lines<BufReader<ChildStdout>>,
    _dir: tempfile::TempDir,
}

impl Script {
    /// Writes the script to a temp dir and runs it as `python SCRIPT args...`.
    fn start(python: &OsStr, args: &[&OsStr]) -> Script {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("nats_py_client.py");
        std::fs::write(&path, SCRIPT).expect("write the nats.py script");
        let mut child = tokio::process::Command::new(python)
            .arg(&path)
            .args(args)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("cannot run python");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        Script {
            child,
            stdout,
            _dir: dir,
        }
    }

    /// The next line of stdout (`None` at its end).
    async fn line(&mut self) -> Option<String> {
        self.stdout
            .next_line()
            .await
            .expect("read the script's stdout")
    }

    /// The rest of stdout's lines, the exit status and all of stderr.
    async fn finish(mut self) -> (Vec<String>, ExitStatus, String) {
        let mut lines = Vec::new();
        while let Some(line) = self.line().await {
            lines.push(line);
        }
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            let _ = pipe.read_to_string(&mut stderr).await;
        }
        let status = self.child.wait().await.expect("wait for python");
        if !stderr.is_empty() {
            eprintln!("nats.py stderr:\n{stderr}");
        }
        (lines, status, stderr)
    }
}

/// `CA CERT KEY` of certificate `name` as script arguments.
fn credentials(pki: &TestPki, name: &str) -> Vec<OsString> {
    pki.issue(name);
    let ssldir = pki.ssldir();
    vec![
        ssldir.ca_file().into(),
        ssldir.cert_file(name).into(),
        ssldir.key_file(name).into(),
    ]
}

/// Runs `f` bounded by [`RUN_LIMIT`].
async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(RUN_LIMIT, f)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {RUN_LIMIT:?}"))
}

/// Waits (at most 5 s) until the broker's counters satisfy `test`.
async fn counted(broker: &TestBroker, what: &str, test: impl Fn(&BrokerStats) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stats = broker.stats().expect("embedded broker counters");
        if test(&stats) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the broker did not count {what}: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn nats_py_node_receives_a_request_and_replies() {
    let Some(python) = nats_py() else {
        eprintln!("skipped: nats-py is not installed (set MUSTER_NATS_PY)");
        return;
    };
    let broker = TestBroker::start(BrokerKind::Embedded).await;
    let pki = broker.pki();
    let url = broker.url();
    let node_subject = subject::node("mcollective", "web1");

    let mut args: Vec<OsString> = vec!["node".into(), url.clone().into()];
    args.extend(credentials(pki, "web1"));
    args.push(node_subject.clone().into());
    let args: Vec<&OsStr> = args.iter().map(OsString::as_os_str).collect();
    let mut script = Script::start(&python, &args);

    let ready = bounded("nats.py connecting", script.line()).await;
    if ready.as_deref() != Some("READY") {
        let (lines, status, stderr) = bounded("nats.py", script.finish()).await;
        panic!("nats.py did not subscribe: {ready:?} {lines:?} ({status})\n{stderr}");
    }

    // A caller, by async-nats, sends web1 a request and reads the reply.
    let caller_name = "tester.mcollective";
    let caller = muster_connector::connect_client(
        std::slice::from_ref(&url),
        "x",
        Duration::from_secs(10),
        &pki.transport(caller_name),
    )
    .await
    .expect("the caller connects");
    let token = caller_token(caller_name);
    let mut replies = caller
        .subscribe(subject::replies("mcollective", &token, "1"))
        .await
        .expect("subscribe to replies");
    caller.flush().await.expect("flush the subscription");
    caller
        .publish_with_reply(
            node_subject.clone(),
            subject::reply("mcollective", &token, "1", "web1"),
            "ping from async-nats".into(),
        )
        .await
        .expect("publish the request");
    caller.flush().await.expect("flush the request");

    let reply = bounded("the reply from nats.py", replies.next())
        .await
        .expect("the reply subscription ended");
    assert_eq!(
        reply.subject.as_str(),
        "mcollective.reply.".to_string() + &token + ".1.web1"
    );
    assert_eq!(&reply.payload[..], b"pong from nats-py");

    let (lines, status, stderr) = bounded("nats.py", script.finish()).await;
    println!("nats.py printed: {lines:?}");
    assert!(
        status.success(),
        "nats.py failed ({status}): {lines:?}\n{stderr}"
    );
    assert_eq!(
        lines,
        [format!("GOT {node_subject} ping from async-nats")],
        "{stderr}"
    );
    let stats = broker.stats().expect("embedded broker counters");
    assert_eq!(stats.permission_violations, 0, "{stats:?}");
}

#[tokio::test]
async fn nats_py_without_a_client_certificate_is_refused() {
    let Some(python) = nats_py() else {
        eprintln!("skipped: nats-py is not installed (set MUSTER_NATS_PY)");
        return;
    };
    let broker = TestBroker::start(BrokerKind::Embedded).await;
    let ca: OsString = broker.pki().ssldir().ca_file().into();
    let url = OsString::from(broker.url());
    let script = Script::start(&python, &["nocert".as_ref(), &url, &ca]);
    let (lines, status, stderr) = bounded("nats.py", script.finish()).await;
    println!("nats.py printed: {lines:?}");
    assert!(
        status.success(),
        "nats.py connected or failed ({status}): {lines:?}\n{stderr}"
    );
    assert_eq!(lines.len(), 1, "{lines:?}\n{stderr}");
    assert!(lines[0].starts_with("REFUSED "), "{lines:?}\n{stderr}");
    counted(&broker, "a failed TLS handshake", |s| {
        s.tls_handshake_failed == 1
    })
    .await;
}

#[tokio::test]
async fn nats_py_is_told_of_permission_violations() {
    let Some(python) = nats_py() else {
        eprintln!("skipped: nats-py is not installed (set MUSTER_NATS_PY)");
        return;
    };
    let broker = TestBroker::start(BrokerKind::Embedded).await;
    let mut args: Vec<OsString> = vec!["violation".into(), broker.url().into()];
    args.extend(credentials(broker.pki(), "web1"));
    let args: Vec<&OsStr> = args.iter().map(OsString::as_os_str).collect();
    let script = Script::start(&python, &args);
    let (lines, status, stderr) = bounded("nats.py", script.finish()).await;
    println!("nats.py printed: {lines:?}");
    assert!(
        status.success(),
        "nats.py failed ({status}): {lines:?}\n{stderr}"
    );
    // nats.py lower-cases the broker's -ERR text.
    assert_eq!(
        lines,
        [
            r#"ERROR nats: permissions violation for subscription to ">""#,
            r#"ERROR nats: permissions violation for publish to "mcollective.node.web2""#,
            "STILL CONNECTED",
        ],
        "{stderr}"
    );
    counted(&broker, "two permission violations", |s| {
        s.permission_violations == 2
    })
    .await;
}
