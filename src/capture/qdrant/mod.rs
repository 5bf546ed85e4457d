//! Qdrant capture: a proxy in front of Qdrant's REST and gRPC ports that logs every
//! mutation Qdrant applied.
//!
//! - [`rest`], [`grpc`]: which requests change data, and what they touch; [`points`]: the
//!   point ids a write names.
//! - [`order`]: conflicting writes wait for each other, unrelated ones do not.
//! - [`proxy`], [`grpc_proxy`]: the HTTP proxy itself, REST and gRPC.
//! - [`snapshot`]: collection snapshots aligned to an LSN.
//! - [`service`]: a running proxy with its log and shipper.

pub mod grpc;
pub mod grpc_proxy;
pub mod order;
pub mod points;
pub mod proxy;
pub mod rest;
pub mod service;
pub mod snapshot;
