//! The caller's signing key, created on first use.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use muster_protocol::KeyPair;

/// A key problem, naming the file.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct KeyError {
    pub path: PathBuf,
    pub message: String,
}

/// The public key file that belongs to a private key file.
pub fn public_key_path(private: &Path) -> PathBuf {
    let mut name = private.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// Reads the key at `path`, or creates it (mode 0600, its public half
/// beside it as `<path>.pub`). Returns whether it was created, so the
/// caller can tell the user how to trust it.
pub fn load_or_create(path: &Path) -> Result<(KeyPair, bool), KeyError> {
    let error = |message: String| KeyError {
        path: path.to_path_buf(),
        message,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            if let Ok(meta) = std::fs::metadata(path) {
                if meta.permissions().mode() & 0o077 != 0 {
                    tracing::warn!(key = %path.display(), "private key is readable by other users; chmod 600 it");
                }
            }
            let keys = KeyPair::from_hex(&text)
                .map_err(|e| error(format!("not a muster private key: {e}")))?;
            Ok((keys, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let keys = KeyPair::generate();
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| error(format!("cannot create its directory: {e}")))?;
            }
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| error(format!("cannot create: {e}")))?;
            writeln!(file, "{}", keys.to_hex()).map_err(|e| error(format!("cannot write: {e}")))?;
            let public = public_key_path(path);
            std::fs::write(&public, format!("{}\n", keys.public())).map_err(|e| KeyError {
                path: public.clone(),
                message: format!("cannot write: {e}"),
            })?;
            Ok((keys, true))
        }
        Err(e) => Err(error(format!("cannot read: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_once_then_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys").join("alice");
        let (created, fresh) = load_or_create(&path).unwrap();
        assert!(fresh);
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let public = std::fs::read_to_string(public_key_path(&path)).unwrap();
        assert_eq!(public.trim(), created.public().to_hex());
        let (again, fresh) = load_or_create(&path).unwrap();
        assert!(!fresh);
        assert_eq!(again.public(), created.public());
    }

    #[test]
    fn a_corrupt_key_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad");
        std::fs::write(&path, "hello").unwrap();
        let err = load_or_create(&path).err().unwrap();
        assert!(
            err.to_string().contains("not a muster private key"),
            "{err}"
        );
    }
}
