//! muster's wire protocol, with no I/O.
//!
//! Everything two muster processes must agree on lives here: the [`Request`]
//! a client sends, the [`Reply`] a node answers with, the signed
//! [`Envelope`] that carries a request, the NATS [`subject`]s they travel
//! on, the [`Filter`] each node evaluates for itself, and the MCollective
//! style `key = value` [`config`] files both sides read.
//!
//! Nothing here opens a socket or a file, so every piece is a pure function
//! that is easy to test with tables of cases and to fuzz.
//!
//! ```
//! use muster_protocol::{Filter, KeyPair, Request};
//!
//! let keys = KeyPair::generate();
//! let request = Request::new("client-1", "user=alice", "mcollective", "rpcutil", "ping")
//!     .with_filter(Filter::default());
//! let envelope = keys.sign(&request).unwrap();
//! let (opened, signer) = envelope.open().unwrap();
//! assert_eq!(opened.action, "ping");
//! assert_eq!(signer, keys.public());
//! ```

pub mod aggregate;
pub mod config;
pub mod ddl;
mod envelope;
mod filter;
mod message;
pub mod subject;
pub mod time;

pub use envelope::{Envelope, EnvelopeError, KeyPair, PublicKey};
pub use filter::{
    lookup_fact, parse_with, Comparison, Compound, DataQuery, Expr, FactFilter, Filter,
    FilterError, NodeView, Op, ParseError, Pattern, DATA_PLUGINS,
};
pub use message::{new_id, now_ms, Reply, Request, StatusCode, PROTOCOL_VERSION};
