//! Base snapshots in a store: the data object, then its manifest (SHA-256, size, the LSN
//! it is aligned to). The manifest is written last, so a snapshot whose upload was cut
//! short is never taken for a complete one. Taking snapshots (Redis RDB, Qdrant) comes
//! with the capture front ends.

use sha2::Digest;

use crate::catalog::keys::{snapshot_data_key, snapshot_manifest_key};
use crate::catalog::SnapshotManifest;
use crate::store::{Keyring, Store, StoreError};

/// The format of an empty Qdrant base: the collection did not exist at its LSN (it was
/// created by the next record), so a restore loads nothing and applies the records.
pub const QDRANT_EMPTY: &str = "qdrant-empty";

/// Where a snapshot is aligned: it reflects every record with LSN <= `lsn` and none
/// after; `time_us` is that record's timestamp; `format` names the data (`rdb`, …).
#[derive(Debug, Clone, Copy)]
pub struct SnapshotPoint<'a> {
    pub timeline: u32,
    pub lsn: u64,
    pub time_us: i64,
    pub format: &'a str,
    /// Empty for a whole database; else the namespace (Qdrant collection) it holds.
    pub namespace: &'a str,
}

/// Stores `data` as the base snapshot of `stream` aligned to `lsn` (it reflects every
/// record with LSN <= `lsn` and none after); `time_us` is that record's timestamp. With a
/// keyring the data object is encrypted (SPEC.md §11); the manifest stays readable.
pub async fn put_snapshot(
    store: &dyn Store,
    stream: &str,
    at: SnapshotPoint<'_>,
    data: Vec<u8>,
    keyring: Option<&Keyring>,
) -> Result<SnapshotManifest, StoreError> {
    // Size and SHA-256 are of the snapshot itself, what a restore loads.
    let SnapshotPoint {
        timeline,
        lsn,
        time_us,
        format,
        namespace,
    } = at;
    let encrypted = keyring.is_some();
    let data_key = snapshot_data_key(stream, timeline, lsn, namespace, format, encrypted);
    let (key, keyring) = (data_key.clone(), keyring.cloned());
    let (sha256, size, data) = crate::fsutil::blocking(move || {
        let sha = hex::encode(sha2::Sha256::digest(&data));
        let size = data.len() as u64;
        let data = match keyring {
            Some(k) => k.encrypt(&key, &data),
            None => data,
        };
        (sha, size, data)
    })
    .await;
    let manifest = SnapshotManifest {
        timeline,
        lsn,
        time_us,
        format: format.to_string(),
        namespace: namespace.to_string(),
        data_key,
        size,
        sha256,
        encrypted,
    };
    store.put_new(&manifest.data_key, data).await?;
    let json = serde_json::to_vec_pretty(&manifest).expect("manifest serializes");
    store
        .put_new(
            &snapshot_manifest_key(stream, timeline, lsn, namespace),
            json,
        )
        .await?;
    Ok(manifest)
}
