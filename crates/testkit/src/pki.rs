//! A fleet CA for tests, issuing certificates on demand.

use std::sync::{Arc, Mutex, OnceLock};

use muster_pki::{ca::FleetCa, Authority, Credential, Identity, Ssldir};

/// A fleet CA in a temporary ssldir. Clones share it.
#[derive(Clone)]
pub struct TestPki {
    inner: Arc<Inner>,
}

struct Inner {
    // Kept for the life of the CA; removed when the last clone goes.
    _dir: tempfile::TempDir,
    ssldir: Ssldir,
    ca: Mutex<FleetCa>,
}

impl Default for TestPki {
    fn default() -> Self {
        TestPki::new()
    }
}

impl TestPki {
    /// A new CA of its own.
    pub fn new() -> TestPki {
        let dir = tempfile::tempdir().expect("temp dir");
        let ssldir = Ssldir::new(dir.path().join("ssl"));
        let ca = FleetCa::init(&ssldir).expect("test CA");
        TestPki {
            inner: Arc::new(Inner {
                _dir: dir,
                ssldir,
                ca: Mutex::new(ca),
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

    /// Issues `name` unless it has a certificate already.
    pub fn issue(&self, name: &str) {
        self.issue_with(name, &[]);
    }

    /// Issues `name` with extra DNS names or IPs, unless it has a certificate already.
    pub fn issue_with(&self, name: &str, sans: &[String]) {
        let ca = self.inner.ca.lock().unwrap_or_else(|p| p.into_inner());
        if !self.inner.ssldir.cert_file(name).exists() {
            ca.issue(&self.inner.ssldir, name, sans)
                .unwrap_or_else(|e| panic!("cannot issue {name}: {e}"));
        }
    }

    /// Revokes `name` (writes `crl.pem`).
    pub fn revoke(&self, name: &str) {
        let ca = self.inner.ca.lock().unwrap_or_else(|p| p.into_inner());
        ca.revoke(&self.inner.ssldir, name)
            .unwrap_or_else(|e| panic!("cannot revoke {name}: {e}"));
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
}
