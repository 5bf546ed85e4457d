//! Reading a plan's segments back: each one downloaded, decrypted, checked against its
//! name and walked record by record, so nothing unverified reaches a target (promise 7).

use tokio::sync::mpsc;
use vecwal_format::{Record, SealedSegment};

use super::{Plan, RestoreError};
use crate::catalog::SegmentEntry;
use crate::store::{Keyring, Store};

/// Downloads, decrypts and opens a segment, checking it is the one its name says.
pub async fn fetch_segment(
    store: &dyn Store,
    seg: &SegmentEntry,
    keyring: Option<&Keyring>,
) -> Result<SealedSegment<Vec<u8>>, RestoreError> {
    let corrupt = |offset, message: String| RestoreError::Corrupt {
        key: seg.key.clone(),
        offset,
        lsn: Some(seg.range.first_lsn),
        message,
    };
    let data = store.get(&seg.key).await?;
    let data = match (seg.range.encrypted, keyring) {
        (false, _) => data,
        (true, None) => {
            return Err(corrupt(
                None,
                "encrypted: give its key (--encryption-key-file or --encryption-key-env)".into(),
            ))
        }
        (true, Some(k)) => k
            .decrypt(&seg.key, &data)
            .map_err(|e| corrupt(None, e.to_string()))?,
    };
    let s = SealedSegment::open(data).map_err(|e| corrupt(Some(e.offset()), e.to_string()))?;
    let t = &s.trailer;
    if (t.first_lsn, t.last_lsn) != (seg.range.first_lsn, seg.object_last_lsn) {
        return Err(corrupt(
            None,
            format!(
                "holds LSNs {}..={}, its name says {}..={}",
                t.first_lsn, t.last_lsn, seg.range.first_lsn, seg.object_last_lsn
            ),
        ));
    }
    Ok(s)
}

fn records_of<'a>(
    seg: &'a SealedSegment<Vec<u8>>,
    entry: &SegmentEntry,
) -> impl Iterator<Item = Result<Record, RestoreError>> + 'a {
    let key = entry.key.clone();
    // Damage is reported with the first LSN that could not be read.
    let mut next = entry.range.first_lsn;
    seg.records_from_block(0).map(move |r| match r {
        Ok(r) => {
            next = r.lsn + 1;
            Ok(r)
        }
        Err(e) => Err(RestoreError::Corrupt {
            key: key.clone(),
            offset: Some(e.offset()),
            lsn: Some(next),
            message: e.to_string(),
        }),
    })
}

pub(super) async fn time_of(
    store: &dyn Store,
    segs: &[&SegmentEntry],
    lsn: u64,
    keyring: Option<&Keyring>,
) -> Result<i64, RestoreError> {
    let Some(s) = segs
        .iter()
        .find(|s| s.range.first_lsn <= lsn && lsn <= s.range.last_lsn)
    else {
        return Ok(0); // a base snapshot's own LSN before any segment
    };
    let seg = fetch_segment(store, s, keyring).await?;
    for r in records_of(&seg, s) {
        let r = r?;
        if r.lsn == lsn {
            return Ok(r.timestamp_us);
        }
    }
    Err(RestoreError::Corrupt {
        key: s.key.clone(),
        offset: None,
        lsn: Some(lsn),
        message: "the record is not in the segment its name says holds it".into(),
    })
}

pub(super) async fn last_at_or_before(
    store: &dyn Store,
    s: &SegmentEntry,
    t: i64,
    keyring: Option<&Keyring>,
) -> Result<(u64, i64), RestoreError> {
    let seg = fetch_segment(store, s, keyring).await?;
    let mut best = (s.range.first_lsn - 1, s.range.first_ts);
    for r in records_of(&seg, s) {
        let r = r?;
        // A parent's segment cut at a branch point ends there on this path.
        if r.timestamp_us > t || r.lsn > s.range.last_lsn {
            break;
        }
        best = (r.lsn, r.timestamp_us);
    }
    Ok(best)
}

/// The records of `plan` after its base, in order, verified: checksums (by the format),
/// the stream's identity, and every LSN present once (promise 7). Segments are fetched
/// one ahead of the consumer. At damage or a gap, the records before it come first, then
/// the error, then nothing more.
pub fn records(
    store: std::sync::Arc<dyn Store>,
    plan: &Plan,
    keyring: Option<std::sync::Arc<Keyring>>,
) -> mpsc::Receiver<Result<Vec<Record>, RestoreError>> {
    let (tx, rx) = mpsc::channel(2);
    let segments = plan.segments.clone();
    let (from, to) = (plan.first_lsn, plan.target_lsn);
    tokio::spawn(async move {
        let mut next = from;
        let mut stream_id = None;
        for entry in segments {
            // On damage: the records before it in this segment (each verified by its block's
            // checksum), then the error.
            let batch = async {
                let mut out = Vec::new();
                let seg = match fetch_segment(store.as_ref(), &entry, keyring.as_deref()).await {
                    Ok(seg) => seg,
                    Err(e) => return Err((out, e)),
                };
                // A record that is readable but not where it belongs.
                let misplaced = |lsn, message: &str| RestoreError::Corrupt {
                    key: entry.key.clone(),
                    offset: None,
                    lsn: Some(lsn),
                    message: message.into(),
                };
                for r in records_of(&seg, &entry) {
                    let r = r.map_err(|e| (std::mem::take(&mut out), e))?;
                    if r.lsn < from {
                        continue; // before the base: the first segment starts earlier
                    }
                    if r.lsn < next {
                        // Two segments hold this LSN. vecwal never writes overlapping
                        // segments for one stream and timeline, so which history is right
                        // cannot be told: stop rather than pick one.
                        let overlap = "this LSN is also in an earlier segment (overlapping \
                                       segments in the store: two writers on one stream?)";
                        return Err((out, misplaced(r.lsn, overlap)));
                    }
                    // `to`, or the branch point where a parent's segment leaves the path.
                    if r.lsn > to || r.lsn > entry.range.last_lsn {
                        break;
                    }
                    if r.lsn != next {
                        let gap = RestoreError::Gap {
                            from: next,
                            to: r.lsn - 1,
                            key: entry.key.clone(),
                        };
                        return Err((out, gap));
                    }
                    if *stream_id.get_or_insert(r.stream_id) != r.stream_id {
                        let other = "belongs to another stream (stream id differs)";
                        return Err((out, misplaced(r.lsn, other)));
                    }
                    next += 1;
                    out.push(r);
                }
                Ok(out)
            }
            .await;
            let (good, damage) = match batch {
                Ok(out) => (out, None),
                Err((out, e)) => (out, Some(e)),
            };
            if (!good.is_empty() || damage.is_none()) && tx.send(Ok(good)).await.is_err() {
                return;
            }
            if let Some(e) = damage {
                let _ = tx.send(Err(e)).await;
                return;
            }
        }
        if next <= to {
            let _ = tx
                .send(Err(RestoreError::Gap {
                    from: next,
                    to,
                    key: "the end of the planned segments".into(),
                }))
                .await;
        }
    });
    rx
}

/// `plan` cut short at the last sound record before the first damage or gap, for
/// `--stop-at-last-good`: every record of the plan is read and verified first (so its
/// segments are read twice). `None` when the whole plan is sound; otherwise the shorter
/// plan and the damage. Errors that are not damage (an unreachable store) return as they
/// are.
pub async fn last_good(
    store: std::sync::Arc<dyn Store>,
    plan: &Plan,
    keyring: Option<std::sync::Arc<Keyring>>,
) -> Result<Option<(Plan, RestoreError)>, RestoreError> {
    let base_time = plan.base.as_ref().map_or(0, |b| b.time_us);
    let mut good = (plan.first_lsn.saturating_sub(1), base_time);
    let mut rx = records(store, plan, keyring);
    while let Some(batch) = rx.recv().await {
        let damage = match batch {
            Ok(rs) => {
                if let Some(r) = rs.last() {
                    good = (r.lsn, r.timestamp_us);
                }
                continue;
            }
            Err(e @ (RestoreError::Corrupt { .. } | RestoreError::Gap { .. })) => e,
            Err(e) => return Err(e),
        };
        let mut short = plan.clone();
        (short.target_lsn, short.target_time_us) = good;
        short.segments.retain(|s| s.range.first_lsn <= good.0);
        return Ok(Some((short, damage)));
    }
    Ok(None)
}
