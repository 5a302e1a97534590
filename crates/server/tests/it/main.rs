//! server's integration tests, one binary: every file here is a
//! module, so the crate and its dependencies are linked once.

mod audit;
mod data;
mod ddl;
mod external;
mod filemgr;
mod filters;
mod limits;
mod node;
mod package;
mod policy;
mod puppet;
mod rpcutil;
mod service;
mod sysfacts;
