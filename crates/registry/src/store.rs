//! Where the registry keeps what it learned, so a restart of the
//! collector does not forget the fleet.
//!
//! [`Store`] is the small interface the collector needs; [`SqliteStore`]
//! is the embedded default. A PostgreSQL store would implement the same
//! three calls.

use std::path::{Path, PathBuf};
use std::time::Duration;

use muster_server::registration::Registration;

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database (or its directory) could not be opened or created.
    #[error("cannot open the registry store {path}: {source}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A read or write failed: locked, corrupt, disk full.
    #[error("registry store {path}: {source}")]
    Sql {
        /// The database file.
        path: PathBuf,
        /// SQLite's own error.
        #[source]
        source: rusqlite::Error,
    },
    /// A stored record that no longer parses.
    #[error("registry store {path}: the record of {identity} is not readable: {source}")]
    Record {
        /// The database file.
        path: PathBuf,
        /// Whose record.
        identity: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

/// One node as stored: its last record and when it came (Unix seconds).
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// The node's last registration.
    pub record: Registration,
    /// When the collector received it.
    pub seen: u64,
}

/// What the collector needs from a database.
pub trait Store: Send {
    /// Every stored node.
    fn load(&mut self) -> Result<Vec<Stored>, StoreError>;
    /// Inserts or replaces the nodes' records.
    fn put(&mut self, nodes: &[Stored]) -> Result<(), StoreError>;
    /// Forgets these nodes.
    fn remove(&mut self, identities: &[String]) -> Result<(), StoreError>;
}

/// How long a write waits for a lock another process holds before the
/// store reports itself locked.
const BUSY_TIMEOUT: Duration = Duration::from_millis(500);

/// The embedded SQLite store: one table, one row per node.
pub struct SqliteStore {
    path: PathBuf,
    db: rusqlite::Connection,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

impl SqliteStore {
    /// Opens (creating when missing) the database at `path`: the file
    /// 0600 and a directory it creates 0700, since records carry every
    /// node's facts.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let open_error = |e: Box<dyn std::error::Error + Send + Sync>| StoreError::Open {
            path: path.to_path_buf(),
            source: e,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.exists() {
                use std::os::unix::fs::DirBuilderExt;
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(|e| open_error(Box::new(e)))?;
            }
        }
        {
            use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| open_error(Box::new(e)))?;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(|e| open_error(Box::new(e)))?;
        }
        let db = rusqlite::Connection::open(path).map_err(|e| open_error(Box::new(e)))?;
        db.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| open_error(Box::new(e)))?;
        // A write-ahead log without an fsync per commit: thousands of
        // registrations a second stay cheap; a crash loses at most the
        // last records, which the nodes send again.
        db.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
            .map_err(|e| open_error(Box::new(e)))?;
        db.execute_batch("PRAGMA synchronous = NORMAL")
            .map_err(|e| open_error(Box::new(e)))?;
        let store = SqliteStore {
            path: path.to_path_buf(),
            db,
        };
        store
            .db
            .execute_batch(
                "CREATE TABLE IF NOT EXISTS nodes (
                    identity TEXT PRIMARY KEY NOT NULL,
                    record TEXT NOT NULL,
                    seen INTEGER NOT NULL
                )",
            )
            .map_err(|e| open_error(Box::new(e)))?;
        Ok(store)
    }

    /// Caps the database at `pages` pages (SQLite's `max_page_count`), so
    /// a write past it fails as on a full disk.
    pub fn limit_pages(&mut self, pages: u64) -> Result<(), StoreError> {
        self.db
            .query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))
            .map_err(|e| self.sql(e))
    }

    fn sql(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sql {
            path: self.path.clone(),
            source,
        }
    }
}

impl Store for SqliteStore {
    fn load(&mut self) -> Result<Vec<Stored>, StoreError> {
        let mut statement = self
            .db
            .prepare("SELECT identity, record, seen FROM nodes")
            .map_err(|e| self.sql(e))?;
        let rows = statement
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, i64>(2)?,
                ))
            })
            .map_err(|e| StoreError::Sql {
                path: self.path.clone(),
                source: e,
            })?;
        let mut nodes = Vec::new();
        for row in rows {
            let (identity, text, seen) = row.map_err(|e| StoreError::Sql {
                path: self.path.clone(),
                source: e,
            })?;
            let record = serde_json::from_str(&text).map_err(|e| StoreError::Record {
                path: self.path.clone(),
                identity,
                source: e,
            })?;
            nodes.push(Stored {
                record,
                seen: seen.max(0) as u64,
            });
        }
        Ok(nodes)
    }

    fn put(&mut self, nodes: &[Stored]) -> Result<(), StoreError> {
        let path = self.path.clone();
        let sql = |source| StoreError::Sql {
            path: path.clone(),
            source,
        };
        let tx = self.db.transaction().map_err(sql)?;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO nodes (identity, record, seen) VALUES (?1, ?2, ?3)",
                )
                .map_err(sql)?;
            for node in nodes {
                let text = serde_json::to_string(&node.record).unwrap_or_default();
                insert
                    .execute(rusqlite::params![
                        node.record.identity,
                        text,
                        node.seen as i64
                    ])
                    .map_err(sql)?;
            }
        }
        tx.commit().map_err(sql)
    }

    fn remove(&mut self, identities: &[String]) -> Result<(), StoreError> {
        let path = self.path.clone();
        let sql = |source| StoreError::Sql {
            path: path.clone(),
            source,
        };
        let tx = self.db.transaction().map_err(sql)?;
        {
            let mut delete = tx
                .prepare_cached("DELETE FROM nodes WHERE identity = ?1")
                .map_err(sql)?;
            for identity in identities {
                delete.execute([identity]).map_err(sql)?;
            }
        }
        tx.commit().map_err(sql)
    }
}
