//! The SQLite store, and the collector going on when it fails: locked by
//! another process, corrupt, full.
//!
//! "Full disk" is simulated with SQLite's `max_page_count`, which makes a
//! write fail with SQLITE_FULL exactly as a full file system does, without
//! mounting anything.

use std::os::unix::fs::PermissionsExt;

use muster_protocol::Filter;
use muster_registry::{QueryError, Registry, SqliteStore, Store, StoreError};
use muster_server::registration::Registration;
use serde_json::json;

fn record(identity: &str, blob: usize) -> Registration {
    Registration {
        identity: identity.into(),
        facts: json!({"role": "web", "blob": "x".repeat(blob)}),
        classes: vec!["base".into()],
        collectives: vec!["mcollective".into()],
        agents: vec![],
        time: 1,
        interval: 60,
    }
}

fn opener(path: std::path::PathBuf) -> impl FnMut() -> Result<Box<dyn Store>, StoreError> + Send {
    move || SqliteStore::open(&path).map(|s| Box::new(s) as Box<dyn Store>)
}

fn all() -> Filter {
    Filter::default()
}

#[test]
fn records_survive_a_restart_and_the_files_are_private() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("new/registry.db");
    let mut registry = Registry::with_store(3, opener(path.clone()));
    assert!(
        registry.store_error().is_none(),
        "{:?}",
        registry.store_error()
    );
    registry.learn(record("web1", 0), 100);
    registry.learn(record("web2", 0), 100);
    assert_eq!(registry.expire(100 + 181 + 1), ["web1", "web2"]);
    registry.learn(record("web3", 0), 300);
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    // SQLite's write-ahead log, while open, is as private as the store.
    assert_eq!(mode(&path.with_extension("db-wal")), 0o600);
    drop(registry);
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().expect("dir")), 0o700);

    let again = Registry::with_store(3, opener(path));
    assert_eq!(
        again.select(&all(), "mcollective").expect("select"),
        ["web3"]
    );
}

#[test]
fn a_corrupt_store_leaves_the_registry_running_from_memory_and_saying_so() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("registry.db");
    std::fs::write(&path, vec![0x5a; 4096]).expect("garbage");
    let mut registry = Registry::with_store(3, opener(path));
    let error = registry.store_error().expect("a store error").to_string();
    assert!(error.contains("registry.db"), "{error}");
    registry.learn(record("web1", 0), 100);
    assert_eq!(registry.len(), 1);
    let err = registry.select(&all(), "mcollective").unwrap_err();
    assert!(matches!(err, QueryError::StoreUnavailable(_)), "{err}");
    assert!(
        err.to_string()
            .starts_with("the registry's store is unavailable: "),
        "{err}"
    );
}

#[test]
fn a_store_locked_by_another_process_is_reported_and_recovers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("registry.db");
    let mut registry = Registry::with_store(3, opener(path.clone()));
    registry.learn(record("web1", 0), 100);

    // Another connection (as another process would) holds a write lock.
    let other = rusqlite::Connection::open(&path).expect("open");
    other.execute_batch("BEGIN EXCLUSIVE").expect("lock");
    registry.learn(record("web2", 0), 100);
    let error = registry.store_error().expect("locked").to_string();
    assert!(error.contains("locked"), "{error}");
    assert!(matches!(
        registry.select(&all(), "mcollective"),
        Err(QueryError::StoreUnavailable(_))
    ));

    // Released: the next write goes through and catches up on web2.
    other.execute_batch("COMMIT").expect("unlock");
    drop(other);
    registry.learn(record("web3", 0), 100);
    assert!(
        registry.store_error().is_none(),
        "{:?}",
        registry.store_error()
    );
    drop(registry);
    let mut store = SqliteStore::open(&path).expect("open");
    let mut stored: Vec<String> = store
        .load()
        .expect("load")
        .into_iter()
        .map(|s| s.record.identity)
        .collect();
    stored.sort();
    assert_eq!(stored, ["web1", "web2", "web3"]);
}

#[test]
fn a_full_store_is_reported_and_the_registry_goes_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("registry.db");
    let limited = path.clone();
    let mut registry = Registry::with_store(3, move || {
        let mut store = SqliteStore::open(&limited)?;
        store.limit_pages(8)?;
        Ok(Box::new(store) as Box<dyn Store>)
    });
    assert!(
        registry.store_error().is_none(),
        "{:?}",
        registry.store_error()
    );
    for n in 0..20 {
        registry.learn(record(&format!("web{n}"), 4096), 100);
    }
    let error = registry.store_error().expect("full").to_string();
    assert!(error.contains("full"), "{error}");
    // Every node is still known in memory; queries say the store failed.
    assert_eq!(registry.len(), 20);
    assert!(matches!(
        registry.select(&all(), "mcollective"),
        Err(QueryError::StoreUnavailable(_))
    ));
}
