//! The reply side of a proxied connection: matches Redis's replies to the commands they
//! answer ([`Expect`]), holds a batch of replies that answers a write until the log covers
//! Redis's replication stream past it (promise 1), and gives vecwal's own replies in their
//! place.
//!
//! Replies are one per command except RESP3 pushes (skipped) and, after pub/sub, MONITOR,
//! `CLIENT REPLY` or bytes that could not be framed, not at all: then the connection is
//! *opaque* until Redis answers a `RESET` with `+RESET`, and while it is, every batch is
//! held once a command that may write has been sent. Holding more than needed costs a
//! round trip; holding less would break promise 1, so every doubt holds.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;

use super::requests::{Expect, Kind};
use super::ProxyCore;
use crate::protocol::resp::{scan, Frame};

const QUEUED: &[u8] = b"+QUEUED\r\n";
const RESET: &[u8] = b"+RESET\r\n";

/// What the reply side knows of the connection, from the replies themselves.
#[derive(Default)]
struct State {
    queue: VecDeque<Expect>,
    resp3: bool,
    /// Inside a transaction Redis opened: for each queued command, whether it is a VADD.
    multi: Option<Vec<bool>>,
    opaque: bool,
    /// A command that may write was sent while the connection was opaque.
    opaque_write: bool,
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
        st.locals(&mut out);
        while let Some(frame) = scan(&buf[used..]).map_err(invalid)? {
            let raw = &buf[used..used + frame.len];
            if st.queue.is_empty() && !st.opaque && !frame.is_push() {
                // Its expectation is on its way (sent before the command was forwarded).
                match rx.recv().await {
                    Some(batch) => {
                        st.take(batch);
                        st.locals(&mut out);
                        continue;
                    }
                    None => return Err(invalid("a reply to a command never sent")),
                }
            }
            used += frame.len;
            hold |= st.reply(frame, raw, &mut out);
            st.locals(&mut out);
        }
        buf.drain(..used);
        if hold {
            core.hold().await?;
        }
        if !out.is_empty() {
            client.write_all(&out).await?;
            out.clear();
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
        for e in batch {
            if self.opaque && !self.queue.iter().any(|q| q.kind == Kind::Reset) {
                // Opaque until a RESET: only whether a write was sent matters, and the
                // expectations after that RESET (counting resumes with them).
                self.opaque_write |= e.write;
                if e.kind != Kind::Reset {
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
        let Some(Expect { write, kind }) = self.queue.pop_front() else {
            out.extend_from_slice(raw);
            return true; // cannot happen (the caller waits for the expectation); hold
        };
        let queued = raw == QUEUED && self.multi.is_some();
        let is_vadd = kind == Kind::Vadd;
        match kind {
            Kind::Plain | Kind::Local(_) => {}
            Kind::Vadd if self.resp3 && !queued => {
                out.extend_from_slice(resp3_bool(raw));
                return write;
            }
            Kind::Vadd => {}
            Kind::Hello(v) => {
                if let (false, Some(v)) = (frame.is_error(), v) {
                    self.resp3 = v == 3;
                }
            }
            Kind::Reset => self.reset(),
            Kind::Multi if !frame.is_error() && !queued => self.multi = Some(Vec::new()),
            Kind::Multi => {}
            Kind::Exec => {
                let vadds = self.multi.take().unwrap_or_default();
                if self.resp3 && frame.kind == b'*' && vadds.iter().any(|v| *v) {
                    out.extend_from_slice(&exec_resp3(raw, &vadds));
                    return write;
                }
            }
            Kind::Discard => self.multi = None,
            Kind::Opaque => {
                self.opaque = true;
                self.opaque_write = write;
                // Expectations already queued behind it: opaque too (see `take`).
                let rest: Vec<Expect> = self.queue.drain(..).collect();
                self.take(rest);
            }
            Kind::Refused(r) => {
                // DISCARD's +OK stands for the refused EXEC.
                self.multi = None;
                out.extend_from_slice(&r);
                return false;
            }
        }
        self.queued(queued, is_vadd);
        out.extend_from_slice(raw);
        write && !queued
    }

    /// Notes a command Redis queued in the transaction.
    fn queued(&mut self, queued: bool, vadd: bool) {
        if let (true, Some(m)) = (queued, self.multi.as_mut()) {
            m.push(vadd);
        }
    }

    fn reset(&mut self) {
        self.resp3 = false;
        self.multi = None;
        self.opaque = false;
        self.opaque_write = false;
    }
}

/// A VADD's answer as RESP3 gives it: the script answers `:1`/`:0`, VADD itself `#t`/`#f`.
fn resp3_bool(raw: &[u8]) -> &[u8] {
    match raw {
        b":1\r\n" => b"#t\r\n",
        b":0\r\n" => b"#f\r\n",
        other => other,
    }
}

/// An EXEC answer with the answers of queued VADDs made RESP3 booleans.
fn exec_resp3(raw: &[u8], vadds: &[bool]) -> Vec<u8> {
    let Some(head_end) = raw.windows(2).position(|w| w == b"\r\n") else {
        return raw.to_vec();
    };
    let mut out = raw[..head_end + 2].to_vec();
    let mut pos = head_end + 2;
    for is_vadd in vadds {
        let Ok(Some(f)) = scan(&raw[pos..]) else {
            break;
        };
        let item = &raw[pos..pos + f.len];
        out.extend_from_slice(if *is_vadd { resp3_bool(item) } else { item });
        pos += f.len;
    }
    out.extend_from_slice(&raw[pos..]);
    out
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
        Expect { write, kind }
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
        assert!(st.multi.is_none());
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
    fn resp3_pushes_are_skipped_and_vadd_answers_are_booleans() {
        let mut st = State::default();
        st.take(vec![ex(false, Kind::Hello(Some(3))), ex(true, Kind::Vadd)]);
        feed(&mut st, b"%1\r\n+proto\r\n:3\r\n");
        assert!(st.resp3);
        assert!(!feed(&mut st, b">2\r\n+invalidate\r\n*0\r\n").0);
        assert_eq!(feed(&mut st, b":0\r\n"), (true, b"#f\r\n".to_vec()));
        st.take(vec![
            ex(false, Kind::Multi),
            ex(true, Kind::Vadd),
            ex(true, Kind::Plain),
            ex(true, Kind::Exec),
        ]);
        feed(&mut st, b"+OK\r\n");
        feed(&mut st, b"+QUEUED\r\n");
        feed(&mut st, b"+QUEUED\r\n");
        let (hold, out) = feed(&mut st, b"*2\r\n:1\r\n:1\r\n");
        assert!(hold);
        assert_eq!(out, b"*2\r\n#t\r\n:1\r\n");
        // RESP2 answers stay integers.
        st.take(vec![ex(false, Kind::Hello(Some(2))), ex(true, Kind::Vadd)]);
        feed(&mut st, b"*2\r\n$5\r\nproto\r\n:2\r\n");
        assert_eq!(feed(&mut st, b":1\r\n").1, b":1\r\n");
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
        assert!(st.multi.is_none());
    }
}
