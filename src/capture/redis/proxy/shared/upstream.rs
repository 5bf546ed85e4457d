//! The shared connection's own side: writing clients' batches upstream in order, and
//! matching Redis's replies to them, holding those that answer a write until the log covers
//! them.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, OwnedSemaphorePermit};

use super::{invalid, Delivery, Entry, Mux, Sink, Submit, MAX_WRITE, ROLE, SUBMIT_QUEUE};
use crate::capture::redis::proxy::ProxyCore;
use crate::protocol::redis_commands::Effect;
use crate::protocol::resp::scan;
use crate::protocol::resp_value::decode;

/// Opens a shared connection; the future runs it until it fails.
pub(super) async fn open(
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
    let mut deliveries: Vec<(Arc<Sink>, Delivery)> = Vec::new();
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
                to.deliver(d);
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
    deliveries: &mut Vec<(Arc<Sink>, Delivery)>,
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
