//! The agents built into every node.
//!
//! `rpcutil` is always there. The others act on the machine itself
//! (packages, services, files, Puppet), so they run on real nodes only,
//! never on simulated ones, and each reads its own `plugin.<agent>.*`
//! settings from the server config.

use std::sync::Arc;

use crate::{Agent, ServerConfig};

mod command;
mod external;
mod filemgr;
mod package;
mod puppet;
mod rpcutil;
mod service;

pub(crate) use command::{stoppable, StopSignal};
pub use puppet::Puppet;
pub use rpcutil::Rpcutil;
pub use service::Service;

/// The agents a real node runs besides rpcutil, as its config sets them up.
/// A broken agent setting is an error naming its line.
pub fn for_config(config: &ServerConfig) -> Result<Vec<Arc<dyn Agent>>, String> {
    let _ = config;
    let mut agents: Vec<Arc<dyn Agent>> = Vec::new();
    agents.extend(external::load_all(config)?);
    agents.push(Arc::new(filemgr::Filemgr::from_config(config)?));
    agents.push(Arc::new(package::Package::from_config(config)?));
    agents.push(Arc::new(
        service::Service::from_settings(&config.settings).map_err(|e| e.to_string())?,
    ));
    agents.push(Arc::new(
        puppet::Puppet::from_settings(&config.settings).map_err(|e| e.to_string())?,
    ));
    Ok(agents)
}
