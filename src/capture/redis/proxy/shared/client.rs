//! A client on a shared connection: its commands framed and submitted, its replies
//! written back.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::Notify;

use super::{lost, Delivery, Mux, Submit};
use crate::capture::redis::proxy::ProxyCore;
use crate::capture::redis::vadd;
use crate::protocol::redis_commands::Effect;
use crate::protocol::resp::parse_command_spans;

/// How a client's time on a shared connection ended.
pub(in crate::capture::redis::proxy) enum Outcome {
    /// The client closed its side and every reply it was owed was written.
    Ended,
    /// It needs a connection of its own from the command at the start of `buf` on.
    Dedicate(OwnedWriteHalf),
}

/// Serves a client on a shared connection for as long as its commands allow. Whatever the
/// client sent that was not sent upstream is left in `buf`.
pub(in crate::capture::redis::proxy) async fn serve(
    core: &ProxyCore,
    mux: Mux,
    client: &mut OwnedReadHalf,
    cw: OwnedWriteHalf,
    buf: &mut Vec<u8>,
) -> std::io::Result<Outcome> {
    let to = Arc::new(Sink::new(cw));
    let mut writer = tokio::spawn(write_replies(to.clone(), mux.clone()));
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
    to: &Arc<Sink>,
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

/// Where a client's replies go. The shared connection's task writes them to the socket
/// itself while the socket takes them and nothing is queued before them; what it cannot
/// write at once is queued for the client's writer task ([`write_replies`]), which then
/// writes everything after it too, so replies keep their order.
///
/// Why not always the writer task: handing every read of replies to another task cost a
/// wake, a poll and often a thread switch per client per round, about as much CPU as the
/// rest of the proxy's work on a request at pipeline 1.
pub(super) struct Sink {
    /// `None` once handed back for a dedicated connection.
    socket: tokio::sync::Mutex<Option<OwnedWriteHalf>>,
    queue: std::sync::Mutex<Queue>,
    wake: Notify,
}

#[derive(Default)]
struct Queue {
    bytes: Vec<u8>,
    /// The writer task is writing bytes it took from `bytes`: nothing may pass them.
    writing: bool,
    handoff: bool,
    failed: Option<std::io::Error>,
}

impl Sink {
    fn new(socket: OwnedWriteHalf) -> Sink {
        Sink {
            socket: tokio::sync::Mutex::new(Some(socket)),
            queue: std::sync::Mutex::new(Queue::default()),
            wake: Notify::new(),
        }
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes what it can now, without waiting; queues the rest for the writer task.
    pub(super) fn deliver(&self, d: Delivery) {
        let mut q = self.queue();
        let replies = match d {
            Delivery::Replies(r) => r,
            Delivery::Handoff => {
                q.handoff = true;
                drop(q);
                self.wake.notify_one();
                return;
            }
        };
        let mut rest = &replies[..];
        // The queue lock is held across the write so that nothing is queued meanwhile.
        let idle = q.bytes.is_empty() && !q.writing && q.failed.is_none();
        if let Some(socket) = idle.then(|| self.socket.try_lock().ok()).flatten() {
            // A client that left (or was handed off) needs nothing more.
            let Some(w) = socket.as_ref() else { return };
            while !rest.is_empty() {
                match w.try_write(rest) {
                    Ok(0) => {
                        q.failed = Some(std::io::ErrorKind::WriteZero.into());
                        break;
                    }
                    Ok(n) => rest = &rest[n..],
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        q.failed = Some(e);
                        break;
                    }
                }
            }
        }
        if rest.is_empty() && q.failed.is_none() {
            return;
        }
        if q.failed.is_none() {
            q.bytes.extend_from_slice(rest);
        }
        drop(q);
        self.wake.notify_one();
    }
}

/// Writes what the shared connection's task could not, in order; ends at a write error, or
/// at the handoff once everything is written, giving the socket back.
async fn write_replies(sink: Arc<Sink>, mux: Mux) -> std::io::Result<OwnedWriteHalf> {
    loop {
        tokio::select! {
            biased;
            _ = sink.wake.notified() => {}
            // The shared connection is gone: what it owed this client will not come.
            _ = mux.tx.closed() => return Err(lost()),
        }
        loop {
            let bytes = {
                let mut q = sink.queue();
                if let Some(e) = q.failed.take() {
                    return Err(e);
                }
                if q.bytes.is_empty() {
                    q.writing = false;
                    if q.handoff {
                        None
                    } else {
                        break;
                    }
                } else {
                    q.writing = true;
                    Some(std::mem::take(&mut q.bytes))
                }
            };
            let Some(bytes) = bytes else {
                let socket = sink.socket.lock().await.take();
                return socket.ok_or_else(lost);
            };
            let mut socket = sink.socket.lock().await;
            let w = socket.as_mut().ok_or_else(lost)?;
            if let Err(e) = w.write_all(&bytes).await {
                sink.queue().failed = Some(std::io::Error::new(e.kind(), e.to_string()));
                return Err(e);
            }
        }
    }
}
