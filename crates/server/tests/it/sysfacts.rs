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

/// Whether process `pid` has ended: gone from `/proc`, or a zombie waiting
/// for an init that does not reap (some container inits do not).
fn ended(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // "pid (comm) S ...": the state follows the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

#[test]
fn facter_timing_out_is_killed_with_everything_it_started() {
    use std::os::unix::fs::PermissionsExt;
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().expect("tempdir");
    let (script_pid, child_pid) = (dir.path().join("script.pid"), dir.path().join("child.pid"));
    let facter = dir.path().join("facter");
    std::fs::write(
        &facter,
        format!(
            "#!/bin/sh\nsleep 300 &\necho $! > '{}'\necho $$ > '{}'\nsleep 300\n",
            child_pid.display(),
            script_pid.display()
        ),
    )
    .expect("write the fake facter");
    std::fs::set_permissions(&facter, std::fs::Permissions::from_mode(0o755)).expect("chmod");

    let err = sysfacts::FacterSource::with_command(facter, vec!["-j".into()], Duration::ZERO)
        .timeout(Duration::from_secs(3))
        .get()
        .expect_err("it never answers");
    assert!(
        matches!(err, sysfacts::FacterError::TimedOut { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("timed out"), "{err}");

    let pid = |path: &std::path::Path| -> u32 {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
            panic!(
                "{}: the fake facter did not get to write it: {e}",
                path.display()
            )
        });
        text.trim()
            .parse()
            .unwrap_or_else(|e| panic!("{}: {text:?}: {e}", path.display()))
    };
    let pids = [pid(&script_pid), pid(&child_pid)];
    let until = Instant::now() + Duration::from_secs(20);
    while !pids.iter().all(|p| ended(*p)) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    for p in pids {
        assert!(ended(p), "process {p} is still running");
    }
}
