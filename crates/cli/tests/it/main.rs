//! cli's integration tests, one binary: every file here is a
//! module, so the crate and its dependencies are linked once.

mod agents;
mod apps;
mod batching;
mod chaining;
mod choria_agents;
mod cluster;
mod common;
mod config;
mod ddl2json;
mod ddl_types;
mod discovery;
mod discovery_config;
mod interrupt;
mod known_sets;
mod layout;
mod lifecycle;
mod monitor;
mod nats_py;
mod output;
mod package_actions;
mod pipes;
mod policy_upstream;
mod processes;
mod puppet_ca;
mod puppetdb;
mod registry;
mod runall;
mod terminal;
mod wan;
