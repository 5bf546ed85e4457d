//! Qdrant capture: a proxy in front of Qdrant's REST and gRPC ports that logs every
//! mutation Qdrant applied.
//!
//! - [`crate::protocol::qdrant`]: which requests change data, and what they touch.
//! - [`order`], [`gate`]: conflicting writes wait for each other, unrelated ones do not.
//! - [`aliases`]: a write through an alias is ordered and logged under its collection.
//! - [`proxy`], [`grpc_proxy`]: the HTTP proxy itself, REST and gRPC.
//! - [`snapshot`]: collection snapshots aligned to an LSN; [`bases`]: the empty base of a
//!   new collection, and a new base after a recovery from a snapshot.
//! - [`service`]: a running proxy with its log and shipper.

pub mod aliases;
pub mod bases;
pub mod gate;
pub mod grpc_proxy;
pub mod order;
pub mod proxy;
pub mod service;
pub mod snapshot;
