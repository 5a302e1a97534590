//! The fleet CA and verification, with real files in temporary ssldirs.

use std::os::unix::fs::PermissionsExt;

use muster_pki::{ca::FleetCa, Authority, Credential, PkiError, Ssldir};
use muster_protocol::identity::Role;
use time::{Duration, OffsetDateTime};

fn fleet() -> (tempfile::TempDir, Ssldir, FleetCa) {
    let dir = tempfile::tempdir().unwrap();
    let ssldir = Ssldir::new(dir.path());
    let ca = FleetCa::init(&ssldir).unwrap();
    (dir, ssldir, ca)
}

fn signed_by(ssldir: &Ssldir, name: &str) -> (Vec<u8>, &'static str, Vec<u8>) {
    let credential = Credential::load(ssldir, name).unwrap();
    let (scheme, signature) = credential.sign(b"request").unwrap();
    (credential.certificate().to_vec(), scheme, signature)
}

#[test]
fn issued_certificates_verify_with_their_roles() {
    let (_dir, ssldir, ca) = fleet();
    for name in ["alice.mcollective", "web1.example.net", "node.fleet"] {
        ca.issue(&ssldir, name, &[]).unwrap();
    }
    let authority = Authority::load(&ssldir).unwrap();
    for (name, role) in [
        ("alice.mcollective", Role::Caller),
        ("web1.example.net", Role::Node),
        (
            "node.fleet",
            Role::Fleet {
                prefix: "node".into(),
            },
        ),
    ] {
        let (cert, scheme, signature) = signed_by(&ssldir, name);
        let who = authority
            .verify_signature(&cert, scheme, b"request", &signature)
            .unwrap();
        assert_eq!(who.name, name);
        assert_eq!(who.role, role);
        // A different message with the same signature does not verify, cache or not.
        let err = authority
            .verify_signature(&cert, scheme, b"forged", &signature)
            .unwrap_err();
        assert!(err.to_string().contains("does not verify"), "{err}");
    }
}

#[test]
fn private_keys_are_0600_and_refused_when_world_readable() {
    let (_dir, ssldir, ca) = fleet();
    ca.issue(&ssldir, "node1", &[]).unwrap();
    let key = ssldir.key_file("node1");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = Credential::load(&ssldir, "node1").unwrap_err();
    assert!(err.to_string().contains("readable by every user"), "{err}");
    assert!(err.to_string().contains("node1.pem"), "{err}");
    // Puppet's own mode, 0640, is fine.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    Credential::load(&ssldir, "node1").unwrap();
}

#[test]
fn a_certificate_from_another_ca_is_refused() {
    let (_a, ours, _) = fleet();
    let (_b, theirs, their_ca) = fleet();
    their_ca.issue(&theirs, "mallory.mcollective", &[]).unwrap();
    let (cert, scheme, signature) = signed_by(&theirs, "mallory.mcollective");
    let err = Authority::load(&ours)
        .unwrap()
        .verify_signature(&cert, scheme, b"request", &signature)
        .unwrap_err();
    assert!(matches!(err, PkiError::Untrusted(_)));
    assert!(err.to_string().contains("not signed by the CA"), "{err}");
}

#[test]
fn a_revoked_certificate_is_refused() {
    let (_dir, ssldir, ca) = fleet();
    ca.issue(&ssldir, "bob.mcollective", &[]).unwrap();
    ca.issue(&ssldir, "alice.mcollective", &[]).unwrap();
    let (cert, scheme, signature) = signed_by(&ssldir, "bob.mcollective");
    Authority::load(&ssldir)
        .unwrap()
        .verify_signature(&cert, scheme, b"request", &signature)
        .unwrap();
    ca.revoke(&ssldir, "bob.mcollective").unwrap();
    // Revoking twice is harmless.
    ca.revoke(&ssldir, "bob.mcollective").unwrap();
    let authority = Authority::load(&ssldir).unwrap();
    let err = authority
        .verify_signature(&cert, scheme, b"request", &signature)
        .unwrap_err();
    assert!(err.to_string().contains("revoked"), "{err}");
    let (cert, scheme, signature) = signed_by(&ssldir, "alice.mcollective");
    authority
        .verify_signature(&cert, scheme, b"request", &signature)
        .unwrap();
}

#[test]
fn expired_and_future_certificates_are_refused_with_their_reason() {
    let (_dir, ssldir, ca) = fleet();
    let now = OffsetDateTime::now_utc();
    ca.issue_valid(
        &ssldir,
        "old.mcollective",
        &[],
        now - Duration::days(30),
        now - Duration::days(1),
    )
    .unwrap();
    ca.issue_valid(
        &ssldir,
        "new.mcollective",
        &[],
        now + Duration::days(1),
        now + Duration::days(30),
    )
    .unwrap();
    // Loading one's own expired certificate fails early and says so.
    let err = Credential::load(&ssldir, "old.mcollective").unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");
    let err = Credential::load(&ssldir, "new.mcollective").unwrap_err();
    assert!(err.to_string().contains("not valid before"), "{err}");
    // A peer presenting them is refused too.
    let authority = Authority::load(&ssldir).unwrap();
    let pem = std::fs::read(ssldir.cert_file("old.mcollective")).unwrap();
    let der = pem_to_der(&pem);
    let err = authority.verify_certificate(&der).unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");
    let der = pem_to_der(&std::fs::read(ssldir.cert_file("new.mcollective")).unwrap());
    let err = authority.verify_certificate(&der).unwrap_err();
    assert!(err.to_string().contains("not valid yet"), "{err}");
}

#[test]
fn a_certificate_for_another_name_is_refused() {
    let (_dir, ssldir, ca) = fleet();
    ca.issue(&ssldir, "node1", &[]).unwrap();
    std::fs::copy(ssldir.cert_file("node1"), ssldir.cert_file("node2")).unwrap();
    std::fs::copy(ssldir.key_file("node1"), ssldir.key_file("node2")).unwrap();
    let err = Credential::load(&ssldir, "node2").unwrap_err();
    assert!(err.to_string().contains("is for \"node1\""), "{err}");
}

#[test]
fn a_key_that_does_not_belong_to_the_certificate_is_refused() {
    let (_dir, ssldir, ca) = fleet();
    ca.issue(&ssldir, "node1", &[]).unwrap();
    ca.issue(&ssldir, "node2", &[]).unwrap();
    std::fs::remove_file(ssldir.key_file("node1")).unwrap();
    std::fs::copy(ssldir.key_file("node2"), ssldir.key_file("node1")).unwrap();
    let err = Credential::load(&ssldir, "node1").unwrap_err();
    assert!(err.to_string().contains("does not belong"), "{err}");
}

#[test]
fn missing_and_garbage_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let ssldir = Ssldir::new(dir.path());
    let err = Authority::load(&ssldir).unwrap_err();
    assert!(err.to_string().contains("mco ca init"), "{err}");
    let err = Credential::load(&ssldir, "node1").unwrap_err();
    assert!(err.to_string().contains("mco ca issue node1"), "{err}");
    std::fs::create_dir_all(dir.path().join("certs")).unwrap();
    std::fs::write(ssldir.ca_file(), "garbage").unwrap();
    let err = Authority::load(&ssldir).unwrap_err();
    assert!(err.to_string().contains("ca.pem"), "{err}");
    std::fs::write(ssldir.ca_file(), vec![b'A'; 5 * 1024 * 1024]).unwrap();
    let err = Authority::load(&ssldir).unwrap_err();
    assert!(err.to_string().contains("larger than"), "{err}");
    // A garbage peer certificate is an error, not a panic.
    let (_d, good, _ca) = fleet();
    let authority = Authority::load(&good).unwrap();
    for junk in [&b""[..], b"\x30\x82\xff\xff", &[0u8; 3000][..]] {
        assert!(authority.verify_certificate(junk).is_err());
        assert!(authority
            .verify_signature(junk, "ed25519", b"m", b"s")
            .is_err());
    }
}

#[test]
fn the_ca_refuses_to_be_replaced_and_bad_names() {
    let (_dir, ssldir, ca) = fleet();
    let err = FleetCa::init(&ssldir).unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    for name in ["a b", "../etc/x", "web*", ".hidden", ""] {
        assert!(ca.issue(&ssldir, name, &[]).is_err(), "{name:?}");
    }
    ca.issue(&ssldir, "node1", &[]).unwrap();
    let err = ca.issue(&ssldir, "node1", &[]).unwrap_err();
    assert!(
        err.to_string().contains("already has a certificate"),
        "{err}"
    );
}

fn pem_to_der(pem: &[u8]) -> Vec<u8> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::from_pem_slice(pem)
        .unwrap()
        .to_vec()
}

#[test]
fn tls_configs_build_with_and_without_a_crl() {
    let (_dir, ssldir, ca) = fleet();
    ca.issue(&ssldir, "broker1", &["127.0.0.1".into()]).unwrap();
    let own = Credential::load(&ssldir, "broker1").unwrap();
    let authority = Authority::load(&ssldir).unwrap();
    authority.server_config(&own).unwrap();
    authority.client_config(&own).unwrap();
    std::fs::remove_file(ssldir.crl_file()).unwrap();
    let authority = Authority::load(&ssldir).unwrap();
    authority.server_config(&own).unwrap();
    authority.client_config(&own).unwrap();
}

#[test]
fn a_running_authority_picks_up_a_new_crl() {
    let (_dir, ssldir, ca) = fleet();
    ca.issue(&ssldir, "bob.mcollective", &[]).unwrap();
    let authority = Authority::load(&ssldir).unwrap();
    let (cert, scheme, signature) = signed_by(&ssldir, "bob.mcollective");
    // Verified, and remembered.
    authority
        .verify_signature(&cert, scheme, b"request", &signature)
        .unwrap();
    ca.revoke(&ssldir, "bob.mcollective").unwrap();
    // Within a bounded time the same signature is refused.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match authority.verify_signature(&cert, scheme, b"request", &signature) {
            Err(e) => {
                assert!(e.to_string().contains("revoked"), "{e}");
                break;
            }
            Ok(_) => assert!(
                std::time::Instant::now() < deadline,
                "still trusted after 10 s"
            ),
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // A CRL that turns to garbage keeps the last good one.
    std::fs::write(ssldir.crl_file(), "garbage").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let err = authority
        .verify_signature(&cert, scheme, b"request", &signature)
        .unwrap_err();
    assert!(err.to_string().contains("revoked"), "{err}");
    // At start, a garbage CRL is an error naming it, not "nothing revoked".
    let err = Authority::load(&ssldir).unwrap_err();
    assert!(
        err.to_string().contains("crl.pem") && err.to_string().contains("no PEM CRL"),
        "{err}"
    );
}

/// Keys must be readable by other tools on the same hosts (Debian 12's
/// OpenSSL 3.0, which Python, Ruby and curl use), not only by muster.
#[test]
fn issued_keys_are_readable_by_openssl() {
    let (_dir, ssldir, ca) = fleet();
    ca.issue(&ssldir, "node1", &[]).unwrap();
    for key in [
        ssldir.key_file("node1"),
        ssldir.root().join("ca/ca_key.pem"),
    ] {
        let out = std::process::Command::new("openssl")
            .args(["pkey", "-noout", "-in"])
            .arg(&key)
            .output()
            .expect("openssl is installed");
        assert!(
            out.status.success(),
            "{}: {}",
            key.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // And muster still reads them: the CA issues, the node loads.
    ca.issue(&ssldir, "node2", &[]).unwrap();
    Credential::load(&ssldir, "node1").unwrap();
}

#[test]
fn many_signatures_verify_at_once_and_each_answer_is_its_own() {
    use muster_pki::Signed;
    let (_dir, ssldir, ca) = fleet();
    let (_other_dir, other, other_ca) = fleet();
    for n in 0..4 {
        ca.issue(&ssldir, &format!("node{n}"), &[]).unwrap();
    }
    other_ca.issue(&other, "node0", &[]).unwrap();
    let ours: Vec<Credential> = (0..4)
        .map(|n| Credential::load(&ssldir, &format!("node{n}")).unwrap())
        .collect();
    let stranger = Credential::load(&other, "node0").unwrap();
    let messages: Vec<Vec<u8>> = (0..300)
        .map(|i| format!("reply {i}").into_bytes())
        .collect();
    let mut signed: Vec<(Vec<u8>, &str, Vec<u8>)> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let who = &ours[i % 4];
            let (scheme, sig) = who.sign(m).unwrap();
            (who.certificate().to_vec(), scheme, sig)
        })
        .collect();
    // Three bad ones in the middle: another message's signature, another
    // CA's certificate, and garbage.
    signed[100].2 = signed[101].2.clone();
    let (scheme, sig) = stranger.sign(&messages[150]).unwrap();
    signed[150] = (stranger.certificate().to_vec(), scheme, sig);
    signed[200].2 = vec![0; 64];
    let authority = Authority::load(&ssldir).unwrap();
    let items: Vec<Signed<'_>> = signed
        .iter()
        .zip(&messages)
        .map(|((cert, scheme, sig), message)| Signed {
            cert,
            scheme,
            message,
            signature: sig,
        })
        .collect();
    let results = authority.verify_many(&items);
    assert_eq!(results.len(), 300);
    for (i, result) in results.iter().enumerate() {
        match i {
            100 | 200 => assert!(
                matches!(result, Err(PkiError::BadSignature(_))),
                "{i}: {result:?}"
            ),
            150 => assert!(
                matches!(result, Err(PkiError::Untrusted(_))),
                "{i}: {result:?}"
            ),
            _ => assert_eq!(
                result.as_ref().unwrap().name,
                format!("node{}", i % 4),
                "{i}"
            ),
        }
    }
    assert!(authority.verify_many(&[]).is_empty());
}
