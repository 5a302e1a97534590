//! Discovery: which nodes a call is for, found without (or with) asking
//! the fleet.
//!
//! | method | where the identities come from | the filter is applied by |
//! | --- | --- | --- |
//! | [`Discovery::Broadcast`] | the nodes that answer a broadcast ping | every node, for itself |
//! | [`Discovery::Flatfile`] | a file (or stdin), one identity per line | identity selectors here; the rest by each addressed node |
//! | [`Discovery::Inventory`] | a JSON array of [`NodeRecord`]s (`mco inventory --json`) | this process, with [`Filter::evaluate`] |
//! | [`Discovery::External`] | a program given the filter as JSON, printing identities | the program |
//! | [`Discovery::PuppetDb`] | PuppetDB, asked in PQL ([`crate::puppetdb`]) | PuppetDB |
//! | [`Discovery::Registry`] | `mco registry`, from the nodes' registrations | the registry, with [`Filter::evaluate`] |
//!
//! Every method but broadcast knows the identities up front, so requests go
//! to each node directly and the ones that do not answer are named.
//!
//! ```
//! use muster_client::discovery::parse_identities;
//! let nodes = parse_identities("# web tier\nweb1\n\nweb2  # the new one\n", "nodes.txt").unwrap();
//! assert_eq!(nodes, ["web1", "web2"]);
//! let err = parse_identities("web1\nweb*\n", "nodes.txt").unwrap_err();
//! assert_eq!(err.to_string(), "nodes.txt line 2: \"web*\" is not a valid identity");
//! ```

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use muster_protocol::{subject, Filter, NodeView};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{Client, ClientError, QuietWindow};

/// The most a node list, inventory file or program output may hold.
const MAX_INPUT_BYTES: u64 = 64 << 20;

/// How the client finds the nodes a call is for.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Discovery {
    /// Ask the fleet: a broadcast ping that ends when replies go quiet.
    #[default]
    Broadcast,
    /// Identities listed in a file, one per line.
    Flatfile(NodeList),
    /// Node records in a JSON file, filtered here.
    Inventory(PathBuf),
    /// A program that prints identities.
    External(PathBuf),
    /// PuppetDB, asked with the filter in PQL.
    PuppetDb(crate::puppetdb::PuppetDb),
    /// Asks `mco registry` (`plugin.registry.identity`), which filters the
    /// nodes' registrations.
    Registry,
}

/// Where a flat list of identities comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeList {
    /// A file with one identity per line.
    File(PathBuf),
    /// Standard input, one identity per line.
    Stdin,
}

impl NodeList {
    /// `-` is stdin, anything else a file.
    pub fn from_arg(arg: &Path) -> NodeList {
        if arg == Path::new("-") {
            NodeList::Stdin
        } else {
            NodeList::File(arg.to_path_buf())
        }
    }

    fn name(&self) -> String {
        match self {
            NodeList::File(path) => path.display().to_string(),
            NodeList::Stdin => "stdin".to_string(),
        }
    }
}

/// Why discovery could not produce a node list.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// A node list could not be read.
    #[error("cannot read {source_name}: {reason}")]
    Read {
        /// The file, or `stdin`.
        source_name: String,
        /// Why.
        reason: String,
    },
    /// An inventory file that cannot be read or parsed.
    #[error("{file}: not an inventory (a JSON array of node records as `mco inventory --json` writes): {reason}")]
    Inventory {
        /// The file.
        file: String,
        /// Why.
        reason: String,
    },
    /// A filter with data plugins, which only nodes can evaluate.
    #[error("the {method} discovery method cannot evaluate data plugins such as fstat(...) locally; use --dm broadcast")]
    DataPlugins {
        /// The discovery method asked to evaluate it.
        method: &'static str,
    },
    /// An external discovery program that failed.
    #[error("discovery program {program}: {reason}")]
    Program {
        /// The program.
        program: String,
        /// How it failed.
        reason: String,
    },
    /// An external discovery program that ran too long and was stopped.
    #[error("discovery program {program} did not finish within {} s", timeout.as_secs_f64())]
    ProgramTimeout {
        /// The program.
        program: String,
        /// How long it was given.
        timeout: Duration,
    },
    /// A method chosen without the file or program it reads.
    #[error("--dm {method} needs {flag}{}", key.map(|k| format!(" (or {k} in client.cfg)")).unwrap_or_default())]
    NoInput {
        /// The method.
        method: &'static str,
        /// The flag that names its input.
        flag: &'static str,
        /// The client.cfg key that names it, if there is one.
        key: Option<&'static str>,
    },
    /// A method muster does not have.
    #[error("unknown discovery method {method:?} (broadcast, flatfile, inventory, external, puppetdb or registry)")]
    UnknownMethod {
        /// The name given.
        method: String,
    },
    /// PuppetDB could not answer, or not this filter.
    #[error(transparent)]
    PuppetDb(#[from] crate::puppetdb::PuppetDbError),
    /// A `--nodes` list that is not identities or muster's JSON output.
    #[error(transparent)]
    NodeList(#[from] crate::chain::NodeListError),
}

/// How long discovery may take when neither `--dt` nor client.cfg says.
pub const DEFAULT_DISCOVERY_TIMEOUT: Duration = Duration::from_secs(2);

/// Discovery as client.cfg sets it: what a call uses where its flags say
/// nothing, so an inventory or external shop need not spell it out every time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DiscoverySettings {
    /// `default_discovery_method`; unset is broadcast.
    pub method: Option<String>,
    /// `discovery_timeout`.
    pub timeout: Option<Duration>,
    /// `plugin.choria.discovery.inventory.source`.
    pub inventory: Option<PathBuf>,
    /// `plugin.choria.discovery.external.command`.
    pub program: Option<PathBuf>,
    /// `plugin.puppetdb.*` and the caller's certificate, for `--dm puppetdb`.
    pub puppetdb: crate::puppetdb::PuppetDb,
    /// `default_discovery_options`: MCollective's one option for the
    /// default method (its file or program), below the per-method keys.
    pub options: Option<String>,
}

impl DiscoverySettings {
    /// The method to use: `method` (what the flags chose, given or implied
    /// by their input) wins over `default_discovery_method`, which wins over
    /// broadcast; `input` (the flag's file or program) wins over the file's
    /// per-method setting.
    pub fn choose(
        &self,
        method: Option<&str>,
        input: Option<&Path>,
    ) -> Result<Discovery, DiscoveryError> {
        let method = method
            .or(self.method.as_deref())
            .unwrap_or("broadcast")
            .to_ascii_lowercase();
        let method = method.as_str();
        let missing = |flag: &'static str, key: Option<&'static str>| DiscoveryError::NoInput {
            method: match method {
                "flatfile" => "flatfile",
                "inventory" => "inventory",
                _ => "external",
            },
            flag,
            key,
        };
        Ok(match method {
            "broadcast" => Discovery::Broadcast,
            "registry" => Discovery::Registry,
            "flatfile" => match input.or(self.default_option(method)) {
                Some(path) => Discovery::Flatfile(NodeList::from_arg(path)),
                None => return Err(missing("--nodes FILE", Some("default_discovery_options"))),
            },
            "inventory" => match input
                .map(Path::to_path_buf)
                .or(self.inventory.clone())
                .or(self.default_option(method).map(Path::to_path_buf))
            {
                Some(path) => Discovery::Inventory(path),
                None => {
                    return Err(missing(
                        "--inventory FILE",
                        Some("plugin.choria.discovery.inventory.source"),
                    ))
                }
            },
            "external" => match input
                .map(Path::to_path_buf)
                .or(self.program.clone())
                .or(self.default_option(method).map(Path::to_path_buf))
            {
                Some(path) => Discovery::External(path),
                None => {
                    return Err(missing(
                        "--discovery-program PROG",
                        Some("plugin.choria.discovery.external.command"),
                    ))
                }
            },
            "puppetdb" => Discovery::PuppetDb(self.puppetdb.clone()),
            other => {
                return Err(DiscoveryError::UnknownMethod {
                    method: other.to_string(),
                })
            }
        })
    }

    /// `default_discovery_options`, for `method` only when it is the
    /// default method (MCollective passes the options to that one).
    fn default_option(&self, method: &str) -> Option<&Path> {
        let default = self.method.as_deref()?;
        (default.eq_ignore_ascii_case(method))
            .then_some(self.options.as_deref())
            .flatten()
            .map(Path::new)
    }

    /// `--dt` when given, else `discovery_timeout`, else
    /// [`DEFAULT_DISCOVERY_TIMEOUT`].
    pub fn timeout(&self, flag: Option<Duration>) -> Duration {
        flag.or(self.timeout).unwrap_or(DEFAULT_DISCOVERY_TIMEOUT)
    }
}

impl Discovery {
    /// The method's name as `--dm` spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Discovery::Broadcast => "broadcast",
            Discovery::Flatfile(_) => "flatfile",
            Discovery::Inventory(_) => "inventory",
            Discovery::External(_) => "external",
            Discovery::PuppetDb(_) => "puppetdb",
            Discovery::Registry => "registry",
        }
    }

    /// Whether this is the broadcast method (no node list before the call).
    pub fn is_broadcast(&self) -> bool {
        matches!(self, Discovery::Broadcast)
    }

    /// The nodes a method other than broadcast selects, sorted and without
    /// duplicates; for broadcast, which needs the fleet, use
    /// [`Client::discover_with`]. `timeout` bounds an external program.
    pub async fn known_nodes(
        &self,
        filter: &Filter,
        collective: &str,
        timeout: Duration,
    ) -> Result<Vec<String>, DiscoveryError> {
        let mut nodes = match self {
            Discovery::Broadcast => {
                return Err(DiscoveryError::Read {
                    source_name: "broadcast discovery".into(),
                    reason: "it needs a connected client".into(),
                })
            }
            Discovery::Registry => {
                return Err(DiscoveryError::Read {
                    source_name: "registry discovery".into(),
                    reason: "it needs a connected client".into(),
                })
            }
            Discovery::Flatfile(list) => flatfile(list, filter).await?,
            Discovery::Inventory(file) => inventory(file, filter, collective).await?,
            Discovery::External(program) => external(program, filter, collective, timeout).await?,
            Discovery::PuppetDb(puppetdb) => puppetdb.discover(filter, collective, timeout).await?,
        };
        nodes.sort();
        nodes.dedup();
        Ok(nodes)
    }
}

impl Client {
    /// Finds the nodes matching `filter` with `discovery`, sorted.
    pub async fn discover_with(
        &self,
        discovery: &Discovery,
        filter: &Filter,
        collective: Option<&str>,
        timeout: Duration,
        window: QuietWindow,
    ) -> Result<Vec<String>, ClientError> {
        match discovery {
            Discovery::Broadcast => self.discover(filter, collective, timeout, window).await,
            Discovery::Registry => {
                let collective = collective.unwrap_or(&self.config().main_collective);
                // Boxed: the query is itself a call, which may discover.
                let query: std::pin::Pin<
                    Box<dyn std::future::Future<Output = Result<Vec<String>, ClientError>> + '_>,
                > = Box::pin(crate::registry::discover(self, filter, collective, timeout));
                query.await
            }
            other => {
                let collective = collective.unwrap_or(&self.config().main_collective);
                Ok(other.known_nodes(filter, collective, timeout).await?)
            }
        }
    }
}

/// Identities one per line; blank lines and `#` comments are skipped.
/// `source_name` names the input in errors, which carry the line number.
pub fn parse_identities(text: &str, source_name: &str) -> Result<Vec<String>, DiscoveryError> {
    Ok(crate::chain::plain(text, source_name)?)
}

async fn flatfile(list: &NodeList, filter: &Filter) -> Result<Vec<String>, DiscoveryError> {
    let text = match list {
        NodeList::File(path) => read_file(path).await?,
        NodeList::Stdin => tokio::task::spawn_blocking(|| {
            let mut text = String::new();
            std::io::stdin()
                .take(MAX_INPUT_BYTES)
                .read_to_string(&mut text)
                .map(|_| text)
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|read| read.map_err(|e| e.to_string()))
        .map_err(|reason| DiscoveryError::Read {
            source_name: "stdin".into(),
            reason,
        })?,
    };
    let nodes = crate::chain::parse_node_list(&text, &list.name())?;
    // Only identity selectors can be judged from a name; the nodes
    // themselves apply the rest, since the filter travels in the request.
    Ok(nodes
        .into_iter()
        .filter(|n| filter.identity.is_empty() || filter.identity.iter().any(|p| p.matches(n)))
        .collect())
}

async fn read_file(path: &Path) -> Result<String, DiscoveryError> {
    let read_error = |reason: String| DiscoveryError::Read {
        source_name: path.display().to_string(),
        reason,
    };
    let meta = tokio::fs::metadata(path)
        .await
        .map_err(|e| read_error(e.to_string()))?;
    if meta.len() > MAX_INPUT_BYTES {
        return Err(read_error(format!(
            "{} bytes is more than the {MAX_INPUT_BYTES} byte limit",
            meta.len()
        )));
    }
    tokio::fs::read_to_string(path)
        .await
        .map_err(|e| read_error(e.to_string()))
}

/// What a node knows about itself, as `mco inventory --json` writes it and
/// `--dm inventory` reads it. Unknown fields are ignored, so richer
/// records (from a registration collector, say) read too.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// The node's identity.
    pub identity: String,
    /// Its facts, a JSON object.
    #[serde(default = "empty_object")]
    pub facts: Value,
    /// Its classes.
    #[serde(default)]
    pub classes: Vec<String>,
    /// The collectives it belongs to.
    #[serde(default)]
    pub collectives: Vec<String>,
    /// The agents it runs.
    #[serde(default)]
    pub agents: Vec<String>,
}

fn empty_object() -> Value {
    Value::Object(Map::new())
}

impl NodeRecord {
    /// The record for `identity` from its rpcutil inventory reply data.
    pub fn from_inventory(identity: &str, data: &Value) -> NodeRecord {
        let strings = |key: &str| -> Vec<String> {
            data.get(key)
                .and_then(Value::as_array)
                .map(|items| {
                    items
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        NodeRecord {
            identity: identity.to_string(),
            facts: data.get("facts").cloned().unwrap_or_else(empty_object),
            classes: strings("classes"),
            collectives: strings("collectives"),
            agents: strings("agents"),
        }
    }

    /// Reads a JSON array of records, checking every identity.
    pub fn parse_all(text: &str, file: &str) -> Result<Vec<NodeRecord>, DiscoveryError> {
        let records: Vec<NodeRecord> =
            serde_json::from_str(text).map_err(|e| DiscoveryError::Inventory {
                file: file.to_string(),
                reason: e.to_string(),
            })?;
        for (index, record) in records.iter().enumerate() {
            if !subject::is_valid_name(&record.identity) {
                return Err(DiscoveryError::Inventory {
                    file: file.to_string(),
                    reason: format!(
                        "record {} has the invalid identity {:?}",
                        index + 1,
                        record.identity
                    ),
                });
            }
        }
        Ok(records)
    }
}

impl NodeView for NodeRecord {
    fn identity(&self) -> &str {
        &self.identity
    }

    fn has_class(&self, matches: &dyn Fn(&str) -> bool) -> bool {
        self.classes.iter().any(|c| matches(c))
    }

    fn has_agent(&self, matches: &dyn Fn(&str) -> bool) -> bool {
        self.agents.iter().any(|a| matches(a))
    }

    fn fact(&self, path: &str) -> Option<Value> {
        muster_protocol::lookup_fact(&self.facts, path)
    }
}

async fn inventory(
    file: &Path,
    filter: &Filter,
    collective: &str,
) -> Result<Vec<String>, DiscoveryError> {
    if filter.uses_data() {
        return Err(DiscoveryError::DataPlugins {
            method: "inventory",
        });
    }
    let text = read_file(file).await?;
    let records = NodeRecord::parse_all(&text, &file.display().to_string())?;
    let mut nodes = Vec::new();
    for record in &records {
        // A record that lists no collectives is taken to be in all of them.
        let member =
            record.collectives.is_empty() || record.collectives.iter().any(|c| c == collective);
        if member && filter.evaluate(record).unwrap_or(false) {
            nodes.push(record.identity.clone());
        }
    }
    Ok(nodes)
}

async fn external(
    program: &Path,
    filter: &Filter,
    collective: &str,
    timeout: Duration,
) -> Result<Vec<String>, DiscoveryError> {
    let name = program.display().to_string();
    let failed = |reason: String| DiscoveryError::Program {
        program: name.clone(),
        reason,
    };
    let filter_json = serde_json::to_string(filter)
        .map_err(|e| failed(format!("cannot encode the filter: {e}")))?;
    let mut child = tokio::process::Command::new(program);
    for (name, value) in muster_connector::for_children() {
        match value {
            Some(value) => child.env(name, value),
            None => child.env_remove(name),
        };
    }
    let mut child = child
        .env("MCO_COLLECTIVE", collective)
        .env("MCO_FILTER", &filter_json)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| failed(format!("cannot run it: {e}")))?;
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(failed("cannot connect to its stdin and stdout".into()));
    };
    let run = async {
        // A program that ignores its stdin may close it early: not an error.
        let feed = async move {
            let _ = stdin.write_all(filter_json.as_bytes()).await;
            let _ = stdin.write_all(b"\n").await;
            drop(stdin);
        };
        let mut out = Vec::new();
        let mut err = Vec::new();
        let mut stdout = stdout.take(MAX_INPUT_BYTES);
        let mut stderr = stderr.take(64 * 1024);
        let read_out = stdout.read_to_end(&mut out);
        let read_err = stderr.read_to_end(&mut err);
        let ((), read_out, _) = tokio::join!(feed, read_out, read_err);
        read_out.map_err(|e| failed(format!("cannot read its output: {e}")))?;
        let status = child
            .wait()
            .await
            .map_err(|e| failed(format!("cannot wait for it: {e}")))?;
        Ok::<_, DiscoveryError>((status, out, err))
    };
    let (status, out, err) = match tokio::time::timeout(timeout, run).await {
        Ok(result) => result?,
        Err(_) => {
            return Err(DiscoveryError::ProgramTimeout {
                program: name,
                timeout,
            })
        }
    };
    if !status.success() {
        let stderr = String::from_utf8_lossy(&err);
        let stderr = stderr.trim();
        let said = if stderr.is_empty() {
            String::new()
        } else {
            format!(": {stderr}")
        };
        return Err(failed(format!("exited with {status}{said}")));
    }
    let text = String::from_utf8(out).map_err(|_| failed("its output is not UTF-8 text".into()))?;
    parse_identities(&text, &format!("output of discovery program {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn identity_lists_skip_comments_and_name_bad_lines() {
        assert_eq!(
            parse_identities("a\n  b  \n#c\n\n", "x").unwrap(),
            ["a", "b"]
        );
        let err = parse_identities("a\n\nb c\n", "list").unwrap_err();
        assert!(
            matches!(
                err,
                DiscoveryError::NodeList(crate::chain::NodeListError::BadIdentity { line: 3, .. })
            ),
            "{err}"
        );
        assert!(parse_identities("a..b", "list").is_err());
    }

    #[test]
    fn records_answer_filters_like_nodes() {
        let record = NodeRecord::from_inventory(
            "web1",
            &json!({"facts": {"os": {"family": "Debian"}, "mem": 4096}, "classes": ["httpd"], "agents": ["rpcutil"], "collectives": ["mcollective"]}),
        );
        let yes = Filter::default()
            .fact("os.family=Debian")
            .unwrap()
            .fact("mem>=4096")
            .unwrap();
        assert!(yes.matches(&record));
        assert!(!Filter::default().class("redis").unwrap().matches(&record));
        assert!(Filter::default()
            .compound("httpd and not redis")
            .unwrap()
            .matches(&record));
        assert!(Filter::default().agent("rpcutil").unwrap().matches(&record));
    }

    #[test]
    fn inventory_files_must_be_arrays_of_records() {
        assert!(NodeRecord::parse_all("{}", "f").is_err());
        assert!(NodeRecord::parse_all(r#"[{"identity": "a b"}]"#, "f").is_err());
        let records = NodeRecord::parse_all(r#"[{"identity": "a", "extra": 1}]"#, "f").unwrap();
        assert_eq!(records[0].facts, json!({}));
    }

    #[test]
    fn flags_win_over_client_cfg_which_wins_over_broadcast() {
        let none = DiscoverySettings::default();
        assert_eq!(none.choose(None, None).unwrap(), Discovery::Broadcast);
        assert_eq!(none.timeout(None), DEFAULT_DISCOVERY_TIMEOUT);
        let file = DiscoverySettings {
            method: Some("inventory".into()),
            timeout: Some(Duration::from_secs(7)),
            inventory: Some("/etc/inv.json".into()),
            program: Some("/bin/disco".into()),
            options: None,
            ..Default::default()
        };
        // client.cfg over the default.
        assert_eq!(
            file.choose(None, None).unwrap(),
            Discovery::Inventory("/etc/inv.json".into())
        );
        assert_eq!(file.timeout(None), Duration::from_secs(7));
        // Flags over client.cfg: the method, its input, the timeout.
        assert_eq!(
            file.choose(Some("broadcast"), None).unwrap(),
            Discovery::Broadcast
        );
        assert_eq!(
            file.choose(Some("external"), None).unwrap(),
            Discovery::External("/bin/disco".into())
        );
        assert_eq!(
            file.choose(Some("inventory"), Some(Path::new("mine.json")))
                .unwrap(),
            Discovery::Inventory("mine.json".into())
        );
        assert_eq!(
            file.choose(Some("flatfile"), Some(Path::new("-"))).unwrap(),
            Discovery::Flatfile(NodeList::Stdin)
        );
        assert_eq!(
            file.timeout(Some(Duration::from_secs(1))),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn a_method_without_its_input_says_where_to_give_it() {
        let external = DiscoverySettings {
            method: Some("external".into()),
            ..DiscoverySettings::default()
        };
        assert_eq!(
            external.choose(None, None).unwrap_err().to_string(),
            "--dm external needs --discovery-program PROG \
             (or plugin.choria.discovery.external.command in client.cfg)"
        );
        assert_eq!(
            external
                .choose(Some("flatfile"), None)
                .unwrap_err()
                .to_string(),
            "--dm flatfile needs --nodes FILE (or default_discovery_options in client.cfg)"
        );
        assert!(external.choose(Some("mc"), None).is_err());
    }
}
