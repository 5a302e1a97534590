//! Facts and classes: what a node says about itself.

use std::path::PathBuf;

use serde_json::{Map, Value};

use crate::watched::{Source, Watched};

/// Fact files larger than this are refused rather than read into memory.
pub const MAX_FILE_BYTES: u64 = 16 << 20;

/// A node's facts: a JSON object, possibly nested.
pub type Facts = Source<Value>;
/// A node's classes, one name each.
pub type Classes = Source<Vec<String>>;

/// Facts read from YAML or JSON files, merged in order (a later file's
/// top-level keys win), re-read when they change.
pub fn fact_files(paths: Vec<PathBuf>) -> Result<Facts, String> {
    if paths.is_empty() {
        return Ok(Source::fixed(Value::Object(Map::new())));
    }
    Watched::new(paths, |paths| {
        let mut merged = Map::new();
        for path in paths {
            let text = read_limited(path)?;
            match parse_facts(&text) {
                Ok(Value::Object(map)) => merged.extend(map),
                Ok(Value::Null) => {}
                Ok(_) => return Err(format!("{}: facts must be a mapping of names to values", path.display())),
                Err(e) => return Err(format!("{}: {e}", path.display())),
            }
        }
        Ok(Value::Object(merged))
    })
    .map(Source::Files)
}

/// Parses a facts document: JSON, or YAML (of which JSON is nearly a subset).
pub fn parse_facts(text: &str) -> Result<Value, String> {
    if text.trim_start().starts_with('{') {
        if let Ok(value) = serde_json::from_str(text) {
            return Ok(value);
        }
    }
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_saphyr::from_str::<Value>(text).map_err(|e| e.to_string())
}

/// Classes from a classes file (one per line), re-read when it changes.
pub fn classes_file(path: Option<PathBuf>) -> Result<Classes, String> {
    match path {
        None => Ok(Source::fixed(Vec::new())),
        Some(path) => Watched::new(vec![path], |paths| {
            read_limited(&paths[0]).map(|text| parse_classes(&text))
        })
        .map(Source::Files),
    }
}

/// One class per line; blank lines and `#` comments are skipped.
pub fn parse_classes(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// Looks up a dotted path (`os.release.major`) in nested facts. A key
/// that itself contains dots (`ipaddress_eth0` never does, but some
/// custom facts do) is found too, because a literal key is tried first.
pub fn lookup(facts: &Value, path: &str) -> Option<Value> {
    if let Some(value) = facts.get(path) {
        return Some(value.clone());
    }
    let mut current = facts;
    for part in path.split('.') {
        current = match current {
            Value::Object(map) => map.get(part)?,
            Value::Array(items) => items.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(current.clone())
}

fn read_limited(path: &std::path::Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!(
            "{}: {} bytes is larger than the {} byte limit",
            path.display(),
            meta.len(),
            MAX_FILE_BYTES
        ));
    }
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn yaml_and_json_files_merge_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.yaml");
        let b = dir.path().join("b.json");
        std::fs::write(&a, "role: web\nos:\n  family: Debian\n  release: {major: '12'}\nmemory_mb: 2048\n").unwrap();
        std::fs::write(&b, r#"{"role": "db", "datacenter": "ams"}"#).unwrap();
        let facts = fact_files(vec![a, b]).unwrap().get();
        assert_eq!(facts["role"], "db");
        assert_eq!(facts["datacenter"], "ams");
        assert_eq!(facts["memory_mb"], 2048);
        assert_eq!(lookup(&facts, "os.family"), Some(json!("Debian")));
        assert_eq!(lookup(&facts, "os.release.major"), Some(json!("12")));
        assert_eq!(lookup(&facts, "os.nothing"), None);
    }

    #[test]
    fn broken_fact_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("list.yaml");
        std::fs::write(&list, "- a\n- b\n").unwrap();
        let err = fact_files(vec![list]).err().unwrap();
        assert!(err.contains("must be a mapping"), "{err}");

        let broken = dir.path().join("broken.yaml");
        std::fs::write(&broken, "a: [1, 2\n").unwrap();
        let err = fact_files(vec![broken.clone()]).err().unwrap();
        assert!(err.starts_with(&broken.display().to_string()), "{err}");

        let err = fact_files(vec![dir.path().join("missing.yaml")]).err().unwrap();
        assert!(err.contains("missing.yaml"), "{err}");
    }

    #[test]
    fn classes_skip_blanks_and_comments() {
        assert_eq!(parse_classes("httpd\n\n# x\n  redis  \n"), vec!["httpd", "redis"]);
    }

    #[test]
    fn lookup_reaches_into_lists_and_dotted_keys() {
        let facts = json!({"a": [{"b": 1}], "x.y": 2});
        assert_eq!(lookup(&facts, "a.0.b"), Some(json!(1)));
        assert_eq!(lookup(&facts, "x.y"), Some(json!(2)));
        assert_eq!(lookup(&facts, "a.9.b"), None);
    }
}
