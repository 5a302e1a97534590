//! Node lists for `--nodes FILE` and `--nodes -`, so one `mco` command's
//! output can pick the next one's nodes (request chaining):
//!
//! ```text
//! mco rpc rpcutil get_fact fact=role -F role=web --json | mco rpc service restart service=nginx --nodes -
//! ```
//!
//! The format is told from the content: muster's `--json` document (its
//! replies' `sender`), `--jsonl` lines (each reply's `sender`; the
//! statistics line is skipped), a JSON array of identities (`mco find
//! --json`) or of node records (`mco inventory --json`), or plain
//! identities one per line (`#` comments allowed). Every identity is
//! checked, and anything that is not one is an error naming its line:
//! nothing is sent to a JSON fragment taken for a node name.

use serde_json::Value;

use muster_protocol::subject;

/// Why a node list cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum NodeListError {
    /// A line is neither an identity nor a reply.
    #[error("{source_name} line {line}: {text:?} is not a valid identity")]
    BadIdentity {
        /// The file, or "stdin".
        source_name: String,
        /// Counted from 1.
        line: usize,
        /// The line, trimmed.
        text: String,
    },
    /// A JSON document or line that does not say who sent a reply.
    #[error("{source_name} line {line}: {reason}")]
    BadJson {
        /// The file, or "stdin".
        source_name: String,
        /// Counted from 1.
        line: usize,
        /// What is wrong there.
        reason: String,
    },
}

/// The identities in `text`, in order, whatever the format (see the
/// module docs); `source_name` names the input in errors.
pub fn parse_node_list(text: &str, source_name: &str) -> Result<Vec<String>, NodeListError> {
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'));
    match first {
        None => Ok(Vec::new()),
        Some(line) if line.starts_with('[') || line == "{" => document(text, source_name),
        Some(line) if line.starts_with('{') => json_lines(text, source_name),
        Some(_) => plain(text, source_name),
    }
}

/// Identities one per line; blank lines and `#` comments are skipped.
pub(crate) fn plain(text: &str, source_name: &str) -> Result<Vec<String>, NodeListError> {
    let mut nodes = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line
            .split_once('#')
            .map_or(line, |(before, _)| before)
            .trim();
        if line.is_empty() {
            continue;
        }
        if !subject::is_valid_name(line) {
            return Err(NodeListError::BadIdentity {
                source_name: source_name.to_string(),
                line: index + 1,
                text: line.to_string(),
            });
        }
        nodes.push(line.to_string());
    }
    Ok(nodes)
}

/// One JSON document: `{"replies": [...]}` or an array of identities or
/// records.
fn document(text: &str, source_name: &str) -> Result<Vec<String>, NodeListError> {
    let bad = |line: usize, reason: String| NodeListError::BadJson {
        source_name: source_name.to_string(),
        line,
        reason,
    };
    let value: Value = serde_json::from_str(text).map_err(|e| bad(e.line(), e.to_string()))?;
    let items = match &value {
        Value::Array(items) => items,
        Value::Object(doc) => match doc.get("replies") {
            Some(Value::Array(replies)) => replies,
            _ => return Err(bad(1, "a JSON object without a \"replies\" array".into())),
        },
        _ => return Err(bad(1, "neither a JSON array nor a reply document".into())),
    };
    let mut nodes = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let name = match item {
            Value::String(name) => Some(name.as_str()),
            Value::Object(o) => o
                .get("sender")
                .or_else(|| o.get("identity"))
                .and_then(Value::as_str),
            _ => None,
        };
        match name {
            Some(name) if subject::is_valid_name(name) => nodes.push(name.to_string()),
            _ => {
                return Err(bad(
                    line_of(text, name),
                    format!("item {} has no valid sender or identity: {item}", index + 1),
                ))
            }
        }
    }
    Ok(nodes)
}

/// The line where `name` (as JSON) first appears, to point a person at
/// the bad item; the first line when it cannot be found.
fn line_of(text: &str, name: Option<&str>) -> usize {
    let Some(quoted) = name.and_then(|n| serde_json::to_string(n).ok()) else {
        return 1;
    };
    text.find(&quoted)
        .map_or(1, |at| text[..at].matches('\n').count() + 1)
}

/// `--jsonl`: one reply object per line, then a statistics line.
fn json_lines(text: &str, source_name: &str) -> Result<Vec<String>, NodeListError> {
    let mut nodes = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let bad = |reason: String| NodeListError::BadJson {
            source_name: source_name.to_string(),
            line: index + 1,
            reason,
        };
        let value: Value = serde_json::from_str(line)
            .map_err(|e| bad(format!("not a JSON reply line ({e}): {line:?}")))?;
        if value.get("statistics").is_some() {
            continue;
        }
        match value.get("sender").and_then(Value::as_str) {
            Some(name) if subject::is_valid_name(name) => nodes.push(name.to_string()),
            _ => return Err(bad(format!("a JSON line without a valid sender: {line}"))),
        }
    }
    Ok(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_identities_with_comments() {
        let nodes = parse_node_list("# web\nweb1\n\n web2  # the other\n", "f").unwrap();
        assert_eq!(nodes, ["web1", "web2"]);
        assert!(parse_node_list("", "f").unwrap().is_empty());
    }

    #[test]
    fn a_json_document_gives_its_senders() {
        let doc = r#"{
  "agent": "rpcutil",
  "replies": [
    {"sender": "web1", "statuscode": 0, "data": {"value": "web"}},
    {"sender": "web2", "statuscode": 0, "data": {"value": "web"}}
  ],
  "statistics": {"responded": 2}
}"#;
        assert_eq!(parse_node_list(doc, "stdin").unwrap(), ["web1", "web2"]);
    }

    #[test]
    fn json_lines_give_their_senders_and_skip_statistics() {
        let lines = "{\"sender\":\"web1\",\"data\":{}}\n{\"sender\":\"web2\",\"data\":{}}\n\
                     {\"statistics\":{\"responded\":2}}\n";
        assert_eq!(parse_node_list(lines, "stdin").unwrap(), ["web1", "web2"]);
    }

    #[test]
    fn arrays_of_names_or_records() {
        let find = "[\n  \"db1\",\n  \"web1\"\n]\n";
        assert_eq!(parse_node_list(find, "f").unwrap(), ["db1", "web1"]);
        let inventory = r#"[{"identity": "db1", "facts": {}}, {"identity": "web1"}]"#;
        assert_eq!(parse_node_list(inventory, "f").unwrap(), ["db1", "web1"]);
    }

    #[test]
    fn fragments_and_garbage_name_their_line() {
        let fragment = "web1\n\"replies\": [\nweb2\n";
        let e = parse_node_list(fragment, "stdin").unwrap_err().to_string();
        assert!(e.contains("stdin line 2"), "{e}");
        let bad_line = "{\"sender\":\"web1\"}\nnot json\n";
        let e = parse_node_list(bad_line, "stdin").unwrap_err().to_string();
        assert!(e.contains("stdin line 2"), "{e}");
        let no_sender = "{\"sender\":\"web1\"}\n{\"data\":{}}\n";
        let e = parse_node_list(no_sender, "f").unwrap_err().to_string();
        assert!(e.contains("f line 2"), "{e}");
        let bad_sender = "[\n  \"web1\",\n  \"a b\"\n]";
        let e = parse_node_list(bad_sender, "f").unwrap_err().to_string();
        assert!(e.contains("f line 3"), "{e}");
        let broken = "{\n  \"replies\": [\n";
        let e = parse_node_list(broken, "f").unwrap_err().to_string();
        assert!(e.contains("f line"), "{e}");
    }
}
