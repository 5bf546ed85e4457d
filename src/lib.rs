//! vecwal: a write-ahead-log shipper for point-in-time recovery of Qdrant and Redis.
//!
//! The modules follow the data's way from capture to restore (docs/design.md, with the
//! promises the code keeps):
//! - [`log`]: the local durable log: append with group commit, roll, seal, recovery,
//!   memory-mapped readers and verification.
//! - [`protocol`]: the wire both capture and restore speak: RESP, a Redis client and its
//!   command table, protobuf walking, HTTP plumbing, what a Qdrant request does.
//! - [`capture`]: where writes enter: the Redis proxy and tap, the Qdrant proxy.
//! - [`time`]: parsing operator-given times (RFC 3339, relative `-15m`) and durations.
//! - [`ship`]: shipping sealed segments to stores, with the spool, retries and heartbeats.
//! - [`store`]: one store trait, a local-directory and an S3 backend, encryption keys.
//! - [`catalog`]: what a store holds (segments, snapshots, windows, gaps), verify, prune.
//! - [`snapshot`]: base snapshots in a store (data and manifest).
//! - [`restore`]: restore plans, verified record streams, applying them to Redis, replay.
//! - [`drill`]: restores into scratch targets, checked against the source, timed, recorded.
//! - [`metrics`]: Prometheus metrics of a running capture.
//! - [`fsutil`]: durable directory operations.
//! - [`cli`]: the `vecwal` command line, one file per subcommand.
//!
//! The on-disk format itself is the `vecwal-format` crate (`wal-format/`).

pub mod capture;
pub mod catalog;
pub mod cli;
pub mod drill;
pub mod fsutil;
pub mod log;
pub mod metrics;
pub mod protocol;
pub mod restore;
pub mod ship;
pub mod snapshot;
pub mod store;
pub mod time;
