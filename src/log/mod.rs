//! The local write-ahead log: durable append with group commit, segment roll and seal,
//! recovery on open, and readers.
//!
//! Appends are ordered when `append` is *called*, not when its future completes: the LSN
//! and timestamp are assigned and the frame is queued synchronously inside `append`, so a
//! capture front end that calls `append` in the order the upstream applied two writes gets
//! them logged in that order (promise 3) while many appends share one fsync.

mod error;
pub mod layout;
pub mod reader;
mod recover;
mod sealer;
pub mod verify;
mod writer;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::watch;
use vecwal_format::{Kind, Operation, Record, SealOptions};

pub use error::{LogError, Result};
pub use layout::StreamMeta;
pub use recover::RecoveryReport;

/// When an append counts as done, like Redis's `appendfsync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// fsync before `append` returns (group commit shares one fsync among concurrent
    /// appends). Survives power loss.
    #[default]
    Always,
    /// `append` returns once the record is written to the OS; fsync runs at least once a
    /// second. Survives a crash of vecwal; power loss can cost up to about a second.
    Everysec,
    /// `append` returns once written to the OS; fsync only when a segment rolls or the log
    /// closes.
    No,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Name of the stream this data directory captures.
    pub stream_name: String,
    pub fsync: FsyncPolicy,
    /// An open segment rolls once it reaches this size...
    pub segment_max_bytes: u64,
    /// ...or once its first record is this old. Empty segments never roll.
    pub segment_max_age: Duration,
    pub seal: SealOptions,
    /// Most bytes of unshipped segments kept locally (open and sealed). Past it, new
    /// writes are not admitted ([`Log::admit`]): fail closed, never drop.
    pub spool_max_bytes: u64,
    /// What [`Log::admit`] does while the spool is full.
    pub spool_full: SpoolFullPolicy,
    /// How recovery treats damage in the newest open segment.
    pub recovery: RecoveryMode,
}

/// How recovery treats bytes in the newest open segment that are not a whole frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum RecoveryMode {
    /// Truncate a torn tail (nothing valid after it: a crash mid-write); refuse to start
    /// with a `Corruption` error when a valid record follows the damage.
    #[default]
    Strict,
    /// Truncate at the first damaged frame even when valid records follow: the operator's
    /// explicit choice to go on without them.
    TruncateAfterDamage,
}

/// What happens to a new write while the spool of unshipped segments is full. Either way
/// nothing already acknowledged is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SpoolFullPolicy {
    /// Refuse it at once with [`LogError::SpoolFull`] (the default: fail closed, loudly).
    #[default]
    Refuse,
    /// Hold it until shipping makes room, up to this long, then refuse it: back-pressure
    /// instead of errors for short outages.
    Wait(Duration),
}

impl LogConfig {
    pub fn new(stream_name: impl Into<String>) -> Self {
        LogConfig {
            stream_name: stream_name.into(),
            fsync: FsyncPolicy::Always,
            segment_max_bytes: 64 << 20,
            segment_max_age: Duration::from_secs(60),
            // zstd level 1, not the format crate's 3: on f32 vector frames it seals 1.6x
            // faster at the same ratio, and on Qdrant REST bodies (JSON text of vectors) it
            // is both faster (208 against 117 MB/s) and smaller (2.44x against 2.15x); see
            // docs/benchmarks.md. Sealing was 40% of the Qdrant proxy's CPU at level 3.
            seal: SealOptions {
                zstd_level: 1,
                ..SealOptions::default()
            },
            spool_max_bytes: 4 << 30,
            spool_full: SpoolFullPolicy::Refuse,
            recovery: RecoveryMode::Strict,
        }
    }
}

/// What to append: the parts of a record the caller chooses. LSN, timestamp, stream and
/// timeline are the log's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    pub namespace: String,
    pub payload: Vec<u8>,
}

impl Entry {
    pub fn new(namespace: impl Into<String>, op: &Operation) -> Result<Entry> {
        Ok(Entry {
            kind: op.kind(),
            namespace: namespace.into(),
            payload: op.encode().map_err(LogError::InvalidRecord)?,
        })
    }
}

/// Where an appended record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub lsn: u64,
    pub timestamp_us: i64,
}

/// How far the writer has come; watched by appenders waiting for their records.
#[derive(Debug, Clone, Default)]
struct Progress {
    /// Highest LSN handed to the OS.
    written: u64,
    /// Highest LSN fsynced.
    synced: u64,
    /// Highest LSN in a sealed segment.
    sealed: u64,
    failed: Option<Arc<LogError>>,
    closed: bool,
}

/// What appenders and the writer share under the mutex.
struct State {
    next_lsn: u64,
    last_ts: i64,
    /// Encoded frames not yet taken by the writer.
    pending: Vec<u8>,
    pending_last_lsn: u64,
    closing: bool,
    roll_requested: bool,
    sync_requested: bool,
    /// An appender wrote and the writer has something new to time (see
    /// [`writer::write_inline`]).
    wake: bool,
    failed: Option<Arc<LogError>>,
    /// Why the log, or the capture in front of it, cannot log for now, by who says so
    /// (see [`Log::set_blocked`]); while any is set, new writes are refused.
    blocked: std::collections::BTreeMap<&'static str, String>,
}

struct Shared {
    cfg: LogConfig,
    /// Bytes of segment files in the data directory: the spool of what is not shipped.
    local_bytes: std::sync::atomic::AtomicU64,
    /// Bumped whenever shipped segments leave the spool, for writers waiting for room.
    spool_room: watch::Sender<u64>,
    meta: StreamMeta,
    wal_dir: PathBuf,
    sealed_dir: PathBuf,
    state: Mutex<State>,
    /// Wakes the writer when there is work.
    work: Condvar,
    /// The open segment; whoever holds it takes all of `pending` and writes it, so frames
    /// reach the file in LSN order. Taken before `state` when both are held.
    file: Mutex<writer::FileState>,
    progress: watch::Sender<Progress>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave State half-updated in a way that
        // matters more than the panic itself; keep serving the error paths.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records that `who` cannot log for now (`Some(why)`) or can again (`None`).
    fn set_blocked(&self, who: &'static str, why: Option<String>) {
        let mut st = self.lock();
        if st.blocked.get(who) == why.as_ref() {
            return;
        }
        match why {
            Some(w) => {
                tracing::error!(reason = %w, "cannot log; refusing new writes");
                st.blocked.insert(who, w);
            }
            None => {
                tracing::info!(who, "can log again; accepting new writes");
                st.blocked.remove(who);
            }
        }
    }

    /// Runs `attempt` until it succeeds or fails otherwise than for a full disk; while the
    /// disk is full, new writes are refused (as `who`) and it tries again each second.
    /// `attempt` must be safe to repeat after a failure.
    fn until_room<T>(
        &self,
        who: &'static str,
        mut attempt: impl FnMut() -> Result<T>,
    ) -> Result<T> {
        let mut full = false;
        loop {
            match attempt() {
                Err(LogError::Io { op, path, source })
                    if source.kind() == std::io::ErrorKind::StorageFull =>
                {
                    if !full {
                        full = true;
                        self.set_blocked(
                            who,
                            Some(format!(
                                "{op} {}: no space left on the device",
                                path.display()
                            )),
                        );
                    }
                    std::thread::sleep(std::time::Duration::from_secs(1));
                }
                other => {
                    if full {
                        self.set_blocked(who, None);
                    }
                    return other;
                }
            }
        }
    }

    /// Marks the log failed: pending and future appends get the error.
    fn fail(&self, err: LogError) {
        tracing::error!(error = %err, "log failed; no more writes are accepted until restart");
        let err = Arc::new(err);
        self.lock().failed = Some(err.clone());
        self.progress.send_modify(|p| p.failed = Some(err));
    }
}

/// An open write-ahead log in a data directory. Dropping it closes it.
pub struct Log {
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
    sealer: Option<JoinHandle<()>>,
    _lock: layout::DirLock,
}

impl Log {
    /// Opens (or creates) the log in `dir`, running recovery: lock the directory, drop temp
    /// files, truncate a torn tail of the newest open segment only, seal older open
    /// segments, and resume at the next LSN.
    pub fn open(dir: &Path, cfg: LogConfig) -> Result<(Log, RecoveryReport)> {
        layout::check_stream_name(&cfg.stream_name).map_err(|detail| LogError::Layout {
            path: dir.to_path_buf(),
            detail,
        })?;
        let r = recover::recover(dir, &cfg)?;
        let (progress, _) = watch::channel(Progress {
            written: r.next_lsn - 1,
            synced: r.next_lsn - 1,
            sealed: r.sealed_through,
            ..Progress::default()
        });
        let shared = Arc::new(Shared {
            local_bytes: std::sync::atomic::AtomicU64::new(r.local_bytes),
            spool_room: watch::channel(0).0,
            meta: r.meta.clone(),
            wal_dir: dir.join(layout::WAL_DIR),
            sealed_dir: dir.join(layout::SEALED_DIR),
            state: Mutex::new(State {
                next_lsn: r.next_lsn,
                last_ts: r.last_ts,
                pending: Vec::new(),
                pending_last_lsn: 0,
                closing: false,
                // Records a restart finds in the open segment roll, seal and ship at once:
                // waiting `segment_max_age` from the restart let a capture that restarts
                // more often than that never ship.
                roll_requested: !r.open_segment.is_empty(),
                sync_requested: false,
                wake: false,
                failed: None,
                blocked: Default::default(),
            }),
            work: Condvar::new(),
            file: Mutex::new(writer::FileState::new(r.open_segment)),
            progress,
            cfg,
        });
        let (seal_tx, seal_rx) = std::sync::mpsc::channel();
        for job in r.to_seal.iter().cloned() {
            seal_tx.send(job).expect("receiver alive");
        }
        let s = shared.clone();
        let sealer = std::thread::Builder::new()
            .name("vecwal-sealer".into())
            .spawn(move || sealer::run(s, seal_rx))
            .map_err(|e| LogError::io("spawn sealer thread for", dir, e))?;
        let s = shared.clone();
        let writer = std::thread::Builder::new()
            .name("vecwal-writer".into())
            .spawn(move || writer::run(s, seal_tx))
            .map_err(|e| LogError::io("spawn writer thread for", dir, e))?;
        let log = Log {
            shared,
            writer: Some(writer),
            sealer: Some(sealer),
            _lock: r.lock,
        };
        Ok((log, r.report))
    }

    pub fn meta(&self) -> &StreamMeta {
        &self.shared.meta
    }

    /// Appends one record. The LSN is assigned now; the returned future resolves once the
    /// record is durable per the fsync policy.
    pub fn append(&self, entry: Entry) -> impl Future<Output = Result<Appended>> + Send + 'static {
        self.append_batch(vec![entry])
    }

    /// Appends records with consecutive LSNs and one timestamp; resolves to the first.
    /// All or none: a batch with one invalid record appends nothing.
    pub fn append_batch(
        &self,
        entries: Vec<Entry>,
    ) -> impl Future<Output = Result<Appended>> + Send + 'static {
        let queued = self.enqueue(entries);
        let rx = self.shared.progress.subscribe();
        let policy = self.shared.cfg.fsync;
        async move {
            let (first, last_lsn) = queued?;
            wait_for(rx, last_lsn, policy).await?;
            Ok(first)
        }
    }

    fn enqueue(&self, entries: Vec<Entry>) -> Result<(Appended, u64)> {
        let mut records = Vec::with_capacity(entries.len());
        for e in entries {
            let r = Record {
                lsn: 0,
                timestamp_us: 0,
                stream_id: self.shared.meta.stream_id,
                timeline: self.shared.meta.timeline,
                kind: e.kind,
                namespace: e.namespace,
                payload: e.payload,
            };
            r.validate().map_err(LogError::InvalidRecord)?;
            records.push(r);
        }
        if records.is_empty() {
            return Err(LogError::InvalidRecord(
                vecwal_format::FormatError::Malformed {
                    what: "batch".into(),
                    offset: 0,
                    detail: "empty batch".into(),
                },
            ));
        }
        let mut st = self.shared.lock();
        if let Some(f) = &st.failed {
            return Err(LogError::Failed(f.clone()));
        }
        if st.closing {
            return Err(LogError::Closed);
        }
        // Time is the producer's (promise 10): our clock, never going back in a stream.
        let ts = now_us().max(st.last_ts);
        st.last_ts = ts;
        let first = st.next_lsn;
        for r in &mut records {
            r.lsn = st.next_lsn;
            r.timestamp_us = ts;
            st.next_lsn += 1;
            r.encode_frame(&mut st.pending);
        }
        st.pending_last_lsn = st.next_lsn - 1;
        let last = st.pending_last_lsn;
        drop(st);
        if !writer::write_inline(&self.shared) {
            self.shared.work.notify_one();
        }
        Ok((
            Appended {
                lsn: first,
                timestamp_us: ts,
            },
            last,
        ))
    }

    /// Makes everything appended so far durable now, whatever the fsync policy.
    pub async fn sync(&self) -> Result<()> {
        let last = self.last_lsn();
        self.shared.lock().sync_requested = true;
        self.shared.work.notify_one();
        wait_for(self.shared.progress.subscribe(), last, FsyncPolicy::Always).await
    }

    /// Rolls the open segment (if it holds records) and waits until it is sealed.
    /// Returns the last sealed LSN.
    pub async fn roll(&self) -> Result<u64> {
        let last = self.last_lsn();
        self.shared.lock().roll_requested = true;
        self.shared.work.notify_one();
        self.wait_sealed(last).await?;
        Ok(self.sealed_lsn())
    }

    /// Resolves once `lsn` is fsynced, by whatever the policy does, without asking for it.
    pub async fn wait_synced(&self, lsn: u64) -> Result<()> {
        wait_for(self.shared.progress.subscribe(), lsn, FsyncPolicy::Always).await
    }

    /// Resolves once a sealed segment holds `lsn` (segments roll by size, age or
    /// [`Log::roll`]).
    pub async fn wait_sealed(&self, lsn: u64) -> Result<()> {
        let mut rx = self.shared.progress.subscribe();
        let p = rx
            .wait_for(|p| p.sealed >= lsn || p.failed.is_some() || p.closed)
            .await
            .map_err(|_| LogError::Closed)?;
        match (&p.failed, p.sealed >= lsn) {
            (_, true) => Ok(()),
            (Some(f), false) => Err(LogError::Failed(f.clone())),
            (None, false) => Err(LogError::Closed),
        }
    }

    /// Admits a new write under the spool policy: at once while the spool has room;
    /// when it is full, refuses ([`SpoolFullPolicy::Refuse`]) or waits for room up to a
    /// limit ([`SpoolFullPolicy::Wait`]).
    ///
    /// Capture front ends call this *before* they forward a write upstream: a write the
    /// upstream applied must always be logged, so the log itself never refuses one for
    /// lack of spool (it may overshoot the limit by the writes already admitted).
    pub async fn admit(&self) -> Result<()> {
        let SpoolFullPolicy::Wait(limit) = self.shared.cfg.spool_full else {
            return self.check_admission();
        };
        let mut room = self.shared.spool_room.subscribe();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match self.check_admission() {
                Err(LogError::SpoolFull { .. }) => {}
                other => return other,
            }
            // Woken whenever shipping frees space; the deadline bounds the wait.
            if tokio::time::timeout_at(deadline, room.changed())
                .await
                .is_err()
            {
                return self.check_admission();
            }
        }
    }

    /// Refuses a new write while the spool of unshipped segments is over its limit,
    /// whatever the policy (see [`Log::admit`]).
    pub fn check_admission(&self) -> Result<()> {
        let used = self.spool_bytes();
        let limit = self.shared.cfg.spool_max_bytes;
        if used >= limit {
            return Err(LogError::SpoolFull { used, limit });
        }
        let st = self.shared.lock();
        if let Some(f) = &st.failed {
            return Err(LogError::Failed(f.clone()));
        }
        if let Some(why) = st.blocked.values().next() {
            return Err(LogError::CaptureDown(why.clone()));
        }
        Ok(())
    }

    /// Says the capture feeding this log cannot log for now (`Some(why)`: say, its data
    /// directory is full) or can again (`None`). Meanwhile [`Log::check_admission`] refuses
    /// new writes, so none reaches the database unlogged.
    pub fn set_blocked(&self, why: Option<String>) {
        self.shared.set_blocked("capture", why);
    }

    /// Bytes of segment files kept locally (the spool).
    pub fn spool_bytes(&self) -> u64 {
        self.shared
            .local_bytes
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn spool_limit(&self) -> u64 {
        self.shared.cfg.spool_max_bytes
    }

    /// Sealed segments waiting in the data directory, oldest first.
    pub fn sealed_segments(&self) -> Result<Vec<(layout::SegmentName, PathBuf)>> {
        let mut sealed = layout::list_segments(&self.shared.sealed_dir, &mut Vec::new())?;
        // Sealing ends when the open file is removed. Until then the segment is not
        // offered: shipped and removed in that moment, its records would be back in the
        // open file alone (and read twice by anyone listing the directory, or sealed and
        // shipped again after a crash).
        sealed.retain(|(n, _)| {
            !self
                .shared
                .wal_dir
                .join(layout::open_name(n.timeline, n.first_lsn))
                .exists()
        });
        Ok(sealed)
    }

    /// Removes a sealed segment every destination has confirmed (promise 8: shipped before
    /// deleted; the caller guarantees the confirmation).
    pub fn remove_shipped(&self, path: &Path) -> Result<()> {
        if path.parent() != Some(self.shared.sealed_dir.as_path()) {
            return Err(LogError::Layout {
                path: path.to_path_buf(),
                detail: "not a sealed segment of this log".into(),
            });
        }
        let len = std::fs::metadata(path)
            .map_err(|e| LogError::io("stat", path, e))?
            .len();
        std::fs::remove_file(path).map_err(|e| LogError::io("remove", path, e))?;
        // Out of the spool as soon as it is unlinked, even if the fsync below fails; and
        // writers waiting for room (SpoolFullPolicy::Wait) may go on.
        self.shared
            .local_bytes
            .fetch_sub(len, std::sync::atomic::Ordering::Relaxed);
        self.shared.spool_room.send_modify(|n| *n += 1);
        layout::sync_dir(&self.shared.sealed_dir)?;
        Ok(())
    }

    /// LSN and timestamp of the last record appended (`(0, 0)` before the first).
    pub fn last_appended(&self) -> (u64, i64) {
        let st = self.shared.lock();
        (
            st.next_lsn - 1,
            if st.next_lsn > 1 { st.last_ts } else { 0 },
        )
    }

    /// LSN of the last record appended (0 before the first).
    pub fn last_lsn(&self) -> u64 {
        self.shared.lock().next_lsn - 1
    }

    /// Highest LSN that is in a sealed segment.
    pub fn sealed_lsn(&self) -> u64 {
        self.shared.progress.borrow().sealed
    }

    pub fn sealed_dir(&self) -> &Path {
        &self.shared.sealed_dir
    }

    /// Stops accepting appends, writes and fsyncs what is queued, waits for pending seals.
    /// The open segment stays open; the next `open` resumes it.
    pub fn close(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        self.shared.lock().closing = true;
        self.shared.work.notify_one();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
        if let Some(s) = self.sealer.take() {
            let _ = s.join();
        }
        self.shared.progress.send_modify(|p| p.closed = true);
        match self.shared.lock().failed.clone() {
            Some(f) => Err(LogError::Failed(f)),
            None => Ok(()),
        }
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

async fn wait_for(mut rx: watch::Receiver<Progress>, lsn: u64, policy: FsyncPolicy) -> Result<()> {
    let reached = |p: &Progress| match policy {
        FsyncPolicy::Always => p.synced >= lsn,
        FsyncPolicy::Everysec | FsyncPolicy::No => p.written >= lsn,
    };
    let p = rx
        .wait_for(|p| reached(p) || p.failed.is_some() || p.closed)
        .await
        .map_err(|_| LogError::Closed)?;
    if reached(&p) {
        return Ok(());
    }
    match &p.failed {
        Some(f) => Err(LogError::Failed(f.clone())),
        None => Err(LogError::Closed),
    }
}

/// UTC microseconds since the Unix epoch.
pub fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}
