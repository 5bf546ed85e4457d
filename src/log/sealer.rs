//! Sealing: turn a rolled open segment into an immutable compressed one, crash-safely.

use std::fs::{self, File};
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;
use std::sync::Arc;

use memmap2::Mmap;
use vecwal_format::{
    open_segment_header, Frames, SealOptions, SealSummary, SealedWriter, SegmentKind, Tail,
};

use super::error::{LogError, Result};
use super::layout;
use super::Shared;

#[derive(Debug, Clone)]
pub(crate) struct SealJob {
    pub path: PathBuf,
    pub first_lsn: u64,
    pub last_lsn: u64,
    /// Bytes of the open segment file, for the spool count.
    pub len: u64,
}

pub(crate) fn run(shared: Arc<Shared>, jobs: Receiver<SealJob>) {
    for job in jobs {
        // A full disk holds sealing (and new writes) until there is room; sealing again
        // starts over from the open segment, which stays until sealing succeeds.
        let sealed = shared.until_room("sealer", || {
            seal(
                &job.path,
                &shared.sealed_dir,
                shared.cfg.seal,
                &shared.local_bytes,
                job.len,
            )
        });
        match sealed {
            Ok((path, s)) if (s.first_lsn, s.last_lsn) != (job.first_lsn, job.last_lsn) => {
                shared.fail(LogError::Layout {
                    path,
                    detail: format!(
                        "sealed LSN {}..={} but the writer rolled {}..={}",
                        s.first_lsn, s.last_lsn, job.first_lsn, job.last_lsn
                    ),
                });
                return;
            }
            Ok((path, s)) => {
                tracing::info!(
                    segment = %path.display(),
                    records = s.record_count,
                    raw_bytes = s.raw_bytes,
                    file_bytes = s.file_bytes,
                    "sealed segment"
                );
                shared
                    .progress
                    .send_modify(|p| p.sealed = p.sealed.max(s.last_lsn));
            }
            Err(e) => {
                // The open segment stays where it is; nothing is lost, but nothing after it
                // can ship either, so the log stops taking writes and says why.
                shared.fail(e);
                return;
            }
        }
    }
}

/// Maps a file read-only. Safety: vecwal never modifies a segment file in place once it is
/// readable here, except appending to the newest open segment, which readers only read up
/// to the length they mapped; truncation happens only in recovery under the directory lock.
pub(crate) fn map(path: &Path) -> Result<Mmap> {
    let f = File::open(path).map_err(|e| LogError::io("open", path, e))?;
    // SAFETY: see above; the map is read-only and bounded by the length at map time.
    unsafe { Mmap::map(&f) }.map_err(|e| LogError::io("map", path, e))
}

/// Seals the complete open segment at `wal`: writes `<sealed_dir>/<name>.seg` through a
/// temp file (fsync, rename, fsync dir), then removes `wal` (fsync its dir). A crash at
/// any point leaves either the open segment, or both (recovery removes the open one).
///
/// `spool` counts the segment bytes in the data directory: the sealed file is added before
/// it becomes visible (the shipper may remove it at once) and the open one subtracted once
/// it is gone (`wal_len` bytes).
pub(crate) fn seal(
    wal: &Path,
    sealed_dir: &Path,
    opts: SealOptions,
    spool: &std::sync::atomic::AtomicU64,
    wal_len: u64,
) -> Result<(PathBuf, SealSummary)> {
    let data = map(wal)?;
    let (header, first) = open_segment_header(&data).map_err(|e| LogError::corruption(wal, e))?;
    let mut frames = Frames::new(&data, &header, first);
    let mut sealed_header = header.clone();
    sealed_header.kind = SegmentKind::Sealed;
    let tmp = sealed_dir.join(format!(
        "{}{}",
        layout::open_name(header.timeline, header.first_lsn),
        layout::TMP_SUFFIX
    ));
    let file = File::create(&tmp).map_err(|e| LogError::io("create", &tmp, e))?;
    let mut w = SealedWriter::new(BufWriter::with_capacity(1 << 20, file), sealed_header, opts)
        .map_err(|e| write_err(&tmp, e))?;
    for (_, r) in frames.by_ref() {
        w.push(&r).map_err(|e| write_err(&tmp, e))?;
    }
    // This file was fsynced whole before it was rolled: any fault in it is damage.
    if let Some(v) = frames.violation() {
        return Err(LogError::corruption(wal, v.clone()));
    }
    if let Some(Tail::Torn { cause, .. }) = frames.tail() {
        return Err(LogError::corruption(wal, cause.clone()));
    }
    let (buf, summary) = w.finish().map_err(|e| write_err(&tmp, e))?;
    let file = buf
        .into_inner()
        .map_err(|e| LogError::io("write", &tmp, e.into_error()))?;
    file.sync_all()
        .map_err(|e| LogError::io("fsync", &tmp, e))?;
    drop(file);
    let path = sealed_dir.join(layout::sealed_name(
        header.timeline,
        summary.first_lsn,
        summary.last_lsn,
    ));
    spool.fetch_add(summary.file_bytes, std::sync::atomic::Ordering::Relaxed);
    fs::rename(&tmp, &path).map_err(|e| LogError::io("rename", &tmp, e))?;
    layout::sync_dir(sealed_dir)?;
    drop(data);
    fs::remove_file(wal).map_err(|e| LogError::io("remove", wal, e))?;
    spool.fetch_sub(wal_len, std::sync::atomic::Ordering::Relaxed);
    layout::sync_dir(wal.parent().expect("segment has a parent"))?;
    Ok((path, summary))
}

fn write_err(path: &Path, e: vecwal_format::WriteError) -> LogError {
    match e {
        vecwal_format::WriteError::Io(io) => LogError::io("write", path, io),
        vecwal_format::WriteError::Format(f) => LogError::corruption(path, f),
    }
}
