//! `plugin.security.*`: the keys server.cfg and client.cfg share.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use muster_protocol::config::{Config, ConfigError};

use crate::{Authority, Credential, PkiError, Ssldir};

/// Where a participant's certificate lives and which one it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `plugin.security.ssldir`.
    pub ssldir: Ssldir,
    /// `plugin.security.certname`.
    pub certname: String,
}

/// A participant ready to speak: its credential and the CA it trusts.
#[derive(Debug, Clone)]
pub struct Identity {
    /// This participant's certificate and key.
    pub credential: Credential,
    /// The CA, shared by everything that verifies peers.
    pub authority: Arc<Authority>,
}

impl Settings {
    /// Reads `plugin.security.provider` (only `x509`), `.ssldir` (relative
    /// to `base`, the config file's directory) and `.certname`.
    pub fn from_config(
        config: &Config,
        base: Option<&Path>,
        default_ssldir: PathBuf,
        default_certname: String,
    ) -> Result<Settings, ConfigError> {
        match config.get("plugin.security.provider").unwrap_or("x509") {
            "x509" => {}
            "ssl" | "puppet" | "choria" => {
                return Err(config.error(
                    "plugin.security.provider",
                    "muster's x509 provider replaces MCollective's ssl and Choria's puppet providers: \
                     set plugin.security.provider = x509 and plugin.security.ssldir (docs/security.md, Migrating)",
                ))
            }
            other => {
                return Err(config.error(
                    "plugin.security.provider",
                    format!("unknown security provider {other:?} (this build knows: x509)"),
                ))
            }
        }
        let ssldir = match config.get("plugin.security.ssldir") {
            Some(dir) => match base {
                Some(base) if Path::new(dir).is_relative() => base.join(dir),
                _ => PathBuf::from(dir),
            },
            None => default_ssldir,
        };
        let certname = config
            .get("plugin.security.certname")
            .map(str::to_string)
            .unwrap_or(default_certname);
        if !muster_protocol::subject::is_valid_name(&certname) {
            return Err(config.error(
                "plugin.security.certname",
                format!("certname {certname:?} cannot contain spaces, '*', '>' or empty dot-separated parts"),
            ));
        }
        Ok(Settings {
            ssldir: Ssldir::new(ssldir),
            certname,
        })
    }

    /// Loads the credential and the CA, and checks that the CA vouches for
    /// the credential: a certificate from another CA, or a revoked one, is
    /// an error here rather than a refusal by every peer later.
    pub fn load(&self) -> Result<Identity, PkiError> {
        let authority = Authority::load(&self.ssldir)?;
        let credential = Credential::load(&self.ssldir, &self.certname)?;
        authority
            .verify_certificate(credential.certificate())
            .map_err(|e| {
                PkiError::file(
                    self.ssldir.cert_file(&self.certname),
                    format!("{e}; every peer would refuse it"),
                )
            })?;
        Ok(Identity {
            authority: Arc::new(authority),
            credential,
        })
    }
}

impl Identity {
    /// The TLS client config for the broker connection.
    pub fn client_tls(&self) -> Result<Arc<rustls::ClientConfig>, PkiError> {
        self.authority.client_config(&self.credential).map(Arc::new)
    }
}
