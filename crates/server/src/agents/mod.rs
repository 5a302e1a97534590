//! The agents built into every node.
//!
//! `rpcutil` is always there. The others act on the machine itself
//! (packages, services, files, Puppet), so they run on real nodes only,
//! never on simulated ones, and each reads its own `plugin.<agent>.*`
//! settings from the server config.

use std::sync::Arc;

use crate::{Agent, ServerConfig};

mod rpcutil;

pub use rpcutil::Rpcutil;

/// The agents a real node runs besides rpcutil, as its config sets them up.
/// A broken agent setting is an error naming its line.
pub fn for_config(config: &ServerConfig) -> Result<Vec<Arc<dyn Agent>>, String> {
    let _ = config;
    let agents: Vec<Arc<dyn Agent>> = Vec::new();
    Ok(agents)
}
