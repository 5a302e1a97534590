//! The name a certificate stands for.

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Why a certificate names no one.
#[derive(Debug, thiserror::Error)]
pub enum NameError {
    /// The bytes are not DER x509.
    #[error("not an x509 certificate: {0}")]
    NotX509(#[source] x509_parser::nom::Err<x509_parser::error::X509Error>),
    /// The subject common name is not a text string.
    #[error("the certificate's common name is not text: {0}")]
    NotText(#[source] x509_parser::error::X509Error),
    /// Neither a common name nor a DNS subject alternative name.
    #[error("the certificate has neither a common name nor a DNS name")]
    Nameless,
}

/// The certificate's name: its subject common name, or, without one, its
/// first DNS subject alternative name (Puppet certificates have both).
pub fn certificate_name(der: &[u8]) -> Result<String, NameError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(NameError::NotX509)?;
    if let Some(cn) = cert.subject().iter_common_name().next() {
        return cn.as_str().map(str::to_string).map_err(NameError::NotText);
    }
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(dns) = name {
                return Ok(dns.to_string());
            }
        }
    }
    Err(NameError::Nameless)
}

/// The certificate's validity end, Unix seconds.
pub(crate) fn not_after(der: &[u8]) -> Option<i64> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// The certificate's validity window as text, for error messages.
pub(crate) fn validity(der: &[u8]) -> Option<(i64, i64)> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    Some((
        cert.validity().not_before.timestamp(),
        cert.validity().not_after.timestamp(),
    ))
}

/// The raw ed25519 public key of an ed25519 certificate.
pub(crate) fn ed25519_key(der: &[u8]) -> Option<[u8; 32]> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let spki = cert.public_key();
    // id-Ed25519, RFC 8410.
    if spki.algorithm.algorithm.to_id_string() != "1.3.101.112" {
        return None;
    }
    spki.subject_public_key.data.as_ref().try_into().ok()
}
