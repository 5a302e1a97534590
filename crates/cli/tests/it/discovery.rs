//! End to end: the real `mco` binary's discovery applications against a
//! simulated fleet (`mco fleet`) on a test broker.

use std::process::Output;

use muster_testkit::{stderr, stdout, BrokerKind, Caller, FleetProcess, TestBroker};

const MCO: &str = env!("CARGO_BIN_EXE_mco");

async fn mco(args: &[&str]) -> Output {
    muster_testkit::run_mco(MCO, args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn find_facts_inventory_and_flatfile_from_the_command_line() {
    let broker = TestBroker::start(BrokerKind::Embedded).await;
    let caller = Caller::new("tester");
    let config = caller.client_config(&broker.url()).display().to_string();
    let _fleet = FleetProcess::start(MCO, &broker.url(), &caller, 20).await;
    let c = config.as_str();

    // Roles cycle web, db, cache, app, lb by n % 5: db is 1, 6, 11, 16.
    let found = mco(&["find", "--config", c, "-F", "role=db"]).await;
    assert!(found.status.success(), "{}", stderr(&found));
    assert_eq!(stdout(&found), "node01\nnode06\nnode11\nnode16\n");

    let facts = mco(&["facts", "os.family", "--config", c]).await;
    assert!(facts.status.success(), "{}", stderr(&facts));
    let text = stdout(&facts);
    assert!(text.starts_with("Report for fact: os.family\n\n"), "{text}");
    // Families change every 5 nodes: Debian for 1-9 and 20, RedHat for 10-19.
    assert!(
        text.contains(&format!("        Debian{}found 10 times\n", " ".repeat(35))),
        "{text}"
    );
    assert!(
        text.contains(&format!("        RedHat{}found 10 times\n", " ".repeat(35))),
        "{text}"
    );
    assert!(text.contains("Finished processing 20 / 20 hosts"), "{text}");

    let inventory = mco(&["inventory", "node01", "--config", c]).await;
    assert!(inventory.status.success(), "{}", stderr(&inventory));
    let text = stdout(&inventory);
    for expected in [
        "Inventory for node01:",
        "   Server Statistics:",
        "              Main Collective: mcollective",
        "   Agents:",
        "   Configuration Management Classes:",
        "      os.family => Debian",
        "      networking.interfaces.eth0.ip => 10.10.0.1",
    ] {
        assert!(text.contains(expected), "{expected:?} not in\n{text}");
    }

    // Records from the fleet, then discovery from them with no broadcast.
    let dir = tempfile::tempdir().expect("temp dir");
    let records = mco(&["inventory", "--json", "--config", c]).await;
    assert!(records.status.success(), "{}", stderr(&records));
    let file = dir.path().join("inventory.json");
    std::fs::write(&file, &records.stdout).expect("write inventory");
    let file = file.display().to_string();
    let found = mco(&[
        "find",
        "--config",
        c,
        "--dm",
        "inventory",
        "--inventory",
        &file,
        "-C",
        "redis",
    ])
    .await;
    assert!(found.status.success(), "{}", stderr(&found));
    assert_eq!(stdout(&found), "node02\nnode07\nnode12\nnode17\n");

    // A node list: listed nodes are pinged directly, the absent one named.
    let list = dir.path().join("nodes.txt");
    std::fs::write(&list, "# two real, one not\nnode03\nnode04\nnode77\n").expect("write nodes");
    let list = list.display().to_string();
    let ping = mco(&["ping", "--config", c, "--nodes", &list]).await;
    let text = stdout(&ping);
    assert_eq!(ping.status.code(), Some(3), "{text}{}", stderr(&ping));
    assert!(
        text.contains("node03 ") && text.contains("node04 "),
        "{text}"
    );
    assert!(text.contains("No response from:\n\n    node77"), "{text}");

    // Bad filter text: an error before anything is sent, with a caret.
    let bad = mco(&["find", "--config", c, "-S", "role=db and ("]).await;
    assert_eq!(bad.status.code(), Some(2));
    let err = stderr(&bad);
    assert!(
        err.contains("role=db and (\n") && err.contains("^"),
        "{err}"
    );
    let bad = mco(&["ping", "--config", c, "--nodes", &list, "--dm", "inventory"]).await;
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
}
