//! `Node::handle` end to end: every message a node receives goes through
//! it, so these tests drive it with signed requests and hostile bytes and
//! check the outcome, the reply and the counters (docs/architecture.md#wire-protocol, #security).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use muster_pki::Credential;
use muster_protocol::identity::caller_token;
use muster_protocol::{
    now_ms, subject, Envelope, Filter, Reply, Request, StatusCode, PROTOCOL_VERSION,
};
use muster_server::fleet::simulated_node;
use muster_server::node::{Outcome, MAX_CLOCK_SKEW_MS};
use muster_server::stats::Rejection;
use muster_server::Node;
use muster_testkit::TestPki;
use serde_json::{json, Map, Value};

/// `simulated_node(_, 1, _)`: role db, classes base/role::db/mysql, OS
/// family Debian, collectives mcollective and storage.
const IDENTITY: &str = "node01";

/// A node that trusts the shared test CA; its callers alice and bob; a
/// caller and an impostor named like alice from another CA; and a node's
/// certificate from the trusted CA, which may not send requests.
struct Fixture {
    node: Arc<Node>,
    alice: Credential,
    bob: Credential,
    mallory: Credential,
    impostor: Credential,
    node9: Credential,
}

fn fixture() -> Fixture {
    let pki = TestPki::shared();
    let other = TestPki::new();
    Fixture {
        node: Arc::new(simulated_node(IDENTITY, 1, pki.authority())),
        alice: pki.credential("alice.mcollective"),
        bob: pki.credential("bob.mcollective"),
        mallory: other.credential("mallory.mcollective"),
        impostor: other.credential("alice.mcollective"),
        node9: pki.credential("node9"),
    }
}

fn rpcutil(action: &str) -> Request {
    Request::new(
        "client1",
        "alice.mcollective",
        "mcollective",
        "rpcutil",
        action,
    )
}

fn signed(signer: &Credential, request: &Request) -> Envelope {
    Envelope::seal(request, signer).expect("a request always signs")
}

fn bytes(signer: &Credential, request: &Request) -> Vec<u8> {
    signed(signer, request).to_bytes()
}

fn data(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("inputs must be an object, not {other}"),
    }
}

/// The reply to `payload`, failing the test on any other outcome.
async fn reply_to(node: &Node, payload: &[u8]) -> (String, Reply) {
    match node.handle(payload).await {
        Outcome::Reply { subject, reply } => (subject, reply),
        other => panic!("expected a reply, got {other:?}"),
    }
}

/// The refusal of `payload`, failing the test on any other outcome.
async fn rejection_of(node: &Node, payload: &[u8]) -> (Rejection, String) {
    match node.handle(payload).await {
        Outcome::Rejected(reason, message) => (reason, message),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

/// Runs one rpcutil-style action signed by alice and returns the reply.
async fn call(f: &Fixture, agent: &str, action: &str, inputs: Value) -> Reply {
    let request = Request::new("client1", f.alice.name(), "mcollective", agent, action)
        .with_data(data(inputs));
    let (_, reply) = reply_to(&f.node, &bytes(&f.alice, &request)).await;
    assert_eq!(reply.request_id, request.id);
    reply
}

#[tokio::test]
async fn trusted_fresh_request_is_answered_on_the_signers_reply_subject() {
    let f = fixture();
    let cases = [
        (&f.alice, "client1", "mcollective"),
        // A collective other than the main one replies within that collective.
        (&f.alice, "laptop-42", "storage"),
        // Bob claims to be alice: the reply goes where only bob may read.
        (&f.bob, "client1", "mcollective"),
    ];
    for (i, (signer, sender, collective)) in cases.into_iter().enumerate() {
        let mut request = Request::new(sender, "alice.mcollective", collective, "rpcutil", "ping");
        request.id = format!("{i:032x}");
        let (subject, reply) = reply_to(&f.node, &bytes(signer, &request)).await;
        let token = caller_token(signer.name());
        assert_eq!(
            subject,
            format!("{collective}.reply.{token}.{i:032x}.{IDENTITY}")
        );
        assert_eq!(
            subject,
            subject::reply(collective, &token, &request.id, IDENTITY)
        );
        assert_eq!(reply.statuscode, StatusCode::Ok, "{reply:?}");
        assert_eq!(reply.statusmsg, "OK");
        assert_eq!(reply.sender, IDENTITY);
        assert_eq!(reply.request_id, request.id);
        assert_eq!(reply.protocol, PROTOCOL_VERSION);
    }
    assert_ne!(
        caller_token(f.alice.name()),
        caller_token(f.bob.name()),
        "callers would read each other's replies"
    );
}

#[tokio::test]
async fn a_node_certificate_may_not_send_requests() {
    let f = fixture();
    let pki = TestPki::shared();
    // Another node, this node itself and the fleet simulator: all from the
    // trusted CA, none a caller.
    let signers = [
        f.node9.clone(),
        pki.credential(IDENTITY),
        pki.credential("node.fleet"),
    ];
    for (i, signer) in signers.iter().enumerate() {
        let mut request = rpcutil("ping");
        request.caller = signer.name().to_string();
        let (reason, message) = rejection_of(&f.node, &bytes(signer, &request)).await;
        assert_eq!(reason, Rejection::Untrusted, "{}: {message}", signer.name());
        assert!(
            message.contains(signer.name()) && message.contains("may not send requests"),
            "{message}"
        );
        assert_eq!(f.node.stats().rejected(Rejection::Untrusted), i as u64 + 1);
    }
    // Claiming to be a caller does not help.
    let (reason, _) = rejection_of(&f.node, &bytes(&f.node9, &rpcutil("ping"))).await;
    assert_eq!(reason, Rejection::Untrusted);
    let stats = call(&f, "rpcutil", "daemon_stats", json!({})).await;
    assert_eq!(stats.data["rejected"], json!({"untrusted": 4}));
    assert_eq!(stats.data["unvalidated"], 4);
    assert_eq!(stats.data["replies"], 0);
}

#[tokio::test]
async fn a_revoked_caller_is_refused_once_the_node_reads_the_crl() {
    // A CA of its own: revoking in the shared one would refuse the caller
    // in every other test of this binary.
    let pki = TestPki::new();
    let carol = pki.credential("carol.mcollective");
    let dave = pki.credential("dave.mcollective");
    let before = simulated_node(IDENTITY, 1, pki.authority());
    let (_, reply) = reply_to(&before, &bytes(&carol, &rpcutil("ping"))).await;
    assert_eq!(reply.statuscode, StatusCode::Ok, "{reply:?}");

    pki.revoke("carol.mcollective");
    // An authority reads crl.pem when it is made: a node made after the
    // revocation refuses carol, counts it, and still serves dave.
    let after = simulated_node(IDENTITY, 1, pki.authority());
    let (reason, message) = rejection_of(&after, &bytes(&carol, &rpcutil("ping"))).await;
    assert_eq!(reason, Rejection::Untrusted, "{message}");
    assert!(
        message.contains("carol.mcollective") && message.contains("revoked"),
        "{message}"
    );
    assert_eq!(after.stats().rejected(Rejection::Untrusted), 1);
    let (_, reply) = reply_to(&after, &bytes(&dave, &rpcutil("ping"))).await;
    assert_eq!(reply.statuscode, StatusCode::Ok, "{reply:?}");
}

/// What a message must come to.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Reply,
    Filtered,
    Rejected(Rejection),
}

/// A named message and what it must come to.
type Case = (&'static str, Vec<u8>, Expect);

/// Every way a message can be refused, in the order it is sent (the
/// replay cases rely on the order), with a few that must pass to keep the
/// checks from being stricter than specified.
fn hostile_table(f: &Fixture) -> Vec<Case> {
    use Expect::Rejected;
    use Rejection::*;
    let now = now_ms();
    let with = |change: &dyn Fn(&mut Request)| {
        let mut request = rpcutil("ping");
        change(&mut request);
        bytes(&f.alice, &request)
    };
    let envelope_with = |change: &dyn Fn(&mut Envelope)| {
        let mut envelope = signed(&f.alice, &rpcutil("ping"));
        change(&mut envelope);
        envelope.to_bytes()
    };

    let original = rpcutil("ping");
    let original_bytes = bytes(&f.alice, &original);
    let mut same_id = rpcutil("inventory");
    same_id.id = original.id.clone();

    let mut invalid_utf8 = signed(&f.alice, &rpcutil("ping")).to_bytes();
    let at = invalid_utf8.len() / 2;
    invalid_utf8[at] = 0xff;

    let mut deep = json!("bottom");
    for _ in 0..1_000 {
        deep = json!([deep]);
    }
    // A real signature by alice, over another request.
    let other_signature = signed(&f.alice, &rpcutil("inventory")).signature;
    let forged_big = Envelope {
        request: "x".repeat(2 << 20),
        signature: other_signature.clone(),
        ..signed(&f.alice, &rpcutil("ping"))
    };
    let bobs_certificate = signed(&f.bob, &rpcutil("ping")).certificate;
    let impostors_certificate = signed(&f.impostor, &rpcutil("ping")).certificate;

    vec![
        (
            "trusted and fresh",
            bytes(&f.alice, &rpcutil("ping")),
            Expect::Reply,
        ),
        (
            "signed by bob, also trusted",
            bytes(&f.bob, &rpcutil("ping")),
            Expect::Reply,
        ),
        (
            "filtered out",
            with(&|r| r.filter = Filter::default().identity("node02").unwrap()),
            Expect::Filtered,
        ),
        // Certificates and signatures.
        (
            "a caller's certificate from another CA",
            bytes(&f.mallory, &rpcutil("ping")),
            Rejected(Untrusted),
        ),
        (
            "another CA's alice.mcollective",
            bytes(&f.impostor, &rpcutil("ping")),
            Rejected(Untrusted),
        ),
        (
            "a node's certificate from the trusted CA",
            bytes(&f.node9, &rpcutil("ping")),
            Rejected(Untrusted),
        ),
        (
            "tampered request text",
            envelope_with(&|e| e.request = e.request.replace("\"ping\"", "\"inventory\"")),
            Rejected(Signature),
        ),
        (
            "certificate swapped to another trusted caller's",
            envelope_with(&|e| e.certificate = bobs_certificate.clone()),
            Rejected(Signature),
        ),
        (
            "certificate swapped to another CA's of the same name",
            envelope_with(&|e| e.certificate = impostors_certificate.clone()),
            Rejected(Untrusted),
        ),
        (
            "signature of another request",
            envelope_with(&|e| e.signature = other_signature.clone()),
            Rejected(Signature),
        ),
        (
            "signature of the wrong length",
            envelope_with(&|e| e.signature.truncate(64)),
            Rejected(Signature),
        ),
        (
            "empty signature",
            envelope_with(&|e| e.signature.clear()),
            Rejected(Signature),
        ),
        (
            "signature not base64",
            envelope_with(&|e| e.signature = "!!".repeat(44)),
            Rejected(Signature),
        ),
        (
            "signature longer than any scheme's",
            envelope_with(&|e| e.signature = "A".repeat(4096)),
            Rejected(Signature),
        ),
        (
            "scheme changed",
            envelope_with(&|e| e.scheme = "rsa-pkcs1-sha256".into()),
            Rejected(Signature),
        ),
        (
            "unknown scheme",
            envelope_with(&|e| e.scheme = "rot13".into()),
            Rejected(Signature),
        ),
        (
            "certificate not base64",
            envelope_with(&|e| e.certificate = "not a certificate".into()),
            Rejected(Signature),
        ),
        (
            // base64 of "not a certificate"
            "certificate not DER",
            envelope_with(&|e| e.certificate = "bm90IGEgY2VydGlmaWNhdGU=".into()),
            Rejected(Untrusted),
        ),
        (
            "certificate larger than any",
            envelope_with(&|e| e.certificate = "A".repeat(100_000)),
            Rejected(Signature),
        ),
        (
            "2 MB request text with a forged signature",
            forged_big.to_bytes(),
            Rejected(Signature),
        ),
        // Bytes that are not an envelope, or not a request inside.
        ("empty", Vec::new(), Rejected(Malformed)),
        ("not JSON", b"hello node".to_vec(), Rejected(Malformed)),
        ("JSON array", b"[1,2,3]".to_vec(), Rejected(Malformed)),
        ("JSON null", b"null".to_vec(), Rejected(Malformed)),
        (
            "100k open brackets",
            vec![b'['; 100_000],
            Rejected(Malformed),
        ),
        (
            "100k nested objects",
            "{\"a\":".repeat(100_000).into_bytes(),
            Rejected(Malformed),
        ),
        (
            "invalid UTF-8",
            vec![0xff, 0xfe, 0x00, 0x80],
            Rejected(Malformed),
        ),
        (
            "invalid UTF-8 inside an envelope",
            invalid_utf8,
            Rejected(Malformed),
        ),
        (
            "2 MB string field",
            format!("{{\"junk\":\"{}\"}}", "a".repeat(2 << 20)).into_bytes(),
            Rejected(Malformed),
        ),
        (
            "envelope missing fields",
            br#"{"protocol":1,"request":"{}"}"#.to_vec(),
            Rejected(Malformed),
        ),
        (
            "trailing garbage",
            [bytes(&f.alice, &rpcutil("ping")), b"}".to_vec()].concat(),
            Rejected(Malformed),
        ),
        (
            "signed request nested 1000 deep",
            with(&|r| r.data = data(json!({ "deep": deep }))),
            Rejected(Malformed),
        ),
        // Versions.
        (
            "envelope of another protocol version",
            envelope_with(&|e| e.protocol = PROTOCOL_VERSION + 1),
            Rejected(Version),
        ),
        (
            "signed request of another protocol version",
            with(&|r| r.protocol = PROTOCOL_VERSION + 1),
            Rejected(Version),
        ),
        // Time.
        (
            "expired",
            with(&|r| r.time = now - 120_000),
            Rejected(Expired),
        ),
        (
            "dated a year ago with ttl 0",
            with(&|r| {
                r.time = now - 365 * 86_400_000;
                r.ttl = 0;
            }),
            Rejected(Expired),
        ),
        (
            "within its ttl but made before the node started (may have run before a restart)",
            with(&|r| r.time = now - 30_000),
            Rejected(Replay),
        ),
        (
            "dated beyond the clock skew",
            with(&|r| r.time = now + MAX_CLOCK_SKEW_MS + 60_000),
            Rejected(Expired),
        ),
        (
            "dated far in the future",
            with(&|r| r.time = u64::MAX / 2),
            Rejected(Expired),
        ),
        (
            "dated within the clock skew",
            with(&|r| r.time = now + MAX_CLOCK_SKEW_MS / 2),
            Expect::Reply,
        ),
        (
            "ttl one second too long",
            with(&|r| r.ttl = muster_server::DEFAULT_MAX_TTL + 1),
            Rejected(TtlTooLong),
        ),
        (
            "ttl u64::MAX",
            with(&|r| r.ttl = u64::MAX),
            Rejected(TtlTooLong),
        ),
        (
            "ttl exactly the longest accepted",
            with(&|r| r.ttl = muster_server::DEFAULT_MAX_TTL),
            Expect::Reply,
        ),
        // Replays: the first sighting is answered, any later one refused.
        ("first sighting", original_bytes.clone(), Expect::Reply),
        (
            "same envelope again",
            original_bytes.clone(),
            Rejected(Replay),
        ),
        (
            "same envelope a third time",
            original_bytes,
            Rejected(Replay),
        ),
        (
            "same id, re-signed for another action",
            bytes(&f.alice, &same_id),
            Rejected(Replay),
        ),
        // Collectives.
        (
            "a collective the node is not in",
            with(&|r| r.collective = "compute".into()),
            Rejected(Collective),
        ),
        (
            "empty collective",
            with(&|r| r.collective = String::new()),
            Rejected(Collective),
        ),
    ]
}

async fn run_table(f: &Fixture, table: &[Case]) {
    for (name, payload, expected) in table {
        let got = match f.node.handle(payload).await {
            Outcome::Reply { reply, .. } => {
                assert_eq!(reply.statuscode, StatusCode::Ok, "{name}: {reply:?}");
                Expect::Reply
            }
            Outcome::Filtered => Expect::Filtered,
            Outcome::Rejected(reason, message) => {
                assert!(!message.is_empty(), "{name}: a rejection says why");
                Expect::Rejected(reason)
            }
        };
        assert_eq!(got, *expected, "{name}");
    }
}

#[tokio::test]
async fn every_rejection_reason_is_reported_exactly() {
    let f = fixture();
    let table = hostile_table(&f);
    run_table(&f, &table).await;
}

#[tokio::test]
async fn rejections_are_counted_and_the_node_keeps_serving() {
    let f = fixture();
    let table = hostile_table(&f);
    run_table(&f, &table).await;

    let mut rejected: BTreeMap<&str, u64> = BTreeMap::new();
    let (mut replied, mut filtered) = (0, 0);
    for (_, _, expected) in &table {
        match expected {
            Expect::Reply => replied += 1,
            Expect::Filtered => filtered += 1,
            Expect::Rejected(reason) => *rejected.entry(reason.as_str()).or_default() += 1,
        }
    }
    let count = |reason: Rejection| rejected.get(reason.as_str()).copied().unwrap_or(0);
    let all_rejected: u64 = rejected.values().sum();
    // The table must exercise every reason, or this test checks less than it says.
    assert_eq!(rejected.len(), 8, "{rejected:?}");

    let stats = call(&f, "rpcutil", "daemon_stats", json!({})).await;
    assert_eq!(stats.statuscode, StatusCode::Ok);
    let stats = stats.data;
    let expected_rejected: Map<String, Value> = rejected
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    assert_eq!(stats["rejected"], Value::Object(expected_rejected));
    // daemon_stats itself is counted as received and passed, but its own
    // reply is counted after the stats are taken.
    let total = table.len() as u64 + 1;
    assert_eq!(stats["total"], json!(total));
    assert_eq!(stats["passed"], json!(replied + 1));
    assert_eq!(stats["filtered"], json!(filtered));
    assert_eq!(stats["replies"], json!(replied));
    assert_eq!(stats["validated"], json!(replied + 1 + filtered));
    assert_eq!(
        stats["unvalidated"],
        json!(
            count(Rejection::Untrusted)
                + count(Rejection::Signature)
                + count(Rejection::Malformed)
                + count(Rejection::Version)
        )
    );
    assert_eq!(stats["ttlexpired"], json!(count(Rejection::Expired)));
    assert_eq!(
        total,
        replied + 1 + filtered + all_rejected,
        "every message is accounted for"
    );
    assert_eq!(stats["version"], json!(muster_server::VERSION));
    assert_eq!(stats["pid"], json!(std::process::id()));
    assert!(
        stats["agents"]
            .as_array()
            .unwrap()
            .contains(&json!("rpcutil")),
        "{stats}"
    );

    let ping = call(&f, "rpcutil", "ping", json!({})).await;
    assert_eq!(ping.statuscode, StatusCode::Ok);
    assert_eq!(
        f.node.stats().rejected(Rejection::Replay),
        count(Rejection::Replay)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_input_interleaved_with_valid_requests_loses_nothing() {
    let f = fixture();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let node = f.node.clone();
        let hostile = match i % 5 {
            0 => bytes(&f.mallory, &rpcutil("ping")),
            1 => vec![b'['; 10_000],
            2 => b"garbage".to_vec(),
            3 => bytes(&f.node9, &rpcutil("ping")),
            _ => {
                let mut request = rpcutil("ping");
                request.time = 0;
                bytes(&f.alice, &request)
            }
        };
        let valid = bytes(&f.alice, &rpcutil("ping"));
        tasks.push(tokio::spawn(async move {
            assert!(matches!(node.handle(&hostile).await, Outcome::Rejected(..)));
            reply_to(&node, &valid).await.1
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap().statuscode, StatusCode::Ok);
    }
    let stats = f.node.stats();
    assert_eq!(stats.total.load(std::sync::atomic::Ordering::Relaxed), 400);
    assert_eq!(
        stats.replies.load(std::sync::atomic::Ordering::Relaxed),
        200
    );
}

#[tokio::test]
async fn filters_select_by_identity_class_and_agent() {
    let f = fixture();
    let filter = |identities: &[&str], classes: &[&str], agents: &[&str]| {
        let mut filter = Filter::default();
        for i in identities {
            filter = filter.identity(i).unwrap();
        }
        for c in classes {
            filter = filter.class(c).unwrap();
        }
        for a in agents {
            filter = filter.agent(a).unwrap();
        }
        filter
    };
    // (identities, classes, agents, selected)
    type Selection = (
        &'static [&'static str],
        &'static [&'static str],
        &'static [&'static str],
        bool,
    );
    let cases: &[Selection] = &[
        (&[], &[], &[], true),
        (&["node01"], &[], &[], true),
        (&["node02"], &[], &[], false),
        (&["node0"], &[], &[], false),
        (&["node02", "node01"], &[], &[], true),
        (&["/^node\\d+$/"], &[], &[], true),
        (&["/^web/"], &[], &[], false),
        (&[], &["mysql"], &[], true),
        (&[], &["role::db"], &[], true),
        (&[], &["/^role::d/"], &[], true),
        (&[], &["httpd"], &[], false),
        (&[], &["base", "mysql"], &[], true),
        (&[], &["base", "httpd"], &[], false),
        (&[], &[], &["rpcutil"], true),
        (&[], &[], &["package"], false),
        (&[], &[], &["/^rpc/"], true),
        (&["node01"], &["mysql"], &["rpcutil"], true),
        (&["node01"], &["httpd"], &[], false),
        (&["node01"], &[], &["package"], false),
    ];
    for (identities, classes, agents, selected) in cases {
        let request = rpcutil("ping").with_filter(filter(identities, classes, agents));
        let outcome = f.node.handle(&bytes(&f.alice, &request)).await;
        match (selected, &outcome) {
            (true, Outcome::Reply { reply, .. }) => assert_eq!(reply.statuscode, StatusCode::Ok),
            (false, Outcome::Filtered) => {}
            _ => panic!("{identities:?} {classes:?} {agents:?}: expected selected={selected}, got {outcome:?}"),
        }
    }
}

#[tokio::test]
async fn rpcutil_actions_answer_about_the_node() {
    let f = fixture();

    let before = now_ms() / 1000;
    let ping = call(&f, "rpcutil", "ping", json!({})).await;
    let after = now_ms() / 1000;
    let pong = ping.data["pong"]
        .as_u64()
        .expect("pong is a number of seconds");
    assert!(
        (before..=after).contains(&pong),
        "pong {pong} not in {before}..={after}"
    );

    let inventory = call(&f, "rpcutil", "inventory", json!({})).await;
    assert_eq!(inventory.statuscode, StatusCode::Ok);
    let inv = &inventory.data;
    assert!(
        inv["agents"]
            .as_array()
            .unwrap()
            .contains(&json!("rpcutil")),
        "{inv}"
    );
    assert_eq!(inv["facts"]["role"], "db");
    assert_eq!(inv["facts"]["identity"], IDENTITY);
    assert_eq!(inv["classes"], json!(["base", "role::db", "mysql"]));
    assert_eq!(inv["collectives"], json!(["mcollective", "storage"]));
    assert_eq!(inv["main_collective"], "mcollective");
    assert_eq!(inv["version"], muster_server::VERSION);

    let cases: &[(&str, Value, StatusCode, Value)] = &[
        (
            "get_fact",
            json!({"fact": "os.family"}),
            StatusCode::Ok,
            json!({"fact": "os.family", "value": "Debian"}),
        ),
        (
            "get_fact",
            json!({"fact": "role"}),
            StatusCode::Ok,
            json!({"fact": "role", "value": "db"}),
        ),
        (
            "get_fact",
            json!({"fact": "os.release.major"}),
            StatusCode::Ok,
            json!({"fact": "os.release.major", "value": "12"}),
        ),
        (
            "get_fact",
            json!({"fact": "no.such.fact"}),
            StatusCode::Ok,
            json!({"fact": "no.such.fact", "value": null}),
        ),
        ("get_fact", json!({}), StatusCode::MissingData, json!({})),
        (
            "get_fact",
            json!({"fact": null}),
            StatusCode::MissingData,
            json!({}),
        ),
        (
            "get_fact",
            // The DDL turns a number given for a string input into its text.
            json!({"fact": 5}),
            StatusCode::Ok,
            json!({"fact": "5", "value": null}),
        ),
        (
            "get_fact",
            json!({"fact": ["role"]}),
            StatusCode::InvalidData,
            json!({}),
        ),
        (
            "get_fact",
            json!({"fact": "  "}),
            StatusCode::InvalidData,
            json!({}),
        ),
        (
            "get_facts",
            json!({"facts": "role, os.family"}),
            StatusCode::Ok,
            json!({"values": {"role": "db", "os.family": "Debian"}}),
        ),
        (
            "get_facts",
            json!({"facts": "role,,nope"}),
            StatusCode::Ok,
            json!({"values": {"role": "db", "nope": null}}),
        ),
        ("get_facts", json!({}), StatusCode::MissingData, json!({})),
        (
            "get_facts",
            json!({"facts": true}),
            StatusCode::Ok,
            json!({"values": {"true": null}}),
        ),
        (
            "collective_info",
            json!({}),
            StatusCode::Ok,
            json!({"main_collective": "mcollective", "collectives": ["mcollective", "storage"]}),
        ),
    ];
    for (action, inputs, code, output) in cases {
        let reply = call(&f, "rpcutil", action, inputs.clone()).await;
        assert_eq!(reply.statuscode, *code, "{action} {inputs}: {reply:?}");
        assert_eq!(&reply.data, output, "{action} {inputs}");
        if *code == StatusCode::MissingData {
            assert!(
                reply.statusmsg.contains("fact"),
                "{action}: {}",
                reply.statusmsg
            );
        }
    }

    let agents = call(&f, "rpcutil", "agent_inventory", json!({})).await;
    assert_eq!(agents.statuscode, StatusCode::Ok);
    let list = agents.data["agents"].as_array().expect("a list of agents");
    let rpcutil = list
        .iter()
        .find(|a| a["name"] == "rpcutil")
        .expect("rpcutil is listed");
    assert_eq!(rpcutil["version"], muster_server::VERSION);
    assert_eq!(rpcutil["timeout"], 10);
    assert!(rpcutil["description"]
        .as_str()
        .is_some_and(|d| !d.is_empty()));

    let cases = [
        ("rpcutil", "self_destruct", "self_destruct"),
        ("rpcutil", "", "\"\""),
        ("package", "install", "package"),
        ("no_such_agent", "ping", "no_such_agent"),
    ];
    for (agent, action, named) in cases {
        let reply = call(&f, agent, action, json!({})).await;
        assert_eq!(
            reply.statuscode,
            StatusCode::UnknownAction,
            "{agent} {action}"
        );
        assert!(
            reply.statusmsg.contains(named),
            "{agent} {action}: {}",
            reply.statusmsg
        );
        assert_eq!(reply.sender, IDENTITY);
        assert_eq!(reply.data, json!({}));
    }
}

/// xorshift64: deterministic, so a failure can be replayed from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A `Reply` is allowed only for bytes that open to a request signed by a
/// trusted caller and not yet answered; anything else must be refused or
/// filtered.
async fn check_no_forged_reply(
    f: &Fixture,
    payload: &[u8],
    answered: &mut HashSet<String>,
    what: &str,
) {
    if let Outcome::Reply { reply, .. } = f.node.handle(payload).await {
        let replied = |e: &dyn std::fmt::Display| -> ! { panic!("{what}: replied to {e}") };
        let envelope = Envelope::from_bytes(payload).unwrap_or_else(|e| replied(&e));
        let certificate = envelope.certificate_der().unwrap_or_else(|e| replied(&e));
        let signature = envelope.signature_bytes().unwrap_or_else(|e| replied(&e));
        let signer = TestPki::shared()
            .authority()
            .verify_signature(
                &certificate,
                &envelope.scheme,
                envelope.request.as_bytes(),
                &signature,
            )
            .unwrap_or_else(|e| replied(&e));
        assert!(
            signer.name == f.alice.name() || signer.name == f.bob.name(),
            "{what}: replied to {}",
            signer.name
        );
        let request = envelope.request().unwrap_or_else(|e| replied(&e));
        assert_eq!(reply.request_id, request.id);
        assert!(
            answered.insert(request.id),
            "{what}: replied twice to one id"
        );
    }
}

#[tokio::test]
async fn random_and_mutated_bytes_never_panic_or_forge_a_reply() {
    let f = fixture();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut answered = HashSet::new();
    const ALPHABET: &[u8] =
        b"{}[]\":,.0123456789abcdefprotocolrequestschemesignaturecertificateAQM/+= \\u\n-eE+";

    for i in 0..2_000 {
        let len = rng.below(600);
        let structured = i % 2 == 0;
        let payload: Vec<u8> = (0..len)
            .map(|_| {
                let r = rng.next();
                if structured {
                    ALPHABET[(r % ALPHABET.len() as u64) as usize]
                } else {
                    r as u8
                }
            })
            .collect();
        check_no_forged_reply(&f, &payload, &mut answered, &format!("random #{i}")).await;
    }
    assert!(answered.is_empty());

    let original = bytes(&f.alice, &rpcutil("ping"));
    check_no_forged_reply(&f, &original, &mut answered, "original").await;
    assert_eq!(answered.len(), 1, "the valid envelope itself is answered");
    for i in 0..2_000 {
        let mut payload = original.clone();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(payload.len().max(1));
            match rng.below(4) {
                0 if !payload.is_empty() => payload[at] ^= 1 << rng.below(8),
                1 if !payload.is_empty() => payload[at] = ALPHABET[rng.below(ALPHABET.len())],
                2 if !payload.is_empty() => {
                    payload.remove(at);
                }
                _ => payload.insert(at, rng.next() as u8),
            }
        }
        check_no_forged_reply(&f, &payload, &mut answered, &format!("mutation #{i}")).await;
    }
    // The only valid request was already answered, so no mutation may be.
    assert_eq!(answered.len(), 1);

    let stats = f.node.stats();
    assert_eq!(
        stats.total.load(std::sync::atomic::Ordering::Relaxed),
        4_001
    );
    assert_eq!(stats.replies.load(std::sync::atomic::Ordering::Relaxed), 1);
    let ping = call(&f, "rpcutil", "ping", json!({})).await;
    assert_eq!(ping.statuscode, StatusCode::Ok);
}
