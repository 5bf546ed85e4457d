//! The reply side of a proxied connection: matches Redis's replies to the commands they
//! answer ([`Expect`]), holds a batch of replies that answers a write until the log covers
//! Redis's replication stream past it (promise 1), and gives vecwal's own replies in their
//! place.
//!
//! Replies are one per command except RESP3 pushes (passed on, answering no command: they
//! are not acknowledgements; see docs/redis.md) and, after pub/sub, MONITOR,
//! `CLIENT REPLY` or bytes that could not be framed, not at all: then the connection is
//! *opaque* until Redis answers a `RESET` with `+RESET`, and while it is, every batch is
//! held once a command that may write has been sent. Holding more than needed costs a
//! round trip; holding less would break promise 1, so every doubt holds.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, OwnedSemaphorePermit};

use super::requests::{Expect, Kind};
use super::ProxyCore;
use crate::protocol::redis_commands::Effect;
use crate::protocol::resp::{scan, Frame};

const QUEUED: &[u8] = b"+QUEUED\r\n";
const RESET: &[u8] = b"+RESET\r\n";

/// What the reply side knows of the connection, from the replies themselves.
#[derive(Default)]
struct State {
    queue: VecDeque<Expect>,
    /// Inside a transaction Redis opened: `+QUEUED` answers run nothing yet.
    multi: bool,
    opaque: bool,
    /// A command that may write was sent while the connection was opaque.
    opaque_write: bool,
    /// Shares of [`super::MAX_UNLOGGED_WRITES`] of replies handled: given back when the
    /// replies have gone to the client.
    released: Vec<OwnedSemaphorePermit>,
}

pub(super) async fn run(
    core: Arc<ProxyCore>,
    mut upstream: OwnedReadHalf,
    mut client: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Vec<Expect>>,
) -> std::io::Result<()> {
    let mut st = State::default();
    let mut buf: Vec<u8> = Vec::with_capacity(16 << 10);
    let mut out: Vec<u8> = Vec::with_capacity(16 << 10);
    let mut requests_done = false;
    loop {
        while let Ok(batch) = rx.try_recv() {
            st.take(batch);
        }
        let mut used = 0;
        let mut hold = false;
        let mut replica_link = false;
        st.locals(&mut out);
        while used < buf.len() {
            if st.queue.is_empty() && !st.opaque && buf[used] != b'>' {
                // A reply, not a push: its expectation is on its way (sent before the
                // command was forwarded). Known before framing, since a SYNC's answer
                // does not frame as RESP.
                match rx.recv().await {
                    Some(batch) => {
                        st.take(batch);
                        st.locals(&mut out);
                        continue;
                    }
                    None => return Err(invalid("a reply to a command never sent")),
                }
            }
            if st
                .queue
                .front()
                .is_some_and(|e| e.kind == Kind::ReplicaLink)
            {
                replica_link = true;
                break;
            }
            let Some(frame) = scan(&buf[used..]).map_err(invalid)? else {
                break;
            };
            let raw = &buf[used..used + frame.len];
            used += frame.len;
            hold |= st.reply(frame, raw, &mut out);
            st.locals(&mut out);
        }
        buf.drain(..used);
        if hold {
            let started = std::time::Instant::now();
            core.hold().await?;
            crate::metrics::global()
                .write_waits
                .observe(started.elapsed());
        }
        if !out.is_empty() {
            client.write_all(&out).await?;
            out.clear();
        }
        st.released.clear();
        if replica_link {
            // Redis's answer to SYNC or PSYNC: an RDB payload (no CRLF after it), then its
            // replication stream, for as long as the connection lasts. Nothing in it
            // acknowledges a client's write, so it passes as it comes.
            client.write_all(&buf).await?;
            tokio::io::copy(&mut upstream, &mut client).await?;
            return Ok(());
        }
        if requests_done && st.queue.is_empty() {
            return Ok(());
        }
        buf.reserve(16 << 10);
        tokio::select! {
            biased;
            b = rx.recv(), if !requests_done => match b {
                Some(batch) => st.take(batch),
                None => requests_done = true,
            },
            n = upstream.read_buf(&mut buf) => {
                if n? == 0 {
                    return Ok(());
                }
            }
        }
    }
}

impl State {
    fn take(&mut self, batch: Vec<Expect>) {
        for mut e in batch {
            if self.opaque && !self.queue.iter().any(|q| q.kind == Kind::Reset) {
                // Opaque until a RESET: only whether a write was sent matters, and the
                // expectations after that RESET (counting resumes with them).
                self.opaque_write |= e.effect != Effect::None;
                if e.kind != Kind::Reset {
                    // Given back at the next batch of replies, which is held.
                    self.released.extend(e.unlogged.take());
                    continue;
                }
            }
            self.queue.push_back(e);
        }
    }

    /// Replies vecwal gives itself, at the front of the queue.
    fn locals(&mut self, out: &mut Vec<u8>) {
        if self.opaque {
            return;
        }
        while let Some(Expect {
            kind: Kind::Local(_),
            ..
        }) = self.queue.front()
        {
            if let Some(Expect {
                kind: Kind::Local(r),
                ..
            }) = self.queue.pop_front()
            {
                out.extend_from_slice(&r);
            }
        }
    }

    /// Handles one reply (or push) from Redis; returns whether it must wait for the log.
    fn reply(&mut self, frame: Frame, raw: &[u8], out: &mut Vec<u8>) -> bool {
        if frame.is_push() {
            out.extend_from_slice(raw);
            return false;
        }
        if self.opaque {
            // Whatever came before the RESET's answer may answer a write: held all the same.
            let hold = self.opaque_write;
            if raw == RESET && self.queue.front().is_some_and(|e| e.kind == Kind::Reset) {
                self.queue.pop_front();
                self.reset();
            }
            out.extend_from_slice(raw);
            return hold;
        }
        let Some(Expect {
            effect,
            kind,
            unlogged,
        }) = self.queue.pop_front()
        else {
            out.extend_from_slice(raw);
            return true; // cannot happen (the caller waits for the expectation); hold
        };
        self.released.extend(unlogged);
        let queued = self.multi && raw == QUEUED;
        let write = !queued
            && match effect {
                Effect::None => false,
                Effect::OnSuccess => !frame.is_error(),
                Effect::Always => true,
            };
        match kind {
            // Never reached: the connection became a pipe before this reply (see `run`).
            Kind::Plain | Kind::Local(_) | Kind::ReplicaLink => {}
            Kind::Reset => self.reset(),
            // A MULTI inside a transaction is refused and leaves it open.
            Kind::Multi => self.multi |= !frame.is_error(),
            Kind::Exec | Kind::Discard => self.multi = false,
            Kind::Opaque => {
                self.opaque = true;
                self.opaque_write = effect != Effect::None;
                // Expectations already queued behind it: opaque too (see `take`).
                let rest: Vec<Expect> = self.queue.drain(..).collect();
                self.take(rest);
            }
            Kind::Refused(r) => {
                // DISCARD's +OK stands for the refused EXEC.
                self.multi = false;
                out.extend_from_slice(&r);
                return false;
            }
        }
        out.extend_from_slice(raw);
        write
    }

    fn reset(&mut self) {
        self.multi = false;
        self.opaque = false;
        self.opaque_write = false;
    }
}

fn invalid(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(st: &mut State, raw: &[u8]) -> (bool, Vec<u8>) {
        let mut out = Vec::new();
        let f = scan(raw).unwrap().unwrap();
        let hold = st.reply(f, raw, &mut out);
        st.locals(&mut out);
        (hold, out)
    }

    fn ex(write: bool, kind: Kind) -> Expect {
        let effect = if write {
            Effect::OnSuccess
        } else {
            Effect::None
        };
        Expect {
            effect,
            kind,
            unlogged: None,
        }
    }

    #[test]
    fn writes_hold_reads_do_not_and_queued_commands_wait_for_exec() {
        let mut st = State::default();
        st.take(vec![
            ex(false, Kind::Plain),
            ex(true, Kind::Plain),
            ex(false, Kind::Multi),
            ex(true, Kind::Plain),
            ex(true, Kind::Exec),
        ]);
        assert!(!feed(&mut st, b"$1\r\na\r\n").0);
        assert!(feed(&mut st, b":1\r\n").0);
        assert!(!feed(&mut st, b"+OK\r\n").0);
        assert!(!feed(&mut st, b"+QUEUED\r\n").0, "queued, not run");
        assert!(feed(&mut st, b"*1\r\n:1\r\n").0);
        assert!(!st.multi);
    }

    #[test]
    fn an_error_holds_only_when_the_command_may_have_written_before_failing() {
        let mut st = State::default();
        st.take(vec![
            ex(true, Kind::Plain),
            Expect {
                effect: Effect::Always,
                kind: Kind::Plain,
                unlogged: None,
            },
        ]);
        assert!(
            !feed(&mut st, b"-BUSY running a script\r\n").0,
            "refused: wrote nothing"
        );
        assert!(
            feed(&mut st, b"-ERR user_script:1: failed\r\n").0,
            "a script may have"
        );
    }

    #[test]
    fn local_replies_keep_their_place() {
        let mut st = State::default();
        st.take(vec![
            ex(false, Kind::Plain),
            ex(false, Kind::Local(b"-ERR vecwal: full\r\n".to_vec())),
            ex(false, Kind::Plain),
        ]);
        let (_, out) = feed(&mut st, b"+A\r\n");
        assert_eq!(out, b"+A\r\n-ERR vecwal: full\r\n");
        assert_eq!(feed(&mut st, b"+B\r\n").1, b"+B\r\n");
    }

    #[test]
    fn pubsub_is_opaque_until_reset_and_holds_only_after_a_write() {
        let mut st = State::default();
        st.take(vec![ex(false, Kind::Opaque)]);
        assert!(!feed(&mut st, b"*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n").0);
        assert!(!feed(&mut st, b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nm\r\n").0);
        // UNSUBSCRIBE, then a write: every batch waits from then on.
        st.take(vec![ex(false, Kind::Opaque), ex(true, Kind::Plain)]);
        assert!(st.queue.is_empty(), "nothing counted while opaque");
        assert!(feed(&mut st, b"*3\r\n$11\r\nunsubscribe\r\n$1\r\nc\r\n:0\r\n").0);
        assert!(feed(&mut st, b":1\r\n").0);
        // RESET brings counting back; what follows it is counted again.
        st.take(vec![ex(false, Kind::Reset), ex(false, Kind::Plain)]);
        assert!(feed(&mut st, b"+RESET\r\n").0);
        assert!(!st.opaque);
        assert!(!feed(&mut st, b"$1\r\nv\r\n").0);
    }

    #[test]
    fn resp3_pushes_answer_no_command() {
        let mut st = State::default();
        st.take(vec![ex(true, Kind::Plain)]);
        assert!(!feed(&mut st, b">2\r\n+invalidate\r\n*0\r\n").0);
        assert_eq!(st.queue.len(), 1);
        assert_eq!(feed(&mut st, b":0\r\n"), (true, b":0\r\n".to_vec()));
    }

    #[test]
    fn a_refused_exec_answers_the_refusal_in_place_of_discards_ok() {
        let mut st = State::default();
        st.take(vec![
            ex(false, Kind::Multi),
            ex(false, Kind::Local(b"-ERR vecwal: spool full\r\n".to_vec())),
            ex(false, Kind::Refused(b"-EXECABORT x\r\n".to_vec())),
        ]);
        let (_, out) = feed(&mut st, b"+OK\r\n");
        assert_eq!(out, b"+OK\r\n-ERR vecwal: spool full\r\n");
        assert_eq!(
            feed(&mut st, b"+OK\r\n"),
            (false, b"-EXECABORT x\r\n".to_vec())
        );
        assert!(!st.multi);
    }
}
