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
//! Who may do what is decided by certificate names ([`identity`]); the
//! x509 work itself (chains, CRLs, keys) lives in `muster-pki`.
//!
//! ```
//! use muster_protocol::{subject, Filter, Request};
//!
//! let request = Request::new("client-1", "alice.mcollective", "mcollective", "rpcutil", "ping")
//!     .with_filter(Filter::default().identity("web1").unwrap());
//! assert_eq!(subject::node(&request.collective, "web1"), "mcollective.node.web1");
//! ```

pub mod aggregate;
pub mod config;
pub mod ddl;
mod envelope;
mod filter;
pub mod identity;
mod message;
pub mod ruby_ddl;
pub mod subject;
pub mod suggest;
pub mod time;

pub use envelope::{
    Envelope, EnvelopeError, SignError, SignedReply, Signer, MAX_CERTIFICATE, MAX_SIGNATURE,
};
pub use filter::{
    lookup_fact, parse_with, Comparison, Compound, DataError, DataQuery, Expr, FactFilter, Filter,
    FilterError, NodeView, Op, ParseError, Pattern, DATA_PLUGINS,
};
pub use message::{
    is_valid_id, new_id, now_ms, Reply, Request, StatusCode, UnknownStatusCode, MAX_TARGETS,
    PROTOCOL_VERSION,
};
