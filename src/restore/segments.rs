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

/// Records per batch [`records`] hands on, and bytes of payload: the consumer starts on a
/// segment's first records while the rest are still being read, and a batch stays small
/// whatever a segment holds.
const BATCH_RECORDS: usize = 1024;
const BATCH_BYTES: usize = 1 << 20;

/// The records of `plan` after its base, in order, verified: checksums (by the format),
/// the stream's identity, and every LSN present once (promise 7). The next segment
/// downloads while this one is read, and records go to the consumer in batches of at most
/// [`BATCH_RECORDS`]. At damage or a gap, the records before it come first, then the
/// error, then nothing more.
pub fn records(
    store: std::sync::Arc<dyn Store>,
    plan: &Plan,
    keyring: Option<std::sync::Arc<Keyring>>,
) -> mpsc::Receiver<Result<Vec<Record>, RestoreError>> {
    let (tx, rx) = mpsc::channel(8);
    let segments = plan.segments.clone();
    let (from, to) = (plan.first_lsn, plan.target_lsn);
    tokio::spawn(async move {
        let fetch = |entry: SegmentEntry| {
            let (store, keyring) = (store.clone(), keyring.clone());
            Prefetch(tokio::spawn(async move {
                fetch_segment(store.as_ref(), &entry, keyring.as_deref()).await
            }))
        };
        let mut reader = Reader {
            tx,
            next: from,
            from,
            to,
            stream_id: None,
            out: Vec::new(),
            bytes: 0,
        };
        let mut entries = segments.into_iter();
        let mut ahead = entries.next().map(|e| (e.clone(), fetch(e)));
        while let Some((entry, this)) = ahead.take() {
            ahead = entries.next().map(|e| (e.clone(), fetch(e)));
            let seg = match this.wait().await {
                Ok(seg) => seg,
                Err(e) => return reader.fail(e).await,
            };
            if let Err(e) = reader.segment(&seg, &entry).await {
                if let Some(e) = e {
                    reader.fail(e).await;
                }
                return; // the consumer is gone
            }
        }
        if reader.next <= to {
            let gap = RestoreError::Gap {
                from: reader.next,
                to,
                key: "the end of the planned segments".into(),
            };
            return reader.fail(gap).await;
        }
        let _ = reader.flush().await;
    });
    rx
}

/// A segment downloading in its own task; stopped if it is no longer wanted.
struct Prefetch(tokio::task::JoinHandle<Result<SealedSegment<Vec<u8>>, RestoreError>>);

impl Prefetch {
    async fn wait(mut self) -> Result<SealedSegment<Vec<u8>>, RestoreError> {
        (&mut self.0).await.unwrap_or_else(|e| {
            Err(RestoreError::Apply(format!(
                "reading a segment failed: {e}"
            )))
        })
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The verifying walk of [`records`] and the batch it is filling.
struct Reader {
    tx: mpsc::Sender<Result<Vec<Record>, RestoreError>>,
    next: u64,
    from: u64,
    to: u64,
    stream_id: Option<u64>,
    out: Vec<Record>,
    bytes: usize,
}

impl Reader {
    /// Hands on the batch; `Err` when the consumer is gone.
    async fn flush(&mut self) -> Result<(), ()> {
        if self.out.is_empty() {
            return Ok(());
        }
        self.bytes = 0;
        let batch = std::mem::take(&mut self.out);
        self.tx.send(Ok(batch)).await.map_err(|_| ())
    }

    /// The records before the damage, then the damage.
    async fn fail(mut self, e: RestoreError) {
        if self.flush().await.is_ok() {
            let _ = self.tx.send(Err(e)).await;
        }
    }

    /// Walks one segment; `Err(Some(damage))` at damage or a gap, `Err(None)` when the
    /// consumer is gone.
    async fn segment(
        &mut self,
        seg: &SealedSegment<Vec<u8>>,
        entry: &SegmentEntry,
    ) -> Result<(), Option<RestoreError>> {
        // A record that is readable but not where it belongs.
        let misplaced = |lsn, message: &str| RestoreError::Corrupt {
            key: entry.key.clone(),
            offset: None,
            lsn: Some(lsn),
            message: message.into(),
        };
        for r in records_of(seg, entry) {
            let r = r.map_err(Some)?;
            if r.lsn < self.from {
                continue; // before the base: the first segment starts earlier
            }
            if r.lsn < self.next {
                // Two segments hold this LSN. vecwal never writes overlapping segments for
                // one stream and timeline, so which history is right cannot be told: stop
                // rather than pick one.
                let overlap = "this LSN is also in an earlier segment (overlapping \
                               segments in the store: two writers on one stream?)";
                return Err(Some(misplaced(r.lsn, overlap)));
            }
            // `to`, or the branch point where a parent's segment leaves the path.
            if r.lsn > self.to || r.lsn > entry.range.last_lsn {
                break;
            }
            if r.lsn != self.next {
                return Err(Some(RestoreError::Gap {
                    from: self.next,
                    to: r.lsn - 1,
                    key: entry.key.clone(),
                }));
            }
            if *self.stream_id.get_or_insert(r.stream_id) != r.stream_id {
                let other = "belongs to another stream (stream id differs)";
                return Err(Some(misplaced(r.lsn, other)));
            }
            self.next += 1;
            self.bytes += r.payload.len();
            self.out.push(r);
            if self.out.len() >= BATCH_RECORDS || self.bytes >= BATCH_BYTES {
                self.flush().await.map_err(|_| None)?;
            }
        }
        Ok(())
    }
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
