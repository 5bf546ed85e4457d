//! Shared upstream connections: clients without session state have their commands sent to
//! Redis on a few connections they share, as twemproxy does, instead of one each.
//!
//! Why: with one upstream connection per client, Redis reads and answers each client's
//! commands with syscalls of their own, and so does the proxy; on a shared connection one
//! read brings Redis many clients' commands and one write takes their replies back. The
//! benchmarks in `docs/benchmarks.md` measured Redis spending 13 µs per request with 50
//! client connections against 6 behind twemproxy's one.
//!
//! What makes sharing safe:
//! - **Replies.** Redis answers a connection's commands in the order they came, so the
//!   shared connection's replies are matched to clients by a queue of who sent what, in the
//!   order the batches were written ([`Entry`]).
//! - **Session state.** A shared connection is what a new client's own connection would be:
//!   unauthenticated, on database 0, RESP2, not in a transaction. Only commands that keep it
//!   so and never block it go on it ([`CommandTable::route`]). At a client's first other
//!   command (AUTH, SELECT, MULTI, a blocking pop, SUBSCRIBE, CLIENT, …), or anything the
//!   proxy handles itself (bytes that do not frame, a write while the spool is full,
//!   `VECWAL.SNAPSHOT`), the client waits until every reply it was owed on the shared
//!   connection has been written to it, then gets a dedicated connection for the rest of its
//!   life ([`super::requests`], [`super::replies`]). Its earlier commands were all answered,
//!   so Redis applied them before anything it sends on the new connection.
//! - **Promise 1.** As on a dedicated connection: a read of replies that answers a command
//!   that may have written is held until the log covers Redis's replication stream as far
//!   as it had got when those replies arrived ([`ProxyCore::hold`]). One hold serves every
//!   client whose replies came in that read.
//! - **Order in the log.** Unchanged: the log is Redis's replication stream, in the order
//!   Redis applied the writes, whichever connection brought them.
//!
//! When a shared connection fails (Redis restarts, an operator kills it), every client on it
//! is disconnected, as their own connections would have been; new clients get a new one.
//!
//! [`CommandTable::route`]: crate::protocol::redis_commands::CommandTable::route

mod client;
mod upstream;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio::task::JoinSet;

use super::ProxyCore;
use crate::protocol::redis_commands::Effect;
use client::Sink;
pub(super) use client::{serve, Outcome};

/// Batches queued for one shared connection before clients wait to add theirs.
const SUBMIT_QUEUE: usize = 256;
/// Most bytes of commands written upstream in one write.
const MAX_WRITE: usize = 256 << 10;

/// The shared connections of one proxy, opened when first needed and again after a failure.
pub(super) struct Pool {
    core: Arc<ProxyCore>,
    slots: Vec<tokio::sync::Mutex<Option<Mux>>>,
    next: AtomicUsize,
    /// The connections' tasks: dropped with the pool, so none outlives the proxy.
    tasks: std::sync::Mutex<JoinSet<()>>,
}

impl Pool {
    /// `connections` shared connections; zero turns sharing off.
    pub(super) fn new(core: Arc<ProxyCore>, connections: usize) -> Arc<Pool> {
        Arc::new(Pool {
            core,
            slots: (0..connections)
                .map(|_| tokio::sync::Mutex::new(None))
                .collect(),
            next: AtomicUsize::new(0),
            tasks: std::sync::Mutex::new(JoinSet::new()),
        })
    }

    /// A shared connection for a new client, or `None` (sharing off, or Redis unreachable:
    /// the client's own connection attempt then reports it).
    pub(super) async fn attach(&self) -> Option<Mux> {
        if self.slots.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let mut slot = self.slots[i].lock().await;
        if let Some(m) = slot.as_ref().filter(|m| !m.tx.is_closed()) {
            return Some(m.clone());
        }
        match upstream::open(self.core.clone()).await {
            Ok((mux, task)) => {
                let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
                while tasks.try_join_next().is_some() {}
                tasks.spawn(task);
                *slot = Some(mux.clone());
                Some(mux)
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot open a shared upstream connection");
                None
            }
        }
    }
}

/// A client's handle on one shared connection.
#[derive(Clone)]
pub(super) struct Mux {
    tx: mpsc::Sender<Submit>,
}

/// One client's batch of commands, framed, each with what its reply means for the log.
/// No commands: a marker asking for [`Delivery::Handoff`] once all before it are answered.
struct Submit {
    bytes: Vec<u8>,
    effects: Vec<Effect>,
    to: Arc<Sink>,
    /// The batch's share of [`super::MAX_UNLOGGED_WRITES`], given back once its replies go.
    unlogged: Option<OwnedSemaphorePermit>,
}

/// What a client's reply writer is given, in order.
enum Delivery {
    Replies(Vec<u8>),
    /// Every reply owed on the shared connection has been given: stop and hand the
    /// client's socket back.
    Handoff,
}

/// A batch waiting for its replies on the shared connection, or the proxy's own `ROLE`
/// sent behind a batch that may have written (`to` is `None`).
struct Entry {
    effects: Vec<Effect>,
    answered: usize,
    to: Option<Arc<Sink>>,
    out: Vec<u8>,
    unlogged: Option<OwnedSemaphorePermit>,
}

impl Entry {
    fn position() -> Entry {
        Entry {
            effects: vec![Effect::None],
            answered: 0,
            to: None,
            out: Vec::new(),
            unlogged: None,
        }
    }
}

/// Sent behind every batch that may have written, on the same connection: Redis runs it
/// after the batch's commands, so the `master_repl_offset` it answers covers every write
/// before it, and the replies need not wait for another round trip to ask (see
/// [`ProxyCore::hold_at`]). `ROLE` is the cheapest command that tells the offset; it does
/// not tell the replication id, which is read once when the connection opens.
const ROLE: &[u8] = b"*1\r\n$4\r\nROLE\r\n";

fn lost() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        "the shared upstream connection was lost",
    )
}

fn invalid(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
}
