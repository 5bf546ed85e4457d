//! Capture front ends: where writes enter vecwal. So far the RESP framing and the Redis
//! replication client the proxy and the tap are built on.

pub mod redis_repl;
pub mod resp;
