//! How long `--dm registry` takes to evaluate filters over 10 000 stored
//! records (the registry's part; the broker round trip comes on top).
//! Run: `cargo test -p muster-registry --release --test it -- --ignored --nocapture bench`

use std::time::Instant;

use muster_protocol::Filter;
use muster_registry::Registry;
use muster_server::registration::Registration;
use muster_testkit::TestPki;

#[test]
#[ignore = "a measurement: run with --ignored --nocapture, in release"]
fn bench_select_over_10000_records() {
    let authority = TestPki::shared().authority();
    let mut registry = Registry::in_memory(3);
    for n in 0..10_000 {
        let node =
            muster_server::fleet::simulated_node(&format!("node{n:05}"), n, authority.clone());
        registry.learn(Registration::of(&node, 300), 100);
    }
    let filters = [
        ("no filter", Filter::default()),
        ("-F role=db", Filter::default().fact("role=db").unwrap()),
        ("-C redis", Filter::default().class("redis").unwrap()),
        (
            "-I /node0[0-4]/",
            Filter::default().identity("/node0[0-4]/").unwrap(),
        ),
        (
            "-S compound",
            Filter::default()
                .compound("(role::web or redis) and os.family=Debian and memorysize_mb>=8192")
                .unwrap(),
        ),
    ];
    for (name, filter) in &filters {
        let runs = 20;
        let started = Instant::now();
        let mut found = 0;
        for _ in 0..runs {
            found = registry.select(filter, "mcollective").unwrap().len();
        }
        let each = started.elapsed() / runs;
        println!(
            "registry select {name:>16}: {found:>5} of 10000 nodes in {:.2} ms",
            each.as_secs_f64() * 1000.0
        );
    }
}
