//! client's integration tests, one binary: every file here is a
//! module, so the crate and its dependencies are linked once.

mod batching;
mod discovery;
mod interrupt;
mod known_sets;
mod signed_replies;
mod timeouts;
mod uptime;
