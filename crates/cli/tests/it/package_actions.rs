//! `mco package count` and the other actions on a node's whole package
//! system, through the broker and a real `mco server` on this machine's
//! dpkg (reading only: nothing is installed).

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use muster_testkit::{stderr, stdout, BrokerKind, Caller, NodeSetup, ServerProcess, TestBroker};

const MCO: &str = env!("CARGO_BIN_EXE_mco");

async fn mco(args: &[&str]) -> Output {
    muster_testkit::run_mco(MCO, args).await
}

/// What `dpkg-query --list` says now: the installed packages' count.
fn installed() -> usize {
    let out = std::process::Command::new("dpkg-query")
        .arg("--list")
        .output()
        .expect("dpkg-query runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("ii"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_system_actions_answer_through_the_broker() {
    let broker = TestBroker::start(BrokerKind::Embedded).await;
    let caller = Caller::new("tester");
    let server = ServerProcess::start(
        Path::new(MCO),
        &broker.url(),
        caller.pki(),
        &NodeSetup {
            identity: "node1",
            facts_yaml: "role: web\n",
            classes: &[],
            collectives: &[],
            settings: "plugin.package.provider = apt\n\
                       plugin.package.yum = /nonexistent/muster/yum\n\
                       plugin.package.dnf = /nonexistent/muster/dnf\n",
        },
    );
    let config = caller.client_config(&broker.url()).display().to_string();
    let run = |words: &'static [&'static str]| {
        let config = config.clone();
        async move {
            let mut args: Vec<&str> = vec!["package"];
            args.extend(words);
            args.extend(["--config", &config, "-I", "node1"]);
            mco(&args).await
        }
    };

    let deadline = Instant::now() + Duration::from_secs(30);
    let counted = loop {
        let out = run(&["count"]).await;
        if out.status.success() && stdout(&out).contains("Summary of Count") {
            break out;
        }
        assert!(
            Instant::now() < deadline,
            "node1 never answered: {}{}\n{}",
            stdout(&out),
            stderr(&out),
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // The DDL shows only failures per node (display failed, as upstream's);
    // the summary has the answer.
    let shown = stdout(&counted);
    assert!(shown.contains(&format!("{} = 1", installed())), "{shown}");
    let shown = stdout(&run(&["count", "--display", "all"]).await);
    assert!(
        shown.contains(&format!("node1: {}", installed())),
        "{shown}"
    );

    let md5 = run(&["md5"]).await;
    assert!(md5.status.success(), "{}", stderr(&md5));
    let digest = stdout(&md5)
        .lines()
        .find_map(|l| l.trim().strip_suffix(" = 1").map(str::to_string))
        .expect("node1's digest in the summary");
    assert_eq!(digest.len(), 32, "{digest}");
    assert!(digest.chars().all(|c| c.is_ascii_hexdigit()), "{digest}");

    // Either word order for a package action, as before.
    let found = run(&["search", "dpkg"]).await;
    assert!(found.status.success(), "{}", stderr(&found));

    // yum's actions on an apt node: the node says what is missing.
    let clean = run(&["yum_clean"]).await;
    assert_eq!(clean.status.code(), Some(1), "{}", stdout(&clean));
    assert!(
        stdout(&clean).contains("cannot find dnf or yum"),
        "{}",
        stdout(&clean)
    );

    let unknown = run(&["frobnicate"]).await;
    assert_eq!(unknown.status.code(), Some(2), "{}", stdout(&unknown));
    assert!(
        stderr(&unknown).contains("count, md5"),
        "{}",
        stderr(&unknown)
    );
}
