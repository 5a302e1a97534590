//! broker's integration tests, one binary: every file here is a
//! module, so the crate and its dependencies are linked once.

mod harness;
mod limits;
mod nats_client;
mod raw_protocol;
mod throughput;
mod tls;
