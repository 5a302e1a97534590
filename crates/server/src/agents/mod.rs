//! The agents built into every node.
//!
//! `rpcutil` is always there. The others act on the machine itself
//! (packages, services, files, Puppet), so they run on real nodes only,
//! never on simulated ones, and each reads its own `plugin.<agent>.*`
//! settings from the server config.

use std::sync::Arc;

use muster_protocol::config::ConfigError;

use crate::{Agent, ServerConfig};

pub(crate) mod command;
mod external;
mod filemgr;
mod package;
mod puppet;
mod rpcutil;
mod service;

pub(crate) use command::{stoppable, StopSignal};
pub use external::LoadError;
pub use puppet::Puppet;
pub(crate) use rpcutil::ConfiguredRpcutil;
pub use rpcutil::Rpcutil;
pub use service::Service;

/// Why a node's agents could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AgentsError {
    /// A `plugin.<agent>.*` setting is wrong; the error names its line.
    #[error(transparent)]
    Setting(#[from] ConfigError),
    /// An external agents directory could not be read.
    #[error(transparent)]
    External(#[from] LoadError),
}

/// The agents a real node runs besides rpcutil, as its config sets them
/// up: each built-in agent unless `plugin.<agent>.activate_agent` (or
/// `activate_agents`) turns it off, then the external agents, one of which
/// may take the place of a built-in turned off. A broken agent setting is
/// an error naming its line.
pub fn for_config(config: &ServerConfig) -> Result<Vec<Arc<dyn Agent>>, AgentsError> {
    let settings = &config.settings;
    let mut agents: Vec<Arc<dyn Agent>> = Vec::new();
    let on = |name: &str| -> Result<bool, ConfigError> {
        let on = external::activated(settings, name)?;
        if !on {
            tracing::info!("the built-in {name} agent is turned off (plugin.{name}.activate_agent or activate_agents)");
        }
        Ok(on)
    };
    if on("filemgr")? {
        agents.push(Arc::new(filemgr::Filemgr::from_settings(settings)?));
    }
    if on("package")? {
        agents.push(Arc::new(package::Package::from_settings(settings)?));
    }
    if on("service")? {
        agents.push(Arc::new(service::Service::from_settings(settings)?));
    }
    if on("puppet")? {
        agents.push(Arc::new(puppet::Puppet::from_settings(settings)?));
    }
    if settings.line("plugin.rpcutil.activate_agent").is_some() {
        tracing::warn!("plugin.rpcutil.activate_agent is ignored: rpcutil always runs");
    }
    let plugin_d = match &config.file {
        Some(file) => file
            .parent()
            .unwrap_or_else(|| std::path::Path::new("."))
            .join("plugin.d"),
        None => std::path::PathBuf::from(external::DEFAULT_PLUGIN_D),
    };
    agents.extend(external::load_all(settings, &plugin_d)?);
    Ok(agents)
}
