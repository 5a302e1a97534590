//! `mco ca`: a fleet CA in Puppet's ssldir layout, for shops without Puppet.
//!
//! The CA's own files live under `SSLDIR/ca/` (key mode 0600); what every
//! participant needs is where Puppet puts it: `certs/ca.pem`, `crl.pem`,
//! `certs/<name>.pem`, `private_keys/<name>.pem`. Copy `certs/ca.pem`,
//! `crl.pem` and one name's two files to each host; never `ca/`.
//!
//! Keys are ed25519, made by rcgen. What a certificate may do follows from
//! its name ([`muster_protocol::identity`]): `alice.mcollective` is a
//! caller, `node.fleet` a simulator, anything else a node or a broker.

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use muster_protocol::identity::{role_of, Role};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SanType, SerialNumber, PKCS_ED25519,
};
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::{PkiError, Ssldir};

/// How long a certificate `mco ca issue` makes is valid (Puppet's default: 5 years).
pub const CERT_DAYS: i64 = 5 * 365;
/// How long the CA itself is valid.
pub const CA_DAYS: i64 = 15 * 365;

/// A fleet CA on disk.
#[derive(Debug)]
pub struct FleetCa {
    dir: PathBuf,
}

impl FleetCa {
    /// Creates a CA in `ssldir` (refusing to replace one), with an empty CRL.
    pub fn init(ssldir: &Ssldir) -> Result<FleetCa, PkiError> {
        let ca = FleetCa {
            dir: ssldir.root().join("ca"),
        };
        if ca.key_file().exists() || ssldir.ca_file().exists() {
            return Err(PkiError::file(
                ssldir.ca_file(),
                "a CA already exists here; issue certificates from it, or choose another --ssldir",
            ));
        }
        for dir in [
            ca.dir.clone(),
            ssldir.root().join("certs"),
            ssldir.root().join("private_keys"),
        ] {
            std::fs::create_dir_all(&dir).map_err(|e| PkiError::io(&dir, e))?;
        }
        let key = KeyPair::generate_for(&PKCS_ED25519).map_err(issue_error)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, ca_name(&key));
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(CA_DAYS);
        params.serial_number = Some(SerialNumber::from(1u64));
        let cert = params.self_signed(&key).map_err(issue_error)?;
        write_private(&ca.key_file(), &private_key_pem(&key))?;
        write_public(&ca.cert_file(), &cert.pem())?;
        write_public(&ssldir.ca_file(), &cert.pem())?;
        write_public(&ca.dir.join("serial"), "2\n")?;
        write_public(&ca.dir.join("revoked"), "")?;
        ca.write_crl(ssldir)?;
        Ok(ca)
    }

    /// The CA in `ssldir`, made earlier by [`FleetCa::init`].
    pub fn open(ssldir: &Ssldir) -> Result<FleetCa, PkiError> {
        let ca = FleetCa {
            dir: ssldir.root().join("ca"),
        };
        if !ca.key_file().exists() {
            return Err(PkiError::file(
                ca.key_file(),
                format!(
                    "no CA here: run mco ca init --ssldir {} first",
                    ssldir.root().display()
                ),
            ));
        }
        Ok(ca)
    }

    fn key_file(&self) -> PathBuf {
        self.dir.join("ca_key.pem")
    }

    fn cert_file(&self) -> PathBuf {
        self.dir.join("ca_crt.pem")
    }

    fn issuer(&self) -> Result<Issuer<'static, KeyPair>, PkiError> {
        let key_pem = read_text(&self.key_file())?;
        let key = KeyPair::from_pem(&key_pem)
            .map_err(|e| PkiError::file(self.key_file(), format!("not a CA key: {e}")))?;
        let cert_pem = read_text(&self.cert_file())?;
        Issuer::from_ca_cert_pem(&cert_pem, key)
            .map_err(|e| PkiError::file(self.cert_file(), format!("not a CA certificate: {e}")))
    }

    /// Issues a certificate and key for `name`, valid for [`CERT_DAYS`].
    /// `sans` are extra DNS names or IP addresses (a broker needs the
    /// names clients connect to). Returns the certificate file.
    pub fn issue(&self, ssldir: &Ssldir, name: &str, sans: &[String]) -> Result<PathBuf, PkiError> {
        let now = OffsetDateTime::now_utc();
        self.issue_valid(
            ssldir,
            name,
            sans,
            now - Duration::hours(1),
            now + Duration::days(CERT_DAYS),
        )
    }

    /// [`FleetCa::issue`] with an explicit validity window (tests use it
    /// for certificates that have expired or are not valid yet).
    pub fn issue_valid(
        &self,
        ssldir: &Ssldir,
        name: &str,
        sans: &[String],
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<PathBuf, PkiError> {
        check_name(name)?;
        let cert_file = ssldir.cert_file(name);
        let key_file = ssldir.key_file(name);
        for file in [&cert_file, &key_file] {
            if file.exists() {
                return Err(PkiError::file(
                    file,
                    format!("{name} already has a certificate; revoke it first (mco ca revoke {name}) and remove both files to issue again"),
                ));
            }
        }
        let issuer = self.issuer()?;
        let key = KeyPair::generate_for(&PKCS_ED25519).map_err(issue_error)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        let mut names = vec![name.to_string()];
        names.extend(sans.iter().cloned());
        for san in names {
            let san =
                match san.parse::<IpAddr>() {
                    Ok(ip) => SanType::IpAddress(ip),
                    Err(_) => SanType::DnsName(san.clone().try_into().map_err(|e| {
                        PkiError::Issue(format!("{san:?} cannot be a DNS name: {e}"))
                    })?),
                };
            if !params.subject_alt_names.contains(&san) {
                params.subject_alt_names.push(san);
            }
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = match role_of(name) {
            Role::Caller => vec![ExtendedKeyUsagePurpose::ClientAuth],
            Role::Node | Role::Fleet { .. } => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        };
        params.use_authority_key_identifier_extension = true;
        params.not_before = not_before;
        params.not_after = not_after;
        params.serial_number = Some(SerialNumber::from(self.next_serial()?));
        let cert = params.signed_by(&key, &issuer).map_err(issue_error)?;
        for dir in [
            ssldir.root().join("certs"),
            ssldir.root().join("private_keys"),
        ] {
            std::fs::create_dir_all(&dir).map_err(|e| PkiError::io(&dir, e))?;
        }
        write_private(&key_file, &private_key_pem(&key))?;
        write_public(&cert_file, &cert.pem())?;
        Ok(cert_file)
    }

    fn next_serial(&self) -> Result<u64, PkiError> {
        let file = self.dir.join("serial");
        let serial: u64 = read_text(&file)?
            .trim()
            .parse()
            .map_err(|_| PkiError::file(&file, "not a serial number"))?;
        write_public(&file, &format!("{}\n", serial + 1))?;
        Ok(serial)
    }

    /// Revokes `name`'s certificate: adds it to `crl.pem`. Every broker and
    /// node must be given the new `crl.pem`.
    pub fn revoke(&self, ssldir: &Ssldir, name: &str) -> Result<PathBuf, PkiError> {
        let cert_file = ssldir.cert_file(name);
        let pem = read_text(&cert_file)?;
        let der = rustls_pki_types::pem::PemObject::from_pem_slice(pem.as_bytes())
            .map(|c: rustls_pki_types::CertificateDer<'static>| c)
            .map_err(|e| PkiError::file(&cert_file, format!("not a certificate: {e}")))?;
        let (_, cert) = X509Certificate::from_der(&der)
            .map_err(|e| PkiError::file(&cert_file, format!("not a certificate: {e}")))?;
        let serial = hex(cert.raw_serial());
        let revoked = self.dir.join("revoked");
        let mut list = read_text(&revoked)?;
        if !list
            .lines()
            .any(|l| l.split_whitespace().next() == Some(serial.as_str()))
        {
            list.push_str(&format!("{serial} {name}\n"));
            write_public(&revoked, &list)?;
        }
        self.write_crl(ssldir)?;
        Ok(ssldir.crl_file())
    }

    fn write_crl(&self, ssldir: &Ssldir) -> Result<(), PkiError> {
        let revoked = self.dir.join("revoked");
        let now = OffsetDateTime::now_utc();
        let mut revoked_certs = Vec::new();
        for line in read_text(&revoked)?.lines() {
            let Some(serial) = line.split_whitespace().next() else {
                continue;
            };
            let bytes = unhex(serial)
                .ok_or_else(|| PkiError::file(&revoked, format!("bad serial {serial:?}")))?;
            revoked_certs.push(RevokedCertParams {
                serial_number: SerialNumber::from_slice(&bytes),
                revocation_time: now,
                reason_code: None,
                invalidity_date: None,
            });
        }
        let number = revoked_certs.len() as u64 + 1;
        let params = CertificateRevocationListParams {
            this_update: now - Duration::minutes(5),
            next_update: now + Duration::days(CA_DAYS),
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.issuer()?).map_err(issue_error)?;
        let pem = crl.pem().map_err(issue_error)?;
        write_public(&ssldir.crl_file(), &pem)
    }
}

/// A certificate name must be usable as a file name and in subjects.
fn check_name(name: &str) -> Result<(), PkiError> {
    if !muster_protocol::subject::is_valid_name(name) || name.contains('/') || name.starts_with('.')
    {
        return Err(PkiError::Issue(format!(
            "{name:?} cannot be a certificate name: use letters, digits, '-', '_' and dots between them"
        )));
    }
    Ok(())
}

/// An ed25519 key as PKCS#8 v1 (RFC 8410), the form OpenSSL before 3.5 —
/// Debian 12's Python, Ruby and curl — can read; ring writes v2, which
/// also carries the public key. Other keys as rcgen writes them.
fn private_key_pem(key: &KeyPair) -> String {
    use base64::Engine;
    // v2: SEQUENCE { INTEGER 1, { Ed25519 }, OCTET STRING { OCTET STRING seed }, [1] public key }
    const V2_BODY: [u8; 14] = [
        0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
    ];
    const V1_PREFIX: [u8; 16] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    let der = key.serialize_der();
    let seed = der
        .get(2..16)
        .filter(|body| der[0] == 0x30 && *body == V2_BODY)
        .and_then(|_| der.get(16..48));
    match seed {
        Some(seed) => {
            let mut v1 = V1_PREFIX.to_vec();
            v1.extend_from_slice(seed);
            let text = base64::engine::general_purpose::STANDARD.encode(&v1);
            format!("-----BEGIN PRIVATE KEY-----\n{text}\n-----END PRIVATE KEY-----\n")
        }
        None => key.serialize_pem(),
    }
}

fn issue_error(e: rcgen::Error) -> PkiError {
    PkiError::Issue(e.to_string())
}

fn read_text(path: &Path) -> Result<String, PkiError> {
    let bytes = crate::ssldir::read(path)?;
    String::from_utf8(bytes).map_err(|_| PkiError::file(path, "is not text"))
}

fn write_private(path: &Path, text: &str) -> Result<(), PkiError> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| PkiError::io(path, e))?;
    file.write_all(text.as_bytes())
        .map_err(|e| PkiError::io(path, e))
}

fn write_public(path: &Path, text: &str) -> Result<(), PkiError> {
    // Write beside, then rename: a reader never sees half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(|e| PkiError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| PkiError::io(path, e))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// `muster CA: <host> <key id>`: two CAs on one host never share a name,
/// so a certificate from one is never mistaken as issued by the other.
fn ca_name(key: &KeyPair) -> String {
    use rcgen::PublicKeyData;
    use sha2::Digest;
    let id = sha2::Sha256::digest(key.der_bytes());
    format!("muster CA: {} {}", host_name(), hex(&id[..6]))
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}
