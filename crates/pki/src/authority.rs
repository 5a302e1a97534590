//! The CA as a participant trusts it: verifying peers' certificates and
//! signatures, and the rustls configs that do the same in TLS.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use muster_protocol::identity::{role_of, Role};
use rustls::client::WebPkiServerVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use rustls_pki_types::{
    CertificateDer, CertificateRevocationListDer, SignatureVerificationAlgorithm, TrustAnchor,
    UnixTime,
};
use sha2::{Digest, Sha256};
use webpki::{
    CertRevocationList, EndEntityCert, KeyUsage, OwnedCertRevocationList, RevocationCheckDepth,
    RevocationOptionsBuilder, UnknownStatusPolicy,
};

use crate::{names, provider, ssldir, Credential, PkiError, Ssldir};

/// How many verified certificates and signatures are remembered. Beyond
/// it the cache starts again empty: bounded memory, whatever peers send.
const CACHE_LIMIT: usize = 4096;

/// An ed25519 public key, decompressed once per certificate (not once per
/// signature: decompressing costs about as much as a batched verification).
type Ed25519Key = ed25519_dalek::VerifyingKey;

/// A certificate's verification: who, and its ed25519 key if it has one.
type Checked = Result<(Verified, Option<Ed25519Key>), PkiError>;

/// A verified certificate as remembered: who, until when (Unix s), its key.
type CachedCertificate = (Verified, i64, Option<Ed25519Key>);

/// A peer that proved who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The certificate name.
    pub name: String,
    /// What that name may do.
    pub role: Role,
}

/// How often `crl.pem` is looked at for changes.
const CRL_CHECK: Duration = Duration::from_secs(1);

/// The CA (and its CRL) this participant trusts. `crl.pem` is re-read when
/// it changes (looked at once a second), so a running node refuses a
/// certificate revoked after it started; TLS configs already built keep
/// the CRL they were built with.
pub struct Authority {
    ca_file: PathBuf,
    ca_certs: Vec<CertificateDer<'static>>,
    anchors: Vec<TrustAnchor<'static>>,
    revocations: Mutex<Revocations>,
    /// sha256(certificate) -> who it is, until when (Unix s), and its
    /// ed25519 key if it has one (for batch verification).
    certificates: Mutex<HashMap<[u8; 32], CachedCertificate>>,
    /// sha256(certificate, message, signature) -> who signed.
    signatures: Mutex<HashMap<[u8; 32], Verified>>,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("ca_file", &self.ca_file)
            .field("ca_certs", &self.ca_certs.len())
            .field("crls", &lock(&self.revocations).crls.len())
            .finish_non_exhaustive()
    }
}

/// `crl.pem` as last read.
struct Revocations {
    file: PathBuf,
    ders: Vec<CertificateRevocationListDer<'static>>,
    crls: Vec<CertRevocationList<'static>>,
    /// The file's (modified, length) when read; `None`: it did not exist.
    stamp: Option<(SystemTime, u64)>,
    checked: Instant,
}

impl Revocations {
    fn read(file: &Path) -> Result<Revocations, PkiError> {
        let stamp = stamp(file);
        let ders = ssldir::crls(file)?;
        let crls = ders
            .iter()
            .map(|der| {
                OwnedCertRevocationList::from_der(der)
                    .map(CertRevocationList::from)
                    .map_err(|e| PkiError::file(file, format!("not a usable CRL: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Revocations {
            file: file.to_path_buf(),
            ders,
            crls,
            stamp,
            checked: Instant::now(),
        })
    }

    /// Re-reads the file if it changed since the last look (at most once
    /// per [`CRL_CHECK`]). True if the revocations changed.
    fn refresh(&mut self) -> bool {
        if self.checked.elapsed() < CRL_CHECK {
            return false;
        }
        self.checked = Instant::now();
        let now = stamp(&self.file);
        if now == self.stamp {
            return false;
        }
        match Revocations::read(&self.file) {
            Ok(fresh) => {
                tracing::info!(file = %self.file.display(), crls = fresh.crls.len(), "re-read the CRL");
                *self = fresh;
                true
            }
            Err(e) => {
                // Keep the old list; say so once per change of the file.
                tracing::warn!(error = %e, "the CRL changed but cannot be read; keeping the previous one");
                self.stamp = now;
                false
            }
        }
    }
}

fn stamp(file: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(file).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

impl Authority {
    /// Reads `certs/ca.pem` and, if present, `crl.pem`.
    pub fn load(ssldir: &Ssldir) -> Result<Authority, PkiError> {
        let ca_file = ssldir.ca_file();
        if !ca_file.exists() {
            return Err(PkiError::file(
                &ca_file,
                format!(
                    "no CA certificate: point plugin.security.ssldir at Puppet's ssldir, \
                     or make a CA with mco ca init --ssldir {}",
                    ssldir.root().display()
                ),
            ));
        }
        let ca_certs = ssldir::certificates(&ca_file)?;
        let revocations = Revocations::read(&ssldir.crl_file())?;
        Authority::new(&ca_file, ca_certs, revocations)
    }

    fn new(
        ca_file: &Path,
        ca_certs: Vec<CertificateDer<'static>>,
        revocations: Revocations,
    ) -> Result<Authority, PkiError> {
        let anchors = ca_certs
            .iter()
            .map(|der| {
                webpki::anchor_from_trusted_cert(der)
                    .map(|a| a.to_owned())
                    .map_err(|e| {
                        PkiError::file(ca_file, format!("not a usable CA certificate: {e}"))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Authority {
            ca_file: ca_file.to_path_buf(),
            ca_certs,
            anchors,
            revocations: Mutex::new(revocations),
            certificates: Mutex::new(HashMap::new()),
            signatures: Mutex::new(HashMap::new()),
        })
    }

    /// Verifies a peer certificate (DER): signed by this CA, valid now,
    /// not revoked, usable for client authentication. Remembered, so the
    /// chain is verified once per certificate, not once per request.
    pub fn verify_certificate(&self, der: &[u8]) -> Result<Verified, PkiError> {
        self.certificate(der).map(|(verified, _)| verified)
    }

    /// [`Authority::verify_certificate`], with the ed25519 key if it is one.
    fn certificate(&self, der: &[u8]) -> Checked {
        self.refresh();
        let key: [u8; 32] = Sha256::digest(der).into();
        let now = UnixTime::now().as_secs() as i64;
        if let Some((verified, not_after, ed25519)) = lock(&self.certificates).get(&key) {
            if now <= *not_after {
                return Ok((verified.clone(), *ed25519));
            }
        }
        let verified = self.verify_chain(der)?;
        let not_after = names::not_after(der).unwrap_or(now);
        // A key that does not decompress is left to the single check,
        // which refuses its signatures with webpki's reason.
        let ed25519 = names::ed25519_key(der)
            .and_then(|key| ed25519_dalek::VerifyingKey::from_bytes(&key).ok());
        let mut cache = lock(&self.certificates);
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(key, (verified.clone(), not_after, ed25519));
        Ok((verified, ed25519))
    }

    /// Verifies many signatures at once, as [`Authority::verify_signature`]
    /// would one by one: ed25519 ones in batches (about twice as fast per
    /// signature) spread over the machine's cores, the others singly. For
    /// the thousands of replies a fan-out brings back.
    pub fn verify_many(&self, items: &[Signed<'_>]) -> Vec<Result<Verified, PkiError>> {
        // Chains first (cached: once per certificate), then the signatures.
        let checked: Vec<Checked> = items
            .iter()
            .map(|item| self.certificate(item.cert))
            .collect();
        // Asking for the cores reads cgroup files: not for a few replies.
        if items.len() <= MIN_BATCH {
            return verify_chunk(items, &checked);
        }
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(items.len().div_ceil(MIN_BATCH))
            .max(1);
        if threads == 1 {
            return verify_chunk(items, &checked);
        }
        let chunk = items.len().div_ceil(threads).max(1);
        let mut results: Vec<Result<Verified, PkiError>> = Vec::with_capacity(items.len());
        std::thread::scope(|scope| {
            let handles: Vec<_> = items
                .chunks(chunk)
                .zip(checked.chunks(chunk))
                .map(|(items, checked)| {
                    (
                        items.len(),
                        scope.spawn(move || verify_chunk(items, checked)),
                    )
                })
                .collect();
            for (len, handle) in handles {
                match handle.join() {
                    Ok(part) => results.extend(part),
                    Err(_) => results.extend((0..len).map(|_| {
                        Err(PkiError::BadSignature(
                            "the verification thread failed".into(),
                        ))
                    })),
                }
            }
        });
        results
    }

    /// Verifies that the certificate `cert` (DER) is trusted and signed
    /// `message` with `signature` under `scheme` (as [`Credential::sign`] names it).
    pub fn verify_signature(
        &self,
        cert: &[u8],
        scheme: &str,
        message: &[u8],
        signature: &[u8],
    ) -> Result<Verified, PkiError> {
        let mut hasher = Sha256::new();
        hasher.update(Sha256::digest(cert));
        hasher.update(scheme.as_bytes());
        hasher.update((message.len() as u64).to_le_bytes());
        hasher.update(message);
        hasher.update(signature);
        let key: [u8; 32] = hasher.finalize().into();
        self.refresh();
        if let Some(verified) = lock(&self.signatures).get(&key) {
            return Ok(verified.clone());
        }
        let verified = self.verify_certificate(cert)?;
        verify_raw_signature(cert, scheme, message, signature).map_err(|e| {
            PkiError::BadSignature(format!(
                "signature by {} does not verify: {e}",
                verified.name
            ))
        })?;
        let mut cache = lock(&self.signatures);
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(key, verified.clone());
        Ok(verified)
    }

    /// Picks up a changed `crl.pem`, forgetting what was verified under the old one.
    fn refresh(&self) {
        if lock(&self.revocations).refresh() {
            lock(&self.certificates).clear();
            lock(&self.signatures).clear();
        }
    }

    fn verify_chain(&self, der: &[u8]) -> Result<Verified, PkiError> {
        let cert = CertificateDer::from(der);
        let name = names::certificate_name(der).map_err(|e| PkiError::Untrusted(e.to_string()))?;
        let ee = EndEntityCert::try_from(&cert)
            .map_err(|e| PkiError::Untrusted(format!("certificate of {name:?}: {e}")))?;
        let revocations = lock(&self.revocations);
        let crls: Vec<&CertRevocationList<'_>> = revocations.crls.iter().collect();
        let revocation = RevocationOptionsBuilder::new(&crls).ok().map(|b| {
            b.with_depth(RevocationCheckDepth::EndEntity)
                .with_status_policy(UnknownStatusPolicy::Allow)
                .build()
        });
        ee.verify_for_usage(
            algorithms(),
            &self.anchors,
            &[],
            UnixTime::now(),
            KeyUsage::client_auth(),
            revocation,
            None,
        )
        .map_err(|e| PkiError::Untrusted(self.explain(&name, der, &e)))?;
        Ok(Verified {
            role: role_of(&name),
            name,
        })
    }

    fn explain(&self, name: &str, der: &[u8], error: &webpki::Error) -> String {
        let ca = self.ca_file.display();
        match error {
            webpki::Error::UnknownIssuer | webpki::Error::InvalidSignatureForPublicKey => {
                format!("the certificate of {name:?} is not signed by the CA in {ca}")
            }
            webpki::Error::CertRevoked => format!("the certificate of {name:?} is revoked"),
            webpki::Error::CertExpired { .. } => {
                let end = names::validity(der).map(|(_, end)| end).unwrap_or(0);
                format!("the certificate of {name:?} expired (at Unix time {end})")
            }
            webpki::Error::CertNotValidYet { .. } => format!(
                "the certificate of {name:?} is not valid yet (check the clocks of both hosts)"
            ),
            other => format!("the certificate of {name:?} does not verify against {ca}: {other}"),
        }
    }

    fn roots(&self) -> Result<Arc<RootCertStore>, PkiError> {
        let mut roots = RootCertStore::empty();
        for cert in &self.ca_certs {
            roots.add(cert.clone()).map_err(|e| {
                PkiError::file(&self.ca_file, format!("not a usable CA certificate: {e}"))
            })?;
        }
        Ok(Arc::new(roots))
    }

    /// A TLS server config presenting `own` and requiring every client to
    /// present a certificate from this CA that is not revoked.
    pub fn server_config(&self, own: &Credential) -> Result<rustls::ServerConfig, PkiError> {
        // With no CRLs the revocation options check nothing.
        let verifier = WebPkiClientVerifier::builder_with_provider(self.roots()?, provider())
            .with_crls(lock(&self.revocations).ders.clone())
            .only_check_end_entity_revocation()
            .allow_unknown_revocation_status()
            .build()
            .map_err(|e| PkiError::Issue(format!("cannot build the client verifier: {e}")))?;
        rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| PkiError::Issue(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(own.chain().to_vec(), own.private_key())
            .map_err(|e| {
                PkiError::Issue(format!("cannot use the certificate of {}: {e}", own.name()))
            })
    }

    /// A TLS client config presenting `own` and accepting only a server
    /// certificate from this CA that is not revoked.
    pub fn client_config(&self, own: &Credential) -> Result<rustls::ClientConfig, PkiError> {
        // With no CRLs the revocation options check nothing.
        let verifier = WebPkiServerVerifier::builder_with_provider(self.roots()?, provider())
            .with_crls(lock(&self.revocations).ders.clone())
            .only_check_end_entity_revocation()
            .allow_unknown_revocation_status()
            .build()
            .map_err(|e| PkiError::Issue(format!("cannot build the server verifier: {e}")))?;
        rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| PkiError::Issue(e.to_string()))?
            .with_webpki_verifier(verifier)
            .with_client_auth_cert(own.chain().to_vec(), own.private_key())
            .map_err(|e| {
                PkiError::Issue(format!("cannot use the certificate of {}: {e}", own.name()))
            })
    }
}

/// One signature to check with [`Authority::verify_many`].
#[derive(Debug, Clone, Copy)]
pub struct Signed<'a> {
    /// The signer's certificate (DER).
    pub cert: &'a [u8],
    /// The scheme, as [`Credential::sign`] names it.
    pub scheme: &'a str,
    /// What was signed.
    pub message: &'a [u8],
    /// The signature.
    pub signature: &'a [u8],
}

/// Fewer signatures than this are not worth another thread.
const MIN_BATCH: usize = 64;

/// Verifies one thread's share: ed25519 signatures of trusted
/// certificates in one batch (singly if the batch fails, to find the bad
/// ones), everything else singly.
fn verify_chunk(items: &[Signed<'_>], checked: &[Checked]) -> Vec<Result<Verified, PkiError>> {
    let bad = |verified: &Verified, e: &dyn std::fmt::Display| {
        PkiError::BadSignature(format!(
            "signature by {} does not verify: {e}",
            verified.name
        ))
    };
    let mut results: Vec<Option<Result<Verified, PkiError>>> =
        std::iter::repeat_with(|| None).take(items.len()).collect();
    let mut batch = Vec::new();
    for (i, (item, check)) in items.iter().zip(checked).enumerate() {
        match check {
            Err(e) => results[i] = Some(Err(PkiError::Untrusted(e.to_string()))),
            Ok((verified, Some(key))) if item.scheme == "ed25519" => {
                match ed25519_dalek::Signature::from_slice(item.signature) {
                    Ok(signature) => batch.push((i, *key, signature)),
                    Err(e) => results[i] = Some(Err(bad(verified, &e))),
                }
            }
            Ok((verified, _)) => {
                results[i] = Some(
                    verify_raw_signature(item.cert, item.scheme, item.message, item.signature)
                        .map(|()| verified.clone())
                        .map_err(|e| bad(verified, &e)),
                )
            }
        }
    }
    let messages: Vec<&[u8]> = batch.iter().map(|(i, ..)| items[*i].message).collect();
    let signatures: Vec<_> = batch.iter().map(|(_, _, s)| *s).collect();
    let keys: Vec<_> = batch.iter().map(|(_, k, _)| *k).collect();
    let all_good =
        !batch.is_empty() && ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok();
    for (i, key, signature) in batch {
        let Ok((verified, _)) = &checked[i] else {
            continue;
        };
        let ok = all_good || key.verify_strict(items[i].message, &signature).is_ok();
        results[i] = Some(if ok {
            Ok(verified.clone())
        } else {
            Err(bad(verified, &"the signature does not match"))
        });
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(PkiError::BadSignature("not verified".into()))))
        .collect()
}

fn algorithms() -> &'static [&'static dyn SignatureVerificationAlgorithm] {
    rustls::crypto::ring::default_provider()
        .signature_verification_algorithms
        .all
}

/// Checks a signature with the certificate's public key, nothing else.
pub(crate) fn verify_raw_signature(
    cert: &[u8],
    scheme: &str,
    message: &[u8],
    signature: &[u8],
) -> Result<(), SignatureError> {
    let algorithm: &dyn SignatureVerificationAlgorithm = match scheme {
        "ed25519" => webpki::ring::ED25519,
        "rsa-pkcs1-sha256" => webpki::ring::RSA_PKCS1_2048_8192_SHA256,
        "ecdsa-p256-sha256" => webpki::ring::ECDSA_P256_SHA256,
        other => return Err(SignatureError::Scheme(other.to_string())),
    };
    let cert = CertificateDer::from(cert);
    let ee = EndEntityCert::try_from(&cert).map_err(SignatureError::Certificate)?;
    ee.verify_signature(algorithm, message, signature)
        .map_err(SignatureError::Invalid)
}

/// Why a signature does not verify against a certificate's key.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    /// A scheme name muster does not know.
    #[error("unknown signature scheme {0:?}")]
    Scheme(String),
    /// The certificate cannot be parsed.
    #[error("not a certificate: {0}")]
    Certificate(#[source] webpki::Error),
    /// The signature is wrong for this key and message.
    #[error("{0}")]
    Invalid(#[source] webpki::Error),
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
