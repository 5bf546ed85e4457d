//! The RESP proxy (`vecwal proxy redis`): one upstream connection per client, bytes
//! forwarded as they are, and every write the upstream accepted logged before its reply
//! goes back (promises 1–4).
//!
//! Each client connection has two tasks. The request side parses the client's commands,
//! classifies them (the upstream's COMMAND INFO says which write, see [`super::commands`]),
//! claims the keys of writes ([`super::gate`]), queues what the reply side must do with
//! each reply, and forwards the bytes. The reply side matches replies to that queue in
//! order, logs successful writes in their deterministic form ([`super::rewrite`]), waits
//! until the last of them is durable and only then hands the replies to the client, so one
//! pipeline shares one group commit.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use vecwal_format::Operation;

use super::gate::{Gate, Pass};
use super::rewrite::{deterministic, Argv};
use crate::log::{Appended, Entry, Log, LogError};
use crate::protocol::redis_commands::{Access, CommandTable};
use crate::protocol::resp::{parse_command, scan};
use crate::protocol::resp_value::{decode, Value};

/// What the proxy shares between connections.
pub struct ProxyCore {
    pub log: Arc<Log>,
    pub table: CommandTable,
    pub gate: Arc<Gate>,
    pub upstream_addr: String,
    /// Script bodies by SHA-1 (lower-case hex), learnt from SCRIPT LOAD, so EVALSHA can be
    /// logged as the EVAL it replays as (the script cache is not in an RDB).
    scripts: Mutex<HashMap<String, Vec<u8>>>,
    next_conn: AtomicU64,
    /// Runs `VECWAL.SNAPSHOT`: takes an aligned snapshot, returns a one-line summary.
    snapshot: Option<SnapshotFn>,
}

pub type SnapshotFn =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<String, String>> + Send>> + Send + Sync>;

type Durable = Pin<Box<dyn Future<Output = Result<Appended, LogError>> + Send>>;

impl ProxyCore {
    pub fn new(
        log: Arc<Log>,
        table: CommandTable,
        gate: Arc<Gate>,
        upstream_addr: String,
        snapshot: Option<SnapshotFn>,
    ) -> Arc<ProxyCore> {
        Arc::new(ProxyCore {
            log,
            table,
            gate,
            upstream_addr,
            scripts: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
            snapshot,
        })
    }

    /// Accepts clients until the listener fails.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) -> std::io::Result<()> {
        // Connections live in this set: when the proxy stops (this task is aborted) they
        // end with it, and none keeps the log alive.
        let mut connections = tokio::task::JoinSet::new();
        loop {
            while connections.try_join_next().is_some() {}
            let (client, peer) = listener.accept().await?;
            let core = self.clone();
            connections.spawn(async move {
                if let Err(e) = core.connection(client).await {
                    tracing::debug!(%peer, error = %e, "client connection ended");
                }
            });
        }
    }

    async fn connection(self: Arc<Self>, mut client: TcpStream) -> std::io::Result<()> {
        client.set_nodelay(true)?;
        let upstream = match TcpStream::connect(&self.upstream_addr).await {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(error = %e, "cannot reach the upstream Redis");
                let msg = "-ERR vecwal: cannot reach the upstream Redis\r\n";
                client.write_all(msg.as_bytes()).await?;
                return Ok(());
            }
        };
        upstream.set_nodelay(true)?;
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let (cr, cw) = client.into_split();
        let (ur, uw) = upstream.into_split();
        let (tx, rx) = mpsc::unbounded_channel();
        let requests = tokio::spawn(self.clone().requests(id, cr, uw, tx));
        let r = self.replies(id, ur, cw, rx).await;
        requests.abort();
        r
    }
}

/// What the reply side does with the next reply.
enum Pending {
    /// Forward it; nothing else.
    Plain,
    /// A write outside MULTI: log it if it succeeded.
    Write {
        argv: Argv,
        pass: Pass,
    },
    /// A blocking write (BLPOP, …): it claims its keys only once answered, since the push
    /// that wakes it needs them; the claim then waits until that push is logged, so the
    /// pop is logged after it.
    Blocking {
        argv: Argv,
        keys: Vec<Vec<u8>>,
    },
    /// A script call: logged as the EVAL/FCALL it replays as, even when it failed while
    /// running (a script is not atomic on error: what it wrote before stays written).
    Script {
        argv: Argv,
        pass: Pass,
    },
    Select(u32),
    /// MULTI: tells the request side whether Redis opened the transaction (an ACL or OOM
    /// refusal does not; the commands after it then run at once and must be handled as
    /// plain commands, not queued ones).
    Multi(tokio::sync::oneshot::Sender<bool>),
    /// A command inside MULTI; `+QUEUED` adds it to the transaction.
    Queued(Queued),
    Exec {
        pass: Pass,
    },
    /// EXEC refused by vecwal (spool full): DISCARD was sent instead; answer `error`.
    RefusedExec {
        error: Vec<u8>,
    },
    Discard,
    Reset,
    ScriptLoad {
        body: Vec<u8>,
    },
    /// A reply vecwal gives itself, in its place in the pipeline.
    Local(Vec<u8>),
    /// From here on the connection carries pub/sub or MONITOR traffic: bytes flow as they are.
    Passthrough,
}

#[derive(Clone)]
enum Queued {
    Other,
    Write(Argv),
    Script(Argv),
    Select(u32),
}

fn lower(a: &[u8]) -> String {
    String::from_utf8_lossy(a).to_ascii_lowercase()
}

fn err_line(msg: &str) -> Vec<u8> {
    format!("-ERR vecwal: {msg}\r\n").into_bytes()
}

impl ProxyCore {
    /// The request side: parse, classify, claim, queue, forward.
    async fn requests(
        self: Arc<Self>,
        conn: u64,
        mut client: OwnedReadHalf,
        mut upstream: OwnedWriteHalf,
        tx: mpsc::UnboundedSender<Pending>,
    ) -> std::io::Result<()> {
        let mut buf: Vec<u8> = Vec::with_capacity(16 << 10);
        let mut out: Vec<u8> = Vec::with_capacity(16 << 10);
        let mut in_multi = false;
        let mut passthrough = false;
        loop {
            buf.reserve(64 << 10);
            if client.read_buf(&mut buf).await? == 0 {
                // The client is gone; the reply side still logs what is in flight.
                return Ok(());
            }
            let mut used = 0;
            loop {
                let parsed = match parse_command(&buf[used..]) {
                    Ok(Some(p)) => p,
                    Ok(None) => break,
                    Err(e) => {
                        let _ = tx.send(Pending::Local(err_line(&format!("protocol error: {e}"))));
                        flush(&mut upstream, &mut out).await?;
                        return Ok(());
                    }
                };
                let (argv, n) = parsed;
                let raw = &buf[used..used + n];
                used += n;
                if argv.is_empty() {
                    continue; // an empty inline line: Redis ignores it, no reply
                }
                if passthrough {
                    if self.table.access(&argv) != Access::Read {
                        // A write cannot be told from the push traffic around its reply;
                        // end the connection instead of passing an unlogged write.
                        tracing::warn!("write on a pub/sub or MONITOR connection; closing it");
                        return Ok(());
                    }
                    out.extend_from_slice(raw);
                    continue;
                }
                let name = lower(&argv[0]);
                let sub = argv.get(1).map(|s| lower(s)).unwrap_or_default();
                let step = match (name.as_str(), sub.as_str()) {
                    ("client", "reply") => {
                        Step::Local(err_line("CLIENT REPLY is not supported through the proxy"))
                    }
                    ("vecwal.snapshot", _) => Step::Snapshot,
                    (
                        "subscribe" | "psubscribe" | "ssubscribe" | "unsubscribe" | "punsubscribe"
                        | "sunsubscribe" | "monitor" | "sync" | "psync",
                        _,
                    ) if in_multi => Step::Forward(Pending::Queued(Queued::Other)),
                    // Replies to these are not one per command: from here on the
                    // connection is a byte pipe.
                    (
                        "subscribe" | "psubscribe" | "ssubscribe" | "unsubscribe" | "punsubscribe"
                        | "sunsubscribe" | "monitor" | "sync" | "psync",
                        _,
                    ) => {
                        passthrough = true;
                        Step::Forward(Pending::Passthrough)
                    }
                    ("select", _) => match sub.parse().ok() {
                        Some(db) if !in_multi => Step::Forward(Pending::Select(db)),
                        Some(db) => Step::Forward(Pending::Queued(Queued::Select(db))),
                        None => Step::Forward(Pending::Plain),
                    },
                    // Nested: Redis refuses it and the transaction stays open.
                    ("multi", _) if in_multi => Step::Forward(Pending::Plain),
                    ("multi", _) if argv.len() == 1 => Step::Multi,
                    ("discard", _) if argv.len() == 1 => {
                        in_multi = false;
                        Step::Forward(Pending::Discard)
                    }
                    ("reset", _) if argv.len() == 1 => {
                        in_multi = false;
                        Step::Forward(Pending::Reset)
                    }
                    ("exec", _) if argv.len() == 1 => {
                        in_multi = false;
                        Step::Exec
                    }
                    ("script", "load") => Step::Forward(Pending::ScriptLoad {
                        body: argv.get(2).cloned().unwrap_or_default(),
                    }),
                    ("eval" | "evalsha" | "fcall", _) => match self.script_form(&argv) {
                        None => Step::Local(
                            b"-NOSCRIPT No matching script. Please use EVAL.\r\n".to_vec(),
                        ),
                        Some(form) if in_multi => {
                            Step::Forward(Pending::Queued(Queued::Script(form)))
                        }
                        Some(form) => Step::Script(form),
                    },
                    _ => match self.table.classify(&argv) {
                        (Access::Read, _) if in_multi => {
                            Step::Forward(Pending::Queued(Queued::Other))
                        }
                        (Access::Read, _) => Step::Forward(Pending::Plain),
                        _ if in_multi => {
                            Step::Forward(Pending::Queued(Queued::Write(argv.clone())))
                        }
                        (access, blocking) => Step::Write(access, blocking),
                    },
                };
                match step {
                    Step::Multi => {
                        // What follows is queued or run depending on the answer: wait for it.
                        let (opened, answer) = tokio::sync::oneshot::channel();
                        let _ = tx.send(Pending::Multi(opened));
                        out.extend_from_slice(raw);
                        flush(&mut upstream, &mut out).await?;
                        in_multi = answer.await.unwrap_or(false);
                    }
                    Step::Forward(p) => {
                        let _ = tx.send(p);
                        out.extend_from_slice(raw);
                    }
                    Step::Local(reply) => {
                        let _ = tx.send(Pending::Local(reply));
                    }
                    Step::Snapshot => {
                        flush(&mut upstream, &mut out).await?;
                        let reply = match &self.snapshot {
                            None => err_line("snapshots are not configured"),
                            Some(f) => match f().await {
                                Ok(line) => format!("+{line}\r\n").into_bytes(),
                                Err(e) => err_line(&format!("snapshot failed: {e}")),
                            },
                        };
                        let _ = tx.send(Pending::Local(reply));
                    }
                    Step::Write(access, blocking) => {
                        // Pipelined writes stay batched unless one must wait; before any
                        // wait, what is buffered goes upstream (a claim may be waiting for
                        // this connection's own earlier writes to be answered).
                        if self.log.check_admission().is_err() {
                            flush(&mut upstream, &mut out).await?;
                            if let Err(e) = self.log.admit().await {
                                let _ = tx.send(Pending::Local(err_line(&e.to_string())));
                                continue;
                            }
                        }
                        let pending = match access {
                            Access::Keys(keys) if blocking => Pending::Blocking { argv, keys },
                            Access::Keys(keys) => match self.gate.try_keys(conn, keys.clone()) {
                                Some(pass) => Pending::Write { argv, pass },
                                None => {
                                    flush(&mut upstream, &mut out).await?;
                                    let pass = self.gate.keys(conn, keys).await;
                                    Pending::Write { argv, pass }
                                }
                            },
                            _ => {
                                flush(&mut upstream, &mut out).await?;
                                let pass = self.gate.exclusive(conn).await;
                                Pending::Write { argv, pass }
                            }
                        };
                        let _ = tx.send(pending);
                        out.extend_from_slice(raw);
                    }
                    Step::Script(form) => {
                        flush(&mut upstream, &mut out).await?;
                        if let Err(e) = self.log.admit().await {
                            let _ = tx.send(Pending::Local(err_line(&e.to_string())));
                            continue;
                        }
                        let pass = self.gate.exclusive(conn).await;
                        let _ = tx.send(Pending::Script { argv: form, pass });
                        out.extend_from_slice(raw);
                    }
                    Step::Exec => {
                        flush(&mut upstream, &mut out).await?;
                        if let Err(e) = self.log.admit().await {
                            let _ = tx.send(Pending::RefusedExec {
                                error: err_line(&e.to_string()),
                            });
                            out.extend_from_slice(b"*1\r\n$7\r\nDISCARD\r\n");
                            continue;
                        }
                        let pass = self.gate.exclusive(conn).await;
                        let _ = tx.send(Pending::Exec { pass });
                        out.extend_from_slice(raw);
                    }
                }
            }
            buf.drain(..used);
            flush(&mut upstream, &mut out).await?;
        }
    }

    /// The form a script call is logged in: EVALSHA becomes the EVAL of the body vecwal
    /// saw loaded; `None` when the body is unknown (the client is told NOSCRIPT and, as
    /// clients do, sends the script itself).
    fn script_form(&self, argv: &[Vec<u8>]) -> Option<Argv> {
        if !argv[0].eq_ignore_ascii_case(b"evalsha") {
            return Some(argv.to_vec());
        }
        let sha = lower(argv.get(1)?);
        let body = self
            .scripts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&sha)?
            .clone();
        let mut form = vec![b"EVAL".to_vec(), body];
        form.extend(argv[2..].iter().cloned());
        Some(form)
    }

    /// The reply side: match, log, wait for durability, forward.
    async fn replies(
        &self,
        conn: u64,
        mut upstream: OwnedReadHalf,
        mut client: OwnedWriteHalf,
        mut rx: mpsc::UnboundedReceiver<Pending>,
    ) -> std::io::Result<()> {
        let mut st = ConnState::default();
        let mut buf: Vec<u8> = Vec::with_capacity(16 << 10);
        let mut queue: VecDeque<Pending> = VecDeque::new();
        let mut out: Vec<u8> = Vec::with_capacity(16 << 10);
        let mut durable: Vec<Durable> = Vec::new();
        let mut requests_done = false;
        // After a client disconnects the writes it sent are still logged when they succeed;
        // only delivering replies stops.
        let mut client_gone = false;
        loop {
            // Replies vecwal gives itself go out in their place.
            while let Some(Pending::Local(_)) = queue.front() {
                if let Some(Pending::Local(r)) = queue.pop_front() {
                    out.extend_from_slice(&r);
                }
            }
            if matches!(queue.front(), Some(Pending::Passthrough)) {
                self.deliver(&mut client, &mut out, &mut durable, &mut client_gone)
                    .await?;
                out.extend_from_slice(&buf);
                client.write_all(&out).await?;
                tokio::io::copy(&mut upstream, &mut client).await?;
                return Ok(());
            }
            // Everything complete in the buffer, in order.
            let mut used = 0;
            while let Some(frame) = scan(&buf[used..]).map_err(invalid)? {
                let raw = &buf[used..used + frame.len];
                if frame.is_push() {
                    out.extend_from_slice(raw);
                    used += frame.len;
                    continue;
                }
                // The command this answers (its entry was queued before it was forwarded).
                loop {
                    match queue.front() {
                        Some(Pending::Local(_)) => {
                            if let Some(Pending::Local(r)) = queue.pop_front() {
                                out.extend_from_slice(&r);
                            }
                        }
                        Some(_) => break,
                        None => match rx.recv().await {
                            Some(p) => queue.push_back(p),
                            None => return Err(invalid("a reply nobody asked for")),
                        },
                    }
                }
                if matches!(queue.front(), Some(Pending::Passthrough)) {
                    break; // this reply and all after it pass as they are
                }
                let mut p = queue.pop_front().expect("checked above");
                used += frame.len;
                if let Pending::Blocking { argv, keys } = p {
                    // Wait for the writes of other connections in flight on these keys
                    // (the push that woke this pop among them) to be logged first.
                    p = if frame.is_error() {
                        Pending::Plain
                    } else {
                        let pass = self.gate.keys_only(conn, keys).await;
                        Pending::Write { argv, pass }
                    };
                }
                if let Pending::RefusedExec { error } = p {
                    // The DISCARD's +OK stands in for the refused EXEC: answer the refusal.
                    st.multi = None;
                    out.extend_from_slice(&error);
                    continue;
                }
                if let Some(d) = self.handle(&mut st, p, raw, frame.is_error())? {
                    durable.push(d);
                }
                out.extend_from_slice(raw);
            }
            buf.drain(..used);
            if matches!(queue.front(), Some(Pending::Passthrough)) {
                continue;
            }
            self.deliver(&mut client, &mut out, &mut durable, &mut client_gone)
                .await?;
            if requests_done && queue.is_empty() {
                return Ok(());
            }
            buf.reserve(64 << 10);
            tokio::select! {
                biased;
                p = rx.recv(), if !requests_done => match p {
                    Some(p) => queue.push_back(p),
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

    /// Sends what is ready once the writes among it are durable. If the log failed, the
    /// connection ends without those replies: the client sees no ack for an unlogged write.
    async fn deliver(
        &self,
        client: &mut OwnedWriteHalf,
        out: &mut Vec<u8>,
        durable: &mut Vec<Durable>,
        client_gone: &mut bool,
    ) -> std::io::Result<()> {
        // Every record, not only the last: one that failed (too large, say) must not be
        // hidden behind a later one that succeeded.
        for d in durable.drain(..) {
            if let Err(e) = d.await {
                tracing::error!(error = %e, "a write could not be logged; closing the client connection");
                return Err(std::io::Error::other(e.to_string()));
            }
        }
        if !out.is_empty() && !*client_gone && client.write_all(out).await.is_err() {
            *client_gone = true;
        }
        out.clear();
        Ok(())
    }

    /// Acts on one reply. Returns the durability of a record it appended.
    fn handle(
        &self,
        st: &mut ConnState,
        p: Pending,
        raw: &[u8],
        is_error: bool,
    ) -> std::io::Result<Option<Durable>> {
        let now_ms = crate::log::now_us() / 1000;
        Ok(match p {
            Pending::Plain
            | Pending::Local(_)
            | Pending::Passthrough
            | Pending::Blocking { .. } => None,
            Pending::Select(db) => {
                if !is_error {
                    st.db = db;
                }
                None
            }
            Pending::Multi(opened) => {
                if !is_error {
                    st.multi = Some(Vec::new());
                }
                let _ = opened.send(!is_error);
                None
            }
            Pending::Queued(q) => {
                if let Some(m) = st.multi.as_mut() {
                    if !is_error {
                        m.push(q);
                    }
                }
                None
            }
            Pending::Discard | Pending::RefusedExec { .. } => {
                // (RefusedExec is answered by the caller.)
                st.multi = None;
                None
            }
            Pending::Reset => {
                st.multi = None;
                st.db = 0;
                None
            }
            Pending::ScriptLoad { body } => {
                if let Some(sha) = decode_value(raw)?.bytes().map(lower) {
                    self.scripts
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(sha, body);
                }
                None
            }
            Pending::Write { argv, pass } => {
                if is_error {
                    return Ok(None);
                }
                let cmds = deterministic(&argv, &decode_value(raw)?, now_ms);
                let d = self.append(st.db, cmds)?;
                drop(pass); // the record has its LSN: conflicting writes may go
                d
            }
            Pending::Script { argv, pass } => {
                if is_error && !script_ran(raw) {
                    return Ok(None);
                }
                let d = self.append(st.db, vec![argv])?;
                drop(pass);
                d
            }
            Pending::Exec { pass } => {
                let queued = st.multi.take().unwrap_or_default();
                let v = decode_value(raw)?;
                let Some(results) = v.items() else {
                    return Ok(None); // aborted (WATCH) or EXECABORT: nothing ran
                };
                let start_db = st.db;
                let mut cmds = Vec::new();
                for (q, r) in queued.into_iter().zip(results) {
                    match q {
                        Queued::Other => {}
                        Queued::Select(db) if !r.is_error() => {
                            st.db = db;
                            cmds.push(vec![b"SELECT".to_vec(), db.to_string().into_bytes()]);
                        }
                        Queued::Select(_) => {}
                        Queued::Write(a) if !r.is_error() => {
                            cmds.extend(deterministic(&a, r, now_ms))
                        }
                        Queued::Write(_) => {}
                        Queued::Script(a) => {
                            if !r.is_error() || matches!(r, Value::Error(e) if script_ran(e)) {
                                cmds.push(a);
                            }
                        }
                    }
                }
                let d = self.append_group(start_db, cmds)?;
                drop(pass);
                d
            }
        })
    }

    fn append(&self, db: u32, cmds: Vec<Argv>) -> std::io::Result<Option<Durable>> {
        match cmds.len() {
            0 => Ok(None),
            1 => {
                let argv = cmds.into_iter().next().expect("one");
                self.append_op(db, &Operation::RedisCommand { argv })
            }
            _ => self.append_op(db, &Operation::RedisMulti { commands: cmds }),
        }
    }

    /// A transaction's writes: one atomic record, whatever their number.
    fn append_group(&self, db: u32, cmds: Vec<Argv>) -> std::io::Result<Option<Durable>> {
        if cmds.is_empty() {
            return Ok(None);
        }
        self.append_op(db, &Operation::RedisMulti { commands: cmds })
    }

    fn append_op(&self, db: u32, op: &Operation) -> std::io::Result<Option<Durable>> {
        let entry =
            Entry::new(db.to_string(), op).map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(Some(Box::pin(self.log.append(entry))))
    }
}

enum Step {
    Forward(Pending),
    Local(Vec<u8>),
    /// A write outside MULTI: what it touches, and whether it may block.
    Write(Access, bool),
    Script(Argv),
    Multi,
    Exec,
    Snapshot,
}

#[derive(Default)]
struct ConnState {
    db: u32,
    multi: Option<Vec<Queued>>,
}

/// A script that failed while running may have written before it failed; one refused
/// before it ran (NOSCRIPT, wrong arity, OOM, …) did nothing. Redis marks the former with
/// the script's name in the error.
fn script_ran(err: &[u8]) -> bool {
    let e = String::from_utf8_lossy(err);
    e.contains("script:") || e.contains("user_function") || e.contains("Error running script")
}

async fn flush(upstream: &mut OwnedWriteHalf, out: &mut Vec<u8>) -> std::io::Result<()> {
    if !out.is_empty() {
        upstream.write_all(out).await?;
        out.clear();
    }
    Ok(())
}

fn decode_value(raw: &[u8]) -> std::io::Result<Value> {
    match decode(raw).map_err(invalid)? {
        Some((v, _)) => Ok(v),
        None => Err(invalid("incomplete reply")),
    }
}

fn invalid(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
}
