//! `mco broker nats-config`: the embedded broker's rules for nats-server.
//!
//! nats-server maps a client certificate to a user (`verify_and_map`) by
//! its DNS names or its subject, so the configuration lists one user per
//! issued certificate, under both forms, with the permissions its name
//! grants. What nats-server cannot express is said in the file:
//! a fleet simulator's identity prefix becomes "any one-token identity",
//! and revocation is expressed by leaving revoked certificates out (regenerate
//! and reload nats-server after `mco ca revoke`).
//!
//! The same generator writes every member of a deployment: a cluster
//! member ([`Cluster`]: routes with mutual TLS from the same CA), a hub
//! accepting leaf sites ([`LeafnodeListen`]) and a leaf site connecting to
//! the hub ([`NatsConfig::leaf_remotes`]). Each member gets the same users
//! and permissions, so a participant is held to the same rules whichever
//! member it reaches. Server-to-server links are admitted by certificate:
//! a route only from a certificate naming a host in the routes list, a
//! leaf only from the certificate names the hub lists, because a route or
//! leaf connection is not held to any user's permissions.

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
    /// This server as a member of a nats-server cluster.
    pub cluster: Option<Cluster>,
    /// Accept leaf sites (hub side).
    pub leafnodes: Option<LeafnodeListen>,
    /// Connect to a hub as a leaf site: the hub members' leafnode URLs
    /// (`tls://hub1:7422`), tried in turn. Empty: not a leaf.
    pub leaf_remotes: Vec<String>,
    /// Lines added at the end (e.g. `http: "127.0.0.1:8222"` for monitoring).
    pub extra: String,
}

/// The `cluster {}` block of one member.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// The cluster's name, the same on every member.
    pub name: String,
    /// `host:port` other members' routes connect to.
    pub listen: String,
    /// Every member's route URL (`nats-route://broker2:6222`), the same
    /// list on every member (a server ignores the route to itself). The
    /// hosts must be DNS names in the members' certificates: a member
    /// admits an incoming route only from a certificate naming one of them.
    pub routes: Vec<String>,
}

/// The `leafnodes {}` listener of a hub.
#[derive(Debug, Clone)]
pub struct LeafnodeListen {
    /// `host:port` leaf sites connect to.
    pub listen: String,
    /// The certificate names of the leaf sites' servers admitted. A leaf
    /// connection carries its whole site's traffic, unbounded by any
    /// user's permissions, so no other certificate of the CA may open one.
    pub certnames: Vec<String>,
}

impl NatsConfig {
    /// The configuration text, or an error naming the file that is wrong.
    pub fn render(&self) -> Result<String, PkiError> {
        self.check_options()?;
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
        let tls = |indent: &str, verify: &str| {
            let mut block = format!("{indent}tls {{\n");
            for (key, file) in [
                ("cert_file", &cert_file),
                ("key_file", &key_file),
                ("ca_file", &self.ssldir.ca_file()),
            ] {
                let _ = writeln!(
                    block,
                    "{indent}  {key}: {}",
                    quote(&file.display().to_string())
                );
            }
            if !verify.is_empty() {
                let _ = writeln!(block, "{indent}  {verify}: true");
            }
            let _ = writeln!(block, "{indent}  timeout: 2");
            let _ = writeln!(block, "{indent}}}");
            block
        };
        out.push_str(&tls("", "verify_and_map"));
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
        if let Some(cluster) = &self.cluster {
            let _ = writeln!(out, "cluster {{");
            let _ = writeln!(out, "  name: {}", quote(&cluster.name));
            let _ = writeln!(out, "  listen: {}", quote(&cluster.listen));
            // Routes present this server's certificate both ways (nats-server
            // always verifies route TLS); an incoming route is admitted only
            // from a certificate naming a host of `routes`, not from any
            // certificate of the CA.
            out.push_str(&tls("  ", "verify_cert_and_check_known_urls"));
            // Clients use their configured server list: the URLs a member
            // would advertise are its interface addresses, which certificates
            // issued for DNS names do not cover.
            let _ = writeln!(out, "  no_advertise: true");
            let _ = writeln!(out, "  routes = {}", list(&cluster.routes));
            let _ = writeln!(out, "}}");
        }
        if self.leafnodes.is_some() || !self.leaf_remotes.is_empty() {
            let _ = writeln!(out, "leafnodes {{");
            if let Some(leafnodes) = &self.leafnodes {
                let _ = writeln!(out, "  listen: {}", quote(&leafnodes.listen));
                out.push_str(&tls("  ", "verify_and_map"));
                let _ = writeln!(out, "  no_advertise: true");
                let _ = writeln!(out, "  authorization {{");
                let _ = writeln!(out, "    timeout: 2");
                let _ = writeln!(out, "    users = [");
                for name in &leafnodes.certnames {
                    let _ = writeln!(out, "      {{ user: {} }}", quote(name));
                }
                let _ = writeln!(out, "    ]");
                let _ = writeln!(out, "  }}");
            }
            if !self.leaf_remotes.is_empty() {
                // The hub maps this server's certificate to a leaf user; the
                // site's own clients are held to the users above.
                let _ = writeln!(out, "  remotes = [");
                let _ = writeln!(out, "    {{");
                let _ = writeln!(out, "      urls: {}", list(&self.leaf_remotes));
                out.push_str(&tls("      ", ""));
                let _ = writeln!(out, "    }}");
                let _ = writeln!(out, "  ]");
            }
            let _ = writeln!(out, "}}");
        }
        out.push_str(&self.extra);
        Ok(out)
    }
}

impl NatsConfig {
    /// Refuses what nats-server would accept but what would never connect.
    fn check_options(&self) -> Result<(), PkiError> {
        if let Some(cluster) = &self.cluster {
            if cluster.name.trim().is_empty() {
                return Err(PkiError::Options("the cluster needs a name".into()));
            }
            for route in &cluster.routes {
                let host = url_host(route).ok_or_else(|| {
                    PkiError::Options(format!(
                        "route {route:?} is not a URL like nats-route://broker2:6222"
                    ))
                })?;
                if host
                    .trim_matches(['[', ']'])
                    .parse::<std::net::IpAddr>()
                    .is_ok()
                {
                    return Err(PkiError::Options(format!(
                        "route {route:?} names an IP address: members admit a route only from a \
                         certificate whose DNS name is a route's host, so name members by DNS name"
                    )));
                }
            }
        }
        if let Some(leafnodes) = &self.leafnodes {
            if leafnodes.certnames.is_empty() {
                return Err(PkiError::Options(
                    "accepting leaf sites needs the certificate names of their servers".into(),
                ));
            }
        }
        for url in &self.leaf_remotes {
            if url_host(url).is_none() {
                return Err(PkiError::Options(format!(
                    "leaf remote {url:?} is not a URL like tls://hub1:7422"
                )));
            }
        }
        Ok(())
    }
}

/// The host of `scheme://[user@]host:port`, if `url` has that shape.
fn url_host(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let authority = rest.split('/').next()?;
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = hostport.rsplit_once(':')?;
    (!host.is_empty() && port.parse::<u16>().is_ok()).then_some(host)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::FleetCa;

    /// A CA with a broker, a node and a caller, and a single-server config.
    fn setup() -> (tempfile::TempDir, NatsConfig) {
        let dir = tempfile::tempdir().unwrap();
        let ssldir = Ssldir::new(dir.path());
        let ca = FleetCa::init(&ssldir).unwrap();
        for name in ["broker1", "web1", "alice.mcollective"] {
            ca.issue(&ssldir, name, &[]).unwrap();
        }
        let config = NatsConfig {
            ssldir,
            certname: "broker1".into(),
            issued: None,
            listen: "0.0.0.0:4222".into(),
            max_connections: 100,
            cluster: None,
            leafnodes: None,
            leaf_remotes: Vec::new(),
            extra: String::new(),
        };
        (dir, config)
    }

    /// The lines of `text` from the one starting with `start` to the
    /// closing brace at the same indentation.
    fn block<'a>(text: &'a str, start: &str) -> Vec<&'a str> {
        let mut lines = text.lines().skip_while(|l| !l.starts_with(start));
        let first = lines
            .next()
            .unwrap_or_else(|| panic!("no {start:?} in\n{text}"));
        let indent = &first[..first.len() - first.trim_start().len()];
        let mut out = vec![first];
        for line in lines {
            out.push(line);
            if line == format!("{indent}}}") {
                break;
            }
        }
        out
    }

    #[test]
    fn a_single_server_has_no_cluster_or_leafnode_block() {
        let (_dir, config) = setup();
        let text = config.render().unwrap();
        assert!(text.contains("listen: \"0.0.0.0:4222\"\n"), "{text}");
        assert!(text.contains("  verify_and_map: true\n"), "{text}");
        assert!(
            !text.contains("cluster {") && !text.contains("leafnodes {"),
            "{text}"
        );
        assert!(text.contains("{ user: \"web1\", "), "{text}");
    }

    #[test]
    fn a_cluster_member_routes_with_mutual_tls_from_the_same_ca() {
        let (dir, mut config) = setup();
        config.cluster = Some(Cluster {
            name: "muster".into(),
            listen: "0.0.0.0:6222".into(),
            routes: vec![
                "nats-route://broker1.example.net:6222".into(),
                "nats-route://broker2.example.net:6222".into(),
            ],
        });
        let text = config.render().unwrap();
        let ssl = dir.path().display();
        assert_eq!(
            block(&text, "cluster {"),
            [
                "cluster {".to_string(),
                "  name: \"muster\"".into(),
                "  listen: \"0.0.0.0:6222\"".into(),
                "  tls {".into(),
                format!("    cert_file: \"{ssl}/certs/broker1.pem\""),
                format!("    key_file: \"{ssl}/private_keys/broker1.pem\""),
                format!("    ca_file: \"{ssl}/certs/ca.pem\""),
                "    verify_cert_and_check_known_urls: true".into(),
                "    timeout: 2".into(),
                "  }".into(),
                "  no_advertise: true".into(),
                "  routes = [\"nats-route://broker1.example.net:6222\", \"nats-route://broker2.example.net:6222\"]".into(),
                "}".into(),
            ]
        );
        // Members hold clients to the same users as a single server.
        assert!(
            text.contains("{ user: \"CN=alice.mcollective\", "),
            "{text}"
        );
    }

    #[test]
    fn a_hub_admits_only_the_named_leaf_certificates() {
        let (_dir, mut config) = setup();
        config.leafnodes = Some(LeafnodeListen {
            listen: "0.0.0.0:7422".into(),
            certnames: vec!["site1.broker".into(), "site2.broker".into()],
        });
        let text = config.render().unwrap();
        let leaf = block(&text, "leafnodes {").join("\n");
        assert!(leaf.contains("  listen: \"0.0.0.0:7422\"\n"), "{leaf}");
        assert!(leaf.contains("    verify_and_map: true\n"), "{leaf}");
        assert!(
            leaf.contains("      { user: \"site1.broker\" }\n      { user: \"site2.broker\" }\n"),
            "{leaf}"
        );
        assert!(!leaf.contains("remotes"), "{leaf}");
    }

    #[test]
    fn a_leaf_site_connects_to_the_hub_with_its_certificate() {
        let (dir, mut config) = setup();
        config.leaf_remotes = vec!["tls://hub1:7422".into(), "tls://hub2:7422".into()];
        let text = config.render().unwrap();
        let leaf = block(&text, "leafnodes {");
        let ssl = dir.path().display();
        assert_eq!(
            leaf,
            [
                "leafnodes {".to_string(),
                "  remotes = [".into(),
                "    {".into(),
                "      urls: [\"tls://hub1:7422\", \"tls://hub2:7422\"]".into(),
                "      tls {".into(),
                format!("        cert_file: \"{ssl}/certs/broker1.pem\""),
                format!("        key_file: \"{ssl}/private_keys/broker1.pem\""),
                format!("        ca_file: \"{ssl}/certs/ca.pem\""),
                "        timeout: 2".into(),
                "      }".into(),
                "    }".into(),
                "  ]".into(),
                "}".into(),
            ]
        );
        // The site's own clients are held to the same users.
        assert!(
            text.contains("authorization {\n  timeout: 2\n  users = [\n"),
            "{text}"
        );
    }

    #[test]
    fn options_that_could_never_connect_are_refused() {
        let (_dir, mut config) = setup();
        let cluster = |routes: &[&str]| {
            Some(Cluster {
                name: "muster".into(),
                listen: "0.0.0.0:6222".into(),
                routes: routes.iter().map(|r| r.to_string()).collect(),
            })
        };
        for (routes, expected) in [
            (&["nats-route://10.0.0.2:6222"][..], "names an IP address"),
            (&["nats-route://[::1]:6222"][..], "names an IP address"),
            (&["broker2:6222"][..], "is not a URL"),
            (&["nats-route://broker2"][..], "is not a URL"),
        ] {
            config.cluster = cluster(routes);
            let err = config.render().unwrap_err().to_string();
            assert!(err.contains(expected), "{routes:?}: {err}");
        }
        config.cluster = cluster(&["nats-route://user:pw@broker2:6222"]);
        assert!(config.render().is_ok());
        config.cluster = None;
        config.leafnodes = Some(LeafnodeListen {
            listen: "0.0.0.0:7422".into(),
            certnames: Vec::new(),
        });
        let err = config.render().unwrap_err().to_string();
        assert!(err.contains("certificate names"), "{err}");
        config.leafnodes = None;
        config.leaf_remotes = vec!["hub1".into()];
        let err = config.render().unwrap_err().to_string();
        assert!(err.contains("tls://hub1:7422"), "{err}");
    }
}
