//! The wire: protocols that both capture and restore speak, below both of them.
//!
//! - [`resp`], [`resp_value`]: RESP2/RESP3 framing and values.
//! - [`redis_client`]: a small Redis client for vecwal's own requests, and Redis URLs.
//! - [`redis_commands`]: which Redis commands write, from the server's COMMAND INFO.
//! - [`protobuf`]: walking a protobuf message's fields without a schema.
//! - [`http`]: URL joining, percent-encoding and HTTP/2 windows.
//! - [`qdrant`]: what a Qdrant REST or gRPC request does (which change data, what they touch).

pub mod http;
pub mod protobuf;
pub mod qdrant;
pub mod redis_client;
pub mod redis_commands;
pub mod resp;
pub mod resp_value;
