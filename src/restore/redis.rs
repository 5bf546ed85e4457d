//! Restoring a Redis: vecwal serves the base RDB and then the records over the
//! replication protocol to a target told to `REPLICAOF` it, and detaches the target
//! (`REPLICAOF NO ONE`) once it has applied the last record. Redis loads its own RDB, so
//! module data (vector sets, search indexes, JSON) comes back intact, and the records are
//! applied by Redis's replica path at its ingest rate, not at client round trips.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::Digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use vecwal_format::{Kind, Operation, Record};

use super::{records, Phases, Plan, RestoreError};
use crate::protocol::redis_client::RedisTarget;
use crate::protocol::resp::{encode_command, encode_command_into, parse_command};
use crate::store::{Keyring, Store};

/// An RDB holding nothing: version 9 (every Redis since 5 loads it), the EOF opcode, and a
/// zero checksum, which Redis reads as "not checksummed".
const EMPTY_RDB: &[u8] = b"REDIS0009\xff\0\0\0\0\0\0\0\0";

/// How far a restore has come, for a progress display.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    pub records_sent: u64,
    pub records_total: u64,
    /// Bytes of the command stream the target confirmed it applied.
    pub bytes_applied: u64,
    pub bytes_sent: u64,
}

#[derive(Debug, Clone)]
pub struct Summary {
    pub records_applied: u64,
    pub final_lsn: u64,
    pub final_time_us: i64,
    pub elapsed: Duration,
    pub phases: super::Phases,
}

fn apply_err(msg: impl Into<String>) -> RestoreError {
    RestoreError::Apply(msg.into())
}

/// Restores `plan` into the Redis at `target`. Refuses a target that holds keys unless
/// `force`. `progress` is called now and then with how far it got.
pub async fn restore(
    store: Arc<dyn Store>,
    plan: &Plan,
    keyring: Option<Arc<Keyring>>,
    target: &RedisTarget,
    force: bool,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<Summary, RestoreError> {
    let started = Instant::now();
    let mut admin = target
        .connect()
        .await
        .map_err(|e| apply_err(format!("target: {e}")))?;
    let keys: u64 = admin
        .keyspace()
        .await
        .map_err(|e| apply_err(format!("target: {e}")))?
        .iter()
        .map(|(_, n)| n)
        .sum();
    if keys > 0 && !force {
        return Err(apply_err(format!(
            "the target {} holds {keys} keys; restore into an empty Redis, or pass --force to replace them",
            target.addr
        )));
    }

    let fetching = Instant::now();
    let rdb = match &plan.base {
        None => EMPTY_RDB.to_vec(),
        Some(b) => super::fetch_snapshot(store.as_ref(), b, keyring.as_deref()).await?,
    };
    let mut phases = Phases {
        snapshot_download: fetching.elapsed(),
        ..Default::default()
    };

    // Listen where the target can reach us: the address our connection to it comes from.
    let ip = admin
        .local_addr()
        .map_err(|e| apply_err(e.to_string()))?
        .ip();
    let listener = TcpListener::bind((ip, 0))
        .await
        .map_err(|e| apply_err(e.to_string()))?;
    let port = listener
        .local_addr()
        .map_err(|e| apply_err(e.to_string()))?
        .port();
    admin
        .ok(&["REPLICAOF", &ip.to_string(), &port.to_string()])
        .await
        .map_err(|e| apply_err(format!("target refused REPLICAOF: {e}")))?;
    let result = async {
        let (replica, _) = tokio::time::timeout(Duration::from_secs(30), listener.accept())
            .await
            .map_err(|_| apply_err("the target did not connect for replication within 30 s"))?
            .map_err(|e| apply_err(e.to_string()))?;
        serve(replica, rdb, store, plan, keyring, progress, &mut phases).await
    }
    .await;
    // Detach whatever happened: a target left replicating from a vanished master would
    // keep retrying and refuse writes.
    let detached = admin.ok(&["REPLICAOF", "NO", "ONE"]).await;
    let (applied, last) = result?;
    detached.map_err(|e| apply_err(format!("detaching the target (REPLICAOF NO ONE): {e}")))?;
    Ok(Summary {
        records_applied: applied,
        final_lsn: last.0,
        final_time_us: last.1,
        elapsed: started.elapsed(),
        phases,
    })
}

/// The master side of one replication link: handshake, RDB, records, final acknowledgement.
async fn serve(
    replica: TcpStream,
    rdb: Vec<u8>,
    store: Arc<dyn Store>,
    plan: &Plan,
    keyring: Option<Arc<Keyring>>,
    progress: &(dyn Fn(Progress) + Sync),
    phases: &mut Phases,
) -> Result<(u64, (u64, i64)), RestoreError> {
    replica.set_nodelay(true).ok();
    let (mut rd, mut wr) = replica.into_split();
    let hs = |e: std::io::Error| apply_err(format!("replication link to the target: {e}"));
    // Set at the target's first acknowledgement, which it sends once the RDB is loaded:
    // before it, a broken link means the target could not load the base.
    let heard = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let io = |e: std::io::Error| {
        if heard.load(Ordering::Acquire) {
            apply_err(format!("replication link to the target: {e}"))
        } else {
            apply_err(format!(
                "the target could not load the base snapshot: the replication link broke \
                 before it acknowledged it ({e}; its log says why)"
            ))
        }
    };
    // Handshake: answer until PSYNC/SYNC.
    let mut buf = Vec::new();
    loop {
        let Some((argv, n)) = parse_command(&buf).map_err(|e| apply_err(e.to_string()))? else {
            if rd.read_buf(&mut buf).await.map_err(hs)? == 0 {
                return Err(apply_err(
                    "the target closed the replication link during the handshake",
                ));
            }
            continue;
        };
        buf.drain(..n);
        let name = argv
            .first()
            .map(|a| a.to_ascii_uppercase())
            .unwrap_or_default();
        match name.as_slice() {
            b"PING" => wr.write_all(b"+PONG\r\n").await.map_err(hs)?,
            b"PSYNC" | b"SYNC" => break,
            _ => wr.write_all(b"+OK\r\n").await.map_err(hs)?,
        }
    }
    // A replication id of our own, so the target never takes this link for its old master's.
    let seed = format!(
        "{} {} {}",
        crate::log::now_us(),
        std::process::id(),
        plan.target_lsn
    );
    let replid = hex::encode(sha2::Sha256::digest(seed.as_bytes()))[..40].to_string();
    wr.write_all(format!("+FULLRESYNC {replid} 0\r\n${}\r\n", rdb.len()).as_bytes())
        .await
        .map_err(io)?;
    wr.write_all(&rdb).await.map_err(io)?;
    drop(rdb);
    // Asked at once, so the first ACK comes as soon as the target has loaded the RDB: that
    // moment splits the load from the replay.
    let getack = encode_command(&[b"REPLCONF".to_vec(), b"GETACK".to_vec(), b"*".to_vec()]);
    wr.write_all(&getack).await.map_err(io)?;
    let rdb_sent = Instant::now();
    let loaded_at: Arc<std::sync::OnceLock<Instant>> = Arc::default();

    // The target reports the offset it applied (REPLCONF ACK) once a second and on GETACK,
    // and only once it has loaded the RDB: until the first ACK arrives nothing is applied,
    // whatever offset is wanted (with no records after the base, that offset is 0).
    let acked = Arc::new(AtomicU64::new(0));
    let closed = Arc::new(tokio::sync::Notify::new());
    let reader = {
        let (acked, heard, closed) = (acked.clone(), heard.clone(), closed.clone());
        let loaded_at = loaded_at.clone();
        tokio::spawn(async move {
            let mut buf = buf;
            loop {
                while let Ok(Some((argv, n))) = parse_command(&buf) {
                    buf.drain(..n);
                    if argv.len() >= 3 && argv[1].eq_ignore_ascii_case(b"ACK") {
                        if let Some(off) = std::str::from_utf8(&argv[2])
                            .ok()
                            .and_then(|s| s.parse().ok())
                        {
                            acked.fetch_max(off, Ordering::Relaxed);
                            loaded_at.get_or_init(Instant::now);
                            heard.store(true, Ordering::Release);
                        }
                    }
                }
                match rd.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => {
                        closed.notify_one();
                        return;
                    }
                    Ok(_) => {}
                }
            }
        })
    };

    let mut rx = records(store, plan, keyring);
    let mut p = Progress {
        records_total: plan.record_count(),
        bytes_sent: getack.len() as u64,
        ..Default::default()
    };
    let mut db: Option<String> = None;
    let mut out: Vec<u8> = Vec::with_capacity(1 << 20);
    let mut last = (plan.base_lsn(), plan.base.as_ref().map_or(0, |b| b.time_us));
    let mut last_report = Instant::now();
    loop {
        // Keep the link alive while segments download (the target times out after 60 s).
        let batch = match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            Err(_) => {
                encode_command_into(&mut out, &[b"PING".to_vec()]);
                None
            }
            Ok(None) => break,
            Ok(Some(b)) => Some(b?),
        };
        for r in batch.iter().flatten() {
            encode_record(r, &mut db, &mut out)?;
            last = (r.lsn, r.timestamp_us);
            p.records_sent += 1;
            if out.len() >= 1 << 20 {
                p.bytes_sent += out.len() as u64;
                wr.write_all(&out).await.map_err(io)?;
                out.clear();
            }
        }
        p.bytes_sent += out.len() as u64;
        wr.write_all(&out).await.map_err(io)?;
        out.clear();
        if last_report.elapsed() >= Duration::from_millis(200) {
            p.bytes_applied = acked.load(Ordering::Relaxed);
            progress(p);
            last_report = Instant::now();
        }
    }
    // Everything sent: wait until the target says it applied all of it.
    let end = p.bytes_sent;
    loop {
        p.bytes_applied = acked.load(Ordering::Relaxed);
        progress(p);
        if heard.load(Ordering::Acquire) && p.bytes_applied >= end {
            break;
        }
        wr.write_all(&getack).await.map_err(io)?;
        p.bytes_sent += getack.len() as u64;
        tokio::select! {
            _ = closed.notified() => return Err(apply_err(if heard.load(Ordering::Acquire) {
                "the target closed the replication link before applying every record"
            } else {
                "the target could not load the base snapshot: it closed the replication link \
                 before acknowledging it (its log says why)"
            })),
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
    reader.abort();
    let loaded = loaded_at.get().copied().unwrap_or(rdb_sent);
    phases.snapshot_load = loaded.duration_since(rdb_sent);
    phases.replay = loaded.elapsed();
    Ok((p.records_sent, last))
}

/// Appends the commands that replay `r` to `out`, selecting its database first.
pub fn encode_record(
    r: &Record,
    db: &mut Option<String>,
    out: &mut Vec<u8>,
) -> Result<(), RestoreError> {
    let op = match r.kind {
        Kind::RedisCommand | Kind::RedisMulti => {
            Operation::decode(r.kind, &r.payload).map_err(|e| RestoreError::Corrupt {
                key: "record".into(),
                offset: None,
                lsn: Some(r.lsn),
                message: e.to_string(),
            })?
        }
        k if k.is_marker() => return Ok(()),
        k => {
            return Err(apply_err(format!(
                "record {} is a {} record, which a Redis cannot apply",
                r.lsn,
                k.name()
            )))
        }
    };
    if db.as_deref() != Some(r.namespace.as_str()) && !r.namespace.is_empty() {
        encode_command_into(out, &[b"SELECT".to_vec(), r.namespace.as_bytes().to_vec()]);
        *db = Some(r.namespace.clone());
    }
    match op {
        Operation::RedisCommand { argv } => encode_command_into(out, &argv),
        Operation::RedisMulti { commands } => {
            encode_command_into(out, &[b"MULTI".to_vec()]);
            for argv in &commands {
                if argv
                    .first()
                    .is_some_and(|c| c.eq_ignore_ascii_case(b"SELECT"))
                {
                    *db = argv.get(1).map(|d| String::from_utf8_lossy(d).into_owned());
                }
                encode_command_into(out, argv);
            }
            encode_command_into(out, &[b"EXEC".to_vec()]);
        }
        _ => {}
    }
    Ok(())
}
