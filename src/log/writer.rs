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

struct Writer {
    shared: Arc<Shared>,
    seg: OpenSegment,
    seal_tx: Sender<SealJob>,
    /// Highest LSN written but not yet fsynced, if any.
    unsynced: Option<u64>,
    last_sync: Instant,
    /// Offset in the open segment up to which writeback has been started.
    writeback_from: u64,
}

pub(crate) fn run(shared: Arc<Shared>, seg: OpenSegment, seal_tx: Sender<SealJob>) {
    let writeback_from = seg.len;
    let mut w = Writer {
        shared,
        seg,
        seal_tx,
        unsynced: None,
        last_sync: Instant::now(),
        writeback_from,
    };
    if let Err(e) = w.run() {
        w.shared.fail(e);
    }
}

impl Writer {
    fn run(&mut self) -> Result<()> {
        let mut batch = Vec::new();
        loop {
            let (last_lsn, closing, roll, sync) = {
                let mut st = self.shared.lock();
                let timeout = self
                    .next_deadline()
                    .map(|d| d.saturating_duration_since(Instant::now()));
                let idle = |st: &mut super::State| {
                    st.pending.is_empty() && !st.closing && !st.roll_requested && !st.sync_requested
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
                std::mem::swap(&mut st.pending, &mut batch);
                (
                    st.pending_last_lsn,
                    st.closing,
                    std::mem::take(&mut st.roll_requested),
                    std::mem::take(&mut st.sync_requested),
                )
            };

            if !batch.is_empty() {
                self.write_until_room(&batch, last_lsn)?;
                batch.clear();
            }
            let policy = self.shared.cfg.fsync;
            let sync_due = match policy {
                FsyncPolicy::Always => true,
                FsyncPolicy::Everysec => self.last_sync.elapsed() >= Duration::from_secs(1),
                FsyncPolicy::No => false,
            };
            if sync || closing || sync_due {
                self.sync()?;
            }
            if roll || self.roll_due() {
                let shared = self.shared.clone();
                shared.until_room("log writer", || self.roll())?;
            }
            if closing && self.shared.lock().pending.is_empty() {
                return Ok(());
            }
        }
    }

    /// The earliest moment the writer must act without being woken: an everysec fsync or
    /// an age roll.
    fn next_deadline(&self) -> Option<Instant> {
        let sync = match (self.shared.cfg.fsync, self.unsynced) {
            (FsyncPolicy::Everysec, Some(_)) => Some(self.last_sync + Duration::from_secs(1)),
            _ => None,
        };
        let roll = self
            .seg
            .first_record_at
            .map(|t| t + self.shared.cfg.segment_max_age);
        match (sync, roll) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn roll_due(&self) -> bool {
        !self.seg.is_empty()
            && (self.seg.len >= self.shared.cfg.segment_max_bytes
                || self
                    .seg
                    .first_record_at
                    .is_some_and(|t| t.elapsed() >= self.shared.cfg.segment_max_age))
    }

    /// Writes `batch`; while the disk is full, cuts each partial write off and tries again
    /// (see [`Shared::until_room`]).
    fn write_until_room(&mut self, batch: &[u8], last_lsn: u64) -> Result<()> {
        let shared = self.shared.clone();
        shared.until_room("log writer", || {
            let r = self.write(batch, last_lsn);
            if r.is_err() {
                // The records after `seg.len` are not whole: gone, as if never written,
                // and the next write goes where they began.
                let len = self.seg.len;
                std::io::Seek::seek(&mut self.seg.file, std::io::SeekFrom::Start(len))
                    .and_then(|_| self.seg.file.set_len(len))
                    .map_err(|e| LogError::io("truncate", &self.seg.path, e))?;
            }
            r
        })
    }

    fn write(&mut self, batch: &[u8], last_lsn: u64) -> Result<()> {
        self.seg
            .file
            .write_all(batch)
            .map_err(|e| LogError::io("write", &self.seg.path, e))?;
        self.seg.len += batch.len() as u64;
        self.shared
            .local_bytes
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        crate::metrics::global()
            .log_bytes
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        self.seg.last_lsn = last_lsn;
        self.seg.first_record_at.get_or_insert_with(Instant::now);
        self.unsynced = Some(last_lsn);
        self.shared.progress.send_modify(|p| p.written = last_lsn);
        if self.seg.len - self.writeback_from >= WRITEBACK_EVERY {
            start_writeback(&self.seg.file, self.writeback_from, self.seg.len);
            self.writeback_from = self.seg.len;
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<()> {
        self.last_sync = Instant::now();
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
        self.shared.progress.send_modify(|p| p.synced = lsn);
        Ok(())
    }

    /// Closes the current segment and starts the next; the old one goes to the sealer.
    /// The new segment exists (durably) before the old one is handed over, so there is
    /// always an open segment that says where the next LSN is.
    fn roll(&mut self) -> Result<()> {
        if self.seg.is_empty() {
            return Ok(());
        }
        self.sync()?;
        let floor = self.shared.lock().last_ts;
        let next = OpenSegment::create(
            &self.shared.meta,
            &self.shared.wal_dir,
            self.seg.last_lsn + 1,
            floor,
        )?;
        self.shared
            .local_bytes
            .fetch_add(next.len, Ordering::Relaxed);
        self.writeback_from = next.len;
        let old = std::mem::replace(&mut self.seg, next);
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
