//! Base snapshots of Redis (promise 5): an RDB from a full sync, stored with its SHA-256
//! and tagged with the LSN it reflects exactly, and the marker record that shows where it
//! was taken. The tap ([`super::tap`]) decides which LSN an RDB reflects.

use std::sync::Arc;
use std::time::Duration;

use vecwal_format::Operation;

use crate::capture::redis_repl::ReplError;
use crate::catalog::SnapshotManifest;
use crate::log::{Entry, Log, LogError};
use crate::snapshot::{put_snapshot, SnapshotPoint};
use crate::store::{Keyring, Store, StoreError};

/// Longest a snapshot waits for Redis to fork: `repl-diskless-sync-delay` (5 s by default)
/// and a BGSAVE already running come first.
pub(crate) const FORK_WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("full sync from Redis failed: {0}")]
    Repl(#[from] ReplError),
    #[error("Redis did not fork for the snapshot within {0:?} (a long BGSAVE running?)")]
    ForkTimeout(Duration),
    #[error("storing the snapshot failed: {0}")]
    Store(#[from] StoreError),
    #[error("logging the snapshot marker failed: {0}")]
    Log(#[from] LogError),
}

/// Stores `rdb`, which reflects exactly the records up to `lsn` (the newest of them logged
/// at `time_us`), as a base snapshot in every store.
pub async fn store_rdb(
    log: &Log,
    stores: &[Arc<dyn Store>],
    keyring: Option<&Keyring>,
    lsn: u64,
    time_us: i64,
    rdb: Vec<u8>,
) -> Result<SnapshotManifest, SnapshotError> {
    let stream = &log.meta().name;
    let point = SnapshotPoint {
        timeline: log.meta().timeline,
        lsn,
        time_us,
        format: "rdb",
        namespace: "",
    };
    let mut manifest = None;
    for s in stores {
        manifest = Some(put_snapshot(s.as_ref(), stream, point, rdb.clone(), keyring).await?);
    }
    let manifest = manifest.unwrap_or_else(|| SnapshotManifest {
        timeline: point.timeline,
        lsn,
        time_us: point.time_us,
        format: "rdb".into(),
        namespace: String::new(),
        data_key: String::new(),
        size: rdb.len() as u64,
        sha256: String::new(),
        encrypted: false,
    });
    Ok(manifest)
}

/// The marker record of a stored snapshot, so `inspect` shows where snapshots were taken.
pub fn marker(manifest: &SnapshotManifest) -> Result<Entry, LogError> {
    let mut sha = [0u8; 32];
    hex::decode_to_slice(&manifest.sha256, &mut sha).ok();
    let marker = Operation::Snapshot {
        snapshot_lsn: manifest.lsn,
        size: manifest.size,
        sha256: sha,
        name: manifest.data_key.clone(),
    };
    Entry::new("", &marker)
}
