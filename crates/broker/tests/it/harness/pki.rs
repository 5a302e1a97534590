//! A throwaway PKI for the TLS tests: a CA, a server certificate for
//! 127.0.0.1 and client certificates, made with rcgen, and the rustls configs
//! around them (with the ring provider passed explicitly: no process-wide
//! default provider is installed).

use std::sync::Arc;

use muster_broker::{Admission, Permissions, Security};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, RevocationReason,
    RevokedCertParams, SerialNumber, PKCS_ED25519,
};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

/// An RSA key made once with openssl for these tests (ring cannot generate RSA keys).
const RSA_TEST_KEY: &str = include_str!("rsa-test-key.pem");

pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate chain and its private key.
pub(crate) struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Identity {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

/// A certificate authority.
pub(crate) struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pub cert: CertificateDer<'static>,
    next_serial: u64,
    revoked: Vec<u64>,
}

impl Ca {
    /// A self-signed ed25519 CA.
    pub(crate) fn new(name: &str) -> Ca {
        let key = KeyPair::generate_for(&PKCS_ED25519).expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("CA certificate");
        Ca {
            issuer: Issuer::new(params, key),
            cert: cert.der().clone(),
            next_serial: 1,
            revoked: Vec::new(),
        }
    }

    fn issue(&mut self, params: &mut CertificateParams, key: KeyPair) -> (Identity, u64) {
        let serial = self.next_serial;
        self.next_serial += 1;
        params.serial_number = Some(SerialNumber::from(serial));
        let cert = params.signed_by(&key, &self.issuer).expect("signed");
        let identity = Identity {
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::try_from(key.serialize_der()).expect("PKCS#8 key"),
        };
        (identity, serial)
    }

    /// A server certificate for 127.0.0.1.
    pub(crate) fn server(&mut self) -> Identity {
        let key = KeyPair::generate_for(&PKCS_ED25519).expect("server key");
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("params");
        params.distinguished_name.push(DnType::CommonName, "broker");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(&mut params, key).0
    }

    fn client_params(cn: &str) -> CertificateParams {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params
    }

    /// An ed25519 client certificate with common name `cn`.
    pub(crate) fn client(&mut self, cn: &str) -> Identity {
        let key = KeyPair::generate_for(&PKCS_ED25519).expect("client key");
        self.issue(&mut Self::client_params(cn), key).0
    }

    /// An RSA (2048 bit) client certificate with common name `cn`.
    pub(crate) fn rsa_client(&mut self, cn: &str) -> Identity {
        let key = KeyPair::from_pem(RSA_TEST_KEY).expect("RSA test key");
        self.issue(&mut Self::client_params(cn), key).0
    }

    /// A client certificate that expired long ago.
    pub(crate) fn expired_client(&mut self, cn: &str) -> Identity {
        let key = KeyPair::generate_for(&PKCS_ED25519).expect("client key");
        let mut params = Self::client_params(cn);
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        self.issue(&mut params, key).0
    }

    /// A client certificate listed in [`crl`](Self::crl).
    pub(crate) fn revoked_client(&mut self, cn: &str) -> Identity {
        let key = KeyPair::generate_for(&PKCS_ED25519).expect("client key");
        let (identity, serial) = self.issue(&mut Self::client_params(cn), key);
        self.revoked.push(serial);
        identity
    }

    /// The CA's revocation list.
    pub(crate) fn crl(&self) -> CertificateRevocationListDer<'static> {
        let params = CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2020, 1, 1),
            next_update: rcgen::date_time_ymd(4000, 1, 1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: self
                .revoked
                .iter()
                .map(|serial| RevokedCertParams {
                    serial_number: SerialNumber::from(*serial),
                    revocation_time: rcgen::date_time_ymd(2020, 1, 1),
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        params.signed_by(&self.issuer).expect("CRL").into()
    }

    fn roots(&self) -> Arc<RootCertStore> {
        let mut roots = RootCertStore::empty();
        roots.add(self.cert.clone()).expect("CA is a valid root");
        Arc::new(roots)
    }

    /// A server config presenting `server` and requiring client certificates
    /// from this CA, checked against its CRL.
    pub(crate) fn server_config(&self, server: &Identity) -> Arc<ServerConfig> {
        let verifier = WebPkiClientVerifier::builder_with_provider(self.roots(), provider())
            .with_crls(vec![self.crl()])
            .build()
            .expect("client verifier");
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_client_cert_verifier(verifier)
            .with_single_cert(server.chain.clone(), server.key.clone_key())
            .expect("server config");
        Arc::new(config)
    }

    /// A client config trusting this CA and presenting `identity`, if any.
    pub(crate) fn client_config(&self, identity: Option<&Identity>) -> ClientConfig {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(self.roots());
        match identity {
            Some(id) => builder
                .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
                .expect("client config"),
            None => builder.with_no_client_auth(),
        }
    }
}

/// The subject common name of a certificate.
pub(crate) fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert).ok()?;
    let cn = parsed.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

/// A [`Security`] whose admission names the client by its common name and
/// gives it `permissions(name)`, or refuses it when that is `None`.
pub(crate) fn security(
    tls: Arc<ServerConfig>,
    permissions: impl Fn(&str) -> Option<Permissions> + Send + Sync + 'static,
) -> Security {
    Security::new(tls, move |chain: &[CertificateDer<'static>]| {
        let leaf = chain.first().ok_or("no client certificate")?;
        let name = common_name(leaf).ok_or("no common name")?;
        match permissions(&name) {
            Some(permissions) => Ok(Admission { name, permissions }),
            None => Err(format!("{name} is not allowed here").into()),
        }
    })
}
