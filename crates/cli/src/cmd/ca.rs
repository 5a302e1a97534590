//! `mco ca`: a fleet CA in Puppet's ssldir layout, for shops without Puppet.

use std::path::PathBuf;

use muster_pki::{ca::FleetCa, Ssldir};
use muster_protocol::identity::{role_of, Role, CALLER_SUFFIX, FLEET_SUFFIX};

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    #[command(subcommand)]
    pub action: Action,
}

#[derive(clap::Subcommand, Debug)]
pub(crate) enum Action {
    /// Create a CA (ed25519) in DIR: DIR/ca/ (keep it on one machine), DIR/certs/ca.pem, DIR/crl.pem
    Init {
        /// The ssldir to create the CA in
        #[arg(long, value_name = "DIR")]
        ssldir: PathBuf,
    },
    /// Issue a certificate and key: DIR/certs/NAME.pem, DIR/private_keys/NAME.pem (0600)
    Issue {
        /// The certificate name: a node's identity, a caller's user name, a broker's host name
        name: String,
        #[arg(long, value_name = "DIR")]
        ssldir: PathBuf,
        /// node: a node daemon; caller: an operator (named NAME.mcollective);
        /// broker: a broker (give the names clients connect to with --san);
        /// fleet: a simulator answering for identities starting with NAME (named NAME.fleet)
        #[arg(long, value_enum, default_value = "node")]
        role: IssueRole,
        /// More DNS names or IP addresses for the certificate (brokers: every name clients use)
        #[arg(long, value_name = "NAME|IP")]
        san: Vec<String>,
    },
    /// Revoke NAME's certificate: rewrites DIR/crl.pem, which every broker and node must get
    Revoke {
        name: String,
        #[arg(long, value_name = "DIR")]
        ssldir: PathBuf,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IssueRole {
    Node,
    Caller,
    Broker,
    Fleet,
}

/// The certificate name a role gives NAME: callers end in `.mcollective`,
/// simulators in `.fleet`; nodes and brokers must not.
pub(crate) fn certname(name: &str, role: IssueRole) -> anyhow::Result<String> {
    let name = match role {
        IssueRole::Caller if !name.ends_with(CALLER_SUFFIX) => format!("{name}{CALLER_SUFFIX}"),
        IssueRole::Fleet if !name.ends_with(FLEET_SUFFIX) => format!("{name}{FLEET_SUFFIX}"),
        _ => name.to_string(),
    };
    let wanted = match role {
        IssueRole::Caller => "caller",
        IssueRole::Fleet => "fleet",
        IssueRole::Node | IssueRole::Broker => "node",
    };
    let actual = match role_of(&name) {
        Role::Caller => "caller",
        Role::Fleet { .. } => "fleet",
        Role::Node => "node",
    };
    if wanted != actual {
        anyhow::bail!(
            "{name:?} would be a {actual}'s certificate (names ending in {CALLER_SUFFIX} are callers', in {FLEET_SUFFIX} simulators'); pick another name or --role {actual}"
        );
    }
    Ok(name)
}

pub(crate) fn run(args: Args) -> anyhow::Result<u8> {
    match args.action {
        Action::Init { ssldir } => {
            let dir = Ssldir::new(&ssldir);
            FleetCa::init(&dir)?;
            println!(
                "Created a CA in {}.\n  CA certificate: {} (give it to every host)\n  CRL:            {} (give it to every host)\n  CA key:         {} (keep it here, and safe)\n\nNext: mco ca issue NAME --ssldir {} --role node|caller|broker",
                ssldir.display(),
                dir.ca_file().display(),
                dir.crl_file().display(),
                ssldir.join("ca").join("ca_key.pem").display(),
                ssldir.display()
            );
        }
        Action::Issue {
            name,
            ssldir,
            role,
            san,
        } => {
            let name = certname(&name, role)?;
            let dir = Ssldir::new(&ssldir);
            let cert = FleetCa::open(&dir)?.issue(&dir, &name, &san)?;
            println!(
                "Issued {name}:\n  certificate: {}\n  private key: {} (mode 0600)\n\nCopy both, with {} and {}, to the host that is {name}\n(its plugin.security.ssldir), and set plugin.security.certname = {name}.",
                cert.display(),
                dir.key_file(&name).display(),
                dir.ca_file().display(),
                dir.crl_file().display(),
            );
        }
        Action::Revoke { name, ssldir } => {
            let dir = Ssldir::new(&ssldir);
            let crl = FleetCa::open(&dir)?.revoke(&dir, &name)?;
            println!(
                "Revoked {name}. Copy {} to every node (they re-read it within a second) and every\n`mco broker` (restart it); for nats-server run mco broker nats-config again and reload it.",
                crl.display()
            );
        }
    }
    Ok(super::EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_name_certificates() {
        assert_eq!(
            certname("alice", IssueRole::Caller).unwrap(),
            "alice.mcollective"
        );
        assert_eq!(
            certname("alice.mcollective", IssueRole::Caller).unwrap(),
            "alice.mcollective"
        );
        assert_eq!(certname("node", IssueRole::Fleet).unwrap(), "node.fleet");
        assert_eq!(certname("web1", IssueRole::Node).unwrap(), "web1");
        let err = certname("x.mcollective", IssueRole::Node).unwrap_err();
        assert!(err.to_string().contains("caller"), "{err}");
    }
}
