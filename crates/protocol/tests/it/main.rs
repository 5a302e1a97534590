//! protocol's integration tests, one binary: every file here is a
//! module, so the crate and its dependencies are linked once.

mod choria_ddl;
mod config;
mod ddl;
