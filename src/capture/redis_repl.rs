//! A Redis replication client: vecwal connects to a master as a replica would (REPLCONF,
//! PSYNC), receives the full-sync RDB with the exact replication offset it reflects, then
//! the stream of write commands in the deterministic form Redis replicates them (relative
//! expirations made absolute, SPOP as SREM, …), each with the offset it ends at.
//!
//! This is the ground the replication tap (`vecwal tap redis`) stands on: an RDB aligned to
//! an offset is a base snapshot aligned to an LSN (promise 5), and the command stream is
//! already deterministic (promise 4).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::protocol::resp::{encode_command, parse_command, scan};

/// Largest RDB accepted from a master in one full sync.
pub const MAX_RDB: usize = 64 << 30;

#[derive(Debug, thiserror::Error)]
pub enum ReplError {
    #[error("cannot reach the Redis master {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("connection to the Redis master lost: {0}")]
    Io(#[from] std::io::Error),
    /// The master refused a step of the handshake (wrong password, replication disabled, …).
    #[error("the Redis master refused {step}: {reply}")]
    Refused { step: &'static str, reply: String },
    /// Bytes that are not the replication protocol.
    #[error("unexpected data from the Redis master: {0}")]
    Protocol(String),
}

impl ReplError {
    /// Whether reconnecting may help.
    pub fn is_recoverable(&self) -> bool {
        matches!(self, ReplError::Connect { .. } | ReplError::Io(_))
    }
}

#[derive(Debug, Clone, Default)]
pub struct ReplConfig {
    /// `host:port` of the master.
    pub addr: String,
    pub username: Option<String>,
    /// Never logged or shown (promise 9).
    pub password: Option<String>,
    /// The port this replica announces (REPLCONF listening-port); informational.
    pub listening_port: u16,
    /// Do not offer diskless sync (`capa eof`): the master then forks for this replica at
    /// once (a diskless sync may wait `repl-diskless-sync-delay` first), which keeps the
    /// proxy's snapshot barrier short.
    pub rdb_from_disk: bool,
}

/// Where the stream continues from, for a partial resync after a reconnect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplPosition {
    pub replid: String,
    /// Replication offset of the last byte received.
    pub offset: u64,
}

/// What the master sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplEvent {
    /// A full resync: the RDB reflects exactly the history up to `offset`.
    FullSync {
        replid: String,
        offset: u64,
        rdb: Vec<u8>,
    },
    /// A partial resync was accepted: the stream continues after the given position.
    Continue { replid: String, offset: u64 },
    /// One replicated command; `offset` is the replication offset just past it.
    Command { offset: u64, argv: Vec<Vec<u8>> },
}

pub struct ReplClient {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Bytes of `buf` already consumed as commands; dropped before the next read, so a
    /// buffer of many small commands is not shifted once per command.
    consumed: usize,
    replid: String,
    offset: u64,
    last_ack: tokio::time::Instant,
    pending: Option<ReplEvent>,
    /// When set, acknowledgements report this offset instead of what was received: the tap
    /// confirms only what is durable in its log, so a client's `WAIT 1` means "logged".
    confirmed: Option<u64>,
    /// The stream has begun. After a full sync the master streams nothing until an ACK
    /// arrives after it has reaped its RDB child; until then ACKs go out often.
    streaming: bool,
}

impl ReplClient {
    /// Connects and runs the handshake. With `resume`, asks for a partial resync (PSYNC
    /// replid offset+1); the master answers with a continue or a full resync, which the first
    /// [`ReplClient::next`] returns.
    pub async fn connect(
        cfg: &ReplConfig,
        resume: Option<&ReplPosition>,
    ) -> Result<ReplClient, ReplError> {
        Self::connect_notify(cfg, resume, None).await
    }

    /// [`ReplClient::connect`], telling `forked` the replid and offset as soon as the master answered
    /// FULLRESYNC: the RDB that follows reflects the master at that moment, before its
    /// (possibly long) transfer.
    pub async fn connect_notify(
        cfg: &ReplConfig,
        resume: Option<&ReplPosition>,
        forked: Option<tokio::sync::oneshot::Sender<(String, u64)>>,
    ) -> Result<ReplClient, ReplError> {
        let stream = TcpStream::connect(&cfg.addr)
            .await
            .map_err(|source| ReplError::Connect {
                addr: cfg.addr.clone(),
                source,
            })?;
        stream.set_nodelay(true)?;
        let mut c = ReplClient {
            stream,
            buf: Vec::with_capacity(64 << 10),
            consumed: 0,
            replid: String::new(),
            offset: 0,
            last_ack: tokio::time::Instant::now(),
            pending: None,
            confirmed: None,
            streaming: false,
        };
        if let Some(pw) = &cfg.password {
            let mut argv = vec![b"AUTH".to_vec()];
            if let Some(u) = &cfg.username {
                argv.push(u.as_bytes().to_vec());
            }
            argv.push(pw.as_bytes().to_vec());
            c.request("AUTH", &argv).await?;
        }
        c.request("PING", &[b"PING".to_vec()]).await?;
        let port = cfg.listening_port.to_string();
        c.request(
            "REPLCONF listening-port",
            &[
                b"REPLCONF".to_vec(),
                b"listening-port".to_vec(),
                port.into(),
            ],
        )
        .await?;
        let mut capa = vec![b"REPLCONF".to_vec()];
        if !cfg.rdb_from_disk {
            capa.extend([b"capa".to_vec(), b"eof".to_vec()]);
        }
        capa.extend([b"capa".to_vec(), b"psync2".to_vec()]);
        c.request("REPLCONF capa", &capa).await?;
        let (id, off) = match resume {
            Some(p) => (p.replid.clone(), (p.offset + 1).to_string()),
            None => ("?".to_string(), "-1".to_string()),
        };
        let reply = c
            .request(
                "PSYNC",
                &[b"PSYNC".to_vec(), id.into_bytes(), off.into_bytes()],
            )
            .await?;
        let mut words = reply.split_whitespace();
        match words.next() {
            Some("FULLRESYNC") => {
                let replid = words
                    .next()
                    .ok_or_else(|| proto("FULLRESYNC without replid"))?
                    .to_string();
                let offset = words
                    .next()
                    .and_then(|o| o.parse().ok())
                    .ok_or_else(|| proto("FULLRESYNC without offset"))?;
                if let Some(tx) = forked {
                    let _ = tx.send((replid.clone(), offset));
                }
                let rdb = c.read_rdb().await?;
                c.replid = replid.clone();
                c.offset = offset;
                c.pending = Some(ReplEvent::FullSync {
                    replid,
                    offset,
                    rdb,
                });
            }
            Some("CONTINUE") => {
                let p = resume
                    .ok_or_else(|| proto("CONTINUE to a PSYNC that asked for a full sync"))?;
                // A new replication id after a failover; the offset goes on.
                c.replid = words
                    .next()
                    .map(str::to_string)
                    .unwrap_or_else(|| p.replid.clone());
                c.offset = p.offset;
                c.pending = Some(ReplEvent::Continue {
                    replid: c.replid.clone(),
                    offset: c.offset,
                });
            }
            _ => return Err(proto(&format!("unexpected PSYNC reply {reply:?}"))),
        }
        // The master streams nothing until the replica acknowledges an offset.
        c.ack().await?;
        Ok(c)
    }

    /// Current position (for a partial resync later).
    pub fn position(&self) -> ReplPosition {
        ReplPosition {
            replid: self.replid.clone(),
            offset: self.offset,
        }
    }

    /// The next event. Acknowledges the offset to the master at least once a second and
    /// whenever it asks (REPLCONF GETACK), which keeps the link alive.
    pub async fn next(&mut self) -> Result<ReplEvent, ReplError> {
        loop {
            if let Some(e) = self.buffered().await? {
                return Ok(e);
            }
            let every = if self.streaming {
                Duration::from_secs(1)
            } else {
                Duration::from_millis(50)
            };
            if self.last_ack.elapsed() >= every {
                self.ack().await?;
            }
            let read = tokio::time::timeout(every, self.fill()).await;
            match read {
                Ok(r) => r?,
                Err(_) => continue, // quiet: loop to acknowledge
            }
        }
    }

    /// The next event if it has already arrived, without waiting for the network: lets a
    /// caller gather what is buffered into one batch.
    pub async fn buffered(&mut self) -> Result<Option<ReplEvent>, ReplError> {
        if let Some(e) = self.pending.take() {
            return Ok(Some(e));
        }
        let Some((argv, n)) =
            parse_command(&self.buf[self.consumed..]).map_err(|e| proto(&e.to_string()))?
        else {
            return Ok(None);
        };
        self.consumed += n;
        self.offset += n as u64;
        self.streaming = true;
        let getack = argv.len() >= 2
            && argv[0].eq_ignore_ascii_case(b"REPLCONF")
            && argv[1].eq_ignore_ascii_case(b"GETACK");
        if getack {
            self.ack().await?;
        }
        Ok(Some(ReplEvent::Command {
            offset: self.offset,
            argv,
        }))
    }

    /// From now on acknowledge only offsets passed to this (see `confirmed`).
    pub fn confirm(&mut self, offset: u64) {
        self.confirmed = Some(offset.min(self.offset));
    }

    /// Sends `REPLCONF ACK <offset>`.
    pub async fn ack(&mut self) -> Result<(), ReplError> {
        let offset = self.confirmed.unwrap_or(self.offset);
        let ack = encode_command(&[
            b"REPLCONF".to_vec(),
            b"ACK".to_vec(),
            offset.to_string().into_bytes(),
        ]);
        self.stream.write_all(&ack).await?;
        self.last_ack = tokio::time::Instant::now();
        Ok(())
    }

    /// Reads more bytes into the buffer; a closed connection is an error.
    async fn fill(&mut self) -> Result<(), ReplError> {
        self.compact();
        // Straight into the buffer: a 64 KiB array would live inside this future's state.
        self.buf.reserve(64 << 10);
        let n = self.stream.read_buf(&mut self.buf).await?;
        if n == 0 {
            return Err(ReplError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the master closed the connection",
            )));
        }
        Ok(())
    }

    fn compact(&mut self) {
        self.buf.drain(..self.consumed);
        self.consumed = 0;
    }

    /// Sends a command and reads its one-line reply; an error reply is `Refused`.
    async fn request(&mut self, step: &'static str, argv: &[Vec<u8>]) -> Result<String, ReplError> {
        self.compact();
        self.stream.write_all(&encode_command(argv)).await?;
        loop {
            // A master waiting out `repl-diskless-sync-delay` (5 s by default) before it
            // answers PSYNC keeps the link alive with bare newlines: not part of a reply.
            let keepalives = self.buf.iter().take_while(|&&b| b == b'\n').count();
            self.buf.drain(..keepalives);
            if let Some(f) = scan(&self.buf).map_err(|e| proto(&e.to_string()))? {
                let raw: Vec<u8> = self.buf.drain(..f.len).collect();
                let text = String::from_utf8_lossy(&raw[1..raw.len() - 2]).into_owned();
                if f.is_error() {
                    return Err(ReplError::Refused { step, reply: text });
                }
                return Ok(text);
            }
            self.fill().await?;
        }
    }

    /// Reads the RDB that follows FULLRESYNC: `$<len>\r\n<bytes>` (from disk) or
    /// `$EOF:<40-byte mark>\r\n<bytes><mark>` (diskless). Newlines before it are keep-alives.
    async fn read_rdb(&mut self) -> Result<Vec<u8>, ReplError> {
        self.compact();
        let header = loop {
            let keepalives = self.buf.iter().take_while(|&&b| b == b'\n').count();
            self.buf.drain(..keepalives);
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let h: Vec<u8> = self.buf.drain(..i + 2).collect();
                break h[..h.len() - 2].to_vec();
            }
            if self.buf.len() > 1024 {
                return Err(proto("no RDB header after FULLRESYNC"));
            }
            self.fill().await?;
        };
        if !header.starts_with(b"$") {
            return Err(proto("RDB header does not start with $"));
        }
        if let Some(mark) = header.strip_prefix(b"$EOF:") {
            if mark.len() != 40 {
                return Err(proto("diskless RDB mark is not 40 bytes"));
            }
            // Search only what arrived since the last look (and 39 bytes before it, for a
            // mark split across reads): a multi-gigabyte RDB must not be rescanned per read.
            let mut searched: usize = 0;
            loop {
                if let Some(i) = find_mark(&self.buf, searched, mark) {
                    let rdb: Vec<u8> = self.buf.drain(..i).collect();
                    self.buf.drain(..40);
                    return Ok(rdb);
                }
                searched = self.buf.len();
                if self.buf.len() > MAX_RDB {
                    return Err(proto("RDB larger than the limit"));
                }
                self.fill().await?;
            }
        }
        let len: usize = std::str::from_utf8(&header[1..])
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|&l| l <= MAX_RDB)
            .ok_or_else(|| proto("bad RDB length"))?;
        while self.buf.len() < len {
            self.fill().await?;
        }
        Ok(self.buf.drain(..len).collect())
    }
}

/// Where `mark` starts in `buf`, looking only at what is new since `searched` bytes were
/// already looked at (and `mark.len() - 1` before that, for a mark split across reads).
fn find_mark(buf: &[u8], searched: usize, mark: &[u8]) -> Option<usize> {
    let from = searched.saturating_sub(mark.len() - 1);
    buf[from..]
        .windows(mark.len())
        .position(|w| w == mark)
        .map(|i| from + i)
}

fn proto(detail: &str) -> ReplError {
    ReplError::Protocol(detail.to_string())
}

#[cfg(test)]
mod tests {
    use super::find_mark;

    #[test]
    fn the_end_mark_is_found_wherever_reads_split_it() {
        let mark = b"0123456789abcdef0123456789abcdef01234567";
        let mut stream = vec![7u8; 1000];
        stream.extend_from_slice(mark);
        stream.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
        for split in 1..stream.len() {
            // Two reads: the search after the first, then after the second.
            let first = &stream[..split];
            let found = find_mark(first, 0, mark).or_else(|| find_mark(&stream, split, mark));
            assert_eq!(found, Some(1000), "split at {split}");
        }
    }
}
