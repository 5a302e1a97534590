//! Custom applications, help, completions and man pages, through the real
//! `mco` binary: `mco-NAME` programs on a PATH set for the child, a
//! simulated fleet (`mco fleet`) on a test broker for `mco hello`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use muster_testkit::{stderr, stdout, BrokerKind, Caller, FleetProcess, TestBroker};

const MCO: &str = env!("CARGO_BIN_EXE_mco");
const APPS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/apps");

/// Runs `mco args` with `dirs` in front of PATH and no user config, bounded by 30 s.
async fn mco_with_path(dirs: &[&Path], args: &[&str]) -> Output {
    let mut path: Vec<std::path::PathBuf> = dirs.iter().map(|d| d.to_path_buf()).collect();
    path.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    let path = std::env::join_paths(path).expect("PATH");
    muster_testkit::run_mco_env(MCO, args, &[("PATH", path.as_os_str())]).await
}

async fn mco(args: &[&str]) -> Output {
    mco_with_path(&[], args).await
}

/// Writes an executable shell script `name` into `dir`.
fn script(dir: &Path, name: &str, body: &str) {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_from_path_greets_every_node() {
    let broker = TestBroker::start(BrokerKind::Embedded).await;
    let caller = Caller::new("tester");
    let config = caller.client_config(&broker.url()).display().to_string();
    let _fleet = FleetProcess::start(MCO, &broker.url(), &caller, 5).await;

    let apps = Path::new(APPS);
    // The config given before the name reaches the application as MCO_CONFIG.
    let hello = mco_with_path(&[apps], &["--config", &config, "hello"]).await;
    let text = stdout(&hello);
    assert!(hello.status.success(), "{text}{}", stderr(&hello));
    let greetings: Vec<&str> = text.lines().filter(|l| l.starts_with("Hello")).collect();
    assert_eq!(
        greetings,
        [
            "Hello, node01!",
            "Hello, node02!",
            "Hello, node03!",
            "Hello, node04!",
            "Hello, node05!"
        ],
        "{text}"
    );
    assert!(text.contains("5 nodes greeted"), "{text}");

    // Selectors are the application's arguments, passed through.
    let hello = mco_with_path(&[apps], &["--config", &config, "hello", "-F", "role=db"]).await;
    let text = stdout(&hello);
    assert!(hello.status.success(), "{text}{}", stderr(&hello));
    assert!(
        text.starts_with("Hello, node01!\n1 nodes greeted"),
        "{text}"
    );
}

#[tokio::test]
async fn external_applications_get_their_arguments_environment_and_exit_code() {
    let dir = tempfile::tempdir().expect("temp dir");
    script(
        dir.path(),
        "mco-env",
        "echo \"args=$*\"; echo \"bin=$MCO_BIN\"; echo \"config=$MCO_CONFIG\"; exit 3",
    );
    let out = mco_with_path(
        &[dir.path()],
        &["--config", "/etc/x.cfg", "env", "-I", "web1", "--json"],
    )
    .await;
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("args=-I web1 --json\n"), "{text}");
    assert!(text.contains("config=/etc/x.cfg\n"), "{text}");
    let bin = text
        .lines()
        .find_map(|l| l.strip_prefix("bin="))
        .unwrap_or_default();
    assert_eq!(
        std::fs::canonicalize(bin).ok(),
        std::fs::canonicalize(MCO).ok(),
        "{text}"
    );

    // Built-ins win over PATH.
    script(dir.path(), "mco-find", "echo shadowed; exit 7");
    let out = mco_with_path(&[dir.path()], &["find", "--help"]).await;
    assert!(out.status.success());
    assert!(!stdout(&out).contains("shadowed"));
}

#[tokio::test]
async fn help_lists_built_in_and_external_applications() {
    let dir = tempfile::tempdir().expect("temp dir");
    script(dir.path(), "mco-ping", "exit 0");
    script(dir.path(), "mco-zzz", "exit 0");
    std::fs::write(dir.path().join("mco-notexecutable"), "").expect("write");
    let out = mco_with_path(&[Path::new(APPS), dir.path()], &["help"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for builtin in [
        "ping",
        "rpc",
        "find",
        "facts",
        "inventory",
        "completion",
        "man",
        "help",
    ] {
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with(&format!("{builtin} "))),
            "{builtin} not listed in\n{text}"
        );
    }
    // External applications are listed by name, like built-ins; the path
    // is not what an operator types.
    let hello = text
        .lines()
        .find(|l| l.trim_start().starts_with("hello "))
        .unwrap_or_else(|| panic!("hello not listed in\n{text}"));
    assert!(
        hello.ends_with("external application (mco-hello)"),
        "{hello}"
    );
    assert!(!hello.contains('/'), "{hello}");
    assert!(text.contains("external application (mco-zzz)"), "{text}");
    assert!(!text.contains("(mco-ping)"), "{text}");
    assert!(!text.contains("notexecutable"), "{text}");
    // Sorted, one line each.
    let names: Vec<&str> = text
        .lines()
        .skip_while(|l| *l != "Applications:")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(|l| l.split_whitespace().next().unwrap_or(""))
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);

    // mco help APP: the built-in's usage with examples, or the program's --help.
    let out = mco(&["help", "rpc"]).await;
    let text = stdout(&out);
    assert!(out.status.success());
    assert!(
        text.contains("Usage: mco rpc [OPTIONS] <AGENT> <ACTION>"),
        "{text}"
    );
    assert!(text.contains("Examples:\n  mco rpc rpcutil ping"), "{text}");
    let out = mco_with_path(&[Path::new(APPS)], &["help", "hello"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("Usage: mco hello"),
        "{}",
        stdout(&out)
    );
    let out = mco(&["help", "puppet", "runall"]).await;
    assert!(
        stdout(&out).contains("Usage: mco puppet runall"),
        "{}",
        stdout(&out)
    );

    // Every client application's own --help has examples.
    for app in [
        "ping",
        "rpc",
        "find",
        "facts",
        "inventory",
        "package",
        "service",
        "puppet",
        "filemgr",
        "plugin",
    ] {
        let out = mco(&[app, "--help"]).await;
        assert!(out.status.success(), "{app}");
        let text = stdout(&out);
        assert!(text.contains(&format!("Usage: mco {app}")), "{text}");
        assert!(text.contains(&format!("Examples:\n  mco {app}")), "{text}");
    }
}

#[tokio::test]
async fn an_unknown_application_is_a_usage_error_with_suggestions() {
    let out = mco(&["nosuchapp", "x"]).await;
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("\"nosuchapp\" is not an mco application"),
        "{err}"
    );
    assert!(err.contains("no mco-nosuchapp on PATH"), "{err}");
    assert!(err.contains("mco help"), "{err}");

    let out = mco(&["pnig"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("Similar applications: ping"),
        "{}",
        stderr(&out)
    );
    let out = mco(&["help", "nosuchapp"]).await;
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test]
async fn completion_scripts_for_each_shell() {
    let dir = tempfile::tempdir().expect("temp dir");
    for shell in ["bash", "zsh", "fish"] {
        let out = mco(&["completion", shell]).await;
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let text = stdout(&out);
        assert!(text.len() > 1000, "{shell}: {text}");
        assert!(text.contains("mco"), "{shell}");
        for agent in ["rpcutil", "package", "service", "filemgr", "puppet"] {
            assert!(text.contains(agent), "{shell}: no {agent}");
        }
        let file = dir.path().join(format!("mco.{shell}"));
        std::fs::write(&file, &text).expect("write script");
        // Syntax, where the shell is installed (bash always is).
        let checked = Command::new(shell).arg("-n").arg(&file).output();
        match checked {
            Ok(result) => assert!(result.status.success(), "{shell} -n: {}", stderr(&result)),
            Err(_) => assert_ne!(shell, "bash", "bash is missing"),
        }
    }

    // bash, as the shell calls it: agents, then the agent's actions.
    let script = dir.path().join("mco.bash");
    let probe = format!(
        r#"source {}
t() {{ COMP_WORDS=("$@"); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 )); COMPREPLY=()
     _mco_ddl mco "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"; echo "${{COMPREPLY[*]}}"; }}
t mco rpc ""
t mco rpc -I node1 rpcutil get_
t mco --config c.cfg rpc -F role=db service st
t mco plugin doc p
t mco pin
"#,
        script.display()
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(probe)
        .output()
        .expect("run bash");
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    assert_eq!(
        lines,
        [
            "filemgr package puppet rpcutil service",
            "get_config_item get_data get_fact get_facts",
            "start status stop",
            "package puppet",
            "ping",
        ],
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn man_pages_from_the_command_line_definition() {
    let out = mco(&["man"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let header = text.lines().take(5).find(|l| l.starts_with(".TH"));
    assert_eq!(
        header.map(|h| h.split_whitespace().take(3).collect::<Vec<_>>()),
        Some(vec![".TH", "mco", "1"]),
        "{text}"
    );
    assert!(text.contains(".SH NAME"), "{text}");

    let dir = tempfile::tempdir().expect("temp dir");
    let out = mco(&["man", "--out", &dir.path().display().to_string()]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    for page in ["mco.1", "mco-rpc.1", "mco-ping.1", "mco-puppet-runall.1"] {
        let path = dir.path().join(page);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains(".TH"), "{page}");
        assert!(stdout(&out).contains(&path.display().to_string()), "{page}");
    }
}
