//! The agents built into every node.

mod rpcutil;

pub use rpcutil::Rpcutil;
