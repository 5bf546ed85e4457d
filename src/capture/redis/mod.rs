//! Redis capture: the RESP proxy and what it stands on.
//!
//! - [`rewrite`]: the deterministic form a write is logged in (promise 4).
//! - [`gate`]: ordering conflicting writes across connections (promise 3).
//! - [`proxy`]: the proxy itself (promises 1 and 2).
//! - [`snapshot`]: RDB snapshots aligned to an LSN (promise 5).
//! - [`service`]: a running proxy with its log, shipper and snapshot schedule.
//! - [`tap`]: vecwal as a replica of the master instead of a proxy.

pub mod gate;
pub mod proxy;
pub mod rewrite;
pub mod service;
pub mod snapshot;
pub mod tap;
