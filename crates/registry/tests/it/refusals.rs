//! Registration messages that must not be believed: each refused, for
//! its own reason, and counted.

use muster_registry::Registry;
use muster_server::registration::{Refused, Registration, MAX_REGISTRATION};
use muster_testkit::TestPki;
use serde_json::json;

fn record(identity: &str) -> Registration {
    Registration {
        identity: identity.into(),
        facts: json!({"role": "web"}),
        classes: vec!["base".into()],
        collectives: vec!["mcollective".into()],
        agents: vec![],
        time: 1,
        interval: 60,
    }
}

#[test]
fn unsigned_forged_oversized_and_impostor_registrations_are_refused_and_counted() {
    let pki = TestPki::shared();
    let authority = pki.authority();
    let mut registry = Registry::in_memory(3);
    let web1 = pki.credential("web1");

    // The real thing is taken.
    let good = record("web1").seal(&web1).expect("signs");
    registry
        .receive(&good, &authority, 10)
        .expect("a signed record");
    assert_eq!(registry.len(), 1);

    // Unsigned: the bare record, as a careless publisher would send it.
    let unsigned = serde_json::to_vec(&record("web9")).expect("json");
    let err = registry.receive(&unsigned, &authority, 10).unwrap_err();
    assert!(matches!(err, Refused::Malformed(_)), "{err}");

    // Forged: signed by a certificate of another CA.
    let other = TestPki::new();
    let stranger = other.credential("web1");
    let forged = record("web1").seal(&stranger).expect("signs");
    let err = registry.receive(&forged, &authority, 10).unwrap_err();
    assert!(matches!(err, Refused::Forged(_)), "{err}");

    // Forged: the record changed after signing.
    let text = String::from_utf8(good.clone()).expect("utf-8");
    let tampered = text.replace(r#"\"role\":\"web\""#, r#"\"role\":\"db\""#);
    assert_ne!(tampered, text, "the test must change the record");
    let err = registry
        .receive(tampered.as_bytes(), &authority, 10)
        .unwrap_err();
    assert!(matches!(err, Refused::Forged(_)), "{err}");

    // Oversized: refused before any parsing.
    let mut big = record("web1");
    big.facts = json!({"blob": "x".repeat(MAX_REGISTRATION)});
    let oversized = big.seal(&web1).expect("signs");
    let err = registry.receive(&oversized, &authority, 10).unwrap_err();
    assert!(matches!(err, Refused::Oversized(_)), "{err}");

    // An unknown node: web2's certificate speaking for web1.
    let web2 = pki.credential("web2");
    let impostor = record("web1").seal(&web2).expect("signs");
    let err = registry.receive(&impostor, &authority, 10).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"signed by "web2", which may not register as "web1""#
    );
    // A caller's certificate registers nobody.
    let alice = pki.credential("alice.mcollective");
    let caller = record("alice").seal(&alice).expect("signs");
    assert!(matches!(
        registry.receive(&caller, &authority, 10),
        Err(Refused::UnknownNode { .. })
    ));

    let counters = registry.counters();
    assert_eq!(counters.accepted, 1);
    assert_eq!(counters.malformed, 1);
    assert_eq!(counters.forged, 2);
    assert_eq!(counters.oversized, 1);
    assert_eq!(counters.unknown_node, 2);
    assert_eq!(counters.refused(), 6);
    // Nothing refused was learned, and web1 is still what it said.
    assert_eq!(registry.len(), 1);
    let web = muster_protocol::Filter::default()
        .fact("role=web")
        .expect("filter");
    assert_eq!(
        registry.select(&web, "mcollective").expect("select"),
        ["web1"]
    );
}
