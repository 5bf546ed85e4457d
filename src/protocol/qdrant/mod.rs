//! What a Qdrant request does: what vecwal does with each endpoint ([`api`]), which REST
//! and gRPC requests are logged and what they touch ([`rest`], [`grpc`], [`points`]). The proxy orders conflicting writes
//! by it; the restore pipelines non-conflicting records by the same rule.

pub mod api;
pub mod grpc;
pub mod points;
pub mod rest;
