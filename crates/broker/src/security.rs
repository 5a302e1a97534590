//! What the caller injects to secure the broker: a TLS config and a function
//! from a verified client certificate chain to what that client may do.

use std::fmt;
use std::sync::Arc;

use rustls_pki_types::CertificateDer;

use crate::permissions::Permissions;

/// What the broker needs to admit clients: a TLS config that requires client
/// certificates, and a function from the verified peer chain to what the
/// connection may do.
///
/// The broker knows nothing about what the certificates mean: it runs the TLS
/// handshake with `tls` (whose client verifier decides which chains are
/// valid: CA, expiry, revocation) and then asks `admit`.
#[derive(Clone)]
pub struct Security {
    /// The server side of TLS. It should require client certificates (for
    /// example with `rustls::server::WebPkiClientVerifier`); a config that
    /// does not hands `admit` an empty chain for clients without one.
    pub tls: Arc<rustls::ServerConfig>,
    /// Called once per connection after the TLS handshake with the peer's
    /// certificate chain (end entity first). `Err(refusal)` refuses the
    /// connection with `-ERR 'Authorization Violation'` (the refusal is
    /// logged, not sent). It runs on the connection's task: keep it quick,
    /// with no blocking I/O.
    #[allow(clippy::type_complexity)] // spelled out: it is the contract
    pub admit: Arc<dyn Fn(&[CertificateDer<'static>]) -> Result<Admission, Refusal> + Send + Sync>,
}

impl Security {
    /// Bundles a TLS config and an admission function.
    pub fn new(
        tls: Arc<rustls::ServerConfig>,
        admit: impl Fn(&[CertificateDer<'static>]) -> Result<Admission, Refusal> + Send + Sync + 'static,
    ) -> Self {
        Security {
            tls,
            admit: Arc::new(admit),
        }
    }
}

impl fmt::Debug for Security {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Security")
            .field("tls", &self.tls)
            .field("admit", &"<fn>")
            .finish()
    }
}

/// Why `admit` turned a client away; logged by the broker, never sent.
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct Refusal {
    reason: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl Refusal {
    /// A refusal for a reason the caller words itself.
    pub fn new(reason: impl Into<String>) -> Refusal {
        Refusal {
            reason: reason.into(),
            source: None,
        }
    }

    /// A refusal because the certificate could not be understood (shown after `reason`).
    pub fn because(
        reason: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Refusal {
        Refusal {
            reason: format!("{}: {source}", reason.into()),
            source: Some(Box::new(source)),
        }
    }
}

impl From<&str> for Refusal {
    fn from(reason: &str) -> Refusal {
        Refusal::new(reason)
    }
}

impl From<String> for Refusal {
    fn from(reason: String) -> Refusal {
        Refusal::new(reason)
    }
}

/// The outcome of a successful admission: who the client is and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    /// The client's identity, for logs (for example the certificate's common name).
    pub name: String,
    /// What the client may publish and subscribe to.
    pub permissions: Permissions,
}
