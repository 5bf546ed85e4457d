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

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio::task::JoinSet;

use super::ProxyCore;
use crate::capture::redis::vadd;
use crate::protocol::redis_commands::Effect;
use crate::protocol::resp::{parse_command_spans, scan};
use crate::protocol::resp_value::decode;

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
        match open(self.core.clone()).await {
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
    to: mpsc::UnboundedSender<Delivery>,
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
    to: Option<mpsc::UnboundedSender<Delivery>>,
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

/// How a client's time on a shared connection ended.
pub(super) enum Outcome {
    /// The client closed its side and every reply it was owed was written.
    Ended,
    /// It needs a connection of its own from the command at the start of `buf` on.
    Dedicate(OwnedWriteHalf),
}

/// Serves a client on a shared connection for as long as its commands allow. Whatever the
/// client sent that was not sent upstream is left in `buf`.
pub(super) async fn serve(
    core: &ProxyCore,
    mux: Mux,
    client: &mut OwnedReadHalf,
    cw: OwnedWriteHalf,
    buf: &mut Vec<u8>,
) -> std::io::Result<Outcome> {
    let (to, rx) = mpsc::unbounded_channel();
    let mut writer = tokio::spawn(write_replies(cw, rx, mux.clone()));
    let eof = match read_commands(core, &mux, client, buf, &to, &mut writer).await {
        Ok(eof) => eof,
        Err(e) => {
            writer.abort();
            return Err(e);
        }
    };
    let marker = Submit {
        bytes: Vec::new(),
        effects: Vec::new(),
        to,
        unlogged: None,
    };
    if mux.tx.send(marker).await.is_err() {
        writer.abort();
        return Err(lost());
    }
    let cw = writer
        .await
        .map_err(|_| std::io::Error::other("the reply writer stopped"))??;
    Ok(if eof {
        Outcome::Ended
    } else {
        Outcome::Dedicate(cw)
    })
}

/// Frames the client's commands and submits them; returns `true` at the client's end of
/// input, `false` at a command that needs a dedicated connection.
async fn read_commands(
    core: &ProxyCore,
    mux: &Mux,
    client: &mut OwnedReadHalf,
    buf: &mut Vec<u8>,
    to: &mpsc::UnboundedSender<Delivery>,
    writer: &mut tokio::task::JoinHandle<std::io::Result<OwnedWriteHalf>>,
) -> std::io::Result<bool> {
    let mut spans = Vec::new();
    loop {
        let mut used = 0;
        let mut bytes = Vec::new();
        let mut effects = Vec::new();
        let mut write_bytes = 0;
        let mut dedicate = false;
        loop {
            let rest = &buf[used..];
            let n = match parse_command_spans(rest, &mut spans) {
                Ok(Some(n)) => n,
                Ok(None) => break,
                Err(_) => {
                    // Bytes that do not frame: the dedicated path gives Redis's own answer.
                    dedicate = true;
                    break;
                }
            };
            let Some(name) = spans.first().map(|r| &rest[r.clone()]) else {
                used += n; // an empty inline line: Redis answers nothing
                continue;
            };
            let first = spans.get(1).map(|r| &rest[r.clone()]);
            let (effect, shareable) = core.table.route(name, first);
            if !shareable || (effect != Effect::None && core.log.check_admission().is_err()) {
                // The name only: arguments may be secrets (AUTH).
                tracing::trace!(command = %String::from_utf8_lossy(name), "needs a dedicated connection");
                dedicate = true;
                break;
            }
            if name.eq_ignore_ascii_case(b"vadd") {
                let argv: Vec<Vec<u8>> = spans.iter().map(|r| rest[r.clone()].to_vec()).collect();
                bytes.extend_from_slice(&vadd::wrap(&argv));
            } else {
                bytes.extend_from_slice(&rest[..n]);
            }
            if effect != Effect::None {
                write_bytes += n;
            }
            effects.push(effect);
            used += n;
        }
        if !effects.is_empty() {
            let unlogged = match write_bytes {
                0 => None,
                n => Some(core.unlogged(n).await),
            };
            let submit = Submit {
                bytes,
                effects,
                to: to.clone(),
                unlogged,
            };
            mux.tx.send(submit).await.map_err(|_| lost())?;
        }
        buf.drain(..used);
        if dedicate {
            return Ok(false);
        }
        buf.reserve(16 << 10);
        tokio::select! {
            n = client.read_buf(buf) => {
                if n? == 0 {
                    return Ok(true);
                }
            }
            r = &mut *writer => {
                // The client stopped reading (or the shared connection was lost).
                return Err(match r {
                    Ok(Err(e)) => e,
                    _ => std::io::Error::other("the reply writer stopped"),
                });
            }
        }
    }
}

/// Writes a client's replies as they are delivered; gives its socket back at the handoff.
async fn write_replies(
    mut cw: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Delivery>,
    mux: Mux,
) -> std::io::Result<OwnedWriteHalf> {
    let mut out: Vec<u8> = Vec::new();
    loop {
        let first = tokio::select! {
            biased;
            d = rx.recv() => d,
            // The shared connection is gone: what it owed this client will not come.
            _ = mux.tx.closed() => None,
        };
        let mut handoff = false;
        match first.ok_or_else(lost)? {
            Delivery::Replies(b) => out = b,
            Delivery::Handoff => handoff = true,
        }
        while !handoff {
            match rx.try_recv() {
                Ok(Delivery::Replies(b)) => out.extend_from_slice(&b),
                Ok(Delivery::Handoff) => handoff = true,
                Err(_) => break,
            }
        }
        if !out.is_empty() {
            cw.write_all(&out).await?;
            out.clear();
        }
        if handoff {
            return Ok(cw);
        }
    }
}

fn lost() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        "the shared upstream connection was lost",
    )
}

/// Opens a shared connection; the future runs it until it fails.
async fn open(
    core: Arc<ProxyCore>,
) -> std::io::Result<(Mux, impl std::future::Future<Output = ()>)> {
    let mut upstream = TcpStream::connect(&core.upstream_addr).await?;
    upstream.set_nodelay(true)?;
    let replid = replication_id(&mut upstream).await?;
    if replid.is_none() {
        tracing::debug!("a shared connection cannot read the replication id; its replies wait for the offset probe");
    }
    let (ur, uw) = upstream.into_split();
    let (tx, rx) = mpsc::channel(SUBMIT_QUEUE);
    let (etx, erx) = mpsc::unbounded_channel();
    let role = replid.is_some();
    let task = async move {
        let r = tokio::select! {
            r = send_side(rx, uw, etx, role) => r,
            r = reply_side(core, ur, erx, replid) => r,
        };
        if let Err(e) = r {
            tracing::warn!(error = %e, "a shared upstream connection ended; its clients are disconnected");
        }
    };
    Ok((Mux { tx }, task))
}

/// The replication id of the Redis run this connection reaches, read before any client's
/// command (an unauthenticated connection may not be allowed to: `None`).
async fn replication_id(upstream: &mut TcpStream) -> std::io::Result<Option<String>> {
    upstream
        .write_all(crate::capture::redis::probe::REQUEST)
        .await?;
    let mut buf = Vec::with_capacity(1024);
    let read = async {
        loop {
            if let Some((v, _)) = decode(&buf).map_err(invalid)? {
                return Ok::<_, std::io::Error>(v);
            }
            if upstream.read_buf(&mut buf).await? == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "Redis closed a new shared connection",
                ));
            }
        }
    };
    let v = tokio::time::timeout(std::time::Duration::from_secs(10), read)
        .await
        .map_err(|_| std::io::Error::other("no answer to INFO replication within 10 s"))??;
    Ok(crate::capture::redis::probe::parse(&v, 0)
        .ok()
        .map(|p| p.replid))
}

/// Writes batches upstream in the order they are queued; each batch's [`Entry`] reaches the
/// reply side before its bytes reach Redis. With `role`, a batch that may have written is
/// followed by [`ROLE`].
async fn send_side(
    mut rx: mpsc::Receiver<Submit>,
    mut upstream: OwnedWriteHalf,
    entries: mpsc::UnboundedSender<Entry>,
    role: bool,
) -> std::io::Result<()> {
    let mut out: Vec<u8> = Vec::with_capacity(16 << 10);
    let queue = |e: Entry| {
        entries
            .send(e)
            .map_err(|_| std::io::Error::other("the reply side ended"))
    };
    let take = |s: Submit, out: &mut Vec<u8>, writes: &mut bool| {
        out.extend_from_slice(&s.bytes);
        *writes |= s.effects.iter().any(|e| *e != Effect::None);
        queue(Entry {
            effects: s.effects,
            answered: 0,
            to: Some(s.to),
            out: Vec::new(),
            unlogged: s.unlogged,
        })
    };
    while let Some(first) = rx.recv().await {
        let mut writes = false;
        take(first, &mut out, &mut writes)?;
        while out.len() < MAX_WRITE {
            match rx.try_recv() {
                Ok(s) => take(s, &mut out, &mut writes)?,
                Err(_) => break,
            }
        }
        if writes && role {
            out.extend_from_slice(ROLE);
            queue(Entry::position())?;
        }
        if !out.is_empty() {
            upstream.write_all(&out).await?;
            out.clear();
        }
    }
    Ok(())
}

/// What the replies read so far must wait for before they go to their clients.
enum Wait {
    Nothing,
    /// A reply answered a write; the `ROLE` behind it has not been read yet.
    Position,
    /// The log must cover this offset of the connection's replication history.
    Offset(u64),
    /// Ask the offset probe ([`ProxyCore::hold`]): the connection could not tell.
    Probe,
}

/// Matches replies to batches, holds replies that answer a write until the log covers
/// them, then delivers each client its replies.
async fn reply_side(
    core: Arc<ProxyCore>,
    mut upstream: OwnedReadHalf,
    mut entries: mpsc::UnboundedReceiver<Entry>,
    replid: Option<String>,
) -> std::io::Result<()> {
    let mut queue: VecDeque<Entry> = VecDeque::new();
    let mut buf: Vec<u8> = Vec::with_capacity(16 << 10);
    let mut deliveries: Vec<(mpsc::UnboundedSender<Delivery>, Delivery)> = Vec::new();
    // Permits of batches whose replies are all in: given back when the replies go.
    let mut released: Vec<OwnedSemaphorePermit> = Vec::new();
    let mut wait = Wait::Nothing;
    loop {
        while let Ok(e) = entries.try_recv() {
            queue.push_back(e);
        }
        let mut used = 0;
        loop {
            finish_answered(&mut queue, &mut deliveries, &mut released);
            if used == buf.len() {
                break;
            }
            let Some(front) = queue.front_mut() else {
                // A reply whose entry is on its way (queued before the bytes were sent).
                match entries.recv().await {
                    Some(e) => queue.push_back(e),
                    None => return Err(invalid("a reply to a command never sent")),
                }
                continue;
            };
            let Some(frame) = scan(&buf[used..]).map_err(invalid)? else {
                break;
            };
            if frame.is_push() {
                return Err(invalid("a push frame on a shared connection"));
            }
            let raw = &buf[used..used + frame.len];
            used += frame.len;
            front.answered += 1;
            if front.to.is_none() {
                if matches!(wait, Wait::Position) {
                    wait = match role_offset(raw) {
                        Some(o) => Wait::Offset(o),
                        None => Wait::Probe,
                    };
                }
                continue;
            }
            let wrote = match front.effects[front.answered - 1] {
                Effect::None => false,
                Effect::OnSuccess => !frame.is_error(),
                Effect::Always => true,
            };
            if wrote {
                wait = match replid {
                    Some(_) => Wait::Position,
                    None => Wait::Probe,
                };
            }
            front.out.extend_from_slice(raw);
        }
        buf.drain(..used);
        if let Some(front) = queue.front_mut().filter(|f| !f.out.is_empty()) {
            // Part of a batch's replies: they need not wait for the rest.
            let replies = std::mem::take(&mut front.out);
            if let Some(to) = &front.to {
                deliveries.push((to.clone(), Delivery::Replies(replies)));
            }
        }
        let ready = match wait {
            // Its answer is on its way, right behind the replies: read on.
            Wait::Position if queue.iter().any(|e| e.to.is_none()) => false,
            Wait::Nothing => true,
            _ => {
                let started = std::time::Instant::now();
                let covered = match (&wait, &replid) {
                    (Wait::Offset(o), Some(r)) => core.hold_at(r, *o).await?,
                    _ => false,
                };
                if !covered {
                    core.hold().await?;
                }
                crate::metrics::global()
                    .write_waits
                    .observe(started.elapsed());
                wait = Wait::Nothing;
                true
            }
        };
        if ready {
            for (to, d) in deliveries.drain(..) {
                // A client that left needs nothing more.
                let _ = to.send(d);
            }
            released.clear();
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(16 << 10);
        }
        tokio::select! {
            biased;
            e = entries.recv() => match e {
                Some(e) => queue.push_back(e),
                None => return Ok(()),
            },
            n = upstream.read_buf(&mut buf) => {
                if n? == 0 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "Redis closed the shared connection",
                    ));
                }
            }
        }
    }
}

/// The offset in a `ROLE` reply of a master; `None` for anything else (an error such as
/// `NOPERM` or `BUSY`, a replica's answer).
fn role_offset(raw: &[u8]) -> Option<u64> {
    let (v, _) = decode(raw).ok()??;
    let items = v.items()?;
    if items.first()?.bytes()? != b"master" {
        return None;
    }
    u64::try_from(items.get(1)?.int()?).ok()
}

/// Moves every batch at the front whose replies are all in to `deliveries`, a marker as a
/// handoff.
fn finish_answered(
    queue: &mut VecDeque<Entry>,
    deliveries: &mut Vec<(mpsc::UnboundedSender<Delivery>, Delivery)>,
    released: &mut Vec<OwnedSemaphorePermit>,
) {
    while queue.front().is_some_and(|e| e.answered == e.effects.len()) {
        let Some(e) = queue.pop_front() else { break };
        released.extend(e.unlogged);
        let Some(to) = e.to else { continue };
        if !e.out.is_empty() {
            deliveries.push((to.clone(), Delivery::Replies(e.out)));
        }
        if e.effects.is_empty() {
            deliveries.push((to, Delivery::Handoff));
        }
    }
}

fn invalid(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
}
