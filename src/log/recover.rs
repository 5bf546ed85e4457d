//! Recovery when a log is opened: the only place files are repaired, always under the
//! directory lock.
//!
//! Rules (SPEC.md §8, docs/log.md): temp files are leftovers and go; an open segment
//! whose sealed twin exists was already sealed and goes; a torn tail is truncated only in
//! the newest open segment; any other damage, or a gap between files, is an error naming
//! the file and offset.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use vecwal_format::{open_segment_header, Frames, SealedSegment, SegmentHeader, Tail};

use super::error::{LogError, Result};
use super::layout::{self, SegmentName, StreamMeta};
use super::sealer::{map, SealJob};
use super::writer::OpenSegment;
use super::{LogConfig, RecoveryMode};

/// What recovery found and did, for the operator.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub temp_files_removed: usize,
    /// Open segments removed because their sealed copy was already complete.
    pub already_sealed_removed: Vec<PathBuf>,
    /// A torn tail cut from the newest open segment: file, offset, bytes dropped.
    pub truncated: Option<(PathBuf, u64, u64)>,
    /// Whole records that were in the cut bytes (only with
    /// [`RecoveryMode::TruncateAfterDamage`]): first and last LSN, and how many.
    pub dropped_records: Option<(u64, u64, usize)>,
    /// Older open segments queued for sealing.
    pub to_seal: usize,
    pub next_lsn: u64,
}

pub(crate) struct Recovered {
    pub lock: layout::DirLock,
    pub meta: StreamMeta,
    pub open_segment: OpenSegment,
    pub to_seal: Vec<SealJob>,
    pub next_lsn: u64,
    pub last_ts: i64,
    pub sealed_through: u64,
    /// Bytes of segment files left in the directory: the spool at start.
    pub local_bytes: u64,
    pub report: RecoveryReport,
}

/// An LSN range a local file holds, for the continuity check.
struct Span {
    name: String,
    first: u64,
    /// `first - 1` when empty.
    last: u64,
}

pub(crate) fn recover(dir: &Path, cfg: &LogConfig) -> Result<Recovered> {
    layout::create_dir(dir)?;
    let lock = layout::lock_dir(dir)?;
    let meta = layout::load_or_create_meta(dir, &cfg.stream_name)?;
    let wal_dir = dir.join(layout::WAL_DIR);
    let sealed_dir = dir.join(layout::SEALED_DIR);
    layout::create_dir(&wal_dir)?;
    layout::create_dir(&sealed_dir)?;
    let mut report = RecoveryReport {
        temp_files_removed: layout::remove_temp_files(&wal_dir)?
            + layout::remove_temp_files(&sealed_dir)?,
        ..Default::default()
    };

    let mut strays = Vec::new();
    let mut spans = Vec::new();
    let mut sealed_firsts = Vec::new();
    // A new timeline's records follow its branch point, in LSN and in time.
    let (branch_lsn, branch_ts) = meta
        .branch
        .as_ref()
        .map_or((0, i64::MIN), |b| (b.lsn, b.time_us));
    let mut last_ts = branch_ts;
    for (name, path) in layout::list_segments(&sealed_dir, &mut strays)? {
        let seg = SealedSegment::open(map(&path)?).map_err(|e| LogError::corruption(&path, e))?;
        check_identity(&path, &seg.header, &meta, name)?;
        if name.last_lsn != Some(seg.trailer.last_lsn) {
            return Err(layout_err(
                &path,
                "name disagrees with the LSN range inside",
            ));
        }
        spans.push(Span {
            name: file_name(&path),
            first: seg.trailer.first_lsn,
            last: seg.trailer.last_lsn,
        });
        sealed_firsts.push((name.timeline, name.first_lsn));
        last_ts = last_ts.max(seg.trailer.last_ts);
    }

    let mut wals = Vec::new();
    for (name, path) in layout::list_segments(&wal_dir, &mut strays)? {
        if sealed_firsts.contains(&(name.timeline, name.first_lsn)) {
            // Crash after the sealed copy was renamed into place, before this was removed.
            fs::remove_file(&path).map_err(|e| LogError::io("remove", &path, e))?;
            report.already_sealed_removed.push(path);
            continue;
        }
        wals.push((name, path));
    }
    if !report.already_sealed_removed.is_empty() {
        layout::sync_dir(&wal_dir)?;
    }
    if let Some(stray) = strays.first() {
        return Err(layout_err(
            stray,
            "unexpected file in the log directory; move it away",
        ));
    }

    let mut to_seal = Vec::new();
    let mut newest = None;
    let count = wals.len();
    for (i, (name, path)) in wals.into_iter().enumerate() {
        let is_newest = i + 1 == count;
        let Some(scan) = scan_open(&path, &meta, name, is_newest, cfg.recovery)? else {
            // The newest file's header never reached disk whole: it was being created at a
            // crash, so it never held a record.
            fs::remove_file(&path).map_err(|e| LogError::io("remove", &path, e))?;
            layout::sync_dir(&wal_dir)?;
            continue;
        };
        let last = scan.last.map(|(lsn, _)| lsn).unwrap_or(name.first_lsn - 1);
        if let Some((_, t)) = scan.last {
            last_ts = last_ts.max(t);
        }
        last_ts = last_ts.max(scan.created_us);
        if !is_newest && scan.last.is_none() {
            // Rolled but never written: nothing to seal.
            fs::remove_file(&path).map_err(|e| LogError::io("remove", &path, e))?;
            layout::sync_dir(&wal_dir)?;
            continue;
        }
        spans.push(Span {
            name: file_name(&path),
            first: name.first_lsn,
            last,
        });
        if !is_newest {
            to_seal.push(SealJob {
                path,
                first_lsn: name.first_lsn,
                last_lsn: last,
                len: scan.file_len,
            });
            continue;
        }
        if scan.valid_len < scan.file_len {
            truncate(&path, scan.valid_len)?;
            let dropped = scan.file_len - scan.valid_len;
            tracing::warn!(file = %path.display(), offset = scan.valid_len, dropped,
                "truncated a torn tail of the newest open segment");
            report.truncated = Some((path.clone(), scan.valid_len, dropped));
            if let Some((first, last, n)) = scan.dropped {
                tracing::warn!(file = %path.display(), first, last, records = n,
                    "recovery dropped whole records after damage, as asked (truncate-after-damage)");
                report.dropped_records = scan.dropped;
            }
        }
        newest = Some((path, name.first_lsn, last, scan.valid_len));
    }

    spans.sort_by_key(|s| s.first);
    for pair in spans.windows(2) {
        if pair[1].first != pair[0].last + 1 {
            return Err(LogError::Gap {
                dir: dir.to_path_buf(),
                before: pair[0].name.clone(),
                before_last: pair[0].last,
                after: pair[1].name.clone(),
                after_first: pair[1].first,
            });
        }
    }
    let last_lsn = spans.last().map_or(branch_lsn, |s| s.last);

    let open_segment = match newest {
        Some((path, first_lsn, last, len)) => {
            if last != last_lsn {
                return Err(layout_err(
                    &path,
                    "a sealed segment continues past the newest open segment",
                ));
            }
            let file = OpenOptions::new()
                .append(true)
                .open(&path)
                .map_err(|e| LogError::io("open", &path, e))?;
            OpenSegment {
                path,
                file,
                first_lsn,
                last_lsn: last,
                len,
                // Records from before the restart: count the segment's age from now.
                first_record_at: (last >= first_lsn).then(std::time::Instant::now),
            }
        }
        None => OpenSegment::create(&meta, &wal_dir, last_lsn + 1, last_ts)?,
    };
    let next_lsn = last_lsn + 1;
    let mut local_bytes = 0;
    for d in [&wal_dir, &sealed_dir] {
        for (_, p) in layout::list_segments(d, &mut Vec::new())? {
            local_bytes += fs::metadata(&p)
                .map_err(|e| LogError::io("stat", &p, e))?
                .len();
        }
    }
    // Everything before the oldest open segment was sealed, whether its sealed file is still
    // here or already shipped and removed (sealed files precede open ones: checked above).
    let sealed_through = to_seal
        .iter()
        .map(|j| j.first_lsn)
        .chain([open_segment.first_lsn])
        .min()
        .expect("there is always an open segment")
        - 1;
    report.to_seal = to_seal.len();
    report.next_lsn = next_lsn;
    Ok(Recovered {
        lock,
        meta,
        open_segment,
        to_seal,
        next_lsn,
        last_ts,
        sealed_through,
        local_bytes,
        report,
    })
}

struct Scan {
    /// The header's time: a floor for the stream's timestamps.
    created_us: i64,
    /// LSN and timestamp of the last whole record, if any.
    last: Option<(u64, i64)>,
    /// Offset just past the last whole frame.
    valid_len: u64,
    file_len: u64,
    /// Whole records after the damage that truncating drops: first, last LSN, count.
    dropped: Option<(u64, u64, usize)>,
}

/// Reads an open segment. `None`: the newest file's header is torn (see caller).
fn scan_open(
    path: &Path,
    meta: &StreamMeta,
    name: SegmentName,
    is_newest: bool,
    mode: RecoveryMode,
) -> Result<Option<Scan>> {
    let data = map(path)?;
    let (header, first) = match open_segment_header(&data) {
        Ok(h) => h,
        // Creating a segment writes and fsyncs the header before any frame, so a bad header
        // on a file no longer than a header is a creation cut short, not damage.
        Err(_) if is_newest && data.len() <= SegmentHeader::MAX_LEN => return Ok(None),
        Err(e) => return Err(LogError::corruption(path, e)),
    };
    check_identity(path, &header, meta, name)?;
    let mut frames = Frames::new(&data, &header, first);
    let mut last = None;
    let mut dropped = None;
    for (_, r) in frames.by_ref() {
        last = Some((r.lsn, r.timestamp_us));
    }
    if let Some(v) = frames.violation() {
        return Err(LogError::corruption(path, v.clone()));
    }
    if let Some(Tail::Torn { cause, offset }) = frames.tail() {
        if !is_newest {
            return Err(LogError::corruption(path, cause.clone()));
        }
        // A torn write leaves nothing valid after it. A whole record further on means the
        // damage is in the middle: truncating would silently drop acknowledged records.
        let after = last
            .map(|(lsn, _)| lsn)
            .unwrap_or(header.first_lsn.saturating_sub(1));
        if mode == RecoveryMode::TruncateAfterDamage {
            dropped = records_after(&data, *offset as usize + 1, after);
        }
        if mode == RecoveryMode::Strict {
            if let Some((at, lsn)) = later_record(&data, *offset as usize + 1, after) {
                return Err(LogError::Corruption {
                    file: path.to_path_buf(),
                    offset: *offset,
                    cause: vecwal_format::FormatError::Malformed {
                        what: "open segment".into(),
                        offset: *offset,
                        detail: format!(
                            "{cause}; yet a whole record (LSN {lsn}) follows at offset {at}, so this is damage, \
                             not a torn write. Recovery stops rather than drop records; to truncate here \
                             anyway (dropping them), start with --recovery truncate-after-damage"
                        ),
                    },
                });
            }
        }
    }
    Ok(Some(Scan {
        created_us: header.created_us,
        last,
        valid_len: frames.valid_len(),
        file_len: data.len() as u64,
        dropped,
    }))
}

/// The whole, valid frames at or after `from` with LSNs beyond `after`: first and last LSN,
/// and how many.
fn records_after(data: &[u8], from: usize, after: u64) -> Option<(u64, u64, usize)> {
    let mut found: Option<(u64, u64, usize)> = None;
    let mut pos = from;
    while let Some((at, lsn)) = later_record(data, pos, after) {
        found = Some(match found {
            None => (lsn, lsn, 1),
            Some((a, b, n)) => (a.min(lsn), b.max(lsn), n + 1),
        });
        pos = at as usize + 1;
    }
    found
}

/// The first whole, valid frame at or after `from` whose LSN is beyond `after`:
/// `(offset, lsn)`. Frames are tried at every byte offset (the damage may have destroyed
/// the length that says where the next one starts).
fn later_record(data: &[u8], from: usize, after: u64) -> Option<(u64, u64)> {
    (from..data.len()).find_map(
        |at| match vecwal_format::decode_frame(&data[at..], at as u64) {
            Ok((r, _)) if r.lsn > after => Some((at as u64, r.lsn)),
            _ => None,
        },
    )
}

fn check_identity(
    path: &Path,
    h: &SegmentHeader,
    meta: &StreamMeta,
    name: SegmentName,
) -> Result<()> {
    if h.stream_id != meta.stream_id || h.stream_name != meta.name {
        return Err(layout_err(
            path,
            &format!(
                "belongs to stream {:?} ({:016x}), not this directory's {:?}",
                h.stream_name, h.stream_id, meta.name
            ),
        ));
    }
    if name.first_lsn == 0 {
        return Err(layout_err(path, "LSNs start at 1"));
    }
    if h.timeline != name.timeline || h.first_lsn != name.first_lsn {
        return Err(layout_err(path, "name disagrees with the header"));
    }
    Ok(())
}

fn truncate(path: &Path, len: u64) -> Result<()> {
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| LogError::io("open", path, e))?;
    f.set_len(len)
        .map_err(|e| LogError::io("truncate", path, e))?;
    f.sync_all().map_err(|e| LogError::io("fsync", path, e))
}

fn layout_err(path: &Path, detail: &str) -> LogError {
    LogError::Layout {
        path: path.to_path_buf(),
        detail: detail.to_string(),
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
