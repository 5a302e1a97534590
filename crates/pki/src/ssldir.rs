//! Puppet's ssldir layout, and reading PEM files from it with errors that
//! name the file and say what to do.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

use crate::PkiError;

/// The largest PEM file read (a CA bundle with a long CRL fits easily).
const MAX_PEM: u64 = 4 * 1024 * 1024;

/// An ssldir: `certs/ca.pem`, `certs/<name>.pem`, `private_keys/<name>.pem`, `crl.pem`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ssldir {
    root: PathBuf,
}

impl Ssldir {
    /// The ssldir at `root` (nothing is read yet).
    pub fn new(root: impl Into<PathBuf>) -> Ssldir {
        Ssldir { root: root.into() }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `certs/ca.pem`.
    pub fn ca_file(&self) -> PathBuf {
        self.root.join("certs").join("ca.pem")
    }

    /// `certs/<name>.pem`.
    pub fn cert_file(&self, name: &str) -> PathBuf {
        self.root.join("certs").join(format!("{name}.pem"))
    }

    /// `private_keys/<name>.pem`.
    pub fn key_file(&self, name: &str) -> PathBuf {
        self.root.join("private_keys").join(format!("{name}.pem"))
    }

    /// `crl.pem`.
    pub fn crl_file(&self) -> PathBuf {
        self.root.join("crl.pem")
    }
}

/// Reads a whole (bounded) file.
pub(crate) fn read(path: &Path) -> Result<Vec<u8>, PkiError> {
    let meta = std::fs::metadata(path).map_err(|e| PkiError::io(path, e))?;
    if meta.len() > MAX_PEM {
        return Err(PkiError::file(
            path,
            format!("larger than {MAX_PEM} bytes; not a certificate file"),
        ));
    }
    std::fs::read(path).map_err(|e| PkiError::io(path, e))
}

/// Every certificate in a PEM file; at least one.
pub(crate) fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError::file(path, format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(PkiError::file(path, "holds no PEM certificate"));
    }
    Ok(certs)
}

/// Every CRL in a PEM file (none if the file does not exist).
pub(crate) fn crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, PkiError> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let pem = read(path)?;
    let crls = CertificateRevocationListDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError::file(path, format!("not a PEM CRL file: {e}")))?;
    // A CRL file with no CRL in it would revoke nothing: fail closed.
    if crls.is_empty() {
        return Err(PkiError::file(
            path,
            "holds no PEM CRL; restore it from the CA",
        ));
    }
    Ok(crls)
}

/// A private key, refusing one that other users can read.
pub(crate) fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, PkiError> {
    let meta = std::fs::metadata(path).map_err(|e| PkiError::io(path, e))?;
    // Puppet keeps keys 0640 with group puppet; readable by everyone is never right.
    if meta.permissions().mode() & 0o004 != 0 {
        return Err(PkiError::file(
            path,
            "private key is readable by every user; run chmod 600 on it (and consider it leaked)",
        ));
    }
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| PkiError::file(path, format!("not a PEM private key: {e}")))
}
