//! Restore and replay: from what a store holds back to a database.
//!
//! - this file: the plan (which base snapshot, which segments, up to which record) and
//!   the verified stream of records the plan names (promise 7);
//! - [`redis`]: applying a plan to a Redis by serving it as a replication master;
//! - [`qdrant`]: applying a plan to one Qdrant collection;
//! - [`replay`]: forensic replay of a window into a staging Redis;
//! - [`to_dir`]: a restore written as an RDB file, through a scratch redis-server.

pub mod qdrant;
pub mod redis;
pub mod replay;
pub mod to_dir;

use serde::Serialize;
use sha2::Digest;
use tokio::sync::mpsc;
use vecwal_format::{Record, SealedSegment};

use crate::catalog::{Catalog, SegmentEntry, SnapshotManifest};
use crate::store::{Keyring, Store, StoreError};
use crate::time::format_us;

/// Where to restore to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The last record in the store.
    Latest,
    /// Exactly this record.
    Lsn(u64),
    /// The last record with a timestamp at or before this (UTC µs).
    Time(i64),
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the store holds no log for stream {0:?}")]
    Empty(String),
    #[error("{0}")]
    OutOfWindow(String),
    #[error("no base snapshot at or before LSN {lsn} in the store; {hint}")]
    NoBase { lsn: u64, hint: String },
    #[error("records {from}..={to} are missing from the store (a gap before {key}); the restore stops here")]
    Gap { from: u64, to: u64, key: String },
    /// Damage: the object, where in it, and the LSN it concerns (promise 7).
    #[error("{key}: {message} (offset {offset:?}, LSN {lsn:?})")]
    Corrupt {
        key: String,
        offset: Option<u64>,
        lsn: Option<u64>,
        message: String,
    },
    #[error("{0}")]
    Apply(String),
}

/// How long each phase of a restore took: the RTO, split. Segments download while the
/// replay runs, so `replay` includes whatever of their download it waited for.
#[derive(Debug, Clone, Copy, Default)]
pub struct Phases {
    /// Fetching the base snapshot and checking its SHA-256.
    pub snapshot_download: std::time::Duration,
    /// The target loading the base (Redis: until it acknowledged the RDB; Qdrant: the
    /// snapshot upload and recovery).
    pub snapshot_load: std::time::Duration,
    /// Applying the records after the base, until the target confirmed the last one.
    pub replay: std::time::Duration,
}

/// What a restore will do, printed before it starts.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub stream: String,
    pub timeline: u32,
    /// `None`: start from an empty database.
    pub base: Option<SnapshotManifest>,
    pub target_lsn: u64,
    pub target_time_us: i64,
    pub segments: Vec<SegmentEntry>,
    /// First record to read (the one after the base; for a replay, the window's start).
    pub first_lsn: u64,
    /// The last record the store holds (what `--at` beyond it gets).
    pub latest_lsn: u64,
    pub latest_time_us: i64,
}

impl Plan {
    pub fn base_lsn(&self) -> u64 {
        self.base.as_ref().map_or(0, |b| b.lsn)
    }

    /// Records the plan applies.
    pub fn record_count(&self) -> u64 {
        self.target_lsn - self.base_lsn()
    }

    pub fn segment_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum()
    }

    /// A human-readable description, one fact per line.
    pub fn describe(&self) -> String {
        let mut s = format!("stream {} (timeline {})\n", self.stream, self.timeline);
        match &self.base {
            Some(b) => {
                s += &format!(
                    "  base:     snapshot {} (LSN {}, {}, {} bytes, sha256 {}…)\n",
                    b.data_key,
                    b.lsn,
                    if b.time_us == 0 {
                        "start".into()
                    } else {
                        format_us(b.time_us)
                    },
                    b.size,
                    &b.sha256[..b.sha256.len().min(12)]
                )
            }
            None => s += "  base:     an empty database (no snapshot)\n",
        }
        s += &format!(
            "  apply:    {} records (LSN {}..={}) from {} segments, {} bytes\n",
            self.record_count(),
            self.base_lsn() + 1,
            self.target_lsn,
            self.segments.len(),
            self.segment_bytes()
        );
        s += &format!(
            "  target:   LSN {} at {}\n",
            self.target_lsn,
            format_us(self.target_time_us)
        );
        s += &format!(
            "  store has records through LSN {} at {}",
            self.latest_lsn,
            format_us(self.latest_time_us)
        );
        s
    }
}

/// The data of a base snapshot, decrypted and checked against its manifest's SHA-256 and
/// size (promise 7).
pub async fn fetch_snapshot(
    store: &dyn Store,
    b: &SnapshotManifest,
    keyring: Option<&Keyring>,
) -> Result<Vec<u8>, RestoreError> {
    let corrupt = |e: &dyn std::fmt::Display| RestoreError::Corrupt {
        key: b.data_key.clone(),
        offset: None,
        lsn: Some(b.lsn),
        message: e.to_string(),
    };
    let data = store.get(&b.data_key).await?;
    let data = match (b.encrypted, keyring) {
        (false, _) => data,
        (true, Some(k)) => k.decrypt(&b.data_key, &data).map_err(|e| corrupt(&e))?,
        (true, None) => return Err(corrupt(&"encrypted: give its key")),
    };
    let sha = hex::encode(sha2::Sha256::digest(&data));
    if sha != b.sha256 || data.len() as u64 != b.size {
        return Err(corrupt(&format!(
            "SHA-256 {sha} / {} bytes, its manifest says {} / {} bytes",
            data.len(),
            b.sha256,
            b.size
        )));
    }
    Ok(data)
}

/// Plans a restore of `stream` to `target`. With `allow_empty_base`, a stream captured
/// from its very first write may be restored onto an empty database without a snapshot.
pub async fn plan(
    store: &dyn Store,
    stream: &str,
    target: Target,
    keyring: Option<&Keyring>,
    allow_empty_base: bool,
) -> Result<Plan, RestoreError> {
    plan_for(store, stream, "", target, keyring, allow_empty_base).await
}

/// [`plan`] for the records of one namespace (a Qdrant collection), based on a snapshot
/// of that namespace; `""` plans a whole database from whole-database snapshots.
pub async fn plan_for(
    store: &dyn Store,
    stream: &str,
    namespace: &str,
    target: Target,
    keyring: Option<&Keyring>,
    allow_empty_base: bool,
) -> Result<Plan, RestoreError> {
    let cat = Catalog::load(store, stream).await?;
    let timeline = newest_timeline(&cat, true)?;
    let segs: Vec<&SegmentEntry> = cat
        .segments
        .iter()
        .filter(|s| s.range.timeline == timeline)
        .collect();
    let snaps: Vec<&SnapshotManifest> = cat
        .snapshots
        .iter()
        .filter(|s| s.timeline == timeline && s.namespace == namespace && cat.snapshot_present(s))
        .collect();
    let (latest_lsn, latest_time_us) = match segs.last() {
        Some(s) => (s.range.last_lsn, s.range.last_ts),
        None => snaps.last().map_or((0, 0), |s| (s.lsn, s.time_us)),
    };
    // A stream captured from its first record may start from an empty database, so its
    // window opens there; otherwise at the first base snapshot.
    let from_start = segs.first().filter(|s| s.range.first_lsn == 1);
    let earliest = match (snaps.first(), from_start) {
        (b, Some(s)) if allow_empty_base => {
            b.map_or(s.range.first_ts, |b| b.time_us.min(s.range.first_ts))
        }
        (Some(b), _) => b.time_us,
        (None, _) => segs.first().map_or(0, |s| s.range.first_ts),
    };

    let (target_lsn, target_time_us) = match target {
        Target::Latest => (latest_lsn, latest_time_us),
        Target::Lsn(n) if n > latest_lsn => {
            return Err(RestoreError::OutOfWindow(format!(
                "LSN {n} is not in the store: it holds records through LSN {latest_lsn}"
            )))
        }
        Target::Lsn(n) => (n, time_of(store, &segs, n, keyring).await?),
        Target::Time(t) => {
            if t < earliest {
                return Err(RestoreError::OutOfWindow(format!(
                    "{} is before the recoverable window, which starts at {}",
                    format_us(t),
                    format_us(earliest)
                )));
            }
            match segs.iter().rev().find(|s| s.range.first_ts <= t) {
                None => {
                    // Before the first record: the base as capture began.
                    let b = snaps.iter().rev().find(|s| s.time_us <= t);
                    b.map_or((0, t), |b| (b.lsn, b.time_us))
                }
                Some(s) if s.range.last_ts <= t => (s.range.last_lsn, s.range.last_ts),
                Some(s) => last_at_or_before(store, s, t, keyring).await?,
            }
        }
    };

    // A base taken at a full resync of the tap may hold writes the log has no records of,
    // made up to when it was taken: it must not serve a restore to an earlier time (nor to
    // an LSN, which means the state right after that record). The latest state is the
    // exception: there those writes belong.
    let taken_by = match target {
        Target::Latest => i64::MAX,
        Target::Lsn(_) => target_time_us,
        Target::Time(t) => t,
    };
    let base = snaps
        .iter()
        .rev()
        .find(|s| s.lsn <= target_lsn && s.time_us <= taken_by)
        .map(|s| (*s).clone());
    if base.is_none() {
        let from_start = segs.first().is_some_and(|s| s.range.first_lsn == 1);
        if !(allow_empty_base && from_start) {
            return Err(RestoreError::NoBase {
                lsn: target_lsn,
                hint: if from_start {
                    "if the database was empty when capture began, allow an empty base (--from-empty)".into()
                } else {
                    "the records before the first segment are gone, so there is nothing to start from".into()
                },
            });
        }
    }
    let base_lsn = base.as_ref().map_or(0, |b| b.lsn);
    let mut segments = Vec::new();
    let mut next = base_lsn + 1;
    for s in segs {
        if s.range.last_lsn < next || next > target_lsn {
            continue;
        }
        if s.range.first_lsn > next {
            return Err(RestoreError::Gap {
                from: next,
                to: s.range.first_lsn - 1,
                key: s.key.clone(),
            });
        }
        next = s.range.last_lsn + 1;
        segments.push(s.clone());
    }
    if next <= target_lsn {
        return Err(RestoreError::Gap {
            from: next,
            to: target_lsn,
            key: "the end of the store".into(),
        });
    }
    Ok(Plan {
        stream: stream.to_string(),
        timeline,
        base,
        target_lsn,
        target_time_us,
        segments,
        first_lsn: base_lsn + 1,
        latest_lsn,
        latest_time_us,
    })
}

/// Plans reading the records stamped `from_us..=to_us` (a forensic replay): no base; the
/// segments that may hold them. The caller filters records by time.
pub async fn window_plan(
    store: &dyn Store,
    stream: &str,
    from_us: i64,
    to_us: i64,
) -> Result<Plan, RestoreError> {
    let cat = Catalog::load(store, stream).await?;
    let timeline = newest_timeline(&cat, false)?;
    let segs: Vec<SegmentEntry> = cat
        .segments
        .iter()
        .filter(|s| s.range.timeline == timeline)
        .cloned()
        .collect();
    let last = segs.last().expect("a timeline has segments");
    let (latest_lsn, latest_time_us) = (last.range.last_lsn, last.range.last_ts);
    let chosen: Vec<SegmentEntry> = segs
        .iter()
        .filter(|s| s.range.last_ts >= from_us && s.range.first_ts <= to_us)
        .cloned()
        .collect();
    let (Some(first), Some(lastc)) = (chosen.first(), chosen.last()) else {
        return Err(RestoreError::OutOfWindow(format!(
            "the store holds no records between {} and {}",
            format_us(from_us),
            format_us(to_us)
        )));
    };
    for w in chosen.windows(2) {
        if w[1].range.first_lsn != w[0].range.last_lsn + 1 {
            return Err(RestoreError::Gap {
                from: w[0].range.last_lsn + 1,
                to: w[1].range.first_lsn - 1,
                key: w[1].key.clone(),
            });
        }
    }
    Ok(Plan {
        stream: stream.to_string(),
        timeline,
        base: None,
        target_lsn: lastc.range.last_lsn,
        target_time_us: to_us,
        first_lsn: first.range.first_lsn,
        segments: chosen,
        latest_lsn,
        latest_time_us,
    })
}

/// The newest timeline with segments (or, with `snapshots`, with snapshots) in `cat`.
fn newest_timeline(cat: &Catalog, snapshots: bool) -> Result<u32, RestoreError> {
    let from_snaps = cat
        .snapshots
        .iter()
        .filter(|_| snapshots)
        .map(|s| s.timeline);
    cat.segments
        .iter()
        .map(|s| s.range.timeline)
        .chain(from_snaps)
        .max()
        .ok_or_else(|| RestoreError::Empty(cat.stream.clone()))
}

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
    if (t.first_lsn, t.last_lsn) != (seg.range.first_lsn, seg.range.last_lsn) {
        return Err(corrupt(
            None,
            format!(
                "holds LSNs {}..={}, its name says {}..={}",
                t.first_lsn, t.last_lsn, seg.range.first_lsn, seg.range.last_lsn
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

async fn time_of(
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

async fn last_at_or_before(
    store: &dyn Store,
    s: &SegmentEntry,
    t: i64,
    keyring: Option<&Keyring>,
) -> Result<(u64, i64), RestoreError> {
    let seg = fetch_segment(store, s, keyring).await?;
    let mut best = (s.range.first_lsn - 1, s.range.first_ts);
    for r in records_of(&seg, s) {
        let r = r?;
        if r.timestamp_us > t {
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
                    if r.lsn > to {
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
