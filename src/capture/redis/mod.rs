//! Redis capture: the proxy and the tap, both logging Redis's own replication stream.
//!
//! - [`tap`]: vecwal as a replica of the master: the replication stream becomes the log,
//!   full syncs become aligned base snapshots (promises 2–5).
//! - [`proxy`]: the RESP proxy: a tap on the upstream, plus replies held until the log
//!   covers them (promise 1).
//! - [`probe`]: where the upstream's replication stream has got to, for the proxy's holds.
//! - [`vadd`]: the script that makes Redis replicate a `VADD` that updates an element.
//! - [`snapshot`]: storing an RDB as a base snapshot, and its marker record.
//! - [`service`]: a running proxy with its tap, probe and listener.

pub mod probe;
pub mod proxy;
pub mod service;
pub mod snapshot;
pub mod tap;
pub mod vadd;
