//! Restore and replay: from what a store holds back to a database.
//!
//! - this file: the plan (which base snapshot, which segments, up to which record) and
//!   which records it applies;
//! - [`segments`]: reading a plan's segments back as verified records;
//! - [`redis`]: applying a plan to a Redis by serving it as a replication master;
//! - [`qdrant`]: applying a plan to one Qdrant collection;
//! - [`replay`]: forensic replay of a window into a staging Redis;
//! - [`to_dir`]: a restore written as an RDB file, through a scratch redis-server.

pub mod qdrant;
pub mod redis;
pub mod replay;
mod segments;
pub mod to_dir;

use serde::Serialize;
use sha2::Digest;

use crate::catalog::timeline::Span;
use crate::catalog::{Catalog, SegmentEntry, SnapshotManifest};
use crate::store::{Keyring, Store, StoreError};
use crate::time::format_us;

pub use segments::{fetch_segment, last_good, records};
use segments::{last_at_or_before, time_of};

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
    /// The timelines the plan reads, from timeline 1 to `timeline`, each with its stretch.
    pub path: Vec<Span>,
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

    /// The timeline on the plan's path that holds record `lsn` (where a base snapshot of the
    /// state after it belongs).
    pub fn timeline_of(&self, lsn: u64) -> u32 {
        self.path
            .iter()
            .find(|s| lsn <= s.through_lsn)
            .map_or(self.timeline, |s| s.timeline)
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
        for w in self.path.windows(2) {
            s += &format!(
                "  history:  timeline {} through LSN {}, then timeline {}\n",
                w[0].timeline, w[0].through_lsn, w[1].timeline
            );
        }
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
    plan_on(store, stream, "", target, keyring, allow_empty_base, None).await
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
    plan_on(
        store,
        stream,
        namespace,
        target,
        keyring,
        allow_empty_base,
        None,
    )
    .await
}

/// [`plan_for`] along the path to `timeline`; `None` follows the newest timeline, whose
/// path holds every point of its parents up to where it branched off.
pub async fn plan_on(
    store: &dyn Store,
    stream: &str,
    namespace: &str,
    target: Target,
    keyring: Option<&Keyring>,
    allow_empty_base: bool,
    timeline: Option<u32>,
) -> Result<Plan, RestoreError> {
    let whole = Catalog::load(store, stream).await?;
    let (timeline, path, cat) = follow(&whole, timeline)?;
    let segs: Vec<&SegmentEntry> = cat.segments.iter().collect();
    let snaps: Vec<&SnapshotManifest> = cat
        .snapshots
        .iter()
        .filter(|s| s.namespace == namespace && cat.snapshot_present(s))
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
        path,
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
    timeline: Option<u32>,
) -> Result<Plan, RestoreError> {
    let whole = Catalog::load(store, stream).await?;
    let (timeline, path, cat) = follow(&whole, timeline)?;
    let segs = cat.segments;
    let Some(last) = segs.last() else {
        return Err(RestoreError::Empty(stream.to_string()));
    };
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
        path,
        base: None,
        target_lsn: lastc.range.last_lsn,
        target_time_us: to_us,
        first_lsn: first.range.first_lsn,
        segments: chosen,
        latest_lsn,
        latest_time_us,
    })
}

/// The timeline a plan follows (`wanted`, or the newest), its path and the catalog as
/// that path sees it.
fn follow(cat: &Catalog, wanted: Option<u32>) -> Result<(u32, Vec<Span>, Catalog), RestoreError> {
    let ids = cat.timeline_ids();
    let timeline = match wanted {
        None => *ids
            .last()
            .ok_or_else(|| RestoreError::Empty(cat.stream.clone()))?,
        Some(t) if ids.contains(&t) => t,
        Some(t) => {
            return Err(RestoreError::OutOfWindow(format!(
                "stream {:?} has no timeline {t}; it has {}",
                cat.stream,
                ids.iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
    };
    let path = cat
        .path(timeline)
        .map_err(|e| RestoreError::OutOfWindow(e.to_string()))?;
    let view = cat
        .on_path(timeline)
        .map_err(|e| RestoreError::OutOfWindow(e.to_string()))?;
    Ok((timeline, path, view))
}

/// The timestamp of record `lsn` on the path to `timeline`: where a new timeline branches.
pub async fn record_time(
    store: &dyn Store,
    stream: &str,
    timeline: u32,
    lsn: u64,
    keyring: Option<&Keyring>,
) -> Result<i64, RestoreError> {
    let whole = Catalog::load(store, stream).await?;
    let (_, _, cat) = follow(&whole, Some(timeline))?;
    let segs: Vec<&SegmentEntry> = cat.segments.iter().collect();
    if segs
        .iter()
        .any(|s| s.range.first_lsn <= lsn && lsn <= s.range.last_lsn)
    {
        return time_of(store, &segs, lsn, keyring).await;
    }
    // A base snapshot's own point, with no segment around it.
    match cat.snapshots.iter().rev().find(|s| s.lsn == lsn) {
        Some(s) => Ok(s.time_us),
        None => Err(RestoreError::OutOfWindow(format!(
            "the store holds no record {lsn} on the path to timeline {timeline} of stream {stream:?}"
        ))),
    }
}
