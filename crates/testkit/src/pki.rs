//! Test CAs issuing certificates on demand: muster's own fleet CA, or a
//! Puppet CA made by `scripts/puppet-ca.sh` (RSA keys, an intermediate +
//! root chain in `certs/ca.pem`, Puppet's two CRLs in `crl.pem`).

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use muster_pki::{ca::FleetCa, Authority, Credential, Identity, Ssldir};

use crate::BROKER_NAME;

/// The script that makes a Puppet CA (`puppet-ca.sh help`).
pub const PUPPET_CA_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/puppet-ca.sh");

/// The Puppet CA server's certname. `puppet-ca.sh init` gives its
/// certificate `DNS:puppet.test, DNS:localhost, IP:127.0.0.1`, so a broker
/// on loopback presents it.
pub const PUPPET_SERVER_NAME: &str = "puppet.test";

/// How [`TestPki::puppet`] makes its Puppet CA (`CA_MODE` of `puppet-ca.sh`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PuppetCaMode {
    /// `CA_MODE=openssl`: Puppet's layout, extensions and CRLs made with
    /// openssl alone (about 1 s). Keys are created 0600 by root.
    Openssl,
    /// `CA_MODE=server`: `puppetserver ca setup`, then normal agent
    /// certificates signed by a puppetserver run on 127.0.0.1 for the
    /// purpose (about 25 s; see [`crate::puppetserver_available`]). As root,
    /// files are `puppet:puppet`, keys 0640.
    Server,
}

impl PuppetCaMode {
    fn env(self) -> &'static str {
        match self {
            PuppetCaMode::Openssl => "openssl",
            PuppetCaMode::Server => "server",
        }
    }

    /// Bound on one script run (the script itself gives puppetserver 240 s to start).
    fn timeout(self) -> Duration {
        match self {
            PuppetCaMode::Openssl => Duration::from_secs(60),
            PuppetCaMode::Server => Duration::from_secs(300),
        }
    }
}

/// A test CA in a temporary directory. Clones share it.
#[derive(Clone)]
pub struct TestPki {
    inner: Arc<Inner>,
}

struct Inner {
    ssldir: Ssldir,
    ca: Mutex<Backend>,
    // Kept for the life of the CA; removed when the last clone goes
    // (declared last: dropped after `ca`, whose drop may still use it).
    _dir: tempfile::TempDir,
}

enum Backend {
    Fleet(FleetCa),
    Puppet(PuppetCa),
}

/// `puppet-ca.sh`'s state: `$CA_DIR` (ssldir `etc/ssl`, CA `etc/ca`).
struct PuppetCa {
    mode: PuppetCaMode,
    dir: PathBuf,
    port: u16,
}

impl Default for TestPki {
    fn default() -> Self {
        TestPki::new()
    }
}

impl TestPki {
    /// A new fleet CA of its own (`mco ca`: ed25519).
    pub fn new() -> TestPki {
        let dir = tempfile::tempdir().expect("temp dir");
        let ssldir = Ssldir::new(dir.path().join("ssl"));
        let ca = FleetCa::init(&ssldir).expect("test CA");
        TestPki {
            inner: Arc::new(Inner {
                ssldir,
                ca: Mutex::new(Backend::Fleet(ca)),
                _dir: dir,
            }),
        }
    }

    /// A new Puppet CA made by `puppet-ca.sh init` (RSA 2048, puppetserver
    /// on a free loopback port in [`PuppetCaMode::Server`]), with a
    /// certificate and key for each of `names` and for
    /// [`PUPPET_SERVER_NAME`]. Name everything a test needs here: in
    /// server mode every later [`TestPki::issue`] starts puppetserver again.
    pub fn puppet(names: &[&str], mode: PuppetCaMode) -> TestPki {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = PuppetCa {
            mode,
            dir: dir.path().join("puppet-ca"),
            port: crate::free_port(),
        };
        let mut args = vec!["init"];
        args.extend_from_slice(names);
        ca.run(&args);
        TestPki {
            inner: Arc::new(Inner {
                ssldir: Ssldir::new(ca.dir.join("etc").join("ssl")),
                ca: Mutex::new(Backend::Puppet(ca)),
                _dir: dir,
            }),
        }
    }

    /// The CA every test in this binary shares (its directory stays until
    /// the test binary exits).
    pub fn shared() -> &'static TestPki {
        static SHARED: OnceLock<TestPki> = OnceLock::new();
        SHARED.get_or_init(TestPki::new)
    }

    /// The ssldir: `certs/ca.pem`, `crl.pem`, `certs/NAME.pem`, `private_keys/NAME.pem`.
    pub fn ssldir(&self) -> &Ssldir {
        &self.inner.ssldir
    }

    /// Where the CA keeps the certificates it issued, if not in the
    /// ssldir's `certs/` (a Puppet CA: `ca/signed`): `mco broker
    /// nats-config --issued`.
    pub fn issued_dir(&self) -> Option<PathBuf> {
        match &*self.lock() {
            Backend::Fleet(_) => None,
            Backend::Puppet(ca) => Some(ca.dir.join("etc").join("ca").join("signed")),
        }
    }

    /// The Puppet CA's mode (`None` for a fleet CA).
    pub fn puppet_mode(&self) -> Option<PuppetCaMode> {
        match &*self.lock() {
            Backend::Fleet(_) => None,
            Backend::Puppet(ca) => Some(ca.mode),
        }
    }

    /// The certificate name a broker on 127.0.0.1 presents, issued if
    /// needed: [`BROKER_NAME`] from a fleet CA, [`PUPPET_SERVER_NAME`]
    /// from a Puppet CA.
    pub fn broker_name(&self) -> &'static str {
        if self.puppet_mode().is_some() {
            return PUPPET_SERVER_NAME;
        }
        self.issue_with(BROKER_NAME, &["127.0.0.1".into(), "localhost".into()]);
        BROKER_NAME
    }

    /// Issues `name` unless it has a certificate already.
    pub fn issue(&self, name: &str) {
        self.issue_with(name, &[]);
    }

    /// Issues `name` with extra DNS names or IPs, unless it has a
    /// certificate already. A Puppet CA signs `DNS:<name>` only, so it
    /// panics if asked for more.
    pub fn issue_with(&self, name: &str, sans: &[String]) {
        let ca = self.lock();
        if self.inner.ssldir.cert_file(name).exists() {
            return;
        }
        match &*ca {
            Backend::Fleet(ca) => {
                ca.issue(&self.inner.ssldir, name, sans)
                    .unwrap_or_else(|e| panic!("cannot issue {name}: {e}"));
            }
            Backend::Puppet(_) if !sans.is_empty() => panic!(
                "a Puppet CA signs {name} for DNS:{name} only, not also {sans:?} \
                 (a broker on loopback uses {PUPPET_SERVER_NAME}: TestPki::broker_name)"
            ),
            Backend::Puppet(ca) => ca.run(&["generate", name]),
        }
    }

    /// Revokes `name` (writes `crl.pem`). A Puppet CA supports it in
    /// [`PuppetCaMode::Openssl`] only.
    pub fn revoke(&self, name: &str) {
        match &*self.lock() {
            Backend::Fleet(ca) => {
                ca.revoke(&self.inner.ssldir, name)
                    .unwrap_or_else(|e| panic!("cannot revoke {name}: {e}"));
            }
            Backend::Puppet(ca) if ca.mode == PuppetCaMode::Openssl => ca.run(&["revoke", name]),
            Backend::Puppet(_) => {
                panic!("revoke is not supported in Puppet server mode (use PuppetCaMode::Openssl)")
            }
        }
    }

    /// `name`'s credential, issuing it first if needed.
    pub fn credential(&self, name: &str) -> Credential {
        self.issue(name);
        Credential::load(&self.inner.ssldir, name)
            .unwrap_or_else(|e| panic!("cannot load {name}: {e}"))
    }

    /// The CA as a verifier (read now: later revocations need a new one).
    pub fn authority(&self) -> Arc<Authority> {
        Arc::new(Authority::load(&self.inner.ssldir).expect("test CA"))
    }

    /// `name`'s credential with the CA.
    pub fn identity(&self, name: &str) -> Identity {
        Identity {
            credential: self.credential(name),
            authority: self.authority(),
        }
    }

    /// A TLS transport presenting `name`'s certificate.
    pub fn transport(&self, name: &str) -> muster_connector::Transport {
        muster_connector::Transport {
            tls: Some(self.identity(name).client_tls().expect("client TLS")),
            auth: Default::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Backend> {
        self.inner.ca.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl PuppetCa {
    /// Runs `puppet-ca.sh ARGS` for this CA, bounded by the mode's timeout;
    /// panics with the script's output if it fails.
    fn run(&self, args: &[&str]) {
        std::fs::create_dir_all(&self.dir).expect("CA dir");
        let log_path = self.dir.join("puppet-ca-script.log");
        let log = File::create(&log_path).expect("script log");
        let started = Instant::now();
        let mut child = self
            .command(args)
            .stdout(log.try_clone().expect("script log"))
            .stderr(log)
            // Its own process group: a timeout ends the script and what it started.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {PUPPET_CA_SCRIPT}: {e}"));
        let deadline = started + self.mode.timeout();
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for puppet-ca.sh") {
                break status;
            }
            if Instant::now() >= deadline {
                let group = format!("-{}", child.id());
                let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
                let _ = child.wait();
                self.stop_server();
                panic!(
                    "puppet-ca.sh {args:?} did not finish within {:?}:\n{}",
                    self.mode.timeout(),
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let output = std::fs::read_to_string(&log_path).unwrap_or_default();
        assert!(
            status.success(),
            "puppet-ca.sh {args:?} ({} mode) failed ({status}):\n{output}",
            self.mode.env()
        );
        eprintln!(
            "puppet-ca.sh {} ({} mode, RSA 2048): {:.1} s",
            args.join(" "),
            self.mode.env(),
            started.elapsed().as_secs_f64()
        );
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("bash");
        command
            .arg(PUPPET_CA_SCRIPT)
            .args(args)
            .env("CA_DIR", &self.dir)
            .env("CA_MODE", self.mode.env())
            .env("CA_KEYLENGTH", "2048")
            .env("CA_PORT", self.port.to_string())
            .env("CA_SERVER_NAME", PUPPET_SERVER_NAME)
            // A test never installs packages, nor opens the keys to everyone.
            .env("CA_INSTALL", "0")
            .env_remove("CA_READABLE")
            .stdin(Stdio::null());
        command
    }

    /// Stops a puppetserver the script left running (by its PID file).
    fn stop_server(&self) {
        if self.mode == PuppetCaMode::Server && self.dir.join("puppetserver.pid").exists() {
            let _ = self
                .command(&["server-stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for PuppetCa {
    fn drop(&mut self) {
        // The script stops the server it starts; this covers a panic halfway.
        if self.dir.exists() {
            self.stop_server();
        }
    }
}
