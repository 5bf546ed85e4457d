//! What a Qdrant request does: which REST and gRPC requests change data ([`rest`],
//! [`grpc`]) and which points they touch ([`points`]). The proxy orders conflicting writes
//! by it; the restore pipelines non-conflicting records by the same rule.

pub mod grpc;
pub mod points;
pub mod rest;
