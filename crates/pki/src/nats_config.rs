//! `mco broker nats-config`: the embedded broker's rules for nats-server.
//!
//! nats-server maps a client certificate to a user (`verify_and_map`) by
//! its DNS names or its subject, so the configuration lists one user per
//! issued certificate, under both forms, with the permissions its name
//! grants. What nats-server cannot express is said in the file:
//! a fleet simulator's identity prefix becomes "any one-token identity",
//! and revocation is expressed by leaving revoked certificates out (regenerate
//! and reload nats-server after `mco ca revoke`).

use std::collections::BTreeSet;
use std::fmt::Write;
use std::path::{Path, PathBuf};

use muster_protocol::identity::{role_of, Grants, Role};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::{certificate_name, ssldir, PkiError, Ssldir};

/// What to generate a nats-server configuration for.
#[derive(Debug, Clone)]
pub struct NatsConfig {
    /// The broker's ssldir (its certificate, key, CA and CRL).
    pub ssldir: Ssldir,
    /// The broker's certificate name.
    pub certname: String,
    /// Where the issued certificates are (default `ssldir/certs`; a Puppet
    /// CA keeps them in `.../puppetserver/ca/signed`).
    pub issued: Option<PathBuf>,
    /// `host:port` clients connect to.
    pub listen: String,
    /// nats-server's `max_connections`.
    pub max_connections: usize,
    /// Lines added at the end (cluster or leafnode blocks, monitoring).
    pub extra: String,
}

impl NatsConfig {
    /// The configuration text, or an error naming the file that is wrong.
    pub fn render(&self) -> Result<String, PkiError> {
        let cert_file = self.ssldir.cert_file(&self.certname);
        let key_file = self.ssldir.key_file(&self.certname);
        for file in [&cert_file, &key_file, &self.ssldir.ca_file()] {
            if !file.exists() {
                return Err(PkiError::file(
                    file,
                    "missing: the broker needs its certificate, key and the CA",
                ));
            }
        }
        let revoked = revoked_serials(&self.ssldir.crl_file())?;
        let issued = self
            .issued
            .clone()
            .unwrap_or_else(|| self.ssldir.root().join("certs"));
        let mut users = Vec::new();
        let mut left_out = Vec::new();
        let mut fleets = Vec::new();
        for (name, serial) in issued_certificates(&issued)? {
            if revoked.contains(&serial) {
                left_out.push(name);
                continue;
            }
            if matches!(role_of(&name), Role::Fleet { .. }) {
                fleets.push(name.clone());
            }
            users.push(name);
        }
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# nats-server configuration written by `mco broker nats-config`."
        );
        let _ = writeln!(
            out,
            "# The same admission and permissions as the embedded `mco broker`:"
        );
        let _ = writeln!(
            out,
            "# TLS with client certificates from {}, one user per issued",
            self.ssldir.ca_file().display()
        );
        let _ = writeln!(
            out,
            "# certificate (mapped by DNS name and by subject), permissions by name."
        );
        let _ = writeln!(out, "#");
        let _ = writeln!(
            out,
            "# What nats-server cannot express (signed replies close these gaps):"
        );
        let _ = writeln!(
            out,
            "# - a fleet simulator certificate (<prefix>.fleet) may answer as any"
        );
        let _ = writeln!(
            out,
            "#   one-token identity, not only those starting with its prefix{}.",
            if fleets.is_empty() {
                String::new()
            } else {
                format!(" ({})", fleets.join(", "))
            }
        );
        let _ = writeln!(
            out,
            "# - nats-server 2.9 reads no CRL: revoked certificates are simply not"
        );
        let _ = writeln!(
            out,
            "#   users here. After `mco ca revoke`, regenerate this file and reload nats-server."
        );
        if !left_out.is_empty() {
            let _ = writeln!(out, "#   Left out as revoked: {}", left_out.join(", "));
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "listen: {}", quote(&self.listen));
        let _ = writeln!(out, "max_connections: {}", self.max_connections);
        let _ = writeln!(out, "tls {{");
        let _ = writeln!(
            out,
            "  cert_file: {}",
            quote(&cert_file.display().to_string())
        );
        let _ = writeln!(
            out,
            "  key_file: {}",
            quote(&key_file.display().to_string())
        );
        let _ = writeln!(
            out,
            "  ca_file: {}",
            quote(&self.ssldir.ca_file().display().to_string())
        );
        let _ = writeln!(out, "  verify_and_map: true");
        let _ = writeln!(out, "  timeout: 2");
        let _ = writeln!(out, "}}");
        let _ = writeln!(out, "authorization {{");
        let _ = writeln!(out, "  timeout: 2");
        let _ = writeln!(out, "  users = [");
        for name in &users {
            let grants = Grants::for_name(name).nats_server();
            for user in [name.clone(), format!("CN={name}")] {
                let _ = writeln!(
                    out,
                    "    {{ user: {}, permissions: {{ publish: {{ allow: {} }}, subscribe: {{ allow: {} }} }} }}",
                    quote(&user),
                    list(&grants.publish),
                    list(&grants.subscribe)
                );
            }
        }
        let _ = writeln!(out, "  ]");
        let _ = writeln!(out, "}}");
        out.push_str(&self.extra);
        Ok(out)
    }
}

/// (name, serial) of every certificate file in `dir` except `ca.pem`.
fn issued_certificates(dir: &Path) -> Result<Vec<(String, Vec<u8>)>, PkiError> {
    let entries = std::fs::read_dir(dir).map_err(|e| PkiError::io(dir, e))?;
    let mut found = Vec::new();
    let mut names = BTreeSet::new();
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "pem")
                && p.file_name().is_some_and(|n| n != "ca.pem")
        })
        .collect();
    paths.sort();
    for path in paths {
        let certs = match ssldir::certificates(&path) {
            Ok(certs) => certs,
            Err(e) => {
                tracing::warn!(error = %e, "skipping a file that is not a certificate");
                continue;
            }
        };
        let der = &certs[0];
        let name = certificate_name(der).map_err(|e| PkiError::file(&path, e.to_string()))?;
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|e| PkiError::file(&path, format!("not a certificate: {e}")))?;
        if names.insert(name.clone()) {
            found.push((name, cert.raw_serial().to_vec()));
        }
    }
    Ok(found)
}

fn revoked_serials(crl_file: &Path) -> Result<BTreeSet<Vec<u8>>, PkiError> {
    let mut serials = BTreeSet::new();
    for der in ssldir::crls(crl_file)? {
        let (_, crl) = x509_parser::revocation_list::CertificateRevocationList::from_der(&der)
            .map_err(|e| PkiError::file(crl_file, format!("not a CRL: {e}")))?;
        for revoked in crl.iter_revoked_certificates() {
            serials.insert(revoked.raw_serial().to_vec());
        }
    }
    Ok(serials)
}

fn quote(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

fn list(items: &[String]) -> String {
    format!(
        "[{}]",
        items
            .iter()
            .map(|i| quote(i))
            .collect::<Vec<_>>()
            .join(", ")
    )
}
