//! `vecwal tap redis`: vecwal as a replica of a Redis master, with no change to the
//! application.
//!
//! The master's full-sync RDB becomes a base snapshot aligned to the log's last LSN; the
//! command stream that follows (already in the deterministic form Redis replicates) becomes
//! records. Each batch of records is appended together with the replication position it
//! brings the log to ([`position::Saved`]), so a restart or a dropped link continues with
//! a partial resync, and a full resync the master forces becomes a new aligned base.
//! Acknowledgements to the master report only what is durable in the log.

mod control;
pub mod position;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use vecwal_format::Operation;

use super::snapshot::{marker, store_rdb, SnapshotError, FORK_WAIT};
use crate::capture::redis_repl::{ReplClient, ReplConfig, ReplError, ReplEvent};
use crate::catalog::SnapshotManifest;
use crate::log::{now_us, Appended, Entry, Log, LogError};
use crate::protocol::redis_client::RedisTarget;
use crate::ship::{ShipConfig, Shipper};
use crate::store::{Keyring, Store};
use position::{History, PositionFile, Saved};

/// A batch is committed once it holds this many records (or bytes), even when more have
/// arrived: bounds the memory of one batch and the latency of the first record in it.
const BATCH_RECORDS: usize = 4096;
const BATCH_BYTES: usize = 8 << 20;

/// How long an on-demand snapshot waits for the tap to log up to the snapshot's offset.
const ALIGN_WAIT: Duration = Duration::from_secs(60);

pub struct TapOptions {
    pub source: RedisTarget,
    /// The log's data directory, where the replication position is kept.
    pub data_dir: PathBuf,
    pub stores: Vec<Arc<dyn Store>>,
    pub keyring: Option<Arc<Keyring>>,
    pub ship: ShipConfig,
    /// Zero: only at full syncs and on demand.
    pub snapshot_interval: Duration,
    /// Where `vecwal snapshot redis` reaches the tap; `None`: no control port.
    pub control: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error(transparent)]
    Repl(#[from] ReplError),
    #[error("the base snapshot failed: {0}")]
    Snapshot(#[from] SnapshotError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("cannot save the replication position in {path}: {source}")]
    Position {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    /// An on-demand snapshot that could not be tied to an exact LSN.
    #[error("the snapshot could not be aligned: {0}; try again")]
    Align(String),
    #[error(
        "the log ends at LSN {logged} but the tap's position is for LSN {saved} \
         (an append failed); a full resync follows"
    )]
    Diverged { saved: u64, logged: u64 },
}

/// How this run of the tap began.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    /// A full sync: the RDB is the base snapshot at `lsn`.
    FullSync { lsn: u64, bytes: u64, why: String },
    /// A partial resync from the saved position: nothing was lost or doubled.
    Resumed { replid: String, offset: u64 },
}

enum Begun {
    FullSync(u64),
    Resumed(String, u64),
}

/// What the tap and its snapshots share.
struct Shared {
    cfg: ReplConfig,
    log: Arc<Log>,
    data_dir: PathBuf,
    stores: Vec<Arc<dyn Store>>,
    keyring: Option<Arc<Keyring>>,
    /// The committed position; locked while a batch or a marker is appended, so the saved
    /// file and the log's last LSN always move together.
    saved: tokio::sync::Mutex<Saved>,
    history: std::sync::Mutex<History>,
    /// Where `saved` is written; only ever locked inside `saved`'s lock.
    position_file: std::sync::Mutex<PositionFile>,
    /// `(replid, offset)` the log covers, for snapshots waiting to align.
    committed: watch::Sender<(String, u64)>,
}

impl Shared {
    fn history(&self) -> std::sync::MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends `entries` (maybe none) and moves the saved position to `next`, whose LSN is
    /// the log's last once they are in. The position file names `next`, and the current
    /// position if `resumable`, before the append starts: whatever crashes when, the one
    /// that matches the log is right, and the file is not touched after the append.
    async fn advance(
        &self,
        saved: &mut Saved,
        entries: Vec<Entry>,
        next: Saved,
        resumable: bool,
    ) -> Result<Option<Appended>, TapError> {
        let n = entries.len() as u64;
        let logged = self.log.last_lsn();
        if logged != saved.lsn || next.lsn != logged + n {
            // Only the tap appends to its log, under this lock: a failed append moved it.
            return Err(TapError::Diverged {
                saved: saved.lsn,
                logged,
            });
        }
        let before = (n > 0 && resumable).then_some(&*saved);
        self.position_file
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .write(&next, before)
            .map_err(|source| TapError::Position {
                path: self.data_dir.join(position::FILE),
                source,
            })?;
        let appended = match n {
            0 => None,
            _ => Some(self.log.append_batch(entries).await?),
        };
        *saved = next;
        self.committed
            .send_replace((saved.replid.clone(), saved.offset));
        Ok(appended)
    }

    /// Appends `entries` (maybe none) and moves the committed position to `offset`.
    /// `units` are `(offset after a unit, records up to and including it)` for each unit
    /// that logged something: a snapshot's fork offset may fall inside a batch.
    async fn commit(
        &self,
        entries: Vec<Entry>,
        units: &[(u64, u64)],
        replid: &str,
        offset: u64,
        db: u32,
    ) -> Result<(), TapError> {
        let mut saved = self.saved.lock().await;
        let lsn = saved.lsn + entries.len() as u64;
        let next = Saved::new(self.log.meta(), lsn, replid, offset, db);
        if let Some(first) = self.advance(&mut saved, entries, next, true).await? {
            let mut h = self.history();
            for &(unit_end, count) in units {
                h.push(unit_end, first.lsn + count - 1, first.timestamp_us);
            }
        }
        Ok(())
    }

    /// Appends a marker; the position stays.
    async fn append_marker(&self, entry: Entry) -> Result<u64, TapError> {
        let mut saved = self.saved.lock().await;
        let next = Saved {
            lsn: saved.lsn + 1,
            ..saved.clone()
        };
        self.advance(&mut saved, vec![entry], next, true).await?;
        Ok(saved.lsn)
    }

    /// Handles the first event of a connection: the full sync's RDB, or the continue of a
    /// partial resync.
    async fn begin(&self, client: &mut ReplClient) -> Result<Begun, TapError> {
        match client.next().await? {
            ReplEvent::FullSync {
                replid,
                offset,
                rdb,
            } => {
                let bytes = self.full_sync(&replid, offset, rdb).await?;
                client.confirm(offset);
                Ok(Begun::FullSync(bytes))
            }
            ReplEvent::Continue { replid, offset } => {
                self.history().set_replid(&replid);
                let db = self.saved.lock().await.db;
                self.commit(Vec::new(), &[], &replid, offset, db).await?;
                client.confirm(offset);
                Ok(Begun::Resumed(replid, offset))
            }
            ReplEvent::Command { .. } => {
                Err(ReplError::Protocol("a command before the sync began".into()).into())
            }
        }
    }

    /// Stores the RDB of a full sync as the base at the log's end and starts a new history.
    async fn full_sync(&self, replid: &str, offset: u64, rdb: Vec<u8>) -> Result<u64, TapError> {
        let mut saved = self.saved.lock().await;
        let (lsn, _) = self.log.last_appended();
        if lsn > 0 {
            tracing::warn!(
                lsn,
                "the master sent a full resync; a new base snapshot is aligned to LSN {lsn}. \
                 Writes the master took while the tap was not following are in that base \
                 but have no records of their own"
            );
        }
        let bytes = rdb.len() as u64;
        // Tagged with the time it was taken, not the last record's: it may hold writes
        // made after that record (see above), so it must not serve a restore to earlier.
        let manifest = store_rdb(
            &self.log,
            &self.stores,
            self.keyring.as_deref(),
            lsn,
            now_us(),
            rdb,
        )
        .await?;
        // Where the log ends now is not resumable: a crash before the marker is logged
        // must lead to another full sync, as this one would have been lost.
        let next = Saved::new(self.log.meta(), lsn + 1, replid, offset, 0);
        *saved = Saved::new(self.log.meta(), lsn, "?", 0, 0);
        let m = self
            .advance(&mut saved, vec![marker(&manifest)?], next, false)
            .await?;
        let m = m.expect("one entry appended");
        *self.history() = History::new(replid, offset, m.lsn, m.timestamp_us);
        tracing::info!(lsn, bytes, "full sync stored as the base snapshot");
        Ok(bytes)
    }

    /// An aligned snapshot while the tap follows: a second replica connection makes the
    /// master fork at offset O; the snapshot is tagged with the LSN the log had reached when
    /// the stream passed O (every command up to O is in both, none after in either).
    async fn snapshot(&self) -> Result<SnapshotManifest, TapError> {
        let cfg = ReplConfig {
            rdb_from_disk: true,
            ..self.cfg.clone()
        };
        let (tx, forked) = tokio::sync::oneshot::channel();
        let sync =
            tokio::spawn(async move { ReplClient::connect_notify(&cfg, None, Some(tx)).await });
        let (replid, offset) = match tokio::time::timeout(FORK_WAIT, forked).await {
            Ok(Ok(f)) => f,
            Ok(Err(_)) => {
                return Err(match sync.await {
                    Ok(Err(e)) => e.into(),
                    _ => TapError::Align("the full sync ended early".into()),
                })
            }
            Err(_) => {
                sync.abort();
                return Err(SnapshotError::ForkTimeout(FORK_WAIT).into());
            }
        };
        let mut committed = self.committed.subscribe();
        let wait = committed.wait_for(|(r, o)| *r != replid || *o >= offset);
        match tokio::time::timeout(ALIGN_WAIT, wait).await {
            Ok(Ok(_)) => {}
            _ => {
                sync.abort();
                return Err(TapError::Align(format!(
                    "the tap did not reach the snapshot's offset {offset} within {ALIGN_WAIT:?}"
                )));
            }
        }
        let Some((lsn, time_us)) = self.history().lsn_at(&replid, offset) else {
            sync.abort();
            return Err(TapError::Align(format!(
                "offset {offset} of {replid} is not in the tap's recent history \
                 (a failover or resync happened meanwhile)"
            )));
        };
        let mut client = sync
            .await
            .map_err(|_| TapError::Align("the full sync task failed".into()))??;
        let rdb = match client.next().await? {
            ReplEvent::FullSync { rdb, .. } => rdb,
            other => {
                return Err(ReplError::Protocol(format!("expected the RDB, got {other:?}")).into())
            }
        };
        drop(client);
        let time_us = if lsn == 0 { now_us() } else { time_us };
        let manifest = store_rdb(
            &self.log,
            &self.stores,
            self.keyring.as_deref(),
            lsn,
            time_us,
            rdb,
        )
        .await?;
        self.append_marker(marker(&manifest)?).await?;
        tracing::info!(lsn, bytes = manifest.size, "aligned snapshot stored");
        Ok(manifest)
    }
}

/// Commands of the stream grouped into records, with the position after the last whole
/// unit (a command, or a MULTI … EXEC group).
struct Batch {
    db: u32,
    entries: Vec<Entry>,
    bytes: usize,
    /// An open MULTI: the db it began in and its commands so far.
    multi: Option<(u32, Vec<Vec<Vec<u8>>>)>,
    /// `(offset, db)` after the last complete unit.
    end: Option<(u64, u32)>,
    /// `(offset after a unit, entries so far)` for each unit that added an entry.
    units: Vec<(u64, u64)>,
}

impl Batch {
    fn new(db: u32) -> Batch {
        Batch {
            db,
            entries: Vec::new(),
            bytes: 0,
            multi: None,
            end: None,
            units: Vec::new(),
        }
    }

    fn full(&self) -> bool {
        self.multi.is_none() && (self.entries.len() >= BATCH_RECORDS || self.bytes >= BATCH_BYTES)
    }

    fn push(&mut self, op: &Operation, db: u32) -> Result<(), TapError> {
        let e = Entry::new(db.to_string(), op)?;
        self.bytes += e.payload.len();
        self.entries.push(e);
        Ok(())
    }

    fn add(&mut self, offset: u64, argv: Vec<Vec<u8>>) -> Result<(), TapError> {
        let before = self.entries.len();
        self.add_unit(offset, argv)?;
        if self.entries.len() > before {
            self.units.push((offset, self.entries.len() as u64));
        }
        Ok(())
    }

    fn add_unit(&mut self, offset: u64, argv: Vec<Vec<u8>>) -> Result<(), TapError> {
        let name = argv
            .first()
            .map(|n| n.to_ascii_uppercase())
            .unwrap_or_default();
        if let Some((_, cmds)) = &mut self.multi {
            match name.as_slice() {
                b"EXEC" => {
                    let (db, cmds) = self.multi.take().expect("open");
                    let single = cmds.len() == 1 && !is_select(&cmds[0]);
                    if single {
                        let argv = cmds.into_iter().next().expect("one");
                        self.push(&Operation::RedisCommand { argv }, db)?;
                    } else if !cmds.is_empty() {
                        self.push(&Operation::RedisMulti { commands: cmds }, db)?;
                    }
                    self.end = Some((offset, self.db));
                }
                _ if changes_nothing(&name) => {}
                _ => {
                    if is_select(&argv) {
                        self.db = parse_db(&argv)?;
                    }
                    cmds.push(argv);
                }
            }
            return Ok(());
        }
        match name.as_slice() {
            b"MULTI" => {
                self.multi = Some((self.db, Vec::new()));
                return Ok(());
            }
            b"SELECT" => self.db = parse_db(&argv)?,
            _ if changes_nothing(&name) => {}
            _ => {
                let db = self.db;
                self.push(&Operation::RedisCommand { argv }, db)?;
            }
        }
        self.end = Some((offset, self.db));
        Ok(())
    }
}

/// Commands of the stream that change no data: the master's keep-alives and
/// acknowledgement requests, and messages published (Redis replicates them for replicas'
/// subscribers; a restore or a replay must not send them again).
fn changes_nothing(upper_name: &[u8]) -> bool {
    matches!(upper_name, b"PING" | b"REPLCONF" | b"PUBLISH" | b"SPUBLISH")
}

fn is_select(argv: &[Vec<u8>]) -> bool {
    argv.first()
        .is_some_and(|c| c.eq_ignore_ascii_case(b"SELECT"))
}

fn parse_db(argv: &[Vec<u8>]) -> Result<u32, TapError> {
    argv.get(1)
        .and_then(|d| std::str::from_utf8(d).ok())
        .and_then(|d| d.parse().ok())
        .ok_or_else(|| ReplError::Protocol("SELECT without a database number".into()).into())
}

/// Follows one connection until it fails or `stop` is notified.
async fn follow(shared: &Shared, client: &mut ReplClient, stop: &Notify) -> Result<(), TapError> {
    loop {
        let event = tokio::select! {
            e = client.next() => e?,
            // Only while waiting for the network: a batch being committed always finishes,
            // so the saved position and the log never part.
            _ = stop.notified() => return Ok(()),
        };
        let (replid, db) = {
            let s = shared.saved.lock().await;
            (s.replid.clone(), s.db)
        };
        let mut batch = Batch::new(db);
        match event {
            ReplEvent::Command { offset, argv } => batch.add(offset, argv)?,
            other => {
                return Err(ReplError::Protocol(format!("unexpected {other:?} mid-stream")).into())
            }
        }
        // Whatever else has arrived joins the batch: one append, one fsync.
        while !batch.full() {
            let next = if batch.multi.is_some() {
                // A transaction arrives whole; never commit half of it.
                Some(client.next().await?)
            } else {
                client.buffered().await?
            };
            match next {
                Some(ReplEvent::Command { offset, argv }) => batch.add(offset, argv)?,
                Some(other) => {
                    return Err(
                        ReplError::Protocol(format!("unexpected {other:?} mid-stream")).into(),
                    )
                }
                None => break,
            }
        }
        if let Some((offset, db)) = batch.end {
            shared
                .commit(batch.entries, &batch.units, &replid, offset, db)
                .await?;
            client.confirm(offset);
        }
    }
}

/// The committed position and on-demand snapshots of a running tap.
#[derive(Clone)]
pub struct TapHandle(Arc<Shared>);

impl TapHandle {
    pub async fn snapshot(&self) -> Result<SnapshotManifest, TapError> {
        self.0.snapshot().await
    }

    /// The replication id and offset the log covers.
    pub fn committed(&self) -> watch::Receiver<(String, u64)> {
        self.0.committed.subscribe()
    }
}

pub struct RunningTap {
    pub log: Arc<Log>,
    pub started: Started,
    pub control_addr: Option<SocketAddr>,
    shared: Arc<Shared>,
    stop: Arc<Notify>,
    follower: JoinHandle<()>,
    shipper: Shipper,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningTap {
    /// Connects to the master (a partial resync from the saved position when it describes
    /// this log exactly, a full sync otherwise), stores the base of a full sync, then follows
    /// the stream in the background, reconnecting as needed.
    pub async fn start(log: Arc<Log>, opts: TapOptions) -> Result<RunningTap, TapError> {
        let cfg = ReplConfig {
            addr: opts.source.addr.clone(),
            username: opts.source.username.clone(),
            password: opts.source.password.clone(),
            listening_port: 0,
            rdb_from_disk: false,
        };
        let (last_lsn, last_ts) = log.last_appended();
        let (saved, why) = match Saved::load(&opts.data_dir, log.meta(), last_lsn) {
            Ok(s) => (Some(s), String::new()),
            Err(why) => (None, why),
        };
        if saved.is_none() && last_lsn > 0 {
            tracing::warn!("{why}: asking the master for a full resync");
        }
        let control =
            match &opts.control {
                Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.map_err(
                    |source| TapError::Listen {
                        addr: addr.clone(),
                        source,
                    },
                )?),
                None => None,
            };
        let mut client =
            ReplClient::connect(&cfg, saved.as_ref().map(Saved::position).as_ref()).await?;
        let initial = saved
            .clone()
            .unwrap_or_else(|| Saved::new(log.meta(), last_lsn, "?", 0, 0));
        let (committed, _) = watch::channel((initial.replid.clone(), initial.offset));
        let position_file =
            PositionFile::open(&opts.data_dir).map_err(|source| TapError::Position {
                path: opts.data_dir.join(position::FILE),
                source,
            })?;
        let shared = Arc::new(Shared {
            cfg,
            log: log.clone(),
            data_dir: opts.data_dir.clone(),
            stores: opts.stores.clone(),
            keyring: opts.keyring.clone(),
            history: std::sync::Mutex::new(History::new(
                &initial.replid,
                initial.offset,
                last_lsn,
                last_ts,
            )),
            saved: tokio::sync::Mutex::new(initial),
            position_file: std::sync::Mutex::new(position_file),
            committed,
        });
        // The first event (the full sync, or the partial resync's continue) is handled
        // before start returns, so a failing base snapshot fails the start.
        let started = match shared.begin(&mut client).await? {
            Begun::FullSync(bytes) => Started::FullSync {
                lsn: last_lsn,
                bytes,
                why,
            },
            Begun::Resumed(replid, offset) => Started::Resumed { replid, offset },
        };
        let stop = Arc::new(Notify::new());
        let shipper = Shipper::start(log.clone(), opts.stores.clone(), opts.ship.clone());
        let follower = tokio::spawn(run(shared.clone(), client, stop.clone()));
        let mut tasks = Vec::new();
        let mut control_addr = None;
        if let Some(listener) = control {
            control_addr = listener.local_addr().ok();
            let s = shared.clone();
            tasks.push(tokio::spawn(control::serve(listener, move || {
                let s = s.clone();
                async move { s.snapshot().await.map_err(|e| e.to_string()) }
            })));
        }
        if !opts.snapshot_interval.is_zero() {
            let (every, s) = (opts.snapshot_interval, shared.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    match s.snapshot().await {
                        Ok(m) => tracing::info!(lsn = m.lsn, "scheduled snapshot stored"),
                        Err(e) => tracing::error!(error = %e, "scheduled snapshot failed"),
                    }
                }
            }));
        }
        Ok(RunningTap {
            log,
            started,
            control_addr,
            shared,
            stop,
            follower,
            shipper,
            tasks,
        })
    }

    /// Takes an aligned snapshot now.
    pub async fn snapshot(&self) -> Result<SnapshotManifest, TapError> {
        self.shared.snapshot().await
    }

    /// The replication id and offset the log covers.
    pub fn committed(&self) -> watch::Receiver<(String, u64)> {
        self.shared.committed.subscribe()
    }

    /// What the proxy built on this tap needs of it, to share among its connections.
    pub fn handle(&self) -> TapHandle {
        TapHandle(self.shared.clone())
    }

    /// Stops following at a batch boundary, seals the open segment and ships it (up to
    /// `ship_wait`).
    pub async fn shutdown(self, ship_wait: Duration) {
        for t in &self.tasks {
            t.abort();
        }
        self.stop.notify_one();
        let _ = self.follower.await;
        if let Ok(last) = self.log.roll().await {
            let _ = tokio::time::timeout(ship_wait, self.shipper.wait_shipped(last)).await;
        }
        self.shipper.stop().await;
    }
}

/// Follows the master until stopped, reconnecting (partial resync from the committed
/// position) with backoff after any failure.
async fn run(shared: Arc<Shared>, mut client: ReplClient, stop: Arc<Notify>) {
    let mut delay = Duration::from_millis(100);
    loop {
        match follow(&shared, &mut client, &stop).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, "replication link lost; reconnecting");
                block_if_local(&shared.log, &e);
            }
        }
        loop {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.notified() => return,
            }
            delay = (delay * 2).min(Duration::from_secs(5));
            // A failed append may have left records the position does not cover.
            let resume = {
                let saved = shared.saved.lock().await;
                (saved.lsn == shared.log.last_lsn()).then(|| saved.position())
            };
            let begun = match ReplClient::connect(&shared.cfg, resume.as_ref()).await {
                Ok(mut c) => shared.begin(&mut c).await.map(|b| (c, b)),
                Err(e) => Err(e.into()),
            };
            match begun {
                Ok((c, b)) => {
                    if let Begun::Resumed(_, offset) = b {
                        tracing::info!(offset, "partial resync: following again");
                    }
                    client = c;
                    delay = Duration::from_millis(100);
                    shared.log.set_blocked(None);
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reconnecting to the master failed");
                    block_if_local(&shared.log, &e);
                }
            }
        }
    }
}

/// A link lost to a failure here (the data directory full or failing), not the master's:
/// writes are refused until the link is back, rather than applied by Redis and held
/// unanswered. Cleared when a reconnection succeeds.
fn block_if_local(log: &Log, e: &TapError) {
    if matches!(e, TapError::Position { .. } | TapError::Log(_)) {
        log.set_blocked(Some(e.to_string()));
    }
}
