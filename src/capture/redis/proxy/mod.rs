//! The RESP proxy (`vecwal proxy redis`): clients' bytes go to Redis as they are, Redis's
//! replication stream is the log, and no reply to a write goes back before the log covers
//! it.
//!
//! What is logged, in what order and in what form is Redis's own decision: the proxy runs a
//! tap ([`crate::capture::redis::tap`]) on the upstream, whose replication stream carries
//! every effect in apply order and in deterministic form (scripts as their effects, blocking
//! pops as the pops they did, relative TTLs as absolute times on Redis's clock, expiries and
//! evictions as `DEL`s, nothing for a refused or killed command). So there is no key gate
//! and no rewrite table here. What the proxy adds to a tap is promise 1 for the clients that
//! go through it: a reply that answers a command that may have written is held until the
//! log covers Redis's replication stream as far as it had got when that reply arrived
//! ([`super::probe`]). And one repair: a `VADD` that updates an element, which Redis 8.2 does
//! not replicate, is sent as a script that makes Redis replicate its effect
//! ([`super::vadd`]).
//!
//! Each client connection has a request side ([`requests`]) and a reply side ([`replies`]),
//! so a client that writes a long pipeline before reading never blocks the proxy against
//! itself.

mod replies;
mod requests;
mod shared;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

use super::probe::Prober;
use super::tap::TapHandle;
use crate::log::Log;
use crate::protocol::redis_commands::CommandTable;

/// Longest a reply waits for the log to cover it. Past it the client's connection is
/// closed without the reply: the write happened in Redis and will be logged when the tap
/// catches up (or be in the base of a full resync), but it was not logged in time to ack.
pub const HOLD_MAX: Duration = Duration::from_secs(30);

/// Most bytes of write commands the proxy has sent to Redis and not yet seen covered by the
/// log. Redis keeps the replication stream the tap has not read in that replica's output
/// buffer and drops the replica when the buffer passes `client-output-buffer-limit replica`
/// (by default 256 MB at once, or 64 MB for a minute); the tap then needs a full resync, and
/// the writes in between are in its base snapshot but have no records of their own. A client
/// that pipelines a bulk load faster than the log takes it (`redis-cli --pipe` of 1 GB at
/// `--fsync always`) did exactly that; past this bound its commands wait in the proxy
/// instead. A write's stream is about the size of the command (a script's may be more).
pub const MAX_UNLOGGED_WRITES: usize = 32 << 20;

/// What the proxy's connections share.
pub struct ProxyCore {
    pub log: Arc<Log>,
    pub table: CommandTable,
    pub upstream_addr: String,
    tap: TapHandle,
    prober: Prober,
    next_conn: AtomicU64,
    shared_connections: usize,
    /// Bytes of [`MAX_UNLOGGED_WRITES`] left.
    unlogged: Arc<Semaphore>,
}

impl ProxyCore {
    pub fn new(
        log: Arc<Log>,
        table: CommandTable,
        upstream_addr: String,
        tap: TapHandle,
        prober: Prober,
        shared_connections: usize,
    ) -> Arc<ProxyCore> {
        Arc::new(ProxyCore {
            log,
            table,
            upstream_addr,
            tap,
            prober,
            next_conn: AtomicU64::new(1),
            shared_connections,
            unlogged: Arc::new(Semaphore::new(MAX_UNLOGGED_WRITES)),
        })
    }

    /// Accepts clients until the listener fails.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) -> std::io::Result<()> {
        // Connections live in this set: when the proxy stops (this task is aborted) they
        // end with it, and none keeps the log alive.
        let mut connections = tokio::task::JoinSet::new();
        let pool = shared::Pool::new(self.clone(), self.shared_connections);
        loop {
            while connections.try_join_next().is_some() {}
            let (client, peer) = listener.accept().await?;
            let core = self.clone();
            let pool = pool.clone();
            connections.spawn(async move {
                if let Err(e) = core.connection(&pool, client).await {
                    tracing::debug!(%peer, error = %e, "client connection ended");
                }
            });
        }
    }

    async fn connection(
        self: Arc<Self>,
        pool: &shared::Pool,
        client: TcpStream,
    ) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        client.set_nodelay(true)?;
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        tracing::trace!(id, "client connected");
        let (mut cr, mut cw) = client.into_split();
        let mut buf = Vec::with_capacity(16 << 10);
        if let Some(mux) = pool.attach().await {
            match shared::serve(&self, mux, &mut cr, cw, &mut buf).await? {
                shared::Outcome::Ended => return Ok(()),
                shared::Outcome::Dedicate(w) => cw = w,
            }
            tracing::trace!(id, "client moves to a dedicated upstream connection");
        }
        let upstream = match TcpStream::connect(&self.upstream_addr).await {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(error = %e, "cannot reach the upstream Redis");
                let msg = "-ERR vecwal: cannot reach the upstream Redis\r\n";
                cw.write_all(msg.as_bytes()).await?;
                return Ok(());
            }
        };
        upstream.set_nodelay(true)?;
        let (ur, uw) = upstream.into_split();
        let (tx, rx) = mpsc::unbounded_channel();
        let requests = tokio::spawn(requests::run(self.clone(), cr, uw, tx, buf));
        let r = replies::run(self.clone(), ur, cw, rx).await;
        requests.abort();
        r
    }

    /// Waits until `bytes` of write commands may be sent to Redis (see
    /// [`MAX_UNLOGGED_WRITES`]); the permit goes back when their replies are released.
    async fn unlogged(&self, bytes: usize) -> OwnedSemaphorePermit {
        let n = bytes.clamp(1, MAX_UNLOGGED_WRITES) as u32;
        let started = std::time::Instant::now();
        let permit = self
            .unlogged
            .clone()
            .acquire_many_owned(n)
            .await
            .expect("the semaphore is never closed");
        let waited = started.elapsed();
        if waited > Duration::from_millis(1) {
            crate::metrics::global().unlogged_waits.observe(waited);
        }
        permit
    }

    /// Waits until the log covers Redis's replication stream as far as it reaches now.
    async fn hold(&self) -> std::io::Result<()> {
        match tokio::time::timeout(HOLD_MAX, self.covered()).await {
            Ok(r) => r,
            Err(_) => {
                tracing::error!(
                    "the log did not reach Redis's replication position within {HOLD_MAX:?}; closing a client connection without its reply"
                );
                Err(std::io::Error::other("the log did not catch up in time"))
            }
        }
    }

    /// Waits until the log covers `offset` of the replication history `replid`, a
    /// position read on a connection the caller knows is of that history. `Ok(false)`: the
    /// log follows another history (the tap resynced, Redis changed its replication id),
    /// and only [`ProxyCore::hold`] can tell.
    async fn hold_at(&self, replid: &str, offset: u64) -> std::io::Result<bool> {
        let mut committed: watch::Receiver<(String, u64)> = self.tap.committed();
        let wait = async {
            loop {
                {
                    let (r, o) = &*committed.borrow_and_update();
                    if r != replid {
                        return Ok(false);
                    }
                    if *o >= offset {
                        return Ok(true);
                    }
                }
                committed
                    .changed()
                    .await
                    .map_err(|_| std::io::Error::other("the tap stopped"))?;
            }
        };
        match tokio::time::timeout(HOLD_MAX, wait).await {
            Ok(r) => r,
            Err(_) => {
                tracing::error!(
                    "the log did not reach Redis's replication position within {HOLD_MAX:?}; closing a shared connection without its replies"
                );
                Err(std::io::Error::other("the log did not catch up in time"))
            }
        }
    }

    async fn covered(&self) -> std::io::Result<()> {
        let probe = || async { self.prober.position().await.map_err(std::io::Error::other) };
        let mut pos = probe().await?;
        let mut committed: watch::Receiver<(String, u64)> = self.tap.committed();
        loop {
            let (replid, offset) = committed.borrow_and_update().clone();
            if replid == pos.replid && offset >= pos.offset {
                return Ok(());
            }
            if replid != pos.replid {
                // The log follows another history. Redis makes a new replication id when
                // its first replica connects: if the same run of Redis (the same probe
                // connection) now reports another id, that position is the one to reach.
                // A position from a later run could not vouch for this write.
                let again = probe().await?;
                if again.connection == pos.connection && again.replid != pos.replid {
                    pos = again;
                    continue;
                }
            }
            committed
                .changed()
                .await
                .map_err(|_| std::io::Error::other("the tap stopped"))?;
        }
    }

    /// Takes an aligned snapshot now; a one-line summary.
    async fn snapshot(&self) -> Result<String, String> {
        self.tap
            .snapshot()
            .await
            .map(|m| format!("snapshot at LSN {} ({} bytes)", m.lsn, m.size))
            .map_err(|e| e.to_string())
    }
}
