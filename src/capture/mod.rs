//! Capture front ends: where writes enter vecwal. The RESP framing and value decoding,
//! the Redis replication client, and the Redis proxy.

pub mod qdrant;
pub mod redis;
pub mod redis_repl;
pub mod resp;
pub mod resp_value;
