//! Files that are re-read when they change.
//!
//! Facts, classes and policies all live in files that configuration
//! management rewrites under a running daemon. [`Watched`] keeps the last
//! good parse and re-reads when a file's size or mtime (or a directory's
//! entries) changed, checking at most once per [`CHECK_INTERVAL`] so a
//! busy node does not stat on every request. A parse error keeps the old
//! value and is logged once per change.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// How often a watched file's metadata is looked at, at most.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Why a parse failed, kept for the log line.
type ParseError = Box<dyn std::error::Error + Send + Sync>;

type Parse<T> = Box<dyn Fn(&[PathBuf]) -> Result<T, ParseError> + Send + Sync>;

/// A value parsed from files, refreshed when they change.
pub struct Watched<T> {
    paths: Vec<PathBuf>,
    parse: Parse<T>,
    state: Mutex<State<T>>,
}

struct State<T> {
    checked: Instant,
    stamp: Vec<Stamp>,
    value: Arc<T>,
}

#[derive(PartialEq, Eq)]
struct Stamp {
    path: PathBuf,
    modified: Option<SystemTime>,
    len: u64,
}

impl<T> Watched<T> {
    /// Reads the files now; fails if they cannot be parsed, so a daemon
    /// reports a broken file at start-up instead of serving without it.
    pub fn new<E>(
        paths: Vec<PathBuf>,
        parse: impl Fn(&[PathBuf]) -> Result<T, E> + Send + Sync + 'static,
    ) -> Result<Watched<T>, E>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        let stamp = stamp(&paths);
        let value = Arc::new(parse(&paths)?);
        Ok(Watched {
            paths,
            parse: Box::new(move |paths| parse(paths).map_err(ParseError::from)),
            state: Mutex::new(State {
                checked: Instant::now(),
                stamp,
                value,
            }),
        })
    }

    /// The current value, re-read first if the files changed.
    pub fn get(&self) -> Arc<T> {
        let mut state = match self.state.lock() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        };
        if state.checked.elapsed() >= CHECK_INTERVAL {
            state.checked = Instant::now();
            let now = stamp(&self.paths);
            if now != state.stamp {
                state.stamp = now;
                match (self.parse)(&self.paths) {
                    Ok(value) => {
                        tracing::info!(files = ?self.paths, "re-read changed files");
                        state.value = Arc::new(value);
                    }
                    Err(e) => {
                        tracing::warn!(files = ?self.paths, error = %e, "changed file is unusable; keeping the previous contents")
                    }
                }
            }
        }
        state.value.clone()
    }
}

fn stamp(paths: &[PathBuf]) -> Vec<Stamp> {
    let mut stamps = Vec::new();
    for path in paths {
        stamps.push(stamp_one(path));
        if let Ok(entries) = std::fs::read_dir(path) {
            let mut inner: Vec<Stamp> = entries.flatten().map(|e| stamp_one(&e.path())).collect();
            inner.sort_by(|a, b| a.path.cmp(&b.path));
            stamps.extend(inner);
        }
    }
    stamps
}

fn stamp_one(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok();
    Stamp {
        path: path.to_path_buf(),
        modified: meta.as_ref().and_then(|m| m.modified().ok()),
        len: meta.map(|m| m.len()).unwrap_or(0),
    }
}

/// A value that is either fixed (simulated nodes, tests) or read from
/// watched files (real nodes).
pub enum Source<T> {
    /// Set once; never re-read.
    Fixed(Arc<T>),
    /// Re-read when its files change.
    Files(Watched<T>),
}

impl<T> Source<T> {
    /// A value that never changes.
    pub fn fixed(value: T) -> Source<T> {
        Source::Fixed(Arc::new(value))
    }

    /// The current value (re-read first if its files changed).
    pub fn get(&self) -> Arc<T> {
        match self {
            Source::Fixed(value) => value.clone(),
            Source::Files(watched) => watched.get(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(paths: &[PathBuf]) -> Result<String, std::io::Error> {
        let text = std::fs::read_to_string(&paths[0])?;
        if text.contains("bad") {
            return Err(std::io::Error::other("bad content"));
        }
        Ok(text)
    }

    fn wait_for_next_check() {
        std::thread::sleep(CHECK_INTERVAL + Duration::from_millis(50));
    }

    #[test]
    fn rereads_changes_and_keeps_last_good_value() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("x");
        std::fs::write(&file, "one").unwrap();
        let watched = Watched::new(vec![file.clone()], read).unwrap();
        assert_eq!(*watched.get(), "one");

        std::fs::write(&file, "two!").unwrap();
        wait_for_next_check();
        assert_eq!(*watched.get(), "two!");

        std::fs::write(&file, "bad file").unwrap();
        wait_for_next_check();
        assert_eq!(*watched.get(), "two!");
    }

    #[test]
    fn unreadable_at_start_is_an_error() {
        let err = Watched::new(vec![PathBuf::from("/nonexistent/x")], read)
            .err()
            .unwrap();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound, "{err}");
    }
}
