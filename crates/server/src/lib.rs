//! The muster node daemon, `mco server`.
//!
//! A [`Node`] knows its identity, facts, classes and collectives, hosts
//! [`Agent`]s, and decides for every incoming message whether to act:
//! the envelope must be signed by a caller's certificate from the fleet's
//! CA ([`muster_pki::Authority`]), not expired, not a replay, for one of
//! its collectives, and its filter must select the node. [`daemon::serve`] connects a node to the broker;
//! [`fleet`] runs thousands of simulated nodes in one process.
//!
//! This crate knows nothing about terminals or command-line flags.
//!
//! ```
//! use std::sync::Arc;
//! use muster_pki::{ca::FleetCa, Authority, Credential, Ssldir};
//! use muster_protocol::{Envelope, Request};
//! use muster_server::{fleet::simulated_node, node::Outcome};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let ssldir = Ssldir::new(dir.path());
//! FleetCa::init(&ssldir).unwrap().issue(&ssldir, "alice.mcollective", &[]).unwrap();
//! let alice = Credential::load(&ssldir, "alice.mcollective").unwrap();
//! let node = simulated_node("node01", 1, Arc::new(Authority::load(&ssldir).unwrap()));
//!
//! let request = Request::new("client", "alice.mcollective", "mcollective", "rpcutil", "ping");
//! let envelope = Envelope::seal(&request, &alice).unwrap();
//! let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
//! match rt.block_on(node.handle(&envelope.to_bytes())) {
//!     Outcome::Reply { reply, .. } => assert!(reply.statuscode.is_ok()),
//!     other => panic!("{other:?}"),
//! }
//! ```

pub mod agent;
pub mod agents;
pub mod audit;
mod config;
pub mod daemon;
pub mod data;
pub mod facts;
pub mod fleet;
pub mod node;
pub mod policy;
pub mod registration;
mod replay;
pub mod stats;
pub mod sysfacts;
pub mod watched;

pub use agent::Agent;
pub use config::{hostname, FactSource, LogFormat, ServerConfig, DEFAULT_MAX_TTL};
pub use node::Node;

/// This build's version, reported by `inventory` and `daemon_stats`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
