//! Discovery chosen in client.cfg (`default_discovery_method` and the
//! per-method sources), through the real `mco` binary and a real broker.

use std::process::Output;

use muster_testkit::{stderr, stdout, BrokerKind, Caller, FleetProcess, TestBroker};

const MCO: &str = env!("CARGO_BIN_EXE_mco");

async fn mco(args: &[&str]) -> Output {
    muster_testkit::run_mco(MCO, args).await
}

/// Connections the broker has served so far: discovery that needs no
/// fleet must not add any.
fn connections(broker: &TestBroker) -> u64 {
    broker
        .stats()
        .expect("embedded broker has stats")
        .total_connections
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_cfg_picks_the_discovery_method_and_its_source() {
    let broker = TestBroker::start(BrokerKind::Embedded).await;
    let caller = Caller::new("tester");
    let base = std::fs::read_to_string(caller.client_config(&broker.url())).expect("read cfg");
    // A real fleet, so a broadcast would find node01 and node02 instead.
    let _fleet = FleetProcess::start(MCO, &broker.url(), &caller, 2).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let inventory = dir.path().join("inventory.json");
    std::fs::write(
        &inventory,
        r#"[{"identity": "inv-b"}, {"identity": "inv-a"}, {"identity": "inv-c", "facts": {"role": "db"}}]"#,
    )
    .expect("write inventory");
    let program = dir.path().join("discover.sh");
    std::fs::write(
        &program,
        "#!/bin/sh\ncat >/dev/null\necho ext-1\necho ext-2\n",
    )
    .expect("write program");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755))
            .expect("chmod program");
    }
    // The inventory named relative to the file, as an operator would.
    let config = dir.path().join("client.cfg");
    std::fs::write(
        &config,
        format!(
            "{base}default_discovery_method = inventory\n\
             plugin.choria.discovery.inventory.source = inventory.json\n\
             plugin.choria.discovery.external.command = {}\n\
             discovery_timeout = 3\n",
            program.display()
        ),
    )
    .expect("write cfg");
    let c = config.to_str().expect("utf-8 path");

    // No flags: exactly the inventory's nodes, and nothing reaches the broker.
    let before = connections(&broker);
    let found = mco(&["find", "--config", c]).await;
    assert!(found.status.success(), "{}", stderr(&found));
    assert_eq!(stdout(&found), "inv-a\ninv-b\ninv-c\n");
    let found = mco(&["find", "--config", c, "-F", "role=db"]).await;
    assert!(found.status.success(), "{}", stderr(&found));
    assert_eq!(stdout(&found), "inv-c\n");
    // --dm picks another method; its program still comes from the file.
    let found = mco(&["find", "--config", c, "--dm", "external"]).await;
    assert!(found.status.success(), "{}", stderr(&found));
    assert_eq!(stdout(&found), "ext-1\next-2\n");
    assert_eq!(connections(&broker), before, "discovery went to the broker");

    // --dm broadcast wins over the file: it asks the fleet.
    let found = mco(&["find", "--config", c, "--dm", "broadcast"]).await;
    assert!(found.status.success(), "{}", stderr(&found));
    assert_eq!(stdout(&found), "node01\nnode02\n");
    assert!(connections(&broker) > before, "broadcast never connected");

    // MCollective's default_discovery_options: the default method's file.
    let nodes = dir.path().join("nodes.txt");
    std::fs::write(&nodes, "flat-2\nflat-1\n").expect("write nodes");
    let flat = dir.path().join("flat.cfg");
    std::fs::write(
        &flat,
        format!(
            "{base}default_discovery_method = flatfile\n\
             default_discovery_options = {}\n\
             discovery_timeout = 1.5\n",
            nodes.display()
        ),
    )
    .expect("write cfg");
    let flat = flat.to_str().expect("utf-8 path");
    let found = mco(&["find", "--config", flat]).await;
    assert!(found.status.success(), "{}", stderr(&found));
    assert_eq!(stdout(&found), "flat-1\nflat-2\n");
    // The options belong to the default method only.
    let out = mco(&["find", "--config", flat, "--dm", "inventory"]).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--dm inventory needs --inventory FILE"),
        "{}",
        stderr(&out)
    );

    // A typo is an error naming the file and line, with a did-you-mean.
    let bad = dir.path().join("bad.cfg");
    std::fs::write(&bad, format!("{base}default_discovery_method = inventry\n"))
        .expect("write cfg");
    let line = base.lines().count() + 1;
    let out = mco(&["find", "--config", bad.to_str().expect("utf-8 path")]).await;
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "{}:{line}: default_discovery_method must be one of broadcast, flatfile, inventory, external, puppetdb, registry; \
             found \"inventry\" (did you mean inventory?)",
            bad.display()
        )),
        "{err}"
    );
}

/// `mco` points `SSL_CERT_FILE` at an empty file and drops `SSL_CERT_DIR`
/// for itself (its TLS connects need no system root certificates), but the
/// programs it starts see the environment the operator gave it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn programs_mco_starts_see_the_operators_environment() {
    let broker = TestBroker::start(BrokerKind::Embedded).await;
    let caller = Caller::new("tester");
    let config = caller.client_config(&broker.url());
    let dir = tempfile::tempdir().expect("temp dir");
    let program = dir.path().join("discover.sh");
    // One identity saying what the program saw of each variable.
    std::fs::write(
        &program,
        "#!/bin/sh\ncat >/dev/null\n\
         see() { if [ -z \"$2\" ]; then echo unset; elif [ \"$3\" = \"$1\" ]; then echo kept; else echo changed; fi; }\n\
         echo \"file-$(see /etc/operator-bundle.pem \"${SSL_CERT_FILE+set}\" \"$SSL_CERT_FILE\")-dir-$(see /etc/operator-certs \"${SSL_CERT_DIR+set}\" \"$SSL_CERT_DIR\")\"\n",
    )
    .expect("write program");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755))
            .expect("chmod program");
    }
    let cases = [
        (None, None, "file-unset-dir-unset\n"),
        (
            Some("/etc/operator-bundle.pem"),
            None,
            "file-kept-dir-unset\n",
        ),
        (None, Some("/etc/operator-certs"), "file-unset-dir-kept\n"),
    ];
    for (file, certs, expected) in cases {
        let mut command = tokio::process::Command::new(MCO);
        command
            .args(["find", "--config"])
            .arg(&config)
            .arg("--discovery-program")
            .arg(&program);
        for (name, value) in [("SSL_CERT_FILE", file), ("SSL_CERT_DIR", certs)] {
            match value {
                Some(value) => command.env(name, value),
                None => command.env_remove(name),
            };
        }
        let out = tokio::time::timeout(std::time::Duration::from_secs(30), command.output())
            .await
            .expect("mco find ends")
            .expect("mco runs");
        assert!(out.status.success(), "{file:?} {certs:?}: {}", stderr(&out));
        assert_eq!(stdout(&out), expected, "{file:?} {certs:?}");
    }
}
