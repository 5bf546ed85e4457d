//! `verify --store`: download and check what was not checked before: every block of every
//! segment, LSN continuity across segments, that names match contents, and snapshot
//! checksums. Progress is remembered in the store (`<stream>/verified.json`), so a daily
//! run reads only what is new.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::Digest;
use vecwal_format::SealedSegment;

use super::{keys, Catalog, StreamIdentity};
use crate::store::{Keyring, Store, StoreError};

/// What earlier runs verified.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Verified {
    /// Per timeline: every segment up to this LSN was verified, without a gap.
    pub segments_through: BTreeMap<u32, u64>,
    /// Snapshot data keys verified.
    pub snapshots: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StoreFault {
    pub key: String,
    /// Offset inside the object, when the fault is in its bytes.
    pub offset: Option<u64>,
    /// The LSN range the object claims, or the LSN after which records are missing.
    pub lsn: Option<u64>,
    pub message: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct StoreVerifyReport {
    pub segments_checked: u64,
    pub records_checked: u64,
    pub bytes_downloaded: u64,
    pub snapshots_checked: u64,
    /// Segments skipped because an earlier run verified them.
    pub segments_already_verified: u64,
    pub faults: Vec<StoreFault>,
}

/// Verifies `stream` in `store`. With `all`, ignores what earlier runs verified.
/// Encrypted objects are decrypted with `keyring`; without it they are faults.
pub async fn verify_store(
    store: &dyn Store,
    stream: &str,
    all: bool,
    keyring: Option<&Keyring>,
) -> Result<StoreVerifyReport, StoreError> {
    let cat = Catalog::load(store, stream).await?;
    let state_key = format!("{stream}/{}", keys::VERIFIED_FILE);
    let mut state: Verified = if all {
        Verified::default()
    } else {
        match store.get(&state_key).await {
            Ok(b) => serde_json::from_slice(&b).unwrap_or_default(),
            Err(StoreError::NotFound { .. }) => Verified::default(),
            Err(e) => return Err(e),
        }
    };
    let mut report = StoreVerifyReport::default();
    let stream_id = cat
        .identity
        .as_ref()
        .and_then(|i: &StreamIdentity| u64::from_str_radix(&i.stream_id, 16).ok());
    if cat.identity.is_none() && !cat.segments.is_empty() {
        report.faults.push(StoreFault {
            key: format!("{stream}/{}", keys::STREAM_FILE),
            offset: None,
            lsn: None,
            message: "the stream's identity object is missing or unreadable".into(),
        });
    }
    // Every timeline must be followable back to the stream's start, or no restore reaches it.
    for tl in cat.timeline_ids() {
        if let Err(e) = cat.path(tl) {
            report.faults.push(StoreFault {
                key: super::timeline::history_key(stream, tl),
                offset: None,
                lsn: None,
                message: e.to_string(),
            });
        }
    }

    // Segments: continuity is checked over all of them; contents only past what is known good.
    let mut prev: Option<(u32, u64, i64)> = None;
    for seg in &cat.segments {
        let r = seg.range;
        if let Some((tl, last, last_ts)) = prev {
            // Timelines are separate histories: a new one may start before an old one ended.
            if tl == r.timeline && r.first_ts < last_ts {
                report.faults.push(StoreFault {
                    key: seg.key.clone(),
                    offset: None,
                    lsn: Some(r.first_lsn),
                    message: format!(
                        "time goes back: starts at {} µs, the segment before ends at {last_ts} µs",
                        r.first_ts
                    ),
                });
            }
            if tl == r.timeline && r.first_lsn != last + 1 {
                report.faults.push(StoreFault {
                    key: seg.key.clone(),
                    offset: None,
                    lsn: Some(last),
                    message: format!(
                        "LSN gap: records {}..={} are missing before this segment",
                        last + 1,
                        r.first_lsn - 1
                    ),
                });
            }
        }
        prev = Some((r.timeline, r.last_lsn, r.last_ts));
        let through = state
            .segments_through
            .get(&r.timeline)
            .copied()
            .unwrap_or(0);
        if r.last_lsn <= through {
            report.segments_already_verified += 1;
            continue;
        }
        let data = store.get(&seg.key).await?;
        report.bytes_downloaded += data.len() as u64;
        let checked = decrypt(keyring, &seg.key, r.encrypted, data)
            .and_then(|d| check_segment(&d, r, stream_id));
        match checked {
            Ok(n) => {
                report.segments_checked += 1;
                report.records_checked += n;
                // Advance only while everything so far is sound (a gap is a fault too).
                if report.faults.is_empty() {
                    state.segments_through.insert(r.timeline, r.last_lsn);
                }
            }
            Err((offset, message)) => report.faults.push(StoreFault {
                key: seg.key.clone(),
                offset,
                lsn: Some(r.first_lsn),
                message,
            }),
        }
    }

    for snap in &cat.snapshots {
        if state.snapshots.contains(&snap.data_key) {
            continue;
        }
        let fault = |message: String| StoreFault {
            key: snap.data_key.clone(),
            offset: None,
            lsn: Some(snap.lsn),
            message,
        };
        match store.get(&snap.data_key).await {
            Ok(data) => {
                report.bytes_downloaded += data.len() as u64;
                let data = match decrypt(keyring, &snap.data_key, snap.encrypted, data) {
                    Ok(d) => d,
                    Err((_, message)) => {
                        report.faults.push(fault(message));
                        continue;
                    }
                };
                let sha = hex::encode(sha2::Sha256::digest(&data));
                if data.len() as u64 != snap.size || sha != snap.sha256 {
                    report.faults.push(fault(format!(
                        "snapshot is {} bytes with SHA-256 {sha}; its manifest says {} bytes, {}",
                        data.len(),
                        snap.size,
                        snap.sha256
                    )));
                } else {
                    report.snapshots_checked += 1;
                    state.snapshots.push(snap.data_key.clone());
                }
            }
            Err(StoreError::NotFound { .. }) => {
                report.faults.push(fault("snapshot data is missing".into()))
            }
            Err(e) => return Err(e),
        }
    }
    for key in &cat.unrecognized {
        report.faults.push(StoreFault {
            key: key.clone(),
            offset: None,
            lsn: None,
            message: "not an object vecwal writes (or a snapshot without its manifest)".into(),
        });
    }
    store
        .put(
            &state_key,
            serde_json::to_vec_pretty(&state).expect("state serializes"),
        )
        .await?;
    Ok(report)
}

/// The plaintext of an object, decrypting it if its name says it is encrypted.
fn decrypt(
    keyring: Option<&Keyring>,
    key: &str,
    encrypted: bool,
    data: Vec<u8>,
) -> Result<Vec<u8>, (Option<u64>, String)> {
    match (encrypted, keyring) {
        (false, _) => Ok(data),
        (true, None) => Err((
            None,
            "encrypted: give its key (--encryption-key-file or --encryption-key-env) to check it"
                .into(),
        )),
        (true, Some(k)) => k.decrypt(key, &data).map_err(|e| (None, e.to_string())),
    }
}

/// Full check of one segment object; the record count, or where and what is wrong.
fn check_segment(
    data: &[u8],
    name: keys::SegmentKey,
    stream_id: Option<u64>,
) -> Result<u64, (Option<u64>, String)> {
    let seg = SealedSegment::open(data).map_err(|e| (Some(e.offset()), e.to_string()))?;
    let n = seg
        .verify()
        .map_err(|e| (Some(e.offset()), e.to_string()))?;
    let t = seg.trailer;
    if (
        seg.header.timeline,
        t.first_lsn,
        t.last_lsn,
        t.first_ts,
        t.last_ts,
    ) != (
        name.timeline,
        name.first_lsn,
        name.last_lsn,
        name.first_ts,
        name.last_ts,
    ) {
        return Err((
            None,
            "the object's name disagrees with the LSN or time range inside it".into(),
        ));
    }
    if let Some(id) = stream_id {
        if seg.header.stream_id != id {
            return Err((
                Some(16),
                format!(
                    "belongs to stream id {:016x}, not this stream's {id:016x}",
                    seg.header.stream_id
                ),
            ));
        }
    }
    Ok(n)
}
