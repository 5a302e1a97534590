//! DDL input validation and conversion, Choria DDL parsing, aggregate
//! summaries, and hostile DDLs (docs/architecture.md#agents-and-ddls). Each table row names the rule
//! it pins down, so removing a rule fails a named row.

use muster_protocol::aggregate::{self, Summary, SummaryResult};
use muster_protocol::ddl::{self, Action, Ddl, InputType};
use muster_protocol::StatusCode;
use serde_json::{json, Map, Value};

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("inputs must be an object, not {other}"),
    }
}

/// An action with one input `x` described by `input`.
fn one_input(input: Value) -> Action {
    serde_json::from_value(json!({"action": "test", "input": {"x": input}}))
        .unwrap_or_else(|e| panic!("bad test input {input}: {e}"))
}

/// What validating must come to.
#[derive(Debug)]
enum Expect {
    /// Accepted, and `x` is then this value (`null`: absent).
    Ok(Value),
    /// Refused with this status and a message containing each fragment.
    Err(StatusCode, &'static [&'static str]),
}

use Expect::Err as E;
use Expect::Ok as K;
const MISSING: StatusCode = StatusCode::MissingData;
const INVALID: StatusCode = StatusCode::InvalidData;

/// Validates `{"x": given}` (or `{}` for `null`) against `input`.
fn check(rule: &str, input: &Value, given: &Value, expect: &Expect) {
    let action = one_input(input.clone());
    let mut data = if given.is_null() {
        Map::new()
    } else {
        object(json!({ "x": given }))
    };
    match (action.validate(&mut data), expect) {
        (Ok(()), Expect::Ok(want)) => {
            assert_eq!(
                data.get("x").unwrap_or(&Value::Null),
                want,
                "{rule}: {input} given {given}"
            );
        }
        (Err(e), Expect::Err(code, fragments)) => {
            assert_eq!(e.code, *code, "{rule}: {input} given {given}: {e}");
            assert_eq!(e.input, "x", "{rule}");
            assert_eq!(e.to_string(), e.message, "{rule}: Display is the message");
            for fragment in *fragments {
                assert!(
                    e.message.contains(fragment),
                    "{rule}: {:?} lacks {fragment:?}",
                    e.message
                );
            }
        }
        (got, want) => panic!("{rule}: {input} given {given}: got {got:?}, want {want:?}"),
    }
}

#[test]
fn types_convert_command_line_strings_and_refuse_wrong_values() {
    let string = json!({"type": "string"});
    let integer = json!({"type": "integer"});
    let float = json!({"type": "float"});
    let number = json!({"type": "number"});
    let boolean = json!({"type": "boolean"});
    let list = json!({"type": "list", "list": ["ddl", "json"]});
    let array = json!({"type": "array"});
    let hash = json!({"type": "hash"});
    let cases: Vec<(&str, &Value, Value, Expect)> = vec![
        ("string as is", &string, json!("vim"), K(json!("vim"))),
        ("string from number", &string, json!(5), K(json!("5"))),
        ("string from float", &string, json!(2.5), K(json!("2.5"))),
        ("string from bool", &string, json!(true), K(json!("true"))),
        (
            "string not list",
            &string,
            json!(["a"]),
            E(INVALID, &["input \"x\" must be a string", "[\"a\"]"]),
        ),
        (
            "string not hash",
            &string,
            json!({"a": 1}),
            E(INVALID, &["must be a string"]),
        ),
        ("integer as is", &integer, json!(3), K(json!(3))),
        ("integer from string", &integer, json!("3"), K(json!(3))),
        (
            "integer negative string",
            &integer,
            json!(" -42 "),
            K(json!(-42)),
        ),
        ("integer u64", &integer, json!(u64::MAX), K(json!(u64::MAX))),
        (
            "integer from whole float",
            &integer,
            json!(3.0),
            K(json!(3)),
        ),
        (
            "integer not word",
            &integer,
            json!("three"),
            E(INVALID, &["input \"x\" must be an integer, got \"three\""]),
        ),
        (
            "integer not fraction",
            &integer,
            json!(3.5),
            E(INVALID, &["must be an integer", "3.5"]),
        ),
        (
            "integer not fraction text",
            &integer,
            json!("3.5"),
            E(INVALID, &["must be an integer"]),
        ),
        (
            "integer not bool",
            &integer,
            json!(true),
            E(INVALID, &["must be an integer", "true"]),
        ),
        (
            "integer not empty",
            &integer,
            json!(""),
            E(INVALID, &["must be an integer"]),
        ),
        ("float from int", &float, json!(3), K(json!(3.0))),
        ("float as is", &float, json!(2.5), K(json!(2.5))),
        ("float from string", &float, json!("2.5"), K(json!(2.5))),
        ("float from int string", &float, json!("7"), K(json!(7.0))),
        (
            "float not word",
            &float,
            json!("fast"),
            E(INVALID, &["must be a float", "\"fast\""]),
        ),
        (
            "float not inf",
            &float,
            json!("inf"),
            E(INVALID, &["must be a float"]),
        ),
        (
            "float not NaN",
            &float,
            json!("NaN"),
            E(INVALID, &["must be a float"]),
        ),
        ("number int", &number, json!(3), K(json!(3))),
        ("number float", &number, json!(2.5), K(json!(2.5))),
        ("number int string", &number, json!("3"), K(json!(3))),
        ("number float string", &number, json!("2.5"), K(json!(2.5))),
        (
            "number not word",
            &number,
            json!("many"),
            E(INVALID, &["must be a number", "\"many\""]),
        ),
        (
            "number not list",
            &number,
            json!([1]),
            E(INVALID, &["must be a number"]),
        ),
        ("boolean as is", &boolean, json!(false), K(json!(false))),
        ("boolean true", &boolean, json!("true"), K(json!(true))),
        ("boolean false", &boolean, json!("false"), K(json!(false))),
        ("boolean yes", &boolean, json!("yes"), K(json!(true))),
        ("boolean no", &boolean, json!("no"), K(json!(false))),
        ("boolean 1", &boolean, json!("1"), K(json!(true))),
        ("boolean 0", &boolean, json!("0"), K(json!(false))),
        ("boolean any case", &boolean, json!("TRUE"), K(json!(true))),
        ("boolean from number 1", &boolean, json!(1), K(json!(true))),
        (
            "boolean not word",
            &boolean,
            json!("maybe"),
            E(INVALID, &["must be a boolean", "\"maybe\""]),
        ),
        (
            "boolean not 2",
            &boolean,
            json!(2),
            E(INVALID, &["must be a boolean"]),
        ),
        ("array as is", &array, json!(["a", 1]), K(json!(["a", 1]))),
        (
            "array JSON text",
            &array,
            json!("[\"a\", 2]"),
            K(json!(["a", 2])),
        ),
        (
            "array not comma separated",
            &array,
            json!("a,b"),
            E(INVALID, &["must be an array", "\"a,b\""]),
        ),
        (
            "array bad JSON text",
            &array,
            json!("[a"),
            E(INVALID, &["must be an array", "\"[a\""]),
        ),
        (
            "array not number",
            &array,
            json!(3),
            E(INVALID, &["must be an array"]),
        ),
        ("list is an enum", &list, json!("json"), K(json!("json"))),
        (
            "list not a member",
            &list,
            json!("yaml"),
            E(INVALID, &["must be one of ddl, json", "\"yaml\""]),
        ),
        (
            "list not an array",
            &list,
            json!(["json"]),
            E(INVALID, &["must be one of ddl, json"]),
        ),
        (
            "list not comma separated",
            &list,
            json!("ddl,json"),
            E(INVALID, &["must be one of"]),
        ),
        (
            "string keeps JSON text",
            &string,
            json!("{\"a\":\"b\"}"),
            K(json!("{\"a\":\"b\"}")),
        ),
        (
            "string keeps number text",
            &string,
            json!("007"),
            K(json!("007")),
        ),
        ("boolean Go t", &boolean, json!("t"), K(json!(true))),
        ("boolean Go F", &boolean, json!("F"), K(json!(false))),
        ("hash as is", &hash, json!({"a": 1}), K(json!({"a": 1}))),
        (
            "hash JSON text",
            &hash,
            json!("{\"a\": 1}"),
            K(json!({"a": 1})),
        ),
        (
            "hash not JSON text",
            &hash,
            json!("a=1"),
            E(INVALID, &["must be a hash", "\"a=1\""]),
        ),
        (
            "hash not array text",
            &hash,
            json!("[1]"),
            E(INVALID, &["must be a hash"]),
        ),
        (
            "hash not list",
            &hash,
            json!([1]),
            E(INVALID, &["must be a hash"]),
        ),
    ];
    for (rule, input, given, expect) in &cases {
        check(rule, input, given, expect);
    }
}

#[test]
fn presence_defaults_length_and_allowed_values() {
    let required = json!({"type": "string", "optional": false});
    let optional = json!({"type": "string", "optional": true});
    let defaulted = json!({"type": "integer", "optional": true, "default": 5});
    let required_default = json!({"type": "string", "optional": false, "default": "x"});
    let string_default = json!({"type": "integer", "optional": true, "default": "7"});
    let bad_default = json!({"type": "integer", "optional": true, "default": "seven"});
    let invalid_default = json!({"type": "string", "optional": true, "default": "", "validation": "^[a-z]+$", "maxlength": 10});
    let short = json!({"type": "string", "maxlength": 5});
    let unlimited = json!({"type": "string", "maxlength": 0});
    let choice = json!({"type": "string", "list": ["present", "absent"]});
    let open_string = json!({"type": "string", "list": []});
    let enumeration = json!({"type": "enum", "list": ["start", "stop", 3]});
    let empty_enum = json!({"type": "enum"});
    let cases: Vec<(&str, &Value, Value, Expect)> = vec![
        (
            "required missing",
            &required,
            Value::Null,
            E(MISSING, &["missing required input \"x\""]),
        ),
        ("required given", &required, json!("a"), K(json!("a"))),
        ("optional missing", &optional, Value::Null, K(Value::Null)),
        ("default applied", &defaulted, Value::Null, K(json!(5))),
        (
            "default not over given",
            &defaulted,
            json!("9"),
            K(json!(9)),
        ),
        (
            "required with default",
            &required_default,
            Value::Null,
            K(json!("x")),
        ),
        (
            "default converted",
            &string_default,
            Value::Null,
            K(json!(7)),
        ),
        // Choria's client inserts defaults unchecked; so does muster.
        (
            "bad default inserted as written",
            &bad_default,
            Value::Null,
            K(json!("seven")),
        ),
        (
            "bad default given back is accepted",
            &bad_default,
            json!("seven"),
            K(json!("seven")),
        ),
        (
            "default failing its validation",
            &invalid_default,
            Value::Null,
            K(json!("")),
        ),
        (
            "default failing its validation given back",
            &invalid_default,
            json!(""),
            K(json!("")),
        ),
        (
            "other values still validated",
            &invalid_default,
            json!("A"),
            E(INVALID, &["failed validation"]),
        ),
        (
            "maxlength at limit",
            &short,
            json!("abcde"),
            K(json!("abcde")),
        ),
        (
            "maxlength counts chars",
            &short,
            json!("ééééé"),
            K(json!("ééééé")),
        ),
        (
            "maxlength over",
            &short,
            json!("abcdef"),
            E(
                INVALID,
                &["input \"x\"", "6 characters", "5 allowed", "\"abcdef\""],
            ),
        ),
        (
            "maxlength 0 unlimited",
            &unlimited,
            json!("a".repeat(1000)),
            K(json!("a".repeat(1000))),
        ),
        (
            "string list member",
            &choice,
            json!("absent"),
            K(json!("absent")),
        ),
        (
            "string list non-member",
            &choice,
            json!("latest"),
            E(INVALID, &["must be one of present, absent", "\"latest\""]),
        ),
        (
            "string empty list open",
            &open_string,
            json!("anything"),
            K(json!("anything")),
        ),
        ("enum member", &enumeration, json!("stop"), K(json!("stop"))),
        (
            "enum number from text",
            &enumeration,
            json!("3"),
            K(json!(3)),
        ),
        (
            "enum non-member",
            &enumeration,
            json!("reload"),
            E(INVALID, &["must be one of start, stop, 3", "\"reload\""]),
        ),
        (
            "enum not list",
            &enumeration,
            json!(["stop"]),
            E(INVALID, &["must be one of"]),
        ),
        (
            "enum with no list",
            &empty_enum,
            json!("a"),
            E(INVALID, &["no values"]),
        ),
    ];
    for (rule, input, given, expect) in &cases {
        check(rule, input, given, expect);
    }
}

#[test]
fn null_counts_as_missing() {
    let action = one_input(json!({"type": "string"}));
    let mut data = object(json!({"x": null}));
    let err = action.validate(&mut data).unwrap_err();
    assert_eq!(err.code, StatusCode::MissingData);
    let action = one_input(json!({"type": "string", "optional": true, "default": "d"}));
    let mut data = object(json!({"x": null}));
    action.validate(&mut data).unwrap();
    assert_eq!(data["x"], "d");
}

#[test]
fn named_validators_and_regexes() {
    let with = |validation: &str| json!({"type": "string", "validation": validation});
    let list_with =
        |validation: &str| json!({"type": "list", "list": ["a", "B"], "validation": validation});
    let int_with = |validation: &str| json!({"type": "integer", "validation": validation});
    let good: &[(&str, Value, &str)] = &[
        ("shellsafe", with("shellsafe"), "vim-enhanced_9.0+1 (x)"),
        (
            "shellsafe allows quotes",
            with("shellsafe"),
            "it's \"fine\"",
        ),
        ("ipv4address", with("ipv4address"), "192.168.1.10"),
        ("ipv6address", with("ipv6address"), "fe80::1"),
        (
            "ipv6address full",
            with("ipv6address"),
            "2001:db8:0:0:0:0:2:1",
        ),
        ("ipaddress v4", with("ipaddress"), "10.0.0.1"),
        ("ipaddress v6", with("ipaddress"), "::1"),
        ("boolean", with("boolean"), "yes"),
        ("integer", with("integer"), "-12"),
        ("float", with("float"), "1.5"),
        ("number", with("number"), "12"),
        ("hostname", with("hostname"), "web-01.example.net"),
        ("hostname single label", with("hostname"), "localhost"),
        ("hostname digits first", with("hostname"), "3com.example"),
        ("hostname trailing dot", with("hostname"), "example.net."),
        ("regex", with("^[a-z]+$"), "abc"),
        ("regex unanchored as written", with("[0-9]"), "abc1def"),
        // As in Choria and MCollective, validation guards strings only.
        ("regex not on a list", list_with("^[a-z]+$"), "B"),
        ("regex not on an integer", int_with("^[0-9]{2}$"), "420"),
        ("shellsafe lone &", with("shellsafe"), "a&b"),
        ("shellsafe newline", with("shellsafe"), "a\nb"),
        ("ipv4 (go-choria)", with("ipv4"), "10.1.2.3"),
        ("ipv6 (go-choria)", with("ipv6"), "::2"),
        ("duration", with("duration"), "1h2m"),
        ("maxlength=N", with("maxlength=3"), "abc"),
        ("enum=a,b", with("enum=a,b"), "b"),
        ("regex=PATTERN", with("regex=^[a-z]+$"), "abc"),
        ("service_name", with("service_name"), "nginx"),
        ("package_name", with("package_name"), "nginx-full"),
        ("puppet_variable", with("puppet_variable"), "production"),
        ("puppet_tags", with("puppet_tags"), "apache,mysql::server"),
        (
            "puppet_server_address",
            with("puppet_server_address"),
            "puppet.example.net:8140",
        ),
        (
            "puppet_resource",
            with("puppet_resource"),
            "file[/etc/motd]",
        ),
        ("nettest_fqdn", with("nettest_fqdn"), "www.example.net"),
        (
            "nettest_server_address",
            with("nettest_server_address"),
            "www.example.net:80",
        ),
        ("bool", with("bool"), "false"),
        ("unknown name accepted", with("no_such_check"), "a;b"),
    ];
    for named in ddl::NAMED_VALIDATORS {
        let prefix = named.split('=').next().unwrap_or(named);
        assert!(
            good.iter().any(|(_, input, _)| input["validation"]
                .as_str()
                .is_some_and(|v| v.split('=').next() == Some(prefix))),
            "no case for validator {named}"
        );
    }
    for (rule, input, given) in good {
        let action = one_input(input.clone());
        let mut data = object(json!({ "x": given }));
        if let Err(e) = action.validate(&mut data) {
            panic!("{rule}: {given:?} refused: {e}");
        }
    }
    let bad: &[(&str, Value, &str, &str)] = &[
        (
            "shellsafe ;",
            with("shellsafe"),
            "vim; rm -rf /",
            "input \"x\" failed validation shellsafe: \"vim; rm -rf /\"",
        ),
        ("shellsafe `", with("shellsafe"), "a`id`", "shellsafe"),
        ("shellsafe $", with("shellsafe"), "$(id)", "shellsafe"),
        ("shellsafe |", with("shellsafe"), "a|b", "shellsafe"),
        (
            "shellsafe &&",
            with("shellsafe"),
            "a&&b",
            "may not contain '&&'",
        ),
        ("shellsafe >", with("shellsafe"), "a>b", "shellsafe"),
        ("shellsafe <", with("shellsafe"), "a<b", "shellsafe"),
        (
            "ipv4address",
            with("ipv4address"),
            "256.1.1.1",
            "failed validation ipv4address: \"256.1.1.1\"",
        ),
        (
            "ipv4address not v6",
            with("ipv4address"),
            "::1",
            "ipv4address",
        ),
        (
            "ipv6address",
            with("ipv6address"),
            "fe80::1::2",
            "ipv6address",
        ),
        (
            "ipv6address not v4",
            with("ipv6address"),
            "10.0.0.1",
            "ipv6address",
        ),
        ("ipaddress", with("ipaddress"), "example.net", "ipaddress"),
        ("boolean", with("boolean"), "maybe", "boolean"),
        ("integer", with("integer"), "1.5", "integer"),
        ("float", with("float"), "one", "float"),
        ("number", with("number"), "1,5", "number"),
        (
            "hostname underscore",
            with("hostname"),
            "web_01",
            "hostname",
        ),
        (
            "hostname leading hyphen",
            with("hostname"),
            "-web",
            "hostname",
        ),
        (
            "hostname trailing hyphen",
            with("hostname"),
            "web-.net",
            "hostname",
        ),
        (
            "hostname empty label",
            with("hostname"),
            "web..net",
            "hostname",
        ),
        (
            "hostname long label",
            with("hostname"),
            &"a".repeat(64),
            "hostname",
        ),
        ("hostname space", with("hostname"), "a b", "hostname"),
        (
            "regex",
            with("^[a-z]+$"),
            "ABC",
            "failed validation ^[a-z]+$: \"ABC\"",
        ),
        (
            "service_name",
            with("service_name"),
            "nginx; id",
            "is not a valid service name",
        ),
        ("duration", with("duration"), "10", "duration"),
        ("maxlength=N", with("maxlength=3"), "abcd", "longer than 3"),
        ("enum=a,b", with("enum=a,b"), "c", "allowed list: a, b"),
        (
            "puppet_server_address",
            with("puppet_server_address"),
            "a_box",
            "not a valid hostname",
        ),
    ];
    for (rule, input, given, fragment) in bad {
        let action = one_input(input.clone());
        let mut data = object(json!({ "x": given }));
        match action.validate(&mut data) {
            Ok(()) => panic!("{rule}: {given:?} accepted"),
            Err(e) => {
                assert_eq!(e.code, StatusCode::InvalidData, "{rule}: {e}");
                assert!(e.message.contains(fragment), "{rule}: {:?}", e.message);
            }
        }
    }
    // Long hostnames: 253 characters in all is the limit.
    let label = "a".repeat(63);
    let name = [label.as_str(); 4].join(".");
    let action = one_input(with("hostname"));
    let mut data = object(json!({ "x": &name[..253] }));
    action.validate(&mut data).expect("253 characters");
    let mut data = object(json!({ "x": format!("{}.b", &name[..252]) }));
    assert!(action.validate(&mut data).is_err(), "255 characters");
}

#[test]
fn unknown_inputs_are_refused_naming_the_known_ones() {
    let action: Action = serde_json::from_value(json!({
        "action": "install",
        "input": {"package": {"type": "string"}, "version": {"type": "string", "optional": true}}
    }))
    .unwrap();
    let mut data = object(json!({"package": "vim", "force": true}));
    let err = action.validate(&mut data).unwrap_err();
    assert_eq!(err.code, StatusCode::InvalidData);
    assert_eq!(err.input, "force");
    assert_eq!(
        err.message,
        "unknown input \"force\" (known: package, version)"
    );

    let ping: Action = serde_json::from_value(json!({"action": "ping"})).unwrap();
    let mut data = object(json!({"x": 1}));
    let err = ping.validate(&mut data).unwrap_err();
    assert_eq!(err.code, StatusCode::InvalidData);
    assert!(err.message.contains("unknown input \"x\""), "{err}");
    let mut empty = Map::new();
    ping.validate(&mut empty).expect("no inputs, none given");
}

#[test]
fn unknown_action_is_status_2_naming_the_action() {
    let rpcutil = ddl::builtin("rpcutil").expect("built in");
    let mut data = Map::new();
    let err = rpcutil.validate("reboot", &mut data).unwrap_err();
    assert_eq!(err.code, StatusCode::UnknownAction);
    assert!(err.message.contains("\"reboot\""), "{err}");
    assert!(
        err.message.contains("get_fact"),
        "lists known actions: {err}"
    );
    let mut data = object(json!({"fact": "os.family"}));
    rpcutil
        .validate("get_fact", &mut data)
        .expect("a good request");
}

/// A DDL in the shape of Choria's package agent.
const PACKAGE_DDL: &str = r#"{
  "$schema": "https://choria.io/schemas/mcorpc/ddl/v1/agent.json",
  "metadata": {
    "license": "Apache-2.0",
    "author": "R.I.Pienaar <rip@devco.net>",
    "timeout": 180,
    "name": "package",
    "version": "5.3.0",
    "url": "https://github.com/choria-plugins/package-agent",
    "description": "Manage Operating System Packages",
    "provider": "ruby"
  },
  "actions": [
    {
      "action": "install",
      "input": {
        "package": {
          "prompt": "Package Name",
          "description": "Package to install",
          "type": "string",
          "default": null,
          "optional": false,
          "validation": "shellsafe",
          "maxlength": 90
        },
        "version": {
          "prompt": "Package version",
          "description": "Version of package to install",
          "type": "string",
          "default": null,
          "optional": true,
          "validation": "shellsafe",
          "maxlength": 90
        }
      },
      "output": {
        "output": {"description": "Output from the package manager", "display_as": "Output", "default": null},
        "epoch": {"description": "Package epoch number", "display_as": "Epoch", "default": null},
        "ensure": {"description": "Full package version", "display_as": "Ensure", "default": null},
        "name": {"description": "Package name", "display_as": "Name", "default": null}
      },
      "display": "failed",
      "description": "Install a package",
      "aggregate": [
        {"function": "summary", "args": ["ensure"]},
        {"function": "summary", "args": ["arch"]}
      ]
    },
    {
      "action": "status",
      "input": {
        "package": {
          "prompt": "Package Name",
          "description": "Package to retrieve the status of",
          "type": "string",
          "default": null,
          "optional": false,
          "validation": "shellsafe",
          "maxlength": 90
        }
      },
      "output": {
        "ensure": {"description": "Full package version", "display_as": "Ensure", "default": null},
        "arch": {"description": "Package architecture", "display_as": "Arch", "default": null},
        "status": {"description": "Whether the package is installed", "display_as": "Installed", "default": null},
        "size": {"description": "Installed size", "display_as": "Size", "default": null},
        "provider": {"description": "Provider used", "display_as": "Provider", "type": "string"}
      },
      "display": "always",
      "description": "Get the status of a package",
      "aggregate": [
        {"function": "summary", "args": ["ensure"]},
        {"function": "boolean_summary", "args": ["status", {"true": "Running", "false": "Stopped"}]},
        {"function": "sum", "args": ["size"]},
        {"function": "average", "args": ["size"]},
        {"function": "percentile", "args": ["size"]}
      ]
    },
    {
      "action": "count",
      "input": {
        "limit": {"prompt": "Limit", "description": "At most", "type": "integer", "optional": true, "default": 10},
        "pattern": {"prompt": "Pattern", "description": "Names", "type": "string", "optional": true, "validation": "^[a-z*]+$"},
        "all": {"prompt": "All", "description": "Everything", "type": "boolean", "optional": true},
        "mode": {"prompt": "Mode", "description": "How", "type": "list", "list": ["fast", "slow"], "optional": true}
      },
      "output": {},
      "display": "ok",
      "description": "Count packages"
    }
  ]
}"#;

#[test]
fn choria_package_ddl_parses_and_validates() {
    let ddl = Ddl::from_json(PACKAGE_DDL).expect("Choria's layout");
    assert_eq!(ddl.metadata.name, "package");
    assert_eq!(ddl.metadata.timeout, 180);
    assert_eq!(ddl.action_names(), ["install", "status", "count"]);
    let status = ddl.action("status").unwrap();
    assert_eq!(status.input["package"].kind, InputType::String);
    assert_eq!(
        status.input["package"].validation.as_deref(),
        Some("shellsafe")
    );
    assert_eq!(status.aggregate[1].function, "boolean_summary");

    // (action, inputs, the inputs after conversion or the status and a fragment)
    type Case = (
        &'static str,
        Value,
        Result<Value, (StatusCode, &'static str)>,
    );
    let cases: &[Case] = &[
        (
            "install",
            json!({"package": "vim"}),
            Ok(json!({"package": "vim"})),
        ),
        (
            "install",
            json!({"package": "vim", "version": "2:9.0"}),
            Ok(json!({"package": "vim", "version": "2:9.0"})),
        ),
        (
            "install",
            json!({}),
            Err((
                StatusCode::MissingData,
                "missing required input \"package\"",
            )),
        ),
        (
            "install",
            json!({"package": "vim; rm -rf /"}),
            Err((
                StatusCode::InvalidData,
                "input \"package\" failed validation shellsafe: \"vim; rm -rf /\"",
            )),
        ),
        (
            "install",
            json!({"package": "v".repeat(91)}),
            Err((StatusCode::InvalidData, "91 characters")),
        ),
        (
            "status",
            json!({"package": "vim", "version": "1"}),
            Err((
                StatusCode::InvalidData,
                "unknown input \"version\" (known: package)",
            )),
        ),
        (
            "count",
            json!({"limit": "3", "all": "yes", "mode": "fast"}),
            Ok(json!({"limit": 3, "all": true, "mode": "fast"})),
        ),
        (
            "count",
            json!({"mode": "fast,slow"}),
            Err((StatusCode::InvalidData, "must be one of fast, slow")),
        ),
        ("count", json!({}), Ok(json!({"limit": 10}))),
        (
            "count",
            json!({"pattern": "lib*"}),
            Ok(json!({"pattern": "lib*", "limit": 10})),
        ),
        (
            "count",
            json!({"pattern": "Lib"}),
            Err((StatusCode::InvalidData, "failed validation ^[a-z*]+$")),
        ),
        (
            "count",
            json!({"limit": "ten"}),
            Err((
                StatusCode::InvalidData,
                "input \"limit\" must be an integer, got \"ten\"",
            )),
        ),
        (
            "purge",
            json!({}),
            Err((StatusCode::UnknownAction, "unknown action \"purge\"")),
        ),
    ];
    for (action, given, expect) in cases {
        let mut data = object(given.clone());
        match (ddl.validate(action, &mut data), expect) {
            (Ok(()), Ok(want)) => assert_eq!(&Value::Object(data), want, "{action} {given}"),
            (Err(e), Err((code, fragment))) => {
                assert_eq!(e.code, *code, "{action} {given}: {e}");
                assert!(e.message.contains(fragment), "{action} {given}: {e}");
            }
            (got, want) => panic!("{action} {given}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn aggregates_over_sample_replies() {
    let ddl = Ddl::from_json(PACKAGE_DDL).unwrap();
    let status = ddl.action("status").unwrap();
    let replies = [
        json!({"ensure": "1.2.3", "status": true, "size": 100}),
        json!({"ensure": "1.2.3", "status": true, "size": "200"}),
        json!({"ensure": "1.2.4", "status": false, "size": 300.5}),
        json!({"ensure": "1.2.3", "status": "true", "size": "big"}),
        json!({"ensure": "10.0", "status": "unknown", "size": null}),
        json!({"ensure": "1.2.4"}),
        json!("not an object"),
    ];
    let replies: Vec<&Value> = replies.iter().collect();
    let summaries = aggregate::compute(status, &replies);
    // percentile is unknown: skipped.
    let functions: Vec<&str> = summaries.iter().map(|s| s.function.as_str()).collect();
    assert_eq!(functions, ["summary", "boolean_summary", "sum", "average"]);

    let versions = &summaries[0];
    assert_eq!(versions.output, "ensure");
    assert_eq!(versions.display_as, "Ensure");
    assert_eq!(
        versions.result,
        SummaryResult::Counts(vec![
            ("1.2.3".into(), 3),
            ("1.2.4".into(), 2),
            ("10.0".into(), 1)
        ])
    );
    assert_eq!(
        versions.render(),
        "Summary of Ensure:\n\n   1.2.3 = 3\n   1.2.4 = 2\n    10.0 = 1"
    );

    let running = &summaries[1];
    assert_eq!(running.display_as, "Installed");
    assert_eq!(
        running.result,
        SummaryResult::Counts(vec![("Running".into(), 3), ("Stopped".into(), 1)])
    );
    assert_eq!(
        running.render(),
        "Summary of Installed:\n\n   Running = 3\n   Stopped = 1"
    );

    assert_eq!(summaries[2].result, SummaryResult::Number(600.5));
    assert_eq!(summaries[2].render(), "Summary of Size: 600.5");
    assert_eq!(summaries[3].result, SummaryResult::Number(600.5 / 3.0));
    assert_eq!(summaries[3].render(), "Summary of Size: 200.17");
}

#[test]
fn aggregate_rules() {
    let action = |aggregate: Value, output: Value| -> Action {
        serde_json::from_value(json!({"action": "a", "output": output, "aggregate": aggregate}))
            .unwrap()
    };
    let cases: &[(&str, Value, Vec<Value>, Vec<SummaryResult>)] = &[
        (
            "summary counts each list element",
            json!([{"function": "summary", "args": ["collectives"]}]),
            vec![
                json!({"collectives": ["a", "b"]}),
                json!({"collectives": ["a"]}),
            ],
            vec![SummaryResult::Counts(vec![
                ("a".into(), 2),
                ("b".into(), 1),
            ])],
        ),
        (
            "summary ties sorted by value",
            json!([{"function": "summary", "args": ["v"]}]),
            vec![
                json!({"v": "b"}),
                json!({"v": "a"}),
                json!({"v": 3}),
                json!({"v": true}),
            ],
            vec![SummaryResult::Counts(vec![
                ("3".into(), 1),
                ("a".into(), 1),
                ("b".into(), 1),
                ("true".into(), 1),
            ])],
        ),
        (
            "summary of nothing",
            json!([{"function": "summary", "args": ["v"]}]),
            vec![],
            vec![SummaryResult::Counts(vec![])],
        ),
        (
            "boolean_summary default labels",
            json!([{"function": "boolean_summary", "args": ["ok"]}]),
            vec![
                json!({"ok": false}),
                json!({"ok": false}),
                json!({"ok": true}),
            ],
            vec![SummaryResult::Counts(vec![
                ("false".into(), 2),
                ("true".into(), 1),
            ])],
        ),
        (
            "summary skips empty values (an absent package's arch)",
            json!([{"function": "summary", "args": ["arch"]}]),
            vec![
                json!({"arch": ""}),
                json!({"arch": ""}),
                json!({"arch": "x86_64"}),
            ],
            vec![SummaryResult::Counts(vec![("x86_64".into(), 1)])],
        ),
        (
            "boolean_summary skips non-booleans",
            json!([{"function": "boolean_summary", "args": ["ok", {"true": "Up", "false": "Down"}]}]),
            vec![json!({"ok": 7}), json!({"ok": "no"}), json!({})],
            vec![SummaryResult::Counts(vec![
                ("Down".into(), 1),
                ("Up".into(), 0),
            ])],
        ),
        (
            "sum skips non-numbers",
            json!([{"function": "sum", "args": ["n"]}]),
            vec![
                json!({"n": 1}),
                json!({"n": "2"}),
                json!({"n": "x"}),
                json!({"n": [3]}),
                json!({}),
            ],
            vec![SummaryResult::Number(3.0)],
        ),
        (
            "sum of nothing is zero",
            json!([{"function": "sum", "args": ["n"]}]),
            vec![],
            vec![SummaryResult::Number(0.0)],
        ),
        (
            "average counts numeric strings",
            json!([{"function": "average", "args": ["n"]}]),
            vec![json!({"n": 1}), json!({"n": "4"}), json!({"n": "x"})],
            vec![SummaryResult::Number(2.5)],
        ),
        (
            "average of nothing is skipped",
            json!([{"function": "average", "args": ["n"]}]),
            vec![json!({"n": "x"})],
            vec![],
        ),
        (
            "unknown function and missing args are skipped",
            json!([{"function": "median", "args": ["n"]}, {"function": "sum"}, {"function": "sum", "args": [5]}]),
            vec![json!({"n": 1})],
            vec![],
        ),
    ];
    for (rule, aggregate, replies, want) in cases {
        let action = action(aggregate.clone(), json!({}));
        let replies: Vec<&Value> = replies.iter().collect();
        let got: Vec<SummaryResult> = aggregate::compute(&action, &replies)
            .into_iter()
            .map(|s| s.result)
            .collect();
        assert_eq!(&got, want, "{rule}");
    }
    // Without a display name the output's name is shown.
    let plain = action(
        json!([{"function": "sum", "args": ["total"]}]),
        json!({"total": {"description": "t"}}),
    );
    let summary = &aggregate::compute(&plain, &[&json!({"total": 12345})])[0];
    assert_eq!(summary.display_as, "total");
    assert_eq!(summary.render(), "Summary of total: 12345");
}

#[test]
fn render_layouts() {
    let summary = |result| Summary {
        function: "summary".into(),
        output: "version".into(),
        display_as: "Version".into(),
        result,
        format: None,
    };
    let cases = [
        (
            summary(SummaryResult::Counts(vec![
                ("1.2.3".into(), 10),
                ("1.2.4".into(), 2),
            ])),
            "Summary of Version:\n\n   1.2.3 = 10\n   1.2.4 = 2",
        ),
        (
            summary(SummaryResult::Counts(vec![
                ("a".into(), 1),
                ("long".into(), 1),
            ])),
            "Summary of Version:\n\n      a = 1\n   long = 1",
        ),
        (
            summary(SummaryResult::Counts(vec![])),
            "Summary of Version:\n\n   No aggregate summary could be computed",
        ),
        (
            summary(SummaryResult::Number(12345.0)),
            "Summary of Version: 12345",
        ),
        (
            summary(SummaryResult::Number(2.5)),
            "Summary of Version: 2.5",
        ),
        (
            summary(SummaryResult::Number(1.0 / 3.0)),
            "Summary of Version: 0.33",
        ),
        (
            summary(SummaryResult::Number(0.0048)),
            "Summary of Version: 0.0048",
        ),
        (
            summary(SummaryResult::Number(0.000123456)),
            "Summary of Version: 0.00012",
        ),
        (
            summary(SummaryResult::Number(-0.004)),
            "Summary of Version: -0.004",
        ),
    ];
    for (summary, want) in cases {
        assert_eq!(summary.render(), want, "{:?}", summary.result);
    }
}

#[test]
fn hostile_ddls_give_errors_not_panics() {
    let garbage = [
        "",
        "not json",
        "{",
        "[]",
        "null",
        r#"{"actions": []}"#,
        r#"{"metadata": 5}"#,
        r#"{"metadata": {"name": "x"}, "actions": {}}"#,
        r#"{"metadata": {"name": "x"}, "actions": [{"action": 5}]}"#,
        r#"{"metadata": {"name": "x"}, "actions": [{"action": "a", "input": []}]}"#,
        r#"{"metadata": {"name": "x"}, "actions": [{"action": "a", "input": {"i": {"type": "widget"}}}]}"#,
        r#"{"metadata": {"name": "x"}, "actions": [{"action": "a", "input": {"i": {"type": "string", "maxlength": -1}}}]}"#,
        r#"{"metadata": {"name": "x"}, "actions": [{"action": "a", "input": {"i": {"type": "string", "maxlength": 1e400}}}]}"#,
        r#"{"metadata": {"name": "x"}, "actions": [{"action": "a", "input": {"i": {"type": "string", "optional": "yes"}}}]}"#,
        r#"{"metadata": {"name": "x", "timeout": "soon"}, "actions": []}"#,
    ];
    for text in garbage {
        assert!(Ddl::from_json(text).is_err(), "{text:?} parsed");
    }
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(Ddl::from_json(&deep).is_err());

    // Parses, but validating against it must fail cleanly.
    let hostile = Ddl::from_json(
        r#"{"metadata": {"name": "x"}, "actions": [{"action": "a", "input": {
            "bad_regex": {"type": "string", "optional": true, "validation": "([a-z"},
            "huge_regex": {"type": "string", "optional": true, "validation": "(\\w{1000}){1000}"},
            "huge_max": {"type": "string", "optional": true, "maxlength": 18446744073709551615},
            "star_regex": {"type": "string", "optional": true, "validation": "*"},
            "safe": {"type": "string", "optional": true, "validation": "shellsafe"}
        }}]}"#,
    )
    .expect("syntactically a DDL");
    let cases: &[(Value, Option<&str>)] = &[
        (
            json!({"bad_regex": "abc"}),
            Some("invalid validation regex \"([a-z\" in the DDL: unclosed character class"),
        ),
        (
            json!({"huge_regex": "abc"}),
            Some("invalid validation regex"),
        ),
        (json!({"huge_max": "a".repeat(10_000)}), None),
        (
            json!({"star_regex": "a,b"}),
            Some("invalid validation regex"),
        ),
        (
            json!({"safe": format!("{};", "x".repeat(1_000_000))}),
            Some("..."),
        ),
    ];
    for (given, error) in cases {
        let mut data = object(given.clone());
        let result = hostile.validate("a", &mut data);
        match (result, error) {
            (Ok(()), None) => {}
            (Err(e), Some(fragment)) => {
                assert_eq!(e.code, StatusCode::InvalidData);
                assert!(e.message.contains(fragment), "{:?}", e.message);
                assert!(e.message.len() < 1_000, "the message stays short");
            }
            (got, want) => panic!("{given:.60}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn validating_twice_changes_nothing() {
    // The client validates, then the node validates what it sent again.
    let ddl = Ddl::from_json(PACKAGE_DDL).unwrap();
    let mut data = object(json!({"limit": "3", "all": "no", "mode": "slow"}));
    ddl.validate("count", &mut data).unwrap();
    let once = data.clone();
    ddl.validate("count", &mut data).unwrap();
    assert_eq!(data, once);
}

#[test]
fn builtin_ddls_validate_their_own_defaults() {
    for name in ddl::builtin_names() {
        let ddl = ddl::builtin(name).expect("built in");
        for action in &ddl.actions {
            for (input, spec) in &action.input {
                if let Some(default) = &spec.default {
                    if default.is_null() {
                        continue;
                    }
                    let only: Action = Action {
                        input: [(input.clone(), spec.clone())].into(),
                        ..action.clone()
                    };
                    let mut data = Map::new();
                    only.validate(&mut data)
                        .unwrap_or_else(|e| panic!("{name} {} {input}: {e}", action.action));
                }
            }
        }
    }
}
