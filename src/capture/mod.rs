//! Capture front ends: where writes enter vecwal. The Redis replication client, the Redis
//! proxy and tap, and the Qdrant proxy. The protocols they speak are in [`crate::protocol`].

pub mod qdrant;
pub mod redis;
pub mod redis_repl;
