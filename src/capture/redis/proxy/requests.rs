//! The request side of a proxied connection: frames the client's commands, tells the reply
//! side what each reply will answer ([`Expect`]), refuses writes while the spool is full,
//! and forwards the bytes as they came (a `VADD` excepted, see [`crate::capture::redis::vadd`]).
//!
//! Nothing here decides what is logged: the log is Redis's replication stream. What the
//! request side decides is which replies must wait for the log (those answering a command
//! that may write), so a mistake here could only cost a reply some latency, never a record.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, OwnedSemaphorePermit};

use super::ProxyCore;
use crate::capture::redis::vadd;
use crate::protocol::redis_commands::Effect;
use crate::protocol::resp::parse_command;

/// What the reply side does with the reply to one command.
#[derive(Debug)]
pub(super) struct Expect {
    /// Whether the command may have written: then its reply waits until the log covers it.
    pub effect: Effect,
    pub kind: Kind,
    /// Its batch's share of [`super::MAX_UNLOGGED_WRITES`] (on one command of the batch),
    /// given back once the reply has gone.
    pub unlogged: Option<OwnedSemaphorePermit>,
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Plain,
    Reset,
    Multi,
    Exec,
    Discard,
    /// From this command on, replies are not one per command (pub/sub, MONITOR, CLIENT
    /// REPLY, a replication stream, bytes vecwal could not frame) until a `RESET`.
    Opaque,
    /// `SYNC` or `PSYNC` that Redis will serve: the connection becomes a replica link
    /// (an RDB payload, then the replication stream) and a plain pipe both ways for good.
    ReplicaLink,
    /// `EXEC` refused by vecwal: `DISCARD` went instead; its `+OK` is replaced by this.
    Refused(Vec<u8>),
    /// A reply vecwal gives itself, in its place among Redis's.
    Local(Vec<u8>),
}

impl Expect {
    fn new(effect: Effect, kind: Kind) -> Expect {
        Expect {
            effect,
            kind,
            unlogged: None,
        }
    }
}

fn lower(a: &[u8]) -> Vec<u8> {
    a.to_ascii_lowercase()
}

pub(super) fn err_line(msg: &str) -> Vec<u8> {
    format!("-ERR vecwal: {msg}\r\n").into_bytes()
}

/// Request-side view of the connection; replies are not seen here, so this is what was
/// asked, which may differ from what Redis granted (a refused MULTI). It only steers
/// refusals while the spool is full.
#[derive(Default)]
struct Session {
    in_multi: bool,
    /// A command of this transaction was refused by vecwal: its EXEC must not run.
    multi_refused: bool,
    opaque: bool,
}

pub(super) async fn run(
    core: Arc<ProxyCore>,
    mut client: OwnedReadHalf,
    mut upstream: OwnedWriteHalf,
    tx: mpsc::UnboundedSender<Vec<Expect>>,
    mut buf: Vec<u8>,
) -> std::io::Result<()> {
    let mut out: Vec<u8> = Vec::with_capacity(16 << 10);
    let mut expects: Vec<Expect> = Vec::new();
    // Bytes of commands that may write in `expects`.
    let mut write_bytes = 0;
    let mut s = Session::default();
    loop {
        // `buf` may start with what the client sent before it left a shared connection.
        let mut used = 0;
        loop {
            let (argv, n) = match parse_command(&buf[used..]) {
                Ok(Some(p)) => p,
                Ok(None) => break,
                Err(_) => {
                    // Redis answers malformed input with its own error and closes the
                    // connection: let it. Its answer (and anything after) passes as it is.
                    expects.push(Expect::new(Effect::Always, Kind::Opaque));
                    send(&tx, &mut expects)?;
                    out.extend_from_slice(&buf[used..]);
                    upstream.write_all(&out).await?;
                    return copy_rest(client, upstream).await;
                }
            };
            let raw = &buf[used..used + n];
            used += n;
            if argv.is_empty() {
                out.extend_from_slice(raw); // an empty inline line: no reply
                continue;
            }
            let name = lower(&argv[0]);
            let mut bytes: Option<Vec<u8>> = None;
            let (effect, kind) = match name.as_slice() {
                b"vecwal.snapshot" if !s.opaque => {
                    send(&tx, &mut expects)?;
                    flush(&mut upstream, &mut out).await?;
                    let reply = match core.snapshot().await {
                        Ok(line) => format!("+{line}\r\n").into_bytes(),
                        Err(e) => err_line(&format!("snapshot failed: {e}")),
                    };
                    expects.push(Expect::new(Effect::None, Kind::Local(reply)));
                    continue;
                }
                b"sync" | b"psync" if !s.opaque && !s.in_multi => {
                    // Redis's own tests read the stream this way; a replica may sit behind
                    // the proxy. What the link carries is Redis's, and the client's bytes
                    // after this (REPLCONF ACK) write nothing.
                    expects.push(Expect::new(Effect::None, Kind::ReplicaLink));
                    send(&tx, &mut expects)?;
                    out.extend_from_slice(&buf[used - n..]);
                    upstream.write_all(&out).await?;
                    return copy_rest(client, upstream).await;
                }
                b"subscribe" | b"psubscribe" | b"ssubscribe" | b"unsubscribe" | b"punsubscribe"
                | b"sunsubscribe" | b"monitor" | b"sync" | b"psync" => {
                    s.opaque = true;
                    (Effect::None, Kind::Opaque)
                }
                b"client" if argv.get(1).is_some_and(|a| lower(a) == b"reply") => {
                    s.opaque = true;
                    (Effect::None, Kind::Opaque)
                }
                b"reset" => {
                    s = Session::default();
                    (Effect::None, Kind::Reset)
                }
                b"multi" => {
                    s.in_multi = true;
                    s.multi_refused = false;
                    (Effect::None, Kind::Multi)
                }
                b"discard" => {
                    s.in_multi = false;
                    (Effect::None, Kind::Discard)
                }
                b"exec" => {
                    s.in_multi = false;
                    // EXECABORT ran nothing; an EXEC that ran answers with an array.
                    (Effect::OnSuccess, Kind::Exec)
                }
                b"vadd" => {
                    bytes = Some(vadd::wrap(&argv));
                    (Effect::Always, Kind::Plain)
                }
                _ => (core.table.effect(&argv), Kind::Plain),
            };
            if effect != Effect::None && core.log.check_admission().is_err() {
                // Before any wait, what is already accepted goes on.
                send(&tx, &mut expects)?;
                flush(&mut upstream, &mut out).await?;
                if let Err(e) = core.log.admit().await {
                    let refusal = err_line(&e.to_string());
                    match refuse(&mut s, kind, refusal) {
                        Refusal::Close => {
                            tracing::warn!("a write on a pub/sub or MONITOR connection while the spool is full; closing it");
                            return Ok(());
                        }
                        Refusal::Reply(reply) => {
                            expects.push(Expect::new(Effect::None, Kind::Local(reply)));
                            continue;
                        }
                        Refusal::Discard(reply) => {
                            expects.push(Expect::new(Effect::None, Kind::Refused(reply)));
                            out.extend_from_slice(b"*1\r\n$7\r\nDISCARD\r\n");
                            continue;
                        }
                    }
                }
            }
            if kind == Kind::Exec && s.multi_refused {
                // Part of the transaction never reached Redis: running the rest would not
                // be what the client asked for. Redis itself aborts such a transaction.
                let abort =
                    b"-EXECABORT Transaction discarded because of previous errors.\r\n".to_vec();
                expects.push(Expect::new(Effect::None, Kind::Refused(abort)));
                out.extend_from_slice(b"*1\r\n$7\r\nDISCARD\r\n");
                continue;
            }
            if effect != Effect::None {
                write_bytes += n;
            }
            expects.push(Expect::new(effect, kind));
            out.extend_from_slice(bytes.as_deref().unwrap_or(raw));
        }
        buf.drain(..used);
        if write_bytes > 0 {
            if let Some(last) = expects.last_mut() {
                last.unlogged = Some(core.unlogged(write_bytes).await);
            }
            write_bytes = 0;
        }
        send(&tx, &mut expects)?;
        flush(&mut upstream, &mut out).await?;
        buf.reserve(16 << 10);
        if client.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
    }
}

enum Refusal {
    Close,
    Reply(Vec<u8>),
    /// Send DISCARD instead of EXEC and answer this.
    Discard(Vec<u8>),
}

/// How a write is refused while the spool is full.
fn refuse(s: &mut Session, kind: Kind, refusal: Vec<u8>) -> Refusal {
    if s.opaque {
        // Replies are not matched to commands here: a local answer could not be placed.
        return Refusal::Close;
    }
    if kind == Kind::Exec {
        return Refusal::Discard(refusal);
    }
    if s.in_multi {
        s.multi_refused = true;
    }
    Refusal::Reply(refusal)
}

/// Hands the expectations to the reply side; they must be there before their replies can
/// arrive, so this runs before the bytes go upstream.
fn send(tx: &mpsc::UnboundedSender<Vec<Expect>>, e: &mut Vec<Expect>) -> std::io::Result<()> {
    if e.is_empty() {
        return Ok(());
    }
    tx.send(std::mem::take(e))
        .map_err(|_| std::io::Error::other("the reply side ended"))
}

async fn flush(upstream: &mut OwnedWriteHalf, out: &mut Vec<u8>) -> std::io::Result<()> {
    if !out.is_empty() {
        upstream.write_all(out).await?;
        out.clear();
    }
    Ok(())
}

/// After bytes vecwal could not frame (the reply side holds every reply, see
/// [`Kind::Opaque`]) or a replica link began: the rest of the connection is a plain pipe.
async fn copy_rest(mut client: OwnedReadHalf, mut upstream: OwnedWriteHalf) -> std::io::Result<()> {
    tokio::io::copy(&mut client, &mut upstream).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_write_inside_multi_poisons_the_exec() {
        let mut s = Session {
            in_multi: true,
            ..Default::default()
        };
        assert!(matches!(
            refuse(&mut s, Kind::Plain, b"-ERR x\r\n".to_vec()),
            Refusal::Reply(_)
        ));
        assert!(s.multi_refused);
        assert!(matches!(
            refuse(&mut s, Kind::Exec, b"-ERR x\r\n".to_vec()),
            Refusal::Discard(_)
        ));
        let mut pubsub = Session {
            opaque: true,
            ..Default::default()
        };
        assert!(matches!(
            refuse(&mut pubsub, Kind::Plain, Vec::new()),
            Refusal::Close
        ));
    }
}
