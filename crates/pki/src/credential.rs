//! This participant's certificate and key.

use std::fmt;
use std::sync::Arc;

use rustls::sign::SigningKey;
use rustls::{SignatureAlgorithm, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use muster_protocol::SignError;

use crate::authority::SignatureError;
use crate::{names, ssldir, PkiError, Ssldir};

/// A certificate with its private key: what a participant presents in TLS
/// and signs requests with.
#[derive(Clone)]
pub struct Credential {
    name: String,
    chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
    signer: Arc<dyn SigningKey>,
    scheme: (SignatureScheme, &'static str),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("name", &self.name)
            .field("scheme", &self.scheme.1)
            .finish_non_exhaustive()
    }
}

impl Credential {
    /// Loads `certs/<certname>.pem` and `private_keys/<certname>.pem`,
    /// checking that the certificate is for `certname`, is valid now, and
    /// that the key is not readable by everyone.
    pub fn load(ssldir: &Ssldir, certname: &str) -> Result<Credential, PkiError> {
        let cert_file = ssldir.cert_file(certname);
        let key_file = ssldir.key_file(certname);
        if !cert_file.exists() {
            return Err(PkiError::file(
                &cert_file,
                format!(
                    "no certificate for {certname:?}: issue one (mco ca issue {certname} --ssldir {}) \
                     or set plugin.security.certname to a name that has one",
                    ssldir.root().display()
                ),
            ));
        }
        let chain = ssldir::certificates(&cert_file)?;
        let name = names::certificate_name(&chain[0])
            .map_err(|e| PkiError::file(&cert_file, e.to_string()))?;
        if name != certname {
            return Err(PkiError::file(
                &cert_file,
                format!(
                    "the certificate is for {name:?}, not for the configured certname {certname:?}"
                ),
            ));
        }
        if let Some((not_before, not_after)) = names::validity(&chain[0]) {
            let now = unix_now();
            if now < not_before {
                return Err(PkiError::file(
                    &cert_file,
                    format!("the certificate is not valid before {} (Unix time; check this host's clock)", not_before),
                ));
            }
            if now > not_after {
                return Err(PkiError::file(
                    &cert_file,
                    format!("the certificate expired at {not_after} (Unix time); issue a new one"),
                ));
            }
        }
        let key = ssldir::private_key(&key_file)?;
        Credential::from_parts(name, chain, key)
            .map_err(|e| PkiError::file(&key_file, e.to_string()))
    }

    /// A credential from a certificate chain (end entity first) and its key.
    pub fn from_parts(
        name: String,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Credential, KeyError> {
        let signer =
            rustls::crypto::ring::sign::any_supported_type(&key).map_err(KeyError::Unsupported)?;
        let scheme = match signer.algorithm() {
            SignatureAlgorithm::ED25519 => (SignatureScheme::ED25519, "ed25519"),
            SignatureAlgorithm::RSA => (SignatureScheme::RSA_PKCS1_SHA256, "rsa-pkcs1-sha256"),
            SignatureAlgorithm::ECDSA => {
                (SignatureScheme::ECDSA_NISTP256_SHA256, "ecdsa-p256-sha256")
            }
            other => return Err(KeyError::Algorithm(format!("{other:?}"))),
        };
        let credential = Credential {
            name,
            chain,
            key: Arc::new(key),
            signer,
            scheme,
        };
        // A key that does not belong to the certificate fails here, not at the first request.
        let (scheme, signature) = credential.sign(b"muster key check")?;
        let authority = crate::authority::verify_raw_signature(
            credential.certificate(),
            scheme,
            b"muster key check",
            &signature,
        );
        authority.map_err(KeyError::Mismatch)?;
        Ok(credential)
    }

    /// The certificate name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The certificate (DER).
    pub fn certificate(&self) -> &[u8] {
        &self.chain[0]
    }

    /// The certificate chain, end entity first, for TLS.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    pub(crate) fn private_key(&self) -> PrivateKeyDer<'static> {
        self.key.clone_key()
    }

    /// Signs `message`; returns the scheme name and the signature.
    pub fn sign(&self, message: &[u8]) -> Result<(&'static str, Vec<u8>), SignError> {
        let signer = self
            .signer
            .choose_scheme(&[self.scheme.0])
            .ok_or_else(|| SignError::new(format!("the key cannot sign with {}", self.scheme.1)))?;
        let signature = signer
            .sign(message)
            .map_err(|e| SignError::because("signing failed", e))?;
        Ok((self.scheme.1, signature))
    }
}

impl muster_protocol::Signer for Credential {
    fn certificate(&self) -> &[u8] {
        Credential::certificate(self)
    }

    fn scheme(&self) -> &'static str {
        self.scheme.1
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        Credential::sign(self, message).map(|(_, signature)| signature)
    }
}

/// Why a private key cannot make a credential with its certificate.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// rustls cannot sign with this kind of key.
    #[error("unsupported private key: {0}")]
    Unsupported(#[source] rustls::Error),
    /// A key type muster has no signature scheme for.
    #[error("unsupported key algorithm {0}")]
    Algorithm(String),
    /// The key could not sign the check message.
    #[error(transparent)]
    Sign(#[from] SignError),
    /// The key signs, but the certificate's public key does not verify it.
    #[error("the private key does not belong to the certificate")]
    Mismatch(#[source] SignatureError),
}

pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
