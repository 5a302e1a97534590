//! muster-registry's integration tests, one binary.

mod bench;
mod refusals;
mod store;
