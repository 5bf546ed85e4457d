//! The writer thread: takes the frames appenders queued, writes them in one `write`,
//! fsyncs per policy (one fsync per batch: group commit), and rolls segments.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vecwal_format::{SegmentHeader, SegmentKind};

use super::error::{LogError, Result};
use super::layout;
use super::sealer::SealJob;
use super::{now_us, FsyncPolicy, Shared};

/// The segment appends go to.
pub(crate) struct OpenSegment {
    pub path: PathBuf,
    pub file: File,
    pub first_lsn: u64,
    /// Last LSN in the file; `first_lsn - 1` while it has no records.
    pub last_lsn: u64,
    pub len: u64,
    /// When its first record arrived (for the age roll); `None` while empty.
    pub first_record_at: Option<Instant>,
}

impl OpenSegment {
    /// Creates a new open segment durably: header written and fsynced, directory fsynced.
    /// `time_floor_us` is the last record's timestamp: the header's time is never below
    /// it, so the header carries the stream's time floor across a restart even when every
    /// record before it has been shipped and removed (promise 10).
    pub fn create(
        shared_meta: &layout::StreamMeta,
        wal_dir: &std::path::Path,
        first_lsn: u64,
        time_floor_us: i64,
    ) -> Result<Self> {
        let path = wal_dir.join(layout::open_name(shared_meta.timeline, first_lsn));
        let header = SegmentHeader {
            kind: SegmentKind::Open,
            stream_id: shared_meta.stream_id,
            timeline: shared_meta.timeline,
            first_lsn,
            created_us: now_us().max(time_floor_us),
            stream_name: shared_meta.name.clone(),
        }
        .encode();
        // Header into a temp file, then renamed into place: the segment is never visible,
        // to readers of a live log or to recovery, without its whole header.
        let tmp = layout::tmp_path(&path);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&tmp)
            .map_err(|e| LogError::io("create", &tmp, e))?;
        file.write_all(&header)
            .map_err(|e| LogError::io("write", &tmp, e))?;
        file.sync_all()
            .map_err(|e| LogError::io("fsync", &tmp, e))?;
        if path.exists() {
            return Err(LogError::Layout {
                path,
                detail: "an open segment with this name already exists".into(),
            });
        }
        std::fs::rename(&tmp, &path).map_err(|e| LogError::io("rename", &tmp, e))?;
        layout::sync_dir(wal_dir)?;
        Ok(OpenSegment {
            path,
            file,
            first_lsn,
            last_lsn: first_lsn - 1,
            len: header.len() as u64,
            first_record_at: None,
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.last_lsn < self.first_lsn
    }
}

/// Bytes of the open segment after which their writeback to disk is started.
///
/// Why: the kernel starts writing dirty pages back only past `dirty_background_ratio` of
/// memory, so the fdatasync of an everysec tick or a roll found up to a second of writes
/// (tens of MB) to flush and took 30-40 ms, and the writer appended nothing meanwhile: the
/// proxy's p99 at pipeline 16 was that fsync. Started every few MB, writeback runs beside
/// the appends and the fdatasync finds only the tail.
const WRITEBACK_EVERY: u64 = 2 << 20;

/// The open segment and what the writer must still do to it; in [`Shared::file`].
pub(crate) struct FileState {
    seg: OpenSegment,
    /// Highest LSN written but not yet fsynced, if any.
    unsynced: Option<u64>,
    /// Offset in the open segment up to which writeback has been started.
    writeback_from: u64,
    /// The buffer `pending` is swapped with, kept for its capacity.
    spare: Vec<u8>,
}

impl FileState {
    pub(crate) fn new(seg: OpenSegment) -> FileState {
        FileState {
            writeback_from: seg.len,
            seg,
            unsynced: None,
            spare: Vec::new(),
        }
    }

    /// Takes every pending frame and writes it. On an error the frames go back to the
    /// front of `pending` and the file is cut back to where they began: nothing is lost or
    /// written half.
    fn write_pending(&mut self, shared: &Shared) -> Result<()> {
        let mut batch = std::mem::take(&mut self.spare);
        let last_lsn = {
            let mut st = shared.lock();
            std::mem::swap(&mut st.pending, &mut batch);
            st.pending_last_lsn
        };
        let r = if batch.is_empty() {
            Ok(())
        } else {
            self.write(shared, &batch, last_lsn)
        };
        if r.is_err() {
            let mut st = shared.lock();
            batch.extend_from_slice(&st.pending);
            std::mem::swap(&mut st.pending, &mut batch);
        }
        batch.clear();
        self.spare = batch;
        r
    }

    fn write(&mut self, shared: &Shared, batch: &[u8], last_lsn: u64) -> Result<()> {
        if let Err(e) = self.seg.file.write_all(batch) {
            // The records after `seg.len` are not whole: gone, as if never written, and
            // the next write goes where they began.
            let len = self.seg.len;
            std::io::Seek::seek(&mut self.seg.file, std::io::SeekFrom::Start(len))
                .and_then(|_| self.seg.file.set_len(len))
                .map_err(|e| LogError::io("truncate", &self.seg.path, e))?;
            return Err(LogError::io("write", &self.seg.path, e));
        }
        self.seg.len += batch.len() as u64;
        shared
            .local_bytes
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        crate::metrics::global()
            .log_bytes
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        self.seg.last_lsn = last_lsn;
        self.seg.first_record_at.get_or_insert_with(Instant::now);
        self.unsynced = Some(last_lsn);
        shared.progress.send_modify(|p| p.written = last_lsn);
        if self.seg.len - self.writeback_from >= WRITEBACK_EVERY {
            start_writeback(&self.seg.file, self.writeback_from, self.seg.len);
            self.writeback_from = self.seg.len;
        }
        Ok(())
    }

    fn sync(&mut self, shared: &Shared) -> Result<()> {
        let Some(lsn) = self.unsynced.take() else {
            return Ok(());
        };
        // fdatasync also persists the file size, which appends change.
        let started = Instant::now();
        self.seg
            .file
            .sync_data()
            .map_err(|e| LogError::io("fsync", &self.seg.path, e))?;
        crate::metrics::global().fsync.observe(started.elapsed());
        shared.progress.send_modify(|p| p.synced = lsn);
        Ok(())
    }

    fn roll_due(&self, cfg: &super::LogConfig) -> bool {
        !self.seg.is_empty()
            && (self.seg.len >= cfg.segment_max_bytes
                || self
                    .seg
                    .first_record_at
                    .is_some_and(|t| t.elapsed() >= cfg.segment_max_age))
    }
}

/// Writes what appenders queued from the appender's own thread, when the file is free and
/// the policy does not fsync each write: no hand-off to the writer thread and back, which
/// cost two thread wake-ups per batch (a tenth of the Redis proxy's CPU at pipeline 1).
/// Returns `false` when the writer thread must be woken: the file was busy (its holder,
/// or the writer once woken, writes these frames), the write failed (the writer retries
/// and decides), or it has something new to time (the first unsynced write for the
/// everysec fsync, the first record for the age roll) or a roll is due.
///
/// The write blocks the appender's thread (an async worker) for a copy into the page
/// cache; the writeback started every [`WRITEBACK_EVERY`] keeps dirty pages, and with them
/// the kernel's throttling of writers, low.
pub(super) fn write_inline(shared: &Shared) -> bool {
    if shared.cfg.fsync == FsyncPolicy::Always {
        return false;
    }
    let Ok(mut f) = shared.file.try_lock() else {
        return false;
    };
    let news = f.unsynced.is_none() || f.seg.first_record_at.is_none();
    if f.write_pending(shared).is_err() {
        return false;
    }
    if news || f.roll_due(&shared.cfg) {
        shared.lock().wake = true;
        return false;
    }
    true
}

struct Writer {
    shared: Arc<Shared>,
    seal_tx: Sender<SealJob>,
    last_sync: Instant,
}

pub(crate) fn run(shared: Arc<Shared>, seal_tx: Sender<SealJob>) {
    let mut w = Writer {
        shared,
        seal_tx,
        last_sync: Instant::now(),
    };
    if let Err(e) = w.run() {
        w.shared.fail(e);
    }
}

impl Writer {
    fn file(&self) -> std::sync::MutexGuard<'_, FileState> {
        self.shared.file.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn run(&mut self) -> Result<()> {
        loop {
            let deadline = self.next_deadline();
            let (closing, roll, sync) = {
                let mut st = self.shared.lock();
                let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                let idle = |st: &mut super::State| {
                    st.pending.is_empty()
                        && !st.closing
                        && !st.roll_requested
                        && !st.sync_requested
                        && !st.wake
                };
                st = match timeout {
                    Some(t) => match self.shared.work.wait_timeout_while(st, t, idle) {
                        Ok((g, _)) => g,
                        Err(p) => p.into_inner().0,
                    },
                    None => self
                        .shared
                        .work
                        .wait_while(st, idle)
                        .unwrap_or_else(|p| p.into_inner()),
                };
                st.wake = false;
                (
                    st.closing,
                    std::mem::take(&mut st.roll_requested),
                    std::mem::take(&mut st.sync_requested),
                )
            };

            let shared = self.shared.clone();
            let mut f = shared.file.lock().unwrap_or_else(|p| p.into_inner());
            // While the disk is full, each partial write is cut off and tried again (see
            // [`Shared::until_room`]).
            shared.until_room("log writer", || f.write_pending(&shared))?;
            let sync_due = match shared.cfg.fsync {
                FsyncPolicy::Always => true,
                FsyncPolicy::Everysec => self.last_sync.elapsed() >= Duration::from_secs(1),
                FsyncPolicy::No => false,
            };
            if sync || closing || sync_due {
                self.last_sync = Instant::now();
                f.sync(&shared)?;
            }
            if roll || f.roll_due(&shared.cfg) {
                shared.until_room("log writer", || self.roll(&mut f))?;
            }
            if closing && shared.lock().pending.is_empty() {
                return Ok(());
            }
        }
    }

    /// The earliest moment the writer must act without being woken: an everysec fsync or
    /// an age roll.
    fn next_deadline(&self) -> Option<Instant> {
        let f = self.file();
        let sync = match (self.shared.cfg.fsync, f.unsynced) {
            (FsyncPolicy::Everysec, Some(_)) => Some(self.last_sync + Duration::from_secs(1)),
            _ => None,
        };
        let roll = f
            .seg
            .first_record_at
            .map(|t| t + self.shared.cfg.segment_max_age);
        match (sync, roll) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Closes the current segment and starts the next; the old one goes to the sealer.
    /// The new segment exists (durably) before the old one is handed over, so there is
    /// always an open segment that says where the next LSN is.
    fn roll(&mut self, f: &mut FileState) -> Result<()> {
        if f.seg.is_empty() {
            return Ok(());
        }
        self.last_sync = Instant::now();
        f.sync(&self.shared)?;
        let floor = self.shared.lock().last_ts;
        let next = OpenSegment::create(
            &self.shared.meta,
            &self.shared.wal_dir,
            f.seg.last_lsn + 1,
            floor,
        )?;
        self.shared
            .local_bytes
            .fetch_add(next.len, Ordering::Relaxed);
        f.writeback_from = next.len;
        let old = std::mem::replace(&mut f.seg, next);
        tracing::debug!(path = %old.path.display(), first = old.first_lsn, last = old.last_lsn, "rolled segment");
        // A closed channel means the sealer is gone (shutdown); the file stays and the next
        // open seals it.
        let _ = self.seal_tx.send(SealJob {
            path: old.path,
            first_lsn: old.first_lsn,
            last_lsn: old.last_lsn,
            len: old.len,
        });
        Ok(())
    }
}

/// Starts writing `from..to` of `file` back to disk without waiting for it. A hint only:
/// a failure shows in the next fdatasync, which is what durability rests on.
#[cfg(target_os = "linux")]
fn start_writeback(file: &File, from: u64, to: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid open descriptor and plain integers; the call touches no memory of ours.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            from as libc::off64_t,
            (to - from) as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &File, _from: u64, _to: u64) {}
