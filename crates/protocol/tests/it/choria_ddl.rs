//! Choria's JSON DDLs, read from files in Choria's published layout
//! (`tests/fixtures/choria-ddl/`: `service`, `nettest` and a subset of
//! `puppet` as choria-plugins ship them, and `typed`, one input per type
//! and validator), and the inputs Choria accepts or refuses, given as
//! `mco rpc` gives them: command-line text.

use std::path::Path;

use muster_protocol::aggregate;
use muster_protocol::ddl::{Ddl, InputType};
use muster_protocol::StatusCode;
use serde_json::{json, Map, Value};

fn fixture(name: &str) -> Ddl {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/choria-ddl")
        .join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    Ddl::from_json(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_fixture_parses_with_every_type() {
    let typed = fixture("typed");
    let echo = typed.action("echo").expect("echo");
    let mut types: Vec<&str> = echo.input.values().map(|i| i.kind.name()).collect();
    types.sort_unstable();
    types.dedup();
    assert_eq!(
        types,
        ["array", "boolean", "float", "hash", "integer", "list", "number", "string"]
    );
    assert_eq!(echo.input["format"].kind, InputType::List);
    for name in ["service", "nettest", "puppet"] {
        assert_eq!(fixture(name).metadata.name, name);
    }
    // MCollective's spellings of the type names read too.
    let ddl: Ddl = serde_json::from_value(json!({
        "metadata": {"name": "x"},
        "actions": [{"action": "a", "input": {
            "h": {"type": "Hash"}, "a": {"type": "Array"}, "i": {"type": "int"}
        }}]
    }))
    .expect("MCollective's type names");
    let input = &ddl.actions[0].input;
    assert_eq!(
        [input["h"].kind, input["a"].kind, input["i"].kind],
        [InputType::Hash, InputType::Array, InputType::Integer]
    );
}

/// What Choria does with a request.
enum Choria {
    /// Accepts it; the input named then holds this value.
    Accepts(&'static str, Value),
    /// Refuses it, with a message containing this.
    Refuses(&'static str),
}
use Choria::{Accepts, Refuses};

/// A fixture's agent, an action, its `key=value` inputs and what Choria does.
type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], Choria);

#[test]
fn inputs_are_accepted_and_refused_as_choria_does() {
    let long = "s".repeat(91);
    let too_long = [("service", long.as_str())];
    // (fixture, action, key=value inputs, what Choria does)
    let cases: Vec<Case> = vec![
        // Named plugin validators are validators, not regexes.
        (
            "service",
            "status",
            &[("service", "nginx")],
            Accepts("service", json!("nginx")),
        ),
        (
            "service",
            "restart",
            &[("service", "getty@tty1.service")],
            Accepts("service", json!("getty@tty1.service")),
        ),
        (
            "service",
            "stop",
            &[("service", "dbus:1")],
            Accepts("service", json!("dbus:1")),
        ),
        (
            "service",
            "start",
            &[("service", "nginx; reboot")],
            Refuses("not a valid service name"),
        ),
        (
            "service",
            "status",
            &[("service", "a b")],
            Refuses("not a valid service name"),
        ),
        (
            "service",
            "status",
            &[],
            Refuses("missing required input \"service\""),
        ),
        ("service", "status", &too_long, Refuses("91 characters")),
        (
            "puppet",
            "runonce",
            &[("tags", "apache,mysql::server")],
            Accepts("tags", json!("apache,mysql::server")),
        ),
        (
            "puppet",
            "runonce",
            &[("tags", "apache,my-sql")],
            Refuses("failed validation puppet_tags"),
        ),
        (
            "puppet",
            "runonce",
            &[("tags", "a;b")],
            Refuses("may not contain ';'"),
        ),
        (
            "puppet",
            "runonce",
            &[("server", "puppet.example.net:8140")],
            Accepts("server", json!("puppet.example.net:8140")),
        ),
        (
            "puppet",
            "runonce",
            &[("server", "[::1]:8140")],
            Accepts("server", json!("[::1]:8140")),
        ),
        (
            "puppet",
            "runonce",
            &[("server", "puppet:http")],
            Refuses("not a valid puppet master port"),
        ),
        (
            "puppet",
            "runonce",
            &[("server", "a_box")],
            Refuses("not a valid hostname"),
        ),
        (
            "puppet",
            "runonce",
            &[("environment", "production")],
            Accepts("environment", json!("production")),
        ),
        (
            "puppet",
            "runonce",
            &[("environment", "prod-1")],
            Refuses("failed validation puppet_variable"),
        ),
        (
            "puppet",
            "runonce",
            &[("noop", "true"), ("splaylimit", "30")],
            Accepts("splaylimit", json!(30)),
        ),
        (
            "puppet",
            "runonce",
            &[("noop", "maybe")],
            Refuses("must be a boolean"),
        ),
        (
            "puppet",
            "last_run_summary",
            &[],
            Accepts("logs", json!(false)),
        ),
        (
            "nettest",
            "ping",
            &[("fqdn", "www.example.net")],
            Accepts("fqdn", json!("www.example.net")),
        ),
        (
            "nettest",
            "ping",
            &[("fqdn", "192.168.1.1")],
            Accepts("fqdn", json!("192.168.1.1")),
        ),
        (
            "nettest",
            "ping",
            &[("fqdn", "bad_host")],
            Refuses("valid fqdn"),
        ),
        (
            "nettest",
            "connect",
            &[("fqdn", "db1"), ("port", "5432")],
            Accepts("port", json!(5432)),
        ),
        (
            "nettest",
            "connect",
            &[("fqdn", "db1"), ("port", "http")],
            Refuses("must be an integer"),
        ),
        // list is an enum, arriving as the scalar.
        (
            "typed",
            "echo",
            &[("format", "json")],
            Accepts("format", json!("json")),
        ),
        (
            "typed",
            "echo",
            &[("format", "yaml")],
            Refuses("must be one of ddl, json"),
        ),
        ("typed", "echo", &[], Accepts("format", json!("json"))),
        // String inputs keep their text; typing follows the DDL.
        (
            "typed",
            "echo",
            &[("config", r#"{"a":"b"}"#)],
            Accepts("config", json!(r#"{"a":"b"}"#)),
        ),
        (
            "typed",
            "echo",
            &[("config", "a")],
            Refuses("failed validation ^{.+}$"),
        ),
        (
            "typed",
            "echo",
            &[("options", r#"{"a":"b"}"#)],
            Accepts("options", json!({"a": "b"})),
        ),
        (
            "typed",
            "echo",
            &[("options", "a=b")],
            Refuses("must be a hash"),
        ),
        (
            "typed",
            "echo",
            &[("names", r#"["a","b"]"#)],
            Accepts("names", json!(["a", "b"])),
        ),
        (
            "typed",
            "echo",
            &[("names", "a,b")],
            Refuses("must be an array"),
        ),
        (
            "typed",
            "echo",
            &[("count", "3")],
            Accepts("count", json!(3)),
        ),
        (
            "typed",
            "echo",
            &[("ratio", "0.5")],
            Accepts("ratio", json!(0.5)),
        ),
        (
            "typed",
            "echo",
            &[("size", "1e3")],
            Accepts("size", json!(1000.0)),
        ),
        (
            "typed",
            "echo",
            &[("force", "t")],
            Accepts("force", json!(true)),
        ),
        // A default that fails its own validation does not refuse.
        ("typed", "echo", &[], Accepts("label", json!(""))),
        (
            "typed",
            "echo",
            &[("label", "")],
            Accepts("label", json!("")),
        ),
        (
            "typed",
            "echo",
            &[("label", "Upper")],
            Refuses("failed validation ^[a-z]+$"),
        ),
        // Every other validator.
        (
            "typed",
            "check",
            &[("package", "libc6-dev")],
            Accepts("package", json!("libc6-dev")),
        ),
        (
            "typed",
            "check",
            &[("package", "vim:amd64")],
            Refuses("not a valid package name"),
        ),
        (
            "typed",
            "check",
            &[("resource", "file[/etc/motd]")],
            Accepts("resource", json!("file[/etc/motd]")),
        ),
        (
            "typed",
            "check",
            &[("address", "db1:5432")],
            Accepts("address", json!("db1:5432")),
        ),
        (
            "typed",
            "check",
            &[("address", "db1")],
            Refuses("hostname and port"),
        ),
        (
            "typed",
            "check",
            &[("command", "ls -l & wait")],
            Accepts("command", json!("ls -l & wait")),
        ),
        (
            "typed",
            "check",
            &[("command", "ls && reboot")],
            Refuses("may not contain '&&'"),
        ),
        (
            "typed",
            "check",
            &[("ipv4", "::ffff:10.0.0.1")],
            Accepts("ipv4", json!("::ffff:10.0.0.1")),
        ),
        (
            "typed",
            "check",
            &[("ipv6", "::ffff:10.0.0.1")],
            Refuses("not an IPv6 address"),
        ),
        (
            "typed",
            "check",
            &[("ip", "fe80::1")],
            Accepts("ip", json!("fe80::1")),
        ),
        (
            "typed",
            "check",
            &[("interval", "1h2m")],
            Accepts("interval", json!("1h2m")),
        ),
        (
            "typed",
            "check",
            &[("interval", "2 days")],
            Refuses("not a duration"),
        ),
        (
            "typed",
            "check",
            &[("site", "anything; at all")],
            Accepts("site", json!("anything; at all")),
        ),
        (
            "typed",
            "check",
            &[("version", "1.2")],
            Accepts("version", json!("1.2")),
        ),
        (
            "typed",
            "check",
            &[("version", "1.2.3")],
            Refuses("failed validation"),
        ),
        (
            "typed",
            "check",
            &[("short", "abcdef")],
            Refuses("6 characters"),
        ),
    ];
    let ddls: Vec<Ddl> = ["service", "nettest", "puppet", "typed"]
        .into_iter()
        .map(fixture)
        .collect();
    for (agent, action, inputs, choria) in &cases {
        let ddl = ddls
            .iter()
            .find(|d| d.metadata.name == *agent)
            .expect("a fixture");
        let mut data: Map<String, Value> = inputs
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect();
        let case = format!("{agent} {action} {inputs:?}");
        match (ddl.validate(action, &mut data), choria) {
            (Ok(()), Accepts(input, want)) => {
                assert_eq!(data.get(*input), Some(want), "{case}: {data:?}");
                // The node validates what the client sent again.
                let mut again = data.clone();
                ddl.validate(action, &mut again)
                    .unwrap_or_else(|e| panic!("{case}: the node refuses: {e}"));
                assert_eq!(again, data, "{case}");
            }
            (Err(e), Refuses(fragment)) => {
                assert!(
                    matches!(e.code, StatusCode::InvalidData | StatusCode::MissingData),
                    "{case}: {e}"
                );
                assert!(e.message.contains(fragment), "{case}: {:?}", e.message);
            }
            (Ok(()), Refuses(fragment)) => panic!("{case}: accepted, Choria refuses ({fragment})"),
            (Err(e), Accepts(..)) => panic!("{case}: refused ({e}), Choria accepts"),
        }
    }
    assert!(cases.len() >= 43, "{} cases", cases.len());
}

#[test]
fn aggregate_formats_are_applied_and_unknown_functions_named() {
    let puppet = fixture("puppet");
    let summary = puppet.action("last_run_summary").expect("action");
    let replies = [
        json!({"config_retrieval_time": 1, "total_time": 3.5, "total_resources": 10}),
        json!({"config_retrieval_time": 2, "total_time": 4, "total_resources": 13}),
    ];
    let replies: Vec<&Value> = replies.iter().collect();
    let rendered: Vec<String> = aggregate::compute(summary, &replies)
        .iter()
        .map(|s| s.render())
        .collect();
    assert_eq!(
        rendered,
        [
            "Summary of Config Retrieval Time:\n\n   Average: 1.50",
            "Summary of Total Time:\n\n   Average: 3.75",
            "Summary of Total Resources:\n\n   Average: 11",
        ]
    );
    assert!(aggregate::unknown_functions(summary).is_empty());

    let typed = fixture("typed");
    let echo = typed.action("echo").expect("echo");
    let replies = [
        json!({"status": "ok"}),
        json!({"status": "ok"}),
        json!({"status": "bad"}),
    ];
    let replies: Vec<&Value> = replies.iter().collect();
    let summaries = aggregate::compute(echo, &replies);
    assert_eq!(summaries.len(), 1, "the unknown function computes nothing");
    assert_eq!(
        summaries[0].render(),
        "Summary of Status:\n\n   ok -> 2 node(s)\n   bad -> 1 node(s)"
    );
    assert_eq!(aggregate::unknown_functions(echo), ["nettest_mma"]);
    let nettest = fixture("nettest");
    assert_eq!(
        aggregate::unknown_functions(nettest.action("ping").expect("ping")),
        ["nettest_mma"]
    );
}

#[test]
fn printf_formats_as_ruby_and_go_do() {
    let cases: &[(&str, &[Value], &str)] = &[
        ("%s", &[json!("a")], "a"),
        ("%10s|", &[json!("abc")], "       abc|"),
        ("%-10s|", &[json!("abc")], "abc       |"),
        ("%d", &[json!(42)], "42"),
        ("%5d", &[json!(42)], "   42"),
        ("%05d", &[json!(-42)], "-0042"),
        ("%+d", &[json!(5)], "+5"),
        ("%d", &[json!(2.9)], "2"),
        ("%.2f", &[json!(1.005_f64 + 1.0)], "2.00"),
        ("%0.2f", &[json!(3)], "3.00"),
        ("%f", &[json!(1.5)], "1.500000"),
        ("%8.3f", &[json!(12.34567)], "  12.346"),
        ("%e", &[json!(12345.678)], "1.234568e+04"),
        ("%g", &[json!(0.0001)], "0.0001"),
        ("%g", &[json!(1234567.0)], "1.23457e+06"),
        ("%x", &[json!(255)], "ff"),
        ("%#o", &[json!(8)], "010"),
        ("%s = %d", &[json!("1.2.3"), json!(4)], "1.2.3 = 4"),
        ("100%%", &[], "100%"),
        ("%d", &[], "%!d(MISSING)"),
        ("%q", &[json!(1)], "%q"),
        ("%s", &[json!(true)], "true"),
    ];
    for (format, args, want) in cases {
        assert_eq!(aggregate::printf(format, args), *want, "{format} {args:?}");
    }
}
