//! Where Redis's replication stream has got to, read *after* a moment the caller chooses.
//!
//! The proxy forwards a client's write and gets its reply; Redis adds a write's effect to
//! its replication stream before any byte of the reply leaves for the client (the effect is
//! propagated when the command's execution unit ends; replies are written to sockets later,
//! in the event loop's `beforeSleep`). So a position read with a request sent after the
//! reply arrived covers the write: once the log covers that position, the reply may go
//! (promise 1). One dedicated connection serves every client connection of the proxy, with
//! one request in flight at a time: its answer serves every caller that asked before it was
//! sent, and callers who ask meanwhile share the next. Under load that is one `INFO` per
//! round trip instead of one per write: `INFO` costs Redis twice what a 1 KiB `SET` does,
//! and pipelined one per caller it was asked for about three writes in four.
//!
//! The position is `INFO replication`'s `master_replid` and `master_repl_offset`: an offset
//! alone would be wrong after a restart of Redis, whose new history starts again at small
//! offsets that an old, larger logged offset would seem to cover.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use crate::protocol::redis_client::RedisTarget;
use crate::protocol::resp::encode_command;
use crate::protocol::resp_value::{decode, Value};

/// A point of a Redis master's replication history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub replid: String,
    pub offset: u64,
    /// Which connection of the probe read it. Two positions of one connection come from
    /// one run of Redis: a change of replication id between them is Redis starting a new
    /// history (as it does when its first replica connects), not a restart that may have
    /// lost what the first position covered.
    pub connection: u64,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot read the upstream's replication offset: {0}")]
    Upstream(String),
    #[error("the proxy is stopping")]
    Stopped,
}

type Reply = oneshot::Sender<Result<Position, ProbeError>>;

/// Longest a probe request may take before its connection is given up and opened again.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct Prober {
    tx: mpsc::UnboundedSender<Reply>,
}

impl Prober {
    /// Starts the probing task for `upstream` (its credentials are the proxy's own).
    pub fn start(upstream: RedisTarget) -> (Prober, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(upstream, rx));
        (Prober { tx }, task)
    }

    /// The replication position read by a request sent after this call was made.
    pub async fn position(&self) -> Result<Position, ProbeError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(tx).map_err(|_| ProbeError::Stopped)?;
        rx.await.map_err(|_| ProbeError::Stopped)?
    }
}

async fn run(upstream: RedisTarget, mut rx: mpsc::UnboundedReceiver<Reply>) {
    let mut waiting: Vec<Reply> = Vec::new();
    let mut failing = false;
    let mut connections = 0;
    loop {
        // Callers that gave up (their hold timed out) need no answer.
        waiting.retain(|w| !w.is_closed());
        if waiting.is_empty() {
            match rx.recv().await {
                Some(w) => waiting.push(w),
                None => return,
            }
        }
        // A lost connection (Redis restarting, say) is opened again while callers wait:
        // they bound their own wait (`HOLD_MAX`).
        match Conn::open(&upstream).await {
            Ok(mut conn) => {
                connections += 1;
                conn.id = connections;
                if failing {
                    tracing::info!("the replication-offset connection is back");
                    failing = false;
                }
                match conn.serve(&mut rx, &mut waiting).await {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "the replication-offset connection failed; reopening");
                    }
                }
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "cannot open the replication-offset connection; retrying");
                    failing = true;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

struct Conn {
    id: u64,
    stream: TcpStream,
    buf: Vec<u8>,
    /// Callers of each request in flight, oldest first.
    inflight: VecDeque<Vec<Reply>>,
}

pub(crate) const REQUEST: &[u8] = b"*2\r\n$4\r\nINFO\r\n$11\r\nreplication\r\n";

impl Conn {
    async fn open(t: &RedisTarget) -> Result<Conn, String> {
        // The same login as every connection of the proxy's own (the client, the tap).
        let c = t.connect().await.map_err(|e| e.to_string())?;
        Ok(Conn {
            id: 0,
            stream: c.into_stream(),
            buf: Vec::with_capacity(4096),
            inflight: VecDeque::new(),
        })
    }

    /// Sends a request for the callers waiting whenever none is in flight and answers each
    /// batch from its own reply, until the connection fails. `waiting` is the batch not yet
    /// sent.
    async fn serve(
        &mut self,
        rx: &mut mpsc::UnboundedReceiver<Reply>,
        waiting: &mut Vec<Reply>,
    ) -> Result<(), String> {
        let result = self.serve_inner(rx, waiting).await;
        // Requests lost with the connection are asked again on the next one.
        waiting.extend(self.inflight.drain(..).flatten());
        result
    }

    async fn serve_inner(
        &mut self,
        rx: &mut mpsc::UnboundedReceiver<Reply>,
        waiting: &mut Vec<Reply>,
    ) -> Result<(), String> {
        // While Redis runs a long script it answers BUSY to everything but a few commands;
        // the callers then wait for it (their replies are held), asking again now and then.
        let mut retry_at = tokio::time::Instant::now();
        loop {
            while let Ok(w) = rx.try_recv() {
                waiting.push(w);
            }
            let now = tokio::time::Instant::now();
            if !waiting.is_empty() && now >= retry_at && self.inflight.is_empty() {
                self.stream
                    .write_all(REQUEST)
                    .await
                    .map_err(|e| e.to_string())?;
                self.inflight.push_back(std::mem::take(waiting));
            }
            if self.inflight.is_empty() && waiting.is_empty() {
                match rx.recv().await {
                    Some(w) => waiting.push(w),
                    None => return Ok(()),
                }
                continue;
            }
            tokio::select! {
                // A new caller: its request goes out when the one in flight is answered.
                w = rx.recv() => match w {
                    Some(w) => waiting.push(w),
                    None => return Ok(()),
                },
                _ = tokio::time::sleep_until(retry_at), if self.inflight.is_empty() => {}
                r = tokio::time::timeout(PROBE_TIMEOUT, self.stream.read_buf(&mut self.buf)), if !self.inflight.is_empty() => {
                    match r {
                        Err(_) => return Err(format!("no answer within {PROBE_TIMEOUT:?}")),
                        Ok(Err(e)) => return Err(e.to_string()),
                        Ok(Ok(0)) => return Err("the upstream closed the connection".into()),
                        Ok(Ok(_)) => {}
                    }
                    while let Some((v, n)) = decode(&self.buf).map_err(|e| e.to_string())? {
                        self.buf.drain(..n);
                        let batch = self.inflight.pop_front().ok_or("an answer nobody asked for")?;
                        if is_busy(&v) {
                            waiting.extend(batch);
                            retry_at = tokio::time::Instant::now() + BUSY_RETRY;
                            continue;
                        }
                        let answer = parse(&v, self.id);
                        for w in batch {
                            let _ = w.send(answer.clone());
                        }
                    }
                }
            }
        }
    }
}

/// How often the position is asked again while Redis is busy with a script.
const BUSY_RETRY: Duration = Duration::from_millis(10);

fn is_busy(v: &Value) -> bool {
    matches!(v, Value::Error(e) if e.starts_with(b"BUSY"))
}

/// The position in an `INFO replication` reply.
pub(crate) fn parse(v: &Value, connection: u64) -> Result<Position, ProbeError> {
    if let Value::Error(e) = v {
        return Err(ProbeError::Upstream(format!(
            "INFO replication refused: {} (the proxy's Redis user needs +info)",
            String::from_utf8_lossy(e)
        )));
    }
    let text = v.text();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    };
    match (
        field("master_replid"),
        field("master_repl_offset").and_then(|o| o.parse().ok()),
    ) {
        (Some(r), Some(offset)) => Ok(Position {
            replid: r.to_string(),
            offset,
            connection,
        }),
        _ => Err(ProbeError::Upstream(
            "INFO replication has no master_replid or master_repl_offset".into(),
        )),
    }
}

/// `encode_command` for callers that want the probe's request bytes (tests).
pub fn request() -> Vec<u8> {
    encode_command(&[b"INFO".to_vec(), b"replication".to_vec()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_is_info_replication() {
        assert_eq!(request(), REQUEST);
    }

    #[test]
    fn positions_are_read_from_info_replication() {
        let info = Value::Bulk(Some(
            b"# Replication\r\nrole:master\r\nconnected_slaves:1\r\nmaster_replid:abc123\r\nmaster_replid2:0000\r\nmaster_repl_offset:4711\r\nsecond_repl_offset:-1\r\n"
                .to_vec(),
        ));
        assert_eq!(
            parse(&info, 3).unwrap(),
            Position {
                replid: "abc123".into(),
                offset: 4711,
                connection: 3,
            }
        );
        assert!(parse(&Value::Bulk(Some(b"role:master\r\n".to_vec())), 1).is_err());
        let e = parse(&Value::Error(b"NOPERM no".to_vec()), 1).unwrap_err();
        assert!(e.to_string().contains("+info"), "{e}");
    }
}
