//! Which callers a node accepts.
//!
//! `plugin.security.trusted_keys` names a directory; each file in it holds
//! one caller's ed25519 public key (64 hex digits; `#` comments allowed)
//! and the file's name, without `.pub`, is the caller's name in logs and
//! audit. The directory is re-read when it changes. With no directory
//! configured a node trusts nobody: secure by default.

use std::collections::HashMap;
use std::path::PathBuf;

use muster_protocol::PublicKey;

use crate::watched::{Source, Watched};

/// Trusted caller keys and their names.
pub struct TrustStore {
    keys: Source<HashMap<PublicKey, String>>,
}

impl TrustStore {
    /// Trusts the keys in `dir`, re-reading it when it changes.
    pub fn from_dir(dir: PathBuf) -> Result<TrustStore, String> {
        let watched = Watched::new(vec![dir], |paths| read_dir(&paths[0]))?;
        Ok(TrustStore {
            keys: Source::Files(watched),
        })
    }

    /// Trusts exactly these keys.
    pub fn fixed(keys: impl IntoIterator<Item = (PublicKey, String)>) -> TrustStore {
        TrustStore {
            keys: Source::fixed(keys.into_iter().collect()),
        }
    }

    /// Trusts nobody.
    pub fn nobody() -> TrustStore {
        TrustStore::fixed([])
    }

    /// The trusted caller's name for `key`.
    pub fn caller(&self, key: &PublicKey) -> Option<String> {
        self.keys.get().get(key).cloned()
    }

    pub fn len(&self) -> usize {
        self.keys.get().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn read_dir(dir: &std::path::Path) -> Result<HashMap<PublicKey, String>, String> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| format!("trusted keys directory {}: {e}", dir.display()))?;
    let mut keys = HashMap::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_file() {
            continue;
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().trim_end_matches(".pub").to_string())
            .unwrap_or_default();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) if text.len() <= 4096 => text,
            Ok(_) => {
                tracing::warn!(file = %path.display(), "ignoring trusted key file: larger than 4 KiB");
                continue;
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "ignoring unreadable trusted key file");
                continue;
            }
        };
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .unwrap_or("");
        match PublicKey::from_hex(line) {
            Ok(key) => {
                keys.insert(key, name);
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "ignoring trusted key file")
            }
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use muster_protocol::KeyPair;

    #[test]
    fn reads_a_directory_of_public_keys_and_skips_junk() {
        let dir = tempfile::tempdir().unwrap();
        let alice = KeyPair::generate();
        let bob = KeyPair::generate();
        std::fs::write(
            dir.path().join("alice.pub"),
            format!("# alice's laptop\n{}\n", alice.public()),
        )
        .unwrap();
        std::fs::write(dir.path().join("junk.pub"), "not a key").unwrap();
        std::fs::write(dir.path().join("huge.pub"), "0".repeat(10_000)).unwrap();
        let store = TrustStore::from_dir(dir.path().to_path_buf()).unwrap();
        assert_eq!(store.caller(&alice.public()), Some("alice".to_string()));
        assert_eq!(store.caller(&bob.public()), None);
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn missing_directory_is_an_error() {
        let err = TrustStore::from_dir(PathBuf::from("/nonexistent/keys"))
            .err()
            .unwrap();
        assert!(err.contains("/nonexistent/keys"), "{err}");
    }
}
