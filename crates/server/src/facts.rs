//! Facts and classes: what a node says about itself.
//!
//! A node's facts are layers merged in order, a later layer's top-level
//! keys winning: facts gathered natively from the system (or `facter -j`
//! where an operator prefers it), then the configured YAML/JSON files.
//! The merge is cached and redone only when a layer changed.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::sysfacts::FacterSource;
use crate::watched::{Source, Watched};

/// Fact files larger than this are refused rather than read into memory.
pub const MAX_FILE_BYTES: u64 = 16 << 20;

/// How often natively gathered facts (uptime, memory, addresses) are refreshed.
pub const SYSTEM_REFRESH: Duration = Duration::from_secs(60);

/// Why facts or classes could not be read at start-up.
#[derive(Debug, thiserror::Error)]
pub enum FactsError {
    /// A facts or classes file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file is over [`MAX_FILE_BYTES`].
    #[error("{}: {size} bytes is larger than the {MAX_FILE_BYTES} byte limit", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// A facts file is neither YAML nor JSON.
    #[error("{}: {source}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the YAML parser said.
        source: serde_saphyr::Error,
    },
    /// A facts file holds a list or a scalar, not names and values.
    #[error("{}: facts must be a mapping of names to values", path.display())]
    NotAMapping {
        /// The file.
        path: PathBuf,
    },
    /// `facter -j` failed on its first run.
    #[error("{0}")]
    Facter(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The thread that re-runs facter could not be started.
    #[error("cannot start the facter thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// A node's classes, one name each.
pub type Classes = Source<Vec<String>>;

/// One layer of facts.
enum Layer {
    Source(Source<Value>),
    /// Gathered from /proc, /sys and /etc; refreshed every [`SYSTEM_REFRESH`].
    System {
        identity: String,
        cache: Mutex<(Instant, Arc<Value>)>,
    },
    /// The latest `facter -j` output, refreshed by a background thread.
    Facter(Arc<Mutex<Arc<Value>>>),
}

impl Layer {
    fn get(&self) -> Arc<Value> {
        match self {
            Layer::Source(source) => source.get(),
            Layer::System { identity, cache } => {
                let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
                if cache.0.elapsed() >= SYSTEM_REFRESH {
                    *cache = (Instant::now(), Arc::new(crate::sysfacts::gather(identity)));
                }
                cache.1.clone()
            }
            Layer::Facter(latest) => latest.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }
}

/// A node's facts: a JSON object, possibly nested.
pub struct Facts {
    layers: Vec<Layer>,
    /// The layers the merge was made from, and the merge.
    merged: Mutex<(Vec<Arc<Value>>, Arc<Value>)>,
}

impl Facts {
    /// Facts that never change (simulated nodes, tests).
    pub fn fixed(value: Value) -> Facts {
        Facts::layered(vec![Layer::Source(Source::fixed(value))])
    }

    /// The system's own facts, then the facts in `files`.
    pub fn system_and_files(identity: &str, files: Vec<PathBuf>) -> Result<Facts, FactsError> {
        let system = Layer::System {
            identity: identity.to_string(),
            cache: Mutex::new((Instant::now(), Arc::new(crate::sysfacts::gather(identity)))),
        };
        Ok(Facts::layered(vec![
            system,
            Layer::Source(fact_files(files)?),
        ]))
    }

    /// `facter -j` output, refreshed every `refresh`, then the facts in
    /// `files`. Runs facter once now, so a broken facter fails start-up.
    pub fn facter_and_files(
        facter: FacterSource,
        refresh: Duration,
        files: Vec<PathBuf>,
    ) -> Result<Facts, FactsError> {
        let first = facter.get().map_err(|e| FactsError::Facter(e.into()))?;
        let latest = Arc::new(Mutex::new(first));
        let writer = Arc::downgrade(&latest);
        std::thread::Builder::new()
            .name("facter".into())
            .spawn(move || loop {
                std::thread::sleep(refresh);
                // Stop once the node is gone.
                let Some(latest) = writer.upgrade() else {
                    return;
                };
                match facter.get() {
                    Ok(value) => *latest.lock().unwrap_or_else(|p| p.into_inner()) = value,
                    Err(e) => {
                        tracing::warn!(error = %e, "facter failed; keeping the previous facts")
                    }
                }
            })
            .map_err(FactsError::Thread)?;
        Ok(Facts::layered(vec![
            Layer::Facter(latest),
            Layer::Source(fact_files(files)?),
        ]))
    }

    fn layered(layers: Vec<Layer>) -> Facts {
        let facts = Facts {
            layers,
            merged: Mutex::new((Vec::new(), Arc::new(Value::Null))),
        };
        facts.get();
        facts
    }

    /// The merged facts, re-merged only when a layer changed.
    pub fn get(&self) -> Arc<Value> {
        let parts: Vec<Arc<Value>> = self.layers.iter().map(Layer::get).collect();
        let mut merged = self.merged.lock().unwrap_or_else(|p| p.into_inner());
        let unchanged = merged.0.len() == parts.len()
            && merged.0.iter().zip(&parts).all(|(a, b)| Arc::ptr_eq(a, b));
        if !unchanged {
            let value = if parts.len() == 1 {
                parts[0].clone()
            } else {
                let mut map = Map::new();
                for part in &parts {
                    if let Value::Object(object) = part.as_ref() {
                        map.extend(object.iter().map(|(k, v)| (k.clone(), v.clone())));
                    }
                }
                Arc::new(Value::Object(map))
            };
            *merged = (parts, value);
        }
        merged.1.clone()
    }
}

/// Facts read from YAML or JSON files, merged in order (a later file's
/// top-level keys win), re-read when they change.
pub fn fact_files(paths: Vec<PathBuf>) -> Result<Source<Value>, FactsError> {
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
                Ok(_) => return Err(FactsError::NotAMapping { path: path.clone() }),
                Err(source) => {
                    return Err(FactsError::Parse {
                        path: path.clone(),
                        source,
                    })
                }
            }
        }
        Ok(Value::Object(merged))
    })
    .map(Source::Files)
}

/// Parses a facts document: JSON, or YAML (of which JSON is nearly a subset).
pub fn parse_facts(text: &str) -> Result<Value, serde_saphyr::Error> {
    if text.trim_start().starts_with('{') {
        if let Ok(value) = serde_json::from_str(text) {
            return Ok(value);
        }
    }
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_saphyr::from_str::<Value>(text)
}

/// Classes from a classes file (one per line), re-read when it changes.
pub fn classes_file(path: Option<PathBuf>) -> Result<Classes, FactsError> {
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

/// A fact by dotted path (`os.release.major`), as filters look it up.
pub use muster_protocol::lookup_fact as lookup;

fn read_limited(path: &Path) -> Result<String, FactsError> {
    let read_error = |source| FactsError::Read {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read_error)?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(FactsError::TooLarge {
            path: path.to_path_buf(),
            size: meta.len(),
        });
    }
    std::fs::read_to_string(path).map_err(read_error)
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
        std::fs::write(
            &a,
            "role: web\nos:\n  family: Debian\n  release: {major: '12'}\nmemory_mb: 2048\n",
        )
        .unwrap();
        std::fs::write(&b, r#"{"role": "db", "datacenter": "ams"}"#).unwrap();
        let facts = fact_files(vec![a, b]).unwrap().get();
        let layered = Facts::fixed(json!({"role": "web"}));
        assert_eq!(layered.get()["role"], "web");
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
        let err = fact_files(vec![list]).err().unwrap().to_string();
        assert!(err.contains("must be a mapping"), "{err}");

        let broken = dir.path().join("broken.yaml");
        std::fs::write(&broken, "a: [1, 2\n").unwrap();
        let err = fact_files(vec![broken.clone()]).err().unwrap();
        assert!(matches!(&err, FactsError::Parse { path, .. } if *path == broken));
        let err = err.to_string();
        assert!(err.starts_with(&broken.display().to_string()), "{err}");

        let err = fact_files(vec![dir.path().join("missing.yaml")])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("missing.yaml"), "{err}");
    }

    #[test]
    fn classes_skip_blanks_and_comments() {
        assert_eq!(
            parse_classes("httpd\n\n# x\n  redis  \n"),
            vec!["httpd", "redis"]
        );
    }

    #[test]
    fn lookup_reaches_into_lists_and_dotted_keys() {
        let facts = json!({"a": [{"b": 1}], "x.y": 2});
        assert_eq!(lookup(&facts, "a.0.b"), Some(json!(1)));
        assert_eq!(lookup(&facts, "x.y"), Some(json!(2)));
        assert_eq!(lookup(&facts, "a.9.b"), None);
    }
}
