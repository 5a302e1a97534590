//! "A Puppet shop uses what it has": the real `mco` binary as broker
//! client and node daemon on certificates from a Puppet-style CA, made by
//! `crates/testkit/scripts/puppet-ca.sh` — RSA 2048 keys in PKCS#1 files,
//! `certs/ca.pem` holding the intermediate then the root, `crl.pem` holding
//! both CAs' CRLs — on the embedded broker (presenting the CA server's
//! certificate) and on nats-server (its config from `mco broker
//! nats-config` with `--issued ca/signed`).
//!
//! `CA_MODE=openssl` needs only openssl. The puppetserver test signs real
//! agent certificates with Debian's puppetserver 7 (about 25 s); it is
//! skipped when puppetserver is not installed, except in CI.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use futures::StreamExt;
use muster_pki::Credential;
use muster_protocol::identity::{caller_token, Role};
use muster_protocol::{subject, Envelope, Reply, Request};
use muster_testkit::{
    nats_server_available, puppetserver_available, stderr, stdout, BrokerKind, Caller, NodeSetup,
    PuppetCaMode, ServerProcess, TestBroker, TestPki, PUPPET_SERVER_NAME,
};
use serde_json::Value;

const MCO: &str = env!("CARGO_BIN_EXE_mco");

/// Puppet agents' certnames (= identities) and their facts.
const NODES: &[(&str, &str)] = &[
    ("web1.example", "role: web\nos:\n  family: Debian\n"),
    ("db1.example", "role: db\nos:\n  family: RedHat\n"),
];
const CALLER: &str = "tester";
const REVOKED: &str = "mallory";

async fn mco(args: &[&str]) -> Output {
    muster_testkit::run_mco(MCO, args).await
}

/// The identities in `mco ping` output.
fn pinged(output: &Output) -> Vec<String> {
    let mut nodes: Vec<String> = stdout(output)
        .lines()
        .filter(|l| l.contains(" time="))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    nodes.sort();
    nodes
}

fn node_names() -> Vec<String> {
    let mut names: Vec<String> = NODES.iter().map(|(n, _)| n.to_string()).collect();
    names.sort();
    names
}

/// Every certificate name a test needs, signed when the CA is made.
fn puppet_pki(mode: PuppetCaMode, extra: &[&str]) -> TestPki {
    let caller = format!("{CALLER}.mcollective");
    let mut names: Vec<&str> = NODES.iter().map(|(n, _)| *n).collect();
    names.push(&caller);
    names.extend_from_slice(extra);
    // (testkit prints how long the script took)
    TestPki::puppet(&names, mode)
}

fn private_keys(pki: &TestPki) -> Vec<PathBuf> {
    let dir = pki.ssldir().root().join("private_keys");
    let mut keys: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    keys.sort();
    keys
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Puppet's own mode for keys (as root: `puppet:puppet` 0640); openssl
/// makes them 0600. Everything below then runs on Puppet's mode.
fn make_keys_puppet_mode(pki: &TestPki) {
    for key in private_keys(pki) {
        assert_eq!(
            mode_of(&key),
            0o600,
            "openssl genrsa's mode: {}",
            key.display()
        );
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
        // The group as Puppet sets it, where a puppet group exists (root only).
        let _ = Command::new("chgrp").arg("puppet").arg(&key).output();
    }
}

fn openssl(args: &[&str]) -> String {
    let output = Command::new("openssl")
        .args(args)
        .output()
        .expect("cannot run openssl");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        stderr(&output)
    );
    stdout(&output)
}

/// (subject, issuer) of every certificate in a PEM file, in order.
fn subjects_and_issuers(file: &Path) -> Vec<(String, String)> {
    let file = file.display().to_string();
    let text = openssl(&["crl2pkcs7", "-nocrl", "-certfile", &file]);
    let dir = tempfile::tempdir().unwrap();
    let p7 = dir.path().join("chain.p7");
    std::fs::write(&p7, text).unwrap();
    let printed = openssl(&[
        "pkcs7",
        "-in",
        &p7.display().to_string(),
        "-print_certs",
        "-noout",
    ]);
    let mut pairs = Vec::new();
    let mut subject = None;
    for line in printed.lines() {
        if let Some(s) = line.strip_prefix("subject=") {
            subject = Some(s.trim().to_string());
        } else if let Some(i) = line.strip_prefix("issuer=") {
            pairs.push((subject.take().expect("subject first"), i.trim().to_string()));
        }
    }
    pairs
}

/// What the script makes is Puppet's layout, and muster reads all of it:
/// the two-CA chain, PKCS#1 RSA keys in Puppet's 0640, both CRLs,
/// RSA signatures, roles from names.
fn assert_puppet_layout(pki: &TestPki) {
    let ssl = pki.ssldir().root();
    let chain = subjects_and_issuers(&pki.ssldir().ca_file());
    assert_eq!(chain.len(), 2, "ca.pem: intermediate then root: {chain:?}");
    let (intermediate, root) = (&chain[0], &chain[1]);
    assert_eq!(
        intermediate.0,
        format!("CN = Puppet CA: {PUPPET_SERVER_NAME}")
    );
    assert_eq!(intermediate.1, root.0, "the intermediate is the root's");
    assert!(root.0.starts_with("CN = Puppet Root CA: "), "{root:?}");
    assert_eq!(root.0, root.1, "the root signs itself");
    let crls = std::fs::read_to_string(pki.ssldir().crl_file()).unwrap();
    assert_eq!(
        crls.matches("-----BEGIN X509 CRL-----").count(),
        2,
        "{crls}"
    );

    for key in private_keys(pki) {
        let pem = std::fs::read_to_string(&key).unwrap();
        assert!(
            pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"),
            "PKCS#1: {}",
            key.display()
        );
        let text = openssl(&["rsa", "-in", &key.display().to_string(), "-noout", "-text"]);
        assert!(text.contains("Private-Key: (2048 bit"), "{text}");
        assert_eq!(mode_of(&key), 0o640, "Puppet's mode: {}", key.display());
    }
    for (node, _) in NODES {
        let cert = ssl.join("certs").join(format!("{node}.pem"));
        let text = openssl(&[
            "x509",
            "-in",
            &cert.display().to_string(),
            "-noout",
            "-ext",
            "subjectAltName",
        ]);
        assert!(text.contains(&format!("DNS:{node}")), "{text}");
    }

    let authority = pki.authority();
    let caller = Credential::load(pki.ssldir(), &format!("{CALLER}.mcollective"))
        .expect("muster loads the Puppet caller's key at 0640");
    let (scheme, signature) = caller.sign(b"puppet").unwrap();
    assert_eq!(scheme, "rsa-pkcs1-sha256");
    let who = authority
        .verify_signature(caller.certificate(), scheme, b"puppet", &signature)
        .expect("a Puppet caller's signature verifies through the chain");
    assert_eq!(who.role, Role::Caller);
    for (node, _) in NODES {
        let node = Credential::load(pki.ssldir(), node).unwrap();
        assert_eq!(
            authority
                .verify_certificate(node.certificate())
                .unwrap()
                .role,
            Role::Node
        );
    }

    // CA_READABLE=1 (`chmod -R a+rX`) makes keys world-readable: muster refuses those.
    let copy = tempfile::tempdir().unwrap();
    let copied = muster_pki::Ssldir::new(copy.path());
    for sub in ["certs", "private_keys"] {
        std::fs::create_dir_all(copy.path().join(sub)).unwrap();
    }
    let name = format!("{CALLER}.mcollective");
    std::fs::copy(pki.ssldir().cert_file(&name), copied.cert_file(&name)).unwrap();
    std::fs::copy(pki.ssldir().key_file(&name), copied.key_file(&name)).unwrap();
    std::fs::set_permissions(
        copied.key_file(&name),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let refused = Credential::load(&copied, &name).expect_err("a 0644 key is refused");
    assert!(
        refused.to_string().contains("readable by every user"),
        "{refused}"
    );
}

/// A broker on `pki`, a caller `tester.mcollective`, and an `mco server`
/// per Puppet agent certificate.
struct Fleet {
    broker: TestBroker,
    caller: Caller,
    config: String,
    servers: Vec<ServerProcess>,
}

impl Fleet {
    async fn start(kind: BrokerKind, pki: &TestPki) -> Fleet {
        let caller = Caller::with_pki(CALLER, pki.clone());
        let broker = TestBroker::start_with(kind, pki.clone()).await;
        assert_eq!(broker.certname(), PUPPET_SERVER_NAME);
        let config = caller.client_config(&broker.url()).display().to_string();
        let servers = NODES
            .iter()
            .map(|(identity, facts)| {
                ServerProcess::start(
                    Path::new(MCO),
                    &broker.url(),
                    pki,
                    &NodeSetup {
                        identity,
                        facts_yaml: facts,
                        classes: &["base"],
                        collectives: &[],
                        settings: "",
                    },
                )
            })
            .collect();
        let fleet = Fleet {
            broker,
            caller,
            config,
            servers,
        };
        fleet.wait_for_nodes().await;
        fleet
    }

    async fn wait_for_nodes(&self) {
        let started = Instant::now();
        let deadline = started + Duration::from_secs(20);
        loop {
            let output = mco(&["ping", "--config", &self.config]).await;
            if pinged(&output) == node_names() {
                eprintln!(
                    "{:?}: both nodes answer after {:.1} s",
                    self.broker.kind(),
                    started.elapsed().as_secs_f64()
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "only {:?} answer after 20 s: {}\n{} log:\n{}\nbroker log:\n{}",
                pinged(&output),
                stderr(&output),
                NODES[0].0,
                self.servers[0].log(),
                self.broker.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `mco ping` finds both nodes and `get_fact fact=role` answers from each.
    async fn ping_and_get_fact(&self) {
        let ping = mco(&["ping", "--config", &self.config]).await;
        assert!(ping.status.success(), "{}", stderr(&ping));
        assert_eq!(pinged(&ping), node_names(), "{}", stdout(&ping));
        assert!(
            stdout(&ping).contains("2 replies max:"),
            "{}",
            stdout(&ping)
        );

        let output = mco(&[
            "rpc",
            "--config",
            &self.config,
            "--json",
            "rpcutil",
            "get_fact",
            "fact=role",
        ])
        .await;
        assert!(output.status.success(), "{}", stderr(&output));
        let document: Value = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(&output)));
        let mut roles: Vec<(String, String)> = document["replies"]
            .as_array()
            .unwrap_or_else(|| panic!("no replies: {document}"))
            .iter()
            .map(|r| {
                assert_eq!(r["statuscode"], 0, "{r}");
                (
                    r["sender"].as_str().unwrap().to_string(),
                    r["data"]["value"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        roles.sort();
        assert_eq!(
            roles,
            vec![
                ("db1.example".to_string(), "db".to_string()),
                ("web1.example".to_string(), "web".to_string())
            ]
        );
        assert_eq!(document["statistics"]["responded"], 2, "{document}");

        // The text form too, as an operator sees it.
        let text = mco(&[
            "rpc",
            "--config",
            &self.config,
            "rpcutil",
            "get_fact",
            "fact=role",
        ])
        .await;
        assert!(text.status.success(), "{}", stderr(&text));
        assert!(
            stdout(&text).contains("Finished processing 2 / 2 hosts"),
            "{}",
            stdout(&text)
        );
    }

    /// Sends a request signed by `signer` over `carrier`'s connection
    /// straight to `node`; returns the replies within `wait`.
    async fn raw_request(
        &self,
        carrier: &str,
        signer: &Credential,
        node: &str,
        wait: Duration,
    ) -> Vec<Reply> {
        let request = Request::new("x", signer.name(), "mcollective", "rpcutil", "ping")
            .with_targets(vec![node.to_string()]);
        let nats = muster_connector::connect_client(
            &[self.broker.url()],
            carrier,
            Duration::from_secs(10),
            &self.caller.pki().transport(carrier),
        )
        .await
        .unwrap_or_else(|e| panic!("{carrier} cannot connect: {e}"));
        let token = caller_token(carrier);
        let mut replies = nats
            .subscribe(subject::replies(&request.collective, &token, &request.id))
            .await
            .expect("subscribe");
        let bytes = Envelope::seal(&request, signer).unwrap().to_bytes();
        nats.publish_with_reply(
            subject::node("mcollective", node),
            subject::no_responders(&request.collective, &token, &request.id),
            bytes.into(),
        )
        .await
        .expect("publish");
        nats.flush().await.expect("flush");
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(Some(message)) = tokio::time::timeout_at(deadline, replies.next()).await {
            if let Ok(reply) =
                muster_protocol::SignedReply::from_bytes(&message.payload).and_then(|s| s.reply())
            {
                got.push(reply);
            }
        }
        got
    }
}

async fn a_puppet_fleet_answers(kind: BrokerKind, mode: PuppetCaMode) {
    let pki = puppet_pki(mode, &[]);
    if mode == PuppetCaMode::Openssl {
        make_keys_puppet_mode(&pki);
    }
    assert_puppet_layout(&pki);
    let fleet = Fleet::start(kind, &pki).await;
    fleet.ping_and_get_fact().await;
    if kind == BrokerKind::NatsServer {
        // Users from the CA's ca/signed (--issued), mapped by DNS name and subject.
        let config = fleet.broker.nats_config();
        for user in ["web1.example", "CN=db1.example", "tester.mcollective"] {
            assert!(
                config.contains(&format!("user: \"{user}\"")),
                "{user}: {config}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_puppet_ca_on_the_embedded_broker() {
    a_puppet_fleet_answers(BrokerKind::Embedded, PuppetCaMode::Openssl).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_puppet_ca_on_nats_server() {
    if !nats_server_available() {
        eprintln!("skipped: nats-server is not installed");
        return;
    }
    a_puppet_fleet_answers(BrokerKind::NatsServer, PuppetCaMode::Openssl).await;
}

/// Normal agent certificates signed by a real puppetserver: one CA for
/// both brokers (puppetserver runs once, about 25 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn puppetserver_signed_certificates_on_both_brokers() {
    if !puppetserver_available() {
        eprintln!("skipped: puppetserver is not installed (apt-get install --no-install-recommends puppetserver)");
        return;
    }
    let pki = puppet_pki(PuppetCaMode::Server, &[]);
    // What puppetserver really writes, unchanged: keys 0640 (puppet:puppet as root).
    assert_puppet_layout(&pki);
    Fleet::start(BrokerKind::Embedded, &pki)
        .await
        .ping_and_get_fact()
        .await;
    if nats_server_available() {
        Fleet::start(BrokerKind::NatsServer, &pki)
            .await
            .ping_and_get_fact()
            .await;
    }
}

/// Puppet's CRLs: a caller revoked by the intermediate is refused by the
/// embedded broker at TLS, left out of the nats-server users, and refused
/// by the nodes when an admitted caller carries its request; one revoked
/// while the nodes run is refused once they re-read `crl.pem`.
async fn a_revoked_puppet_caller_is_refused(kind: BrokerKind) {
    let revoked_name = format!("{REVOKED}.mcollective");
    let later_name = "bob.mcollective";
    let pki = puppet_pki(PuppetCaMode::Openssl, &[&revoked_name, later_name]);
    make_keys_puppet_mode(&pki);
    pki.revoke(&revoked_name);
    let crl = openssl(&[
        "crl",
        "-in",
        &pki.ssldir().crl_file().display().to_string(),
        "-noout",
        "-issuer",
    ]);
    assert!(
        crl.contains(&format!("Puppet CA: {PUPPET_SERVER_NAME}")),
        "{crl}"
    );
    let revoked = pki.credential(&revoked_name);
    let untrusted = pki
        .authority()
        .verify_certificate(revoked.certificate())
        .expect_err("revoked by the intermediate's CRL");
    assert!(untrusted.to_string().contains("revoked"), "{untrusted}");

    let fleet = Fleet::start(kind, &pki).await;
    if kind == BrokerKind::NatsServer {
        let config = fleet.broker.nats_config();
        assert!(
            config.contains(&format!("Left out as revoked: {revoked_name}")),
            "{config}"
        );
    }
    let mallory = Caller::with_pki(REVOKED, pki.clone());
    let config = mallory
        .client_config(&fleet.broker.url())
        .display()
        .to_string();
    // mco itself refuses to start with a certificate its CA revoked...
    let refused = mco(&["ping", "--config", &config, "-t", "1"]).await;
    assert_eq!(refused.status.code(), Some(2), "{}", stdout(&refused));
    assert!(pinged(&refused).is_empty());
    assert!(stderr(&refused).contains("revoked"), "{}", stderr(&refused));
    // ...and the broker refuses the connection: at TLS (the embedded broker
    // reads crl.pem), or as no user (nats-server's config leaves it out).
    let connected = muster_connector::connect_client(
        &[fleet.broker.url()],
        &revoked_name,
        Duration::from_secs(5),
        &pki.transport(&revoked_name),
    )
    .await;
    assert!(connected.is_err(), "the broker admitted {revoked_name}");

    let node = NODES[0].0;
    let carrier = fleet.caller.name.clone();
    let got = fleet
        .raw_request(&carrier, &revoked, node, Duration::from_millis(500))
        .await;
    assert!(got.is_empty(), "{got:?}");
    // (the replies would go to mallory's subject: the node's log says it refused)
    let log = fleet.servers[0].log();
    assert!(
        log.lines()
            .any(|l| l.contains("revoked") && l.contains(&revoked_name)),
        "{log}"
    );

    // Revoked while the nodes run: they re-read the rewritten crl.pem.
    // (bob's own connection: replies go to the verified caller's subject)
    let bob = pki.credential(later_name);
    let before = fleet
        .raw_request(later_name, &bob, node, Duration::from_secs(2))
        .await;
    assert_eq!(before.len(), 1, "bob is trusted before the revocation");
    pki.revoke(later_name);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !fleet
        .raw_request(later_name, &bob, node, Duration::from_millis(500))
        .await
        .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "{node} still answers bob 15 s after the revocation"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_puppet_caller_is_refused_on_the_embedded_broker() {
    a_revoked_puppet_caller_is_refused(BrokerKind::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_puppet_caller_is_refused_on_nats_server() {
    if !nats_server_available() {
        eprintln!("skipped: nats-server is not installed");
        return;
    }
    a_revoked_puppet_caller_is_refused(BrokerKind::NatsServer).await;
}

#[test]
fn a_puppet_ca_signs_later_names_but_no_extra_ones() {
    let pki = puppet_pki(PuppetCaMode::Openssl, &[]);
    assert_eq!(pki.broker_name(), PUPPET_SERVER_NAME);
    assert!(pki.issued_dir().unwrap().join("web1.example.pem").exists());
    pki.issue("late.example");
    assert!(pki.ssldir().cert_file("late.example").exists());
    let more = std::panic::catch_unwind(|| pki.issue_with("other.example", &["127.0.0.1".into()]));
    assert!(more.is_err(), "a Puppet CA signs DNS:<name> only");
    assert!(!pki.ssldir().cert_file("other.example").exists());
}
