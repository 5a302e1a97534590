//! Discovery against a simulated fleet: every selector form selects what
//! the simulated node formula says it should, and every discovery method
//! finds the right nodes or fails with a clear error.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use muster_client::{
    Call, Client, ClientConfig, Discovery, DiscoveryError, NodeList, NodeRecord, QuietWindow,
    Targets,
};
use muster_protocol::{Filter, FilterError};
use muster_server::fleet::{Fleet, FleetSpec};
use muster_testkit::{BrokerKind, Caller, TestBroker};

const NODES: usize = 30;
const ROLES: [&str; 5] = ["web", "db", "cache", "app", "lb"];
const FAMILIES: [&str; 4] = ["Debian", "Debian", "RedHat", "RedHat"];
const MEMORY: [u64; 5] = [2048, 4096, 8192, 16384, 32768];
const SECOND: Duration = Duration::from_secs(1);

/// What the simulator gives node `n`, computed here independently.
struct Expected {
    n: usize,
}

impl Expected {
    fn identity(&self) -> String {
        format!("node{:02}", self.n)
    }
    fn role(&self) -> &'static str {
        ROLES[self.n % 5]
    }
    fn family(&self) -> &'static str {
        FAMILIES[(self.n / 5) % 4]
    }
    fn memory(&self) -> u64 {
        MEMORY[(self.n * 7) % 5]
    }
    fn has_class(&self, class: &str) -> bool {
        let extra: &[&str] = match self.role() {
            "web" => &["httpd", "php"],
            "db" => &["mysql"],
            "cache" => &["redis"],
            "app" => &["httpd", "java"],
            _ => &["haproxy"],
        };
        class == "base" || class == format!("role::{}", self.role()) || extra.contains(&class)
    }
}

fn expect(select: impl Fn(&Expected) -> bool) -> Vec<String> {
    (1..=NODES)
        .map(|n| Expected { n })
        .filter(|e| select(e))
        .map(|e| e.identity())
        .collect()
}

fn filter(build: impl FnOnce(Filter) -> Result<Filter, FilterError>) -> Filter {
    build(Filter::default()).expect("filter parses")
}

struct Setup {
    _broker: TestBroker,
    _caller: Caller,
    fleet: Option<Fleet>,
    client: Client,
}

async fn setup() -> Setup {
    let broker = TestBroker::start(BrokerKind::Embedded).await;
    let caller = Caller::new("tester");
    let mut spec = FleetSpec::new(
        vec![broker.url()],
        NODES,
        caller.pki().identity("node.fleet"),
    );
    spec.transport = caller.pki().transport("node.fleet");
    let fleet = Fleet::start(spec).await.expect("fleet");
    let config =
        ClientConfig::load(Some(&caller.client_config(&broker.url()))).expect("client config");
    let client = Client::connect(config).await.expect("connect");
    Setup {
        _broker: broker,
        _caller: caller,
        fleet: Some(fleet),
        client,
    }
}

impl Setup {
    /// Broadcast discovery, with a window generous enough not to flake on
    /// a busy machine.
    async fn find(&self, filter: &Filter, collective: Option<&str>) -> Vec<String> {
        let window = QuietWindow {
            floor: Duration::from_millis(300),
            ..QuietWindow::default()
        };
        self.client
            .discover(filter, collective, 5 * SECOND, window)
            .await
            .expect("discover")
    }

    async fn stop(mut self) {
        if let Some(fleet) = self.fleet.take() {
            fleet.stop().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_selector_form_selects_what_the_facts_say() {
    let s = setup().await;
    let cases: Vec<(&str, Filter, Vec<String>)> = vec![
        ("everything", Filter::default(), expect(|_| true)),
        (
            "-I exact",
            filter(|f| f.identity("node07")),
            vec!["node07".into()],
        ),
        (
            "-I two",
            filter(|f| f.identity("node07")?.identity("node12")),
            vec!["node07".into(), "node12".into()],
        ),
        (
            "-I regex",
            filter(|f| f.identity("/^node2[0-4]$/")),
            expect(|e| (20..=24).contains(&e.n)),
        ),
        (
            "-I glob",
            filter(|f| f.identity("node0[1-3]")),
            expect(|e| (1..=3).contains(&e.n)),
        ),
        (
            "-I star",
            filter(|f| f.identity("node1*")),
            expect(|e| (10..=19).contains(&e.n)),
        ),
        (
            "-F =",
            filter(|f| f.fact("role=db")),
            expect(|e| e.role() == "db"),
        ),
        (
            "-F ==",
            filter(|f| f.fact("role==cache")),
            expect(|e| e.role() == "cache"),
        ),
        (
            "-F =~",
            filter(|f| f.fact("role=~^(web|app)$")),
            expect(|e| matches!(e.role(), "web" | "app")),
        ),
        (
            "-F /regex/",
            filter(|f| f.fact("role=/^c/")),
            expect(|e| e.role() == "cache"),
        ),
        (
            "-F !=",
            filter(|f| f.fact("role!=web")),
            expect(|e| e.role() != "web"),
        ),
        (
            "-F <",
            filter(|f| f.fact("memorysize_mb<8192")),
            expect(|e| e.memory() < 8192),
        ),
        (
            "-F >",
            filter(|f| f.fact("memorysize_mb>8192")),
            expect(|e| e.memory() > 8192),
        ),
        (
            "-F <=",
            filter(|f| f.fact("memorysize_mb<=8192")),
            expect(|e| e.memory() <= 8192),
        ),
        (
            "-F >=",
            filter(|f| f.fact("memorysize_mb>=16384")),
            expect(|e| e.memory() >= 16384),
        ),
        (
            "-F dotted",
            filter(|f| f.fact("os.family=RedHat")),
            expect(|e| e.family() == "RedHat"),
        ),
        (
            "-F deep dotted",
            filter(|f| f.fact("networking.interfaces.eth0.ip=10.10.0.5")),
            vec!["node05".into()],
        ),
        (
            "-F glob",
            filter(|f| f.fact("ipaddress=10.10.0.[123]")),
            expect(|e| (1..=3).contains(&e.n)),
        ),
        (
            "-F two",
            filter(|f| f.fact("role=db")?.fact("os.family=Debian")),
            expect(|e| e.role() == "db" && e.family() == "Debian"),
        ),
        (
            "-C exact",
            filter(|f| f.class("redis")),
            expect(|e| e.has_class("redis")),
        ),
        (
            "-C regex",
            filter(|f| f.class("/^role::(db|lb)$/")),
            expect(|e| matches!(e.role(), "db" | "lb")),
        ),
        (
            "-C two",
            filter(|f| f.class("httpd")?.class("java")),
            expect(|e| e.role() == "app"),
        ),
        ("-A", filter(|f| f.agent("rpcutil")), expect(|_| true)),
        ("-A absent", filter(|f| f.agent("nosuchagent")), vec![]),
        (
            "-W",
            filter(|f| f.with("httpd os.family=Debian")),
            expect(|e| e.has_class("httpd") && e.family() == "Debian"),
        ),
        (
            "-S and",
            filter(|f| f.compound("mysql and memorysize_mb>=8192")),
            expect(|e| e.role() == "db" && e.memory() >= 8192),
        ),
        (
            "-S or",
            filter(|f| f.compound("redis or haproxy")),
            expect(|e| matches!(e.role(), "cache" | "lb")),
        ),
        (
            "-S not",
            filter(|f| f.compound("not httpd")),
            expect(|e| !e.has_class("httpd")),
        ),
        ("-S !", filter(|f| f.compound("!base")), vec![]),
        (
            "-S parentheses",
            filter(|f| f.compound("(role=web or role=db) and not os.family=RedHat")),
            expect(|e| matches!(e.role(), "web" | "db") && e.family() != "RedHat"),
        ),
        (
            "-S class regex",
            filter(|f| f.compound("/^role::ca/")),
            expect(|e| e.role() == "cache"),
        ),
        (
            "kinds AND together",
            filter(|f| {
                f.identity("/^node1/")?
                    .fact("os.family=RedHat")?
                    .class("httpd")
            }),
            expect(|e| (10..=19).contains(&e.n) && e.family() == "RedHat" && e.has_class("httpd")),
        ),
    ];
    let mut wrong = Vec::new();
    for (name, filter, expected) in &cases {
        let found = s.find(filter, None).await;
        if &found != expected {
            wrong.push(format!("{name}: found {found:?}, expected {expected:?}"));
        }
    }
    for (collective, expected) in [
        ("compute", expect(|e| e.n % 2 == 0)),
        ("storage", expect(|e| e.n % 2 == 1)),
        ("mcollective", expect(|_| true)),
    ] {
        let found = s.find(&Filter::default(), Some(collective)).await;
        if found != expected {
            wrong.push(format!(
                "-T {collective}: found {found:?}, expected {expected:?}"
            ));
        }
    }
    s.stop().await;
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flatfile_discovery_addresses_listed_nodes_and_names_the_silent() {
    let s = setup().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let list = dir.path().join("nodes.txt");
    std::fs::write(
        &list,
        "# the db tier\nnode01\n\nnode06   # primary\nnode11\nnode99\n",
    )
    .expect("write");
    let discovery = Discovery::Flatfile(NodeList::File(list.clone()));

    let all = discovery
        .known_nodes(&Filter::default(), "mcollective", SECOND)
        .await
        .expect("read");
    assert_eq!(all, ["node01", "node06", "node11", "node99"]);
    // Identity selectors are applied here, from the names alone.
    let some = discovery
        .known_nodes(&filter(|f| f.identity("/^node0/")), "mcollective", SECOND)
        .await
        .expect("read");
    assert_eq!(some, ["node01", "node06"]);

    // Requests go to each listed node; the one that does not exist is named.
    let call = Call::new("rpcutil", "ping")
        .with_discovery(discovery.clone())
        .with_timeout(2 * SECOND);
    let outcome = s.client.call(&call, |_| {}).await.expect("call");
    let answered: BTreeSet<&str> = outcome.responses.iter().map(|r| r.identity()).collect();
    assert_eq!(answered, BTreeSet::from(["node01", "node06", "node11"]));
    assert_eq!(outcome.missing, ["node99"]);

    // Errors: a missing file, and a bad line named by its number.
    let missing = Discovery::Flatfile(NodeList::File(dir.path().join("nope.txt")));
    let err = missing
        .known_nodes(&Filter::default(), "mcollective", SECOND)
        .await
        .unwrap_err();
    assert!(matches!(err, DiscoveryError::Read { .. }), "{err}");
    assert!(err.to_string().contains("nope.txt"), "{err}");
    std::fs::write(&list, "node01\nnode 02\n").expect("write");
    let err = discovery
        .known_nodes(&Filter::default(), "mcollective", SECOND)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("line 2"), "{err}");
    assert!(err.to_string().contains("node 02"), "{err}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_records_round_trip_into_local_discovery() {
    let s = setup().await;
    // What `mco inventory --json` writes: records built from rpcutil inventory.
    let call = Call::new("rpcutil", "inventory").with_targets(Targets::Nodes(expect(|_| true)));
    let outcome = s.client.call(&call, |_| {}).await.expect("inventory");
    assert!(outcome.missing.is_empty(), "{:?}", outcome.missing);
    let mut records: Vec<NodeRecord> = outcome
        .responses
        .iter()
        .map(|r| NodeRecord::from_inventory(r.identity(), &r.reply.data))
        .collect();
    records.sort_by(|a, b| a.identity.cmp(&b.identity));
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("inventory.json");
    std::fs::write(&file, serde_json::to_string_pretty(&records).expect("json")).expect("write");

    let discovery = Discovery::Inventory(file.clone());
    let local = |f: Filter, collective: &'static str| {
        let discovery = discovery.clone();
        async move {
            discovery
                .known_nodes(&f, collective, SECOND)
                .await
                .expect("inventory discovery")
        }
    };
    assert_eq!(
        local(Filter::default(), "mcollective").await,
        expect(|_| true)
    );
    assert_eq!(
        local(filter(|f| f.class("redis")), "mcollective").await,
        expect(|e| e.role() == "cache")
    );
    assert_eq!(
        local(
            filter(|f| f.fact("os.family=Debian")?.fact("memorysize_mb>=8192")),
            "mcollective"
        )
        .await,
        expect(|e| e.family() == "Debian" && e.memory() >= 8192)
    );
    assert_eq!(
        local(
            filter(|f| f.compound("(mysql or redis) and not os.family=RedHat")),
            "mcollective"
        )
        .await,
        expect(|e| matches!(e.role(), "db" | "cache") && e.family() != "RedHat")
    );
    assert_eq!(
        local(filter(|f| f.identity("node0[1-3]")), "mcollective").await,
        expect(|e| e.n <= 3)
    );
    assert_eq!(
        local(Filter::default(), "compute").await,
        expect(|e| e.n % 2 == 0)
    );
    assert_eq!(
        local(filter(|f| f.agent("rpcutil")), "storage").await,
        expect(|e| e.n % 2 == 1)
    );
    // The same answer as asking the fleet.
    let asked = filter(|f| f.with("httpd memorysize_mb<16384"));
    assert_eq!(
        local(asked.clone(), "mcollective").await,
        s.find(&asked, None).await
    );

    // Data plugins cannot be evaluated from records.
    let data = filter(|f| f.compound("fstat('/etc/hosts').size>0"));
    let err = discovery
        .known_nodes(&data, "mcollective", SECOND)
        .await
        .unwrap_err();
    assert!(matches!(err, DiscoveryError::DataPlugins { .. }), "{err}");
    // Not an inventory, and a missing one.
    std::fs::write(dir.path().join("bad.json"), "{\"identity\": \"x\"}").expect("write");
    let err = Discovery::Inventory(dir.path().join("bad.json"))
        .known_nodes(&Filter::default(), "mcollective", SECOND)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("bad.json"), "{err}");
    let err = Discovery::Inventory(dir.path().join("none.json"))
        .known_nodes(&Filter::default(), "mcollective", SECOND)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("none.json"), "{err}");
    s.stop().await;
}

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_programs_get_the_filter_and_print_identities() {
    let s = setup().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let seen = dir.path().join("seen");
    // Records what it was given, then names three nodes (one twice).
    let program = script(
        dir.path(),
        "discover",
        &format!(
            "cat > {seen}.stdin\nprintf '%s\\n' \"$MCO_COLLECTIVE\" \"$MCO_FILTER\" > {seen}.env\n\
             echo node03\necho '# a comment'\necho node01\necho node03\necho node02",
            seen = seen.display()
        ),
    );
    let f = filter(|f| f.class("redis"));
    let discovery = Discovery::External(program.clone());
    let nodes = discovery
        .known_nodes(&f, "compute", 5 * SECOND)
        .await
        .expect("external");
    assert_eq!(nodes, ["node01", "node02", "node03"]);
    let stdin = std::fs::read_to_string(format!("{}.stdin", seen.display())).expect("stdin seen");
    assert_eq!(
        serde_json::from_str::<Filter>(stdin.trim()).expect("filter JSON"),
        f
    );
    let env = std::fs::read_to_string(format!("{}.env", seen.display())).expect("env seen");
    let mut lines = env.lines();
    assert_eq!(lines.next(), Some("compute"));
    assert_eq!(lines.next(), Some(stdin.trim()));

    // The nodes it names are addressed directly.
    let call = Call::new("rpcutil", "ping")
        .with_discovery(discovery)
        .with_timeout(2 * SECOND);
    let outcome = s.client.call(&call, |_| {}).await.expect("call");
    assert_eq!(outcome.responses.len(), 3);
    assert!(outcome.missing.is_empty());

    // Failing, hanging, babbling and absent programs are clear errors naming them.
    let failing = script(
        dir.path(),
        "failing",
        "echo 'no inventory today' >&2\nexit 3",
    );
    let err = Discovery::External(failing)
        .known_nodes(&f, "mcollective", 5 * SECOND)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("failing") && text.contains("no inventory today"),
        "{text}"
    );
    let hanging = script(dir.path(), "hanging", "sleep 30");
    let started = std::time::Instant::now();
    let err = Discovery::External(hanging)
        .known_nodes(&f, "mcollective", Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(
        matches!(err, DiscoveryError::ProgramTimeout { .. }),
        "{err}"
    );
    assert!(started.elapsed() < 5 * SECOND);
    let babbling = script(
        dir.path(),
        "babbling",
        "echo node01\necho 'this is not a node'",
    );
    let err = Discovery::External(babbling)
        .known_nodes(&f, "mcollective", 5 * SECOND)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("babbling") && err.to_string().contains("line 2"),
        "{err}"
    );
    let err = Discovery::External(dir.path().join("absent"))
        .known_nodes(&f, "mcollective", 5 * SECOND)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("absent"), "{err}");
    s.stop().await;
}
