//! docs/configuration.md against the key table the code reads, in both
//! directions, and every config example in README.md and docs/ against
//! the checker.

use std::collections::BTreeMap;
use std::path::PathBuf;

use muster_protocol::config::{Config, ConfigFile, KEYS};

fn repo_file(path: &str) -> String {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path);
    std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// Rows of the reference's key tables (header `| key | file | default |`):
/// key -> (file, default), backticks dropped, `*unset*` as empty.
fn documented_keys() -> BTreeMap<String, (String, String)> {
    let doc = repo_file("docs/configuration.md");
    let mut keys = BTreeMap::new();
    let mut in_table = false;
    for line in doc.lines() {
        if line.starts_with("| key | file | default |") {
            in_table = true;
            continue;
        }
        if !line.starts_with('|') {
            in_table = false;
            continue;
        }
        if !in_table || line.starts_with("| ---") {
            continue;
        }
        let cells: Vec<String> = line
            .trim_matches('|')
            .split(" | ")
            .map(|c| c.trim().replace('`', ""))
            .collect();
        let default = if cells[2] == "*unset*" {
            String::new()
        } else {
            cells[2].clone()
        };
        let previous = keys.insert(cells[0].clone(), (cells[1].clone(), default));
        assert!(previous.is_none(), "{} is documented twice", cells[0]);
    }
    keys
}

#[test]
fn every_key_read_is_documented_and_every_documented_key_is_read() {
    let documented = documented_keys();
    for key in KEYS {
        let Some((file, default)) = documented.get(key.name) else {
            panic!("{} is read but not in docs/configuration.md", key.name);
        };
        assert_eq!(file, key.files.name(), "{}: file column", key.name);
        assert_eq!(default, key.default, "{}: default column", key.name);
    }
    for name in documented.keys() {
        assert!(
            KEYS.iter().any(|k| k.name == name),
            "docs/configuration.md documents {name}, which nothing reads"
        );
    }
}

#[test]
fn the_keys_being_added_elsewhere_are_in_the_table() {
    for name in [
        "soft_shutdown_timeout",
        "log_format",
        "plugin.prometheus.listen",
    ] {
        assert!(KEYS.iter().any(|k| k.name == name), "{name}");
    }
}

/// Fenced blocks made only of comments and `key = value` lines whose keys
/// look like settings: the config examples.
fn config_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            match current.take() {
                Some(lines) => blocks.push(lines.join("\n")),
                None => current = Some(Vec::new()),
            }
            continue;
        }
        if let Some(lines) = &mut current {
            lines.push(line);
        }
    }
    blocks
        .into_iter()
        .filter(|block| {
            let settings: Vec<&str> = block
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .collect();
            !settings.is_empty()
                && settings.iter().all(|l| {
                    l.split_once(" = ").is_some_and(|(k, _)| {
                        k.chars()
                            .all(|c| c.is_ascii_lowercase() || c == '_' || c == '.')
                    })
                })
        })
        .collect()
}

#[test]
fn config_examples_in_readme_and_docs_load_without_errors() {
    let mut files = vec!["README.md".to_string()];
    let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs");
    for entry in std::fs::read_dir(&docs).expect("docs/") {
        let name = entry.expect("docs entry").file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".md") {
            files.push(format!("docs/{name}"));
        }
    }
    let mut checked = 0;
    for file in files {
        for block in config_blocks(&repo_file(&file)) {
            let config = Config::parse_named(&block, &file)
                .unwrap_or_else(|e| panic!("{e}\nin the example:\n{block}"));
            let usable = [ConfigFile::Server, ConfigFile::Client]
                .into_iter()
                .map(|f| config.check(f))
                .find(|report| report.errors.is_empty());
            assert!(
                usable.is_some(),
                "{file}: an example has errors: {:?}\n{block}",
                config.check(ConfigFile::Server).errors
            );
            checked += 1;
        }
    }
    assert!(checked >= 4, "only {checked} examples found");
}
