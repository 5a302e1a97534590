//! The built-in facts and data plugins as the rest of the server sees them.

use muster_server::{data, sysfacts};

#[test]
fn gathered_facts_carry_structured_and_legacy_names() {
    let facts = sysfacts::gather("node01");
    if std::env::var_os("MUSTER_SHOW_FACTS").is_some() {
        println!("{facts:#}");
    }
    assert_eq!(facts["identity"], "node01");
    assert_eq!(facts["os"]["family"], facts["osfamily"]);
    assert_eq!(facts["os"]["name"], facts["operatingsystem"]);
    assert_eq!(facts["processors"]["count"], facts["processorcount"]);
    assert_eq!(
        facts["system_uptime"]["seconds"].is_u64(),
        facts["uptime_seconds"].is_u64()
    );
    let interfaces = facts["interfaces"].as_str().unwrap_or_default();
    assert!(interfaces.split(',').any(|i| i == "lo"), "{interfaces}");
    assert_eq!(facts["ipaddress_lo"], "127.0.0.1");
    if let Some(primary) = facts["networking"]["primary"].as_str() {
        assert_eq!(
            facts["networking"]["ip"],
            facts["networking"]["interfaces"][primary]["ip"]
        );
        assert_eq!(facts["ipaddress"], facts["networking"]["ip"]);
    }
}

#[test]
fn data_plugins_answer_for_real_files() {
    let hosts = data::fstat("/etc/hosts").expect("fstat");
    assert_eq!(hosts["type"], "file");
    assert!(hosts["size"].as_u64() > Some(0));
    assert_eq!(hosts["md5"].as_str().map(str::len), Some(32));
    assert_eq!(
        data::sysctl("kernel.ostype").expect("sysctl")["value"],
        "Linux"
    );
    assert_eq!(
        data::process("no-such-daemon-here").expect("process")["exists"],
        false
    );
}
