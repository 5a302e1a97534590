//! rpcutil's `get_config_item` on a node built from a `server.cfg`, through
//! `Node::handle` so the DDL's input checks run as in production.

use muster_protocol::config::Config;
use muster_protocol::StatusCode;
use muster_server::{Node, ServerConfig};
use serde_json::{json, Value};

/// Asks a node built from `settings` (as `mco server` builds it).
async fn ask(settings: &str, inputs: Value) -> muster_protocol::Reply {
    let text = format!("identity = node01\n{settings}\n");
    let config = Config::parse(&text).expect("valid settings");
    let config = ServerConfig::from_config(&config).expect("valid settings");
    let pki = muster_testkit::TestPki::shared();
    let node = Node::from_config(&config, pki.authority()).expect("a node");
    let caller = pki.credential("alice.mcollective");
    muster_testkit::ask(&node, &caller, "rpcutil", "get_config_item", inputs).await
}

const SETTINGS: &str = "plugin.security.max_ttl = 120\n\
     plugin.package.provider = apt\n\
     plugin.rpcaudit.redact_defaults = no\n\
     collectives = mcollective, eu_collective\n\
     plugin.nats.servers = nats://ops:hunter2@broker1:4222\n\
     plugin.nats.user = ops\n\
     plugin.nats.password = hunter2";

#[tokio::test]
async fn get_config_item_answers_the_effective_setting_typed_by_its_kind() {
    for (item, value) in [
        ("plugin.security.max_ttl", json!(120)),
        ("plugin.package.provider", json!("apt")),
        ("plugin.rpcaudit.redact_defaults", json!(false)),
        ("collectives", json!(["mcollective", "eu_collective"])),
        ("identity", json!("node01")),
        // Not set: the default the daemon uses.
        ("plugin.security.replay_cache_size", json!(100000)),
        ("plugin.actionpolicy.enable_default", json!(false)),
    ] {
        let reply = ask(SETTINGS, json!({ "item": item })).await;
        assert_eq!(reply.statuscode, StatusCode::Ok, "{item}: {reply:?}");
        assert_eq!(reply.data["item"], item);
        assert_eq!(reply.data["value"], value, "{item}");
    }
}

#[tokio::test]
async fn get_config_item_never_reveals_a_secret() {
    let token = "plugin.nats.token = tok-hunter2";
    for (settings, item) in [
        (SETTINGS, "plugin.nats.password"),
        (SETTINGS, "plugin.nats.servers"),
        (token, "plugin.nats.token"),
    ] {
        let reply = ask(settings, json!({ "item": item })).await;
        assert_eq!(reply.statuscode, StatusCode::Ok, "{item}: {reply:?}");
        let shown = reply.data["value"].to_string();
        assert!(!shown.contains("hunter2"), "{item}: {shown}");
        assert!(shown.contains("[redacted]"), "{item}: {shown}");
    }
    let reply = ask(SETTINGS, json!({ "item": "plugin.nats.servers" })).await;
    assert_eq!(reply.data["value"], "nats://ops:[redacted]@broker1:4222");
}

#[tokio::test]
async fn get_config_item_refuses_what_the_server_does_not_read() {
    let reply = ask(SETTINGS, json!({ "item": "plugin.nosuch.setting" })).await;
    assert_eq!(reply.statuscode, StatusCode::Aborted, "{reply:?}");
    assert!(reply.statusmsg.contains("unknown config item"), "{reply:?}");
    // A client setting: the server has no value for it.
    let reply = ask(SETTINGS, json!({ "item": "ttl" })).await;
    assert_eq!(reply.statuscode, StatusCode::Aborted, "{reply:?}");
    assert!(reply.statusmsg.contains("client.cfg"), "{reply:?}");
    let reply = ask(SETTINGS, json!({})).await;
    assert_eq!(reply.statuscode, StatusCode::MissingData, "{reply:?}");
}
