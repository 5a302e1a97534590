//! Certificates for muster: one CA, Puppet's ssldir layout, TLS and signatures.
//!
//! Every participant — node, operator, broker — holds an x509 certificate
//! from one CA, in the layout Puppet already puts on every managed node:
//!
//! ```text
//! SSLDIR/certs/ca.pem                the CA (a chain: intermediate, then root, is fine)
//! SSLDIR/certs/<certname>.pem        this participant's certificate
//! SSLDIR/private_keys/<certname>.pem its key (PKCS#1, PKCS#8 or SEC1; RSA, ed25519 or ECDSA)
//! SSLDIR/crl.pem                     revoked certificates (optional)
//! ```
//!
//! A Puppet shop points muster at Puppet's ssldir; everyone else makes one
//! with [`ca::FleetCa`] (`mco ca`). This crate turns an ssldir into what the
//! rest of muster needs:
//!
//! - a [`Credential`]: this participant's certificate and key, to present
//!   in TLS and to sign requests with;
//! - an [`Authority`]: the CA and its CRL, to verify peers, with rustls
//!   configs for the broker (client certificates required) and for
//!   clients, and a cache so a node does not re-verify a chain per request.
//!
//! What a certificate *name* may do is [`muster_protocol::identity`]'s
//! business; this crate knows nothing about subjects or sockets.
//!
//! ```
//! use muster_pki::{ca::FleetCa, Authority, Credential, Ssldir};
//! use muster_protocol::identity::Role;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let ssldir = Ssldir::new(dir.path());
//! let ca = FleetCa::init(&ssldir).unwrap();
//! ca.issue(&ssldir, "alice.mcollective", &[]).unwrap();
//!
//! let alice = Credential::load(&ssldir, "alice.mcollective").unwrap();
//! let authority = Authority::load(&ssldir).unwrap();
//! let (scheme, signature) = alice.sign(b"hello").unwrap();
//! let who = authority
//!     .verify_signature(alice.certificate(), scheme, b"hello", &signature)
//!     .unwrap();
//! assert_eq!(who.name, "alice.mcollective");
//! assert_eq!(who.role, Role::Caller);
//! ```

#![deny(unsafe_code)]
#![warn(missing_docs)]

mod authority;
#[cfg(feature = "broker")]
pub mod broker;
pub mod ca;
mod credential;
mod names;
pub mod nats_config;
mod settings;
mod ssldir;

pub use authority::{Authority, SignatureError, Signed, Verified};
pub use credential::{Credential, KeyError};
pub use muster_protocol::SignError;
pub use names::{certificate_name, NameError};
pub use settings::{Identity, Settings};
pub use ssldir::Ssldir;

use std::path::PathBuf;

/// What went wrong with a certificate, key or CA.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file exists but its content is not what it should be.
    #[error("{}: {message}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong and what to do.
        message: String,
    },
    /// A peer's certificate is not one this CA vouches for now.
    #[error("{0}")]
    Untrusted(String),
    /// A trusted certificate, but the signature does not match the message.
    #[error("{0}")]
    BadSignature(String),
    /// Making a certificate, key or CRL failed.
    #[error("{0}")]
    Issue(String),
    /// Options for a nats-server configuration that could not work, e.g.
    /// a route by IP address where members admit routes by DNS name.
    #[error("{0}")]
    Options(String),
}

impl PkiError {
    pub(crate) fn file(path: impl Into<PathBuf>, message: impl Into<String>) -> PkiError {
        PkiError::File {
            path: path.into(),
            message: message.into(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> PkiError {
        PkiError::Io {
            path: path.into(),
            source,
        }
    }
}

/// The rustls crypto provider every muster TLS config uses (ring: no C
/// build, and no process-wide default has to be installed).
pub fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}
