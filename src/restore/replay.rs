//! Forensic replay (`vecwal replay`): the records of a time window, filtered by database
//! and key pattern, sent to a staging Redis as ordinary commands, pipelined (the target's
//! ingest rate is the limit, not round trips), optionally rate-limited, or only printed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vecwal_format::{Kind, Operation, Record};

use super::{records, Plan, RestoreError};
use crate::protocol::redis_client::RedisTarget;
use crate::protocol::redis_commands::CommandTable;
use crate::protocol::resp::{encode_command_into, scan};
use crate::store::{Keyring, Store};

#[derive(Debug, Clone, Default)]
pub struct ReplayOptions {
    pub from_us: i64,
    pub to_us: i64,
    /// Only records of this database.
    pub db: Option<u32>,
    /// Only writes touching a key that matches this glob (Redis `KEYS` syntax).
    pub key_pattern: Option<String>,
    /// At most this many commands per second.
    pub rate: Option<u64>,
}

#[derive(Debug, Clone, Default)]
pub struct ReplaySummary {
    pub records_matched: u64,
    pub commands_sent: u64,
    pub errors: u64,
    /// The first few error replies, for the operator.
    pub first_errors: Vec<String>,
    pub elapsed: Duration,
}

/// A record chosen for replay, with its commands (a MULTI group stays one unit).
pub struct Chosen {
    pub record: Record,
    pub commands: Vec<Vec<Vec<u8>>>,
}

/// Decides which records of the window replay.
pub struct Filter {
    opts: ReplayOptions,
    table: Option<CommandTable>,
}

impl Filter {
    /// `table` gives key positions; without it the first argument counts as the key.
    pub fn new(opts: ReplayOptions, table: Option<CommandTable>) -> Filter {
        Filter { opts, table }
    }

    pub fn choose(&self, r: Record) -> Result<Option<Chosen>, RestoreError> {
        if r.timestamp_us < self.opts.from_us || r.timestamp_us > self.opts.to_us {
            return Ok(None);
        }
        let op = match r.kind {
            Kind::RedisCommand | Kind::RedisMulti => Operation::decode(r.kind, &r.payload)
                .map_err(|e| RestoreError::Corrupt {
                    key: "record".into(),
                    offset: None,
                    lsn: Some(r.lsn),
                    message: e.to_string(),
                })?,
            _ => return Ok(None),
        };
        if let Some(db) = self.opts.db {
            if r.namespace != db.to_string() {
                return Ok(None);
            }
        }
        let commands = match op {
            Operation::RedisCommand { argv } => vec![argv],
            Operation::RedisMulti { commands } => commands,
            _ => return Ok(None),
        };
        if let Some(p) = &self.opts.key_pattern {
            let hit = commands.iter().any(|argv| {
                let keys = match &self.table {
                    Some(t) => t.keys(argv).unwrap_or_default(),
                    None => argv.get(1).cloned().into_iter().collect(),
                };
                keys.iter().any(|k| glob(p.as_bytes(), k))
            });
            if !hit {
                return Ok(None);
            }
        }
        Ok(Some(Chosen {
            record: r,
            commands,
        }))
    }
}

/// Reads the window's records and hands the chosen ones to `each`, in order.
pub async fn for_each_chosen(
    store: Arc<dyn Store>,
    plan: &Plan,
    keyring: Option<Arc<Keyring>>,
    filter: &Filter,
    mut each: impl FnMut(Chosen) -> Result<(), RestoreError>,
) -> Result<u64, RestoreError> {
    let mut rx = records(store, plan, keyring);
    let mut n = 0;
    while let Some(batch) = rx.recv().await {
        for r in batch? {
            if let Some(c) = filter.choose(r)? {
                n += 1;
                each(c)?;
            }
        }
    }
    Ok(n)
}

/// Replays the chosen records into `target`, pipelined.
pub async fn replay(
    store: Arc<dyn Store>,
    plan: &Plan,
    keyring: Option<Arc<Keyring>>,
    filter: &Filter,
    target: &RedisTarget,
    rate: Option<u64>,
) -> Result<ReplaySummary, RestoreError> {
    let started = Instant::now();
    let apply = |e: String| RestoreError::Apply(e);
    let conn = tokio::net::TcpStream::connect(&target.addr)
        .await
        .map_err(|e| apply(format!("cannot connect to {}: {e}", target.addr)))?;
    conn.set_nodelay(true).ok();
    let (mut rd, mut wr) = conn.into_split();
    let mut pre = Vec::new();
    if let Some(pw) = &target.password {
        let mut argv = vec![b"AUTH".to_vec()];
        if let Some(u) = &target.username {
            argv.push(u.as_bytes().to_vec());
        }
        argv.push(pw.as_bytes().to_vec());
        pre.push(argv);
    }
    // Replies are counted (and errors kept) by a reader beside the writer.
    let (sent_tx, mut sent_rx) = tokio::sync::watch::channel(0u64);
    let reader = tokio::spawn(async move {
        let mut buf = Vec::with_capacity(64 << 10);
        let (mut seen, mut errors, mut first) = (0u64, 0u64, Vec::new());
        loop {
            let mut used = 0;
            while let Ok(Some(f)) = scan(&buf[used..]) {
                if f.is_error() {
                    errors += 1;
                    if first.len() < 5 {
                        first.push(
                            String::from_utf8_lossy(&buf[used..used + f.len])
                                .trim()
                                .to_string(),
                        );
                    }
                }
                used += f.len;
                seen += 1;
            }
            buf.drain(..used);
            let want = *sent_rx.borrow();
            if sent_rx.has_changed().is_err() && seen >= want {
                return Ok((seen, errors, first));
            }
            tokio::select! {
                n = rd.read_buf(&mut buf) => match n {
                    Ok(0) => return Err(format!("the target closed the connection after {seen} replies")),
                    Err(e) => return Err(e.to_string()),
                    Ok(_) => {}
                },
                _ = sent_rx.changed() => {}
            }
        }
    });

    let mut out = Vec::with_capacity(1 << 20);
    let mut sent = 0u64;
    for argv in &pre {
        encode_command_into(&mut out, argv);
        sent += 1;
    }
    let mut db: Option<String> = None;
    let mut matched = 0u64;
    let mut rx = records(store, plan, keyring);
    // Written in large batches while later segments download; a rate limit paces them.
    async fn flush(
        wr: &mut tokio::net::tcp::OwnedWriteHalf,
        out: &mut Vec<u8>,
        sent: u64,
        sent_tx: &tokio::sync::watch::Sender<u64>,
        pace: Option<(Instant, u64)>,
    ) -> Result<(), RestoreError> {
        if let Some((started, rate)) = pace {
            let due = started + Duration::from_secs_f64(sent as f64 / rate as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        wr.write_all(out)
            .await
            .map_err(|e| RestoreError::Apply(e.to_string()))?;
        out.clear();
        let _ = sent_tx.send(sent);
        Ok(())
    }
    let pace = rate.filter(|r| *r > 0).map(|r| (started, r));
    // With a rate, batches are small so pacing is smooth.
    let batch_cmds: u64 = rate.map_or(u64::MAX, |r| (r / 20).max(1));
    let mut since_flush = 0u64;
    while let Some(batch) = rx.recv().await {
        for r in batch? {
            let Some(c) = filter.choose(r)? else { continue };
            matched += 1;
            let before = sent;
            if db.as_deref() != Some(c.record.namespace.as_str()) {
                let select = [b"SELECT".to_vec(), c.record.namespace.clone().into_bytes()];
                encode_command_into(&mut out, &select);
                db = Some(c.record.namespace.clone());
                sent += 1;
            }
            let group = c.record.kind == Kind::RedisMulti;
            if group {
                encode_command_into(&mut out, &[b"MULTI".to_vec()]);
                sent += 1;
            }
            for argv in &c.commands {
                if argv
                    .first()
                    .is_some_and(|a| a.eq_ignore_ascii_case(b"SELECT"))
                {
                    db = argv.get(1).map(|d| String::from_utf8_lossy(d).into_owned());
                }
                encode_command_into(&mut out, argv);
                sent += 1;
            }
            if group {
                encode_command_into(&mut out, &[b"EXEC".to_vec()]);
                sent += 1;
            }
            since_flush += sent - before;
            if out.len() >= 256 << 10 || since_flush >= batch_cmds {
                flush(&mut wr, &mut out, sent, &sent_tx, pace).await?;
                since_flush = 0;
            }
        }
    }
    if !out.is_empty() {
        flush(&mut wr, &mut out, sent, &sent_tx, pace).await?;
    }
    let _ = sent_tx.send(sent);
    drop(sent_tx);
    let (_, errors, first_errors) = reader
        .await
        .map_err(|e| apply(e.to_string()))?
        .map_err(apply)?;
    Ok(ReplaySummary {
        records_matched: matched,
        commands_sent: sent,
        errors,
        first_errors,
        elapsed: started.elapsed(),
    })
}

/// Redis-style glob: `*`, `?`, `[abc]`, `[a-z]`, `[^a]`, `\x`.
pub fn glob(p: &[u8], s: &[u8]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some(b'*') => (0..=s.len()).any(|i| glob(&p[1..], &s[i..])),
        Some(b'?') => !s.is_empty() && glob(&p[1..], &s[1..]),
        Some(b'[') => {
            let Some(end) = p.iter().skip(1).position(|&c| c == b']').map(|i| i + 1) else {
                return s.first() == Some(&b'[') && glob(&p[1..], &s[1..]);
            };
            let Some(&c) = s.first() else { return false };
            let (neg, set) = match p[1..end].split_first() {
                Some((b'^', rest)) => (true, rest),
                _ => (false, &p[1..end]),
            };
            let mut hit = false;
            let mut i = 0;
            while i < set.len() {
                if i + 2 < set.len() && set[i + 1] == b'-' {
                    hit |= set[i] <= c && c <= set[i + 2];
                    i += 3;
                } else {
                    hit |= set[i] == c;
                    i += 1;
                }
            }
            hit != neg && glob(&p[end + 1..], &s[1..])
        }
        Some(b'\\') if p.len() > 1 => s.first() == Some(&p[1]) && glob(&p[2..], &s[1..]),
        Some(&c) => s.first() == Some(&c) && glob(&p[1..], &s[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn globs_match_like_redis() {
        assert!(glob(b"doc:*", b"doc:17"));
        assert!(!glob(b"doc:*", b"user:1"));
        assert!(glob(b"d?c:[0-9]", b"doc:7"));
        assert!(!glob(b"doc:[^0-9]", b"doc:7"));
        assert!(glob(b"a\\*b", b"a*b"));
        assert!(glob(b"*", b""));
    }
}
