//! PuppetDB discovery (`--dm puppetdb`): the filter as a PQL query against
//! `/pdb/query/v4`, answered by PuppetDB instead of the fleet.
//!
//! PuppetDB knows what Puppet last stored about each node: its facts and its
//! catalog's classes. So identities (`-I`, also raw PQL as
//! `-I 'pql:nodes[certname] { ... }'`), facts (`-F`), classes (`-C`) and the
//! collective (from a fact, Choria's `mcollective.server.collectives` by
//! default) translate; agents (`-A`) and compound filters (`-S`, data plugins)
//! do not and are refused. PuppetDB's `nodes` endpoint leaves out deactivated
//! and expired nodes.
//!
//! ```
//! use muster_client::puppetdb::query;
//! use muster_protocol::Filter;
//! let filter = Filter::default().fact("os.family=RedHat").unwrap().class("httpd").unwrap();
//! assert_eq!(
//!     query(&filter, "mcollective", None).unwrap(),
//!     "nodes[certname] { (certname in inventory[certname] { facts.os.family = \"RedHat\" }) \
//!      and (certname in resources[certname] { type = \"Class\" and (title = \"Httpd\") }) }"
//! );
//! ```

use std::time::Duration;

use muster_protocol::{Filter, Op, Pattern};
use serde_json::Value;

/// Where PuppetDB is when `plugin.puppetdb.url` does not say: Choria's default.
pub const DEFAULT_URL: &str = "https://puppet:8081";

/// The fact holding a node's collectives unless
/// `plugin.puppetdb.collectives_fact` names another (Choria's).
pub const DEFAULT_COLLECTIVES_FACT: &str = "mcollective.server.collectives";

/// The most of PuppetDB's answer read (a million certnames fit).
const MAX_ANSWER_BYTES: usize = 64 << 20;

/// How much of an error body is shown.
const MAX_MESSAGE_CHARS: usize = 2000;

/// A PuppetDB to ask, as client.cfg describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct PuppetDb {
    /// `plugin.puppetdb.url`: `https://host:8081` (Puppet certificates) or
    /// `http://host:8080`.
    pub url: String,
    /// `plugin.puppetdb.timeout`: how long the query may take; unset, the
    /// discovery timeout applies.
    pub timeout: Option<Duration>,
    /// The fact listing a node's collectives; `None` does not filter by
    /// collective (`plugin.puppetdb.collectives_fact = none`).
    pub collectives_fact: Option<String>,
    /// The caller's certificate, key and CA, presented to an `https://`
    /// PuppetDB (its `plugin.security.*` settings).
    pub tls: Option<muster_pki::Settings>,
}

impl Default for PuppetDb {
    fn default() -> Self {
        PuppetDb {
            url: DEFAULT_URL.to_string(),
            timeout: None,
            collectives_fact: Some(DEFAULT_COLLECTIVES_FACT.to_string()),
            tls: None,
        }
    }
}

/// Why PuppetDB discovery failed.
#[derive(Debug, thiserror::Error)]
pub enum PuppetDbError {
    /// A selector PQL cannot express.
    #[error("PuppetDB discovery cannot answer {what}: it knows identities (-I, also -I 'pql:...'), facts (-F), classes (-C) and collectives (-T); use --dm broadcast")]
    Unsupported {
        /// The selector, as the user would name it.
        what: String,
    },
    /// `plugin.puppetdb.url` is not an `http://` or `https://` URL.
    #[error("plugin.puppetdb.url {url:?} is not an http:// or https:// URL")]
    Url {
        /// The URL.
        url: String,
    },
    /// The certificates for an `https://` PuppetDB could not be loaded.
    #[error("cannot use the client certificate for PuppetDB at {url}")]
    Tls {
        /// The URL.
        url: String,
        /// Why.
        #[source]
        source: muster_pki::PkiError,
    },
    /// The HTTP client could not be set up.
    #[error("cannot set up the HTTP client for PuppetDB at {url}")]
    Client {
        /// The URL.
        url: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// No answer: refused, TLS failed, connection dropped.
    #[error("cannot query PuppetDB at {url}")]
    Unreachable {
        /// The URL.
        url: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// No complete answer in time.
    #[error("PuppetDB at {url} did not answer within {} s (plugin.puppetdb.timeout, else --dt)", timeout.as_secs_f64())]
    Timeout {
        /// The URL.
        url: String,
        /// How long it was given.
        timeout: Duration,
    },
    /// An HTTP error status, with PuppetDB's message (a PQL syntax error,
    /// say).
    #[error("PuppetDB at {url} refused the query ({status}): {message}\nquery: {query}")]
    Status {
        /// The URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// PuppetDB's message.
        message: String,
        /// The PQL sent.
        query: String,
    },
    /// An answer that is not a JSON list of records with certnames.
    #[error("PuppetDB at {url} answered something that is not a list of nodes: {reason}")]
    Garbage {
        /// The URL.
        url: String,
        /// What was wrong.
        reason: String,
    },
}

impl PuppetDb {
    /// The nodes PuppetDB selects for `filter` in `collective`, unsorted.
    /// `timeout` applies when `plugin.puppetdb.timeout` is not set.
    pub async fn discover(
        &self,
        filter: &Filter,
        collective: &str,
        timeout: Duration,
    ) -> Result<Vec<String>, PuppetDbError> {
        let pql = query(filter, collective, self.collectives_fact.as_deref())?;
        let timeout = self.timeout.unwrap_or(timeout);
        let base = self.url.trim_end_matches('/');
        let https = if base.starts_with("https://") {
            true
        } else if base.starts_with("http://") {
            false
        } else {
            return Err(PuppetDbError::Url {
                url: self.url.clone(),
            });
        };
        let url = base.to_string();
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .no_proxy();
        if https {
            let tls = self.tls.clone().unwrap_or_else(|| muster_pki::Settings {
                ssldir: muster_pki::Ssldir::new(crate::default_dir().join("ssl")),
                certname: format!(
                    "{}{}",
                    crate::user_name(),
                    muster_protocol::identity::CALLER_SUFFIX
                ),
            });
            let config = tls
                .load()
                .and_then(|identity| identity.client_tls())
                .map_err(|source| PuppetDbError::Tls {
                    url: url.clone(),
                    source,
                })?;
            builder = builder.use_preconfigured_tls((*config).clone());
        }
        let client = builder.build().map_err(|source| PuppetDbError::Client {
            url: url.clone(),
            source,
        })?;
        let ask = async {
            let response = client
                .get(format!("{base}/pdb/query/v4"))
                .query(&[("query", pql.as_str())])
                .header("Accept", "application/json")
                .send()
                .await?;
            let status = response.status();
            let body = read_limited(response).await?;
            Ok::<_, reqwest::Error>((status, body))
        };
        let (status, body) = match tokio::time::timeout(timeout, ask).await {
            Err(_) => return Err(PuppetDbError::Timeout { url, timeout }),
            Ok(Err(e)) if e.is_timeout() => return Err(PuppetDbError::Timeout { url, timeout }),
            Ok(Err(source)) => return Err(PuppetDbError::Unreachable { url, source }),
            Ok(Ok(answer)) => answer,
        };
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body);
            let mut message: String = text.trim().chars().take(MAX_MESSAGE_CHARS).collect();
            if message.is_empty() {
                message = status
                    .canonical_reason()
                    .unwrap_or("no message")
                    .to_string();
            }
            return Err(PuppetDbError::Status {
                url,
                status: status.as_u16(),
                message,
                query: pql,
            });
        }
        certnames(&body).map_err(|reason| PuppetDbError::Garbage { url, reason })
    }
}

/// The body, or an error once it passes [`MAX_ANSWER_BYTES`].
async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_ANSWER_BYTES {
            body.truncate(MAX_ANSWER_BYTES);
            break;
        }
    }
    Ok(body)
}

/// The certnames in a `/pdb/query/v4` answer.
fn certnames(body: &[u8]) -> Result<Vec<String>, String> {
    let shown = || {
        let text = String::from_utf8_lossy(body);
        let text: String = text.trim().chars().take(200).collect();
        format!("{text:?}")
    };
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| format!("not JSON ({e}); it starts {}", shown()))?;
    let Value::Array(rows) = value else {
        return Err(format!("not a JSON array: {}", shown()));
    };
    rows.iter()
        .map(|row| {
            row.get("certname")
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| {
                    let row: String = row.to_string().chars().take(200).collect();
                    format!("a record without a certname: {row} (raw PQL must project certname, e.g. nodes[certname] {{ ... }})")
                })
        })
        .collect()
}

/// The PQL query for `filter` in `collective`, nodes whose
/// `collectives_fact` lists it (`None`: every collective).
pub fn query(
    filter: &Filter,
    collective: &str,
    collectives_fact: Option<&str>,
) -> Result<String, PuppetDbError> {
    if !filter.agent.is_empty() {
        return Err(PuppetDbError::Unsupported {
            what: "agent filters (-A)".into(),
        });
    }
    if !filter.compound.is_empty() {
        let what = if filter.uses_data() {
            "data plugins (-S with fstat(...) and the like)"
        } else {
            "compound filters (-S)"
        };
        return Err(PuppetDbError::Unsupported { what: what.into() });
    }
    let mut parts = Vec::new();
    if !filter.identity.is_empty() {
        let any: Vec<String> = filter.identity.iter().map(identity).collect();
        parts.push(any.join(" or "));
    }
    for fact in &filter.fact {
        let path = fact_path(&fact.fact);
        let comparison = &fact.comparison;
        let condition = match comparison.op {
            Op::Eq => equal(&path, &comparison.value, false),
            Op::Match => regex_match(&path, strip_slashes(&comparison.value), false),
            Op::Ne => format!(
                "{path} is not null and !({})",
                equal(&path, &comparison.value, false)
            ),
            op => format!("{path} {} {}", op.as_str(), literal(&comparison.value)),
        };
        parts.push(format!("certname in inventory[certname] {{ {condition} }}"));
    }
    for class in &filter.class {
        let condition = match class {
            Pattern::Exact(name) => format!("title = {}", string(&capitalize(name))),
            Pattern::Regex(regex) => regex_match("title", regex.as_str(), true),
            Pattern::Glob(name, glob) => format!(
                "title = {} or {}",
                string(&capitalize(name)),
                regex_match("title", glob.as_str(), true)
            ),
        };
        parts.push(format!(
            "certname in resources[certname] {{ type = \"Class\" and ({condition}) }}"
        ));
    }
    if let Some(fact) = collectives_fact {
        parts.push(collective_condition(fact, collective));
    }
    if parts.is_empty() {
        return Ok("nodes[certname] {}".into());
    }
    let parts: Vec<String> = parts.into_iter().map(|p| format!("({p})")).collect();
    Ok(format!("nodes[certname] {{ {} }}", parts.join(" and ")))
}

/// Nodes whose `fact` is `collective` or a list holding it (PQL's
/// `inventory` has no way to look into a list, `fact_contents` does).
fn collective_condition(fact: &str, collective: &str) -> String {
    let parts: Vec<&str> = fact.split('.').collect();
    let exact: Vec<String> = parts.iter().map(|p| string(p)).collect();
    let mut anchored: Vec<String> = parts.iter().map(|p| string(&format!("^{p}$"))).collect();
    anchored.push(string("^[0-9]+$"));
    format!(
        "certname in fact_contents[certname] {{ (path = [{}] or path ~> [{}]) and value = {} }}",
        exact.join(", "),
        anchored.join(", "),
        string(collective)
    )
}

/// One `-I`: `pql:` raw PQL, a regex, a glob or a name.
fn identity(pattern: &Pattern) -> String {
    let typed = match pattern {
        Pattern::Exact(text) | Pattern::Glob(text, _) => text.as_str(),
        Pattern::Regex(_) => "",
    };
    if let Some(pql) = typed.strip_prefix("pql:") {
        return format!("certname in {}", pql.trim());
    }
    match pattern {
        Pattern::Exact(name) => format!("certname = {}", string(name)),
        Pattern::Regex(regex) => regex_match("certname", regex.as_str(), false),
        Pattern::Glob(name, glob) => format!(
            "certname = {} or {}",
            string(name),
            regex_match("certname", glob.as_str(), false)
        ),
    }
}

/// `field = value` for an `=` comparison: a `/regex/` or glob matches as
/// such; a value that reads as a number or boolean also matches the typed
/// fact (the fleet compares facts as text).
fn equal(path: &str, value: &str, fold_case: bool) -> String {
    if value.len() >= 2 && value.starts_with('/') && value.ends_with('/') {
        return regex_match(path, &value[1..value.len() - 1], fold_case);
    }
    if let Ok(Pattern::Glob(_, glob)) = Pattern::parse(value) {
        return format!(
            "({path} = {} or {})",
            string(value),
            regex_match(path, glob.as_str(), fold_case)
        );
    }
    match typed(value) {
        Some(typed) => format!("({path} = {} or {path} = {typed})", string(value)),
        None => format!("{path} = {}", string(value)),
    }
}

/// `field ~ "regex"`; PostgreSQL's regexes take `(?i)` at the start.
fn regex_match(field: &str, regex: &str, fold_case: bool) -> String {
    let regex = if fold_case {
        format!("(?i){regex}")
    } else {
        regex.to_string()
    };
    format!("{field} ~ {}", string(&regex))
}

fn strip_slashes(value: &str) -> &str {
    if value.len() >= 2 && value.starts_with('/') && value.ends_with('/') {
        &value[1..value.len() - 1]
    } else {
        value
    }
}

/// A number or boolean as PQL writes it, if `value` reads as one.
fn typed(value: &str) -> Option<String> {
    if value == "true" || value == "false" {
        return Some(value.to_string());
    }
    let is_number = value.parse::<i64>().is_ok()
        || (value.parse::<f64>().is_ok_and(f64::is_finite)
            && value
                .chars()
                .all(|c| c.is_ascii_digit() || c == '.' || c == '-'));
    is_number.then(|| value.to_string())
}

/// A number for `<`, `>`, `<=`, `>=`; anything else as a string.
fn literal(value: &str) -> String {
    match typed(value) {
        Some(number) if number != "true" && number != "false" => number,
        _ => string(value),
    }
}

/// `facts.a.b`, quoting parts that are not plain names.
fn fact_path(fact: &str) -> String {
    let mut path = String::from("facts");
    for part in fact.split('.') {
        path.push('.');
        if !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            path.push_str(part);
        } else {
            path.push_str(&string(part));
        }
    }
    path
}

/// A PQL string literal.
fn string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Puppet's class title for a class name: `mysql::server` is
/// `Mysql::Server`.
fn capitalize(name: &str) -> String {
    name.split("::")
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_uppercase().chain(chars).collect(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("::")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pql(filter: Filter) -> String {
        query(&filter, "mcollective", None).unwrap()
    }

    #[test]
    fn identities_are_any_of() {
        let filter = Filter::default()
            .identity("web1.example")
            .unwrap()
            .identity("/^db\\d/")
            .unwrap();
        assert_eq!(
            pql(filter),
            r#"nodes[certname] { (certname = "web1.example" or certname ~ "^db\\d") }"#
        );
    }

    #[test]
    fn raw_pql_is_a_subquery() {
        let filter = Filter::default()
            .identity("pql:inventory[certname] { facts.role = \"web\" }")
            .unwrap();
        assert_eq!(
            pql(filter),
            r#"nodes[certname] { (certname in inventory[certname] { facts.role = "web" }) }"#
        );
    }

    #[test]
    fn fact_operators() {
        let cases = [
            ("role=web", r#"facts.role = "web""#),
            ("role==web", r#"facts.role = "web""#),
            ("role=/^w/", r#"facts.role ~ "^w""#),
            ("role=~^w", r#"facts.role ~ "^w""#),
            (
                "role!=web",
                r#"facts.role is not null and !(facts.role = "web")"#,
            ),
            (
                "processors.count=2",
                r#"(facts.processors.count = "2" or facts.processors.count = 2)"#,
            ),
            ("processors.count>=2", "facts.processors.count >= 2"),
            ("processors.count<3", "facts.processors.count < 3"),
            (
                "is_virtual=true",
                r#"(facts.is_virtual = "true" or facts.is_virtual = true)"#,
            ),
            ("kernel-name=Linux", r#"facts."kernel-name" = "Linux""#),
        ];
        for (typed, condition) in cases {
            let filter = Filter::default().fact(typed).unwrap();
            assert_eq!(
                pql(filter),
                format!(
                    "nodes[certname] {{ (certname in inventory[certname] {{ {condition} }}) }}"
                ),
                "{typed}"
            );
        }
    }

    #[test]
    fn classes_are_capitalized_titles() {
        let filter = Filter::default()
            .class("mysql::server")
            .unwrap()
            .class("/^ngin/")
            .unwrap();
        assert_eq!(
            pql(filter),
            r#"nodes[certname] { (certname in resources[certname] { type = "Class" and (title = "Mysql::Server") }) and (certname in resources[certname] { type = "Class" and (title ~ "(?i)^ngin") }) }"#
        );
    }

    #[test]
    fn collectives_come_from_a_fact() {
        assert_eq!(
            query(&Filter::default(), "eu", Some(DEFAULT_COLLECTIVES_FACT)).unwrap(),
            r#"nodes[certname] { (certname in fact_contents[certname] { (path = ["mcollective", "server", "collectives"] or path ~> ["^mcollective$", "^server$", "^collectives$", "^[0-9]+$"]) and value = "eu" }) }"#
        );
        assert_eq!(pql(Filter::default()), "nodes[certname] {}");
    }

    #[test]
    fn agents_and_compound_filters_are_refused() {
        let err = query(&Filter::default().agent("rpcutil").unwrap(), "m", None).unwrap_err();
        assert!(err.to_string().contains("agent filters (-A)"), "{err}");
        assert!(err.to_string().contains("facts (-F)"), "{err}");
        let err = query(
            &Filter::default().compound("role=web or role=db").unwrap(),
            "m",
            None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("compound filters (-S)"), "{err}");
    }

    #[test]
    fn quotes_and_backslashes_are_escaped() {
        assert_eq!(string(r#"a"b\c"#), r#""a\"b\\c""#);
    }

    #[test]
    fn answers_that_are_not_node_lists() {
        assert_eq!(
            certnames(br#"[{"certname":"a"},{"certname":"b"}]"#).unwrap(),
            ["a", "b"]
        );
        assert!(certnames(b"<html>").unwrap_err().contains("not JSON"));
        assert!(certnames(b"{}").unwrap_err().contains("not a JSON array"));
        assert!(certnames(br#"[{"name":"a"}]"#)
            .unwrap_err()
            .contains("without a certname"));
    }
}
