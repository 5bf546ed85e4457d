//! What a drill reads from a Redis: a digest of every key's value, and exact vector
//! searches, to compare a restored scratch server with the source.
//!
//! The digests are of values as commands return them (sets and hashes sorted), not of
//! `DEBUG DIGEST-VALUE`, which a Redis at its default settings refuses
//! (`enable-debug-command no`), and not of `DUMP`, whose bytes follow a hash table's
//! iteration order, which an RDB load changes.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::protocol::redis_client::{ClientError, RedisClient};
use crate::protocol::resp_value::Value;

/// Keys read per pipelined batch.
const BATCH: usize = 200;

/// One key as the drill compares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyDigest {
    pub kind: String,
    /// `PEXPIRETIME`: -1 without an expiry.
    pub expire_ms: i64,
    pub digest: [u8; 32],
}

/// Every key of a Redis, by database and name.
pub type Keyspace = BTreeMap<(u32, Vec<u8>), KeyDigest>;

fn words(w: &[&[u8]]) -> Vec<Vec<u8>> {
    w.iter().map(|x| x.to_vec()).collect()
}

/// Sends `cmds` in one write and reads their replies.
async fn pipeline(c: &mut RedisClient, cmds: &[Vec<Vec<u8>>]) -> Result<Vec<Value>, ClientError> {
    let mut out = Vec::new();
    for cmd in cmds {
        out.extend_from_slice(&crate::protocol::resp::encode_command(cmd));
    }
    c.send_raw(&out).await?;
    let mut replies = Vec::with_capacity(cmds.len());
    for _ in cmds {
        replies.push(c.read().await?);
    }
    Ok(replies)
}

/// Feeds a reply into a hash with type tags and lengths, so different shapes never
/// collide; with `sorted`, an array's items are taken in sorted order (sets), or its
/// pairs (hashes, with `pairs`).
fn feed(h: &mut Sha256, v: &Value) {
    match v {
        Value::Simple(b) | Value::Bulk(Some(b)) => {
            h.update(b"s");
            h.update((b.len() as u64).to_le_bytes());
            h.update(b);
        }
        Value::Error(b) => {
            h.update(b"e");
            h.update((b.len() as u64).to_le_bytes());
            h.update(b);
        }
        Value::Int(i) => {
            h.update(b"i");
            h.update(i.to_le_bytes());
        }
        Value::Bulk(None) | Value::Array(None) => h.update(b"n"),
        Value::Array(Some(items)) => {
            h.update(b"a");
            h.update((items.len() as u64).to_le_bytes());
            for i in items {
                feed(h, i);
            }
        }
    }
}

/// An array reply with its items (or pairs of items) sorted, for unordered types.
fn sorted(v: Value, chunk: usize) -> Value {
    let Value::Array(Some(items)) = v else {
        return v;
    };
    let mut groups: Vec<Vec<Value>> = items.chunks(chunk).map(<[Value]>::to_vec).collect();
    groups.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    Value::Array(Some(groups.into_iter().flatten().collect()))
}

/// The command that reads a whole value of `kind`, and how its reply is put in order.
fn reader(kind: &str, key: &[u8]) -> (Vec<Vec<u8>>, usize) {
    match kind {
        "string" => (words(&[b"GET", key]), 0),
        "list" => (words(&[b"LRANGE", key, b"0", b"-1"]), 0),
        "set" => (words(&[b"SMEMBERS", key]), 1),
        "zset" => (words(&[b"ZRANGE", key, b"0", b"-1", b"WITHSCORES"]), 0),
        "hash" => (words(&[b"HGETALL", key]), 2),
        "stream" => (words(&[b"XRANGE", key, b"-", b"+"]), 0),
        "ReJSON-RL" => (words(&[b"JSON.GET", key, b"$"]), 0),
        // Members only; their vectors and attributes are read below.
        "vectorset" => (words(&[b"VRANDMEMBER", key, b"2147483647"]), 1),
        // Anything else (another module's type): its serialization.
        _ => (words(&[b"DUMP", key]), 0),
    }
}

/// Reads and digests every key in database `db`. Keys whose expiry has passed
/// (`now_ms`) are left out: either side may have dropped them already.
async fn database(
    c: &mut RedisClient,
    db: u32,
    now_ms: i64,
    out: &mut Keyspace,
) -> Result<(), ClientError> {
    c.ok(&["SELECT", &db.to_string()]).await?;
    let mut names = std::collections::BTreeSet::new();
    let mut cursor = b"0".to_vec();
    loop {
        let r = c
            .call(&words(&[b"SCAN", &cursor, b"COUNT", b"1000"]))
            .await?;
        let items = r.items().ok_or_else(|| refused("SCAN", &r))?;
        cursor = items
            .first()
            .and_then(Value::bytes)
            .unwrap_or(b"0")
            .to_vec();
        for k in items.get(1).and_then(Value::items).unwrap_or_default() {
            if let Some(k) = k.bytes() {
                names.insert(k.to_vec());
            }
        }
        if cursor == b"0" {
            break;
        }
    }
    let names: Vec<Vec<u8>> = names.into_iter().collect();
    for part in names.chunks(BATCH) {
        let meta: Vec<Vec<Vec<u8>>> = part
            .iter()
            .flat_map(|k| [words(&[b"TYPE", k]), words(&[b"PEXPIRETIME", k])])
            .collect();
        let meta = pipeline(c, &meta).await?;
        let kinds: Vec<(String, i64)> = meta
            .chunks(2)
            .map(|m| (m[0].text(), m[1].int().unwrap_or(-1)))
            .collect();
        let reads: Vec<(Vec<Vec<u8>>, usize)> = part
            .iter()
            .zip(&kinds)
            .map(|(k, (kind, _))| reader(kind, k))
            .collect();
        let cmds: Vec<Vec<Vec<u8>>> = reads.iter().map(|(cmd, _)| cmd.clone()).collect();
        let values = pipeline(c, &cmds).await?;
        for ((key, (kind, expire_ms)), (value, (_, order))) in
            part.iter().zip(kinds).zip(values.into_iter().zip(reads))
        {
            if kind == "none" || (0..=now_ms).contains(&expire_ms) {
                continue; // gone since SCAN saw it, or due to go
            }
            let mut h = Sha256::new();
            h.update(kind.as_bytes());
            let value = if order > 0 {
                sorted(value, order)
            } else {
                value
            };
            feed(&mut h, &value);
            if kind == "vectorset" {
                vector_members(c, key, &value, &mut h).await?;
            }
            out.insert(
                (db, key.clone()),
                KeyDigest {
                    kind,
                    expire_ms,
                    digest: h.finalize().into(),
                },
            );
        }
    }
    Ok(())
}

/// Each member's vector (as stored: quantized the same way on both sides) and attributes.
async fn vector_members(
    c: &mut RedisClient,
    key: &[u8],
    members: &Value,
    h: &mut Sha256,
) -> Result<(), ClientError> {
    let members: Vec<&[u8]> = members
        .items()
        .unwrap_or_default()
        .iter()
        .filter_map(Value::bytes)
        .collect();
    for part in members.chunks(BATCH) {
        let cmds: Vec<Vec<Vec<u8>>> = part
            .iter()
            .flat_map(|m| [words(&[b"VEMB", key, m]), words(&[b"VGETATTR", key, m])])
            .collect();
        for v in pipeline(c, &cmds).await? {
            feed(h, &v);
        }
    }
    Ok(())
}

fn refused(cmd: &str, v: &Value) -> ClientError {
    ClientError::Refused {
        command: cmd.to_string(),
        reply: v.text(),
    }
}

/// Digests of every key in every database that holds keys.
pub async fn keyspace(c: &mut RedisClient, now_ms: i64) -> Result<Keyspace, ClientError> {
    let mut out = Keyspace::new();
    for (db, _) in c.keyspace().await? {
        database(c, db, now_ms, &mut out).await?;
    }
    Ok(out)
}

/// The replication offset of a master: unchanged across a scan means no write landed
/// during it.
pub async fn offset(c: &mut RedisClient) -> Result<Option<i64>, ClientError> {
    Ok(c.info("replication")
        .await?
        .into_iter()
        .find(|(k, _)| k == "master_repl_offset")
        .and_then(|(_, v)| v.parse().ok()))
}

/// The differences between a source's and a restore's keyspaces, as readable lines (at
/// most `limit`), and their number.
pub fn differences(source: &Keyspace, restored: &Keyspace, limit: usize) -> (usize, Vec<String>) {
    let mut n = 0;
    let mut lines = Vec::new();
    let keys: std::collections::BTreeSet<_> = source.keys().chain(restored.keys()).collect();
    for k in keys {
        let what = match (source.get(k), restored.get(k)) {
            (Some(a), Some(b)) if a == b => continue,
            (Some(a), None) => format!("{} only in the source", a.kind),
            (None, Some(b)) => format!("{} only in the restore", b.kind),
            (Some(a), Some(b)) if a.kind != b.kind => format!("type {} vs {}", a.kind, b.kind),
            (Some(a), Some(b)) if a.expire_ms != b.expire_ms => {
                format!("expire time {} vs {} ms", a.expire_ms, b.expire_ms)
            }
            (Some(a), Some(_)) => format!("{} value differs", a.kind),
            (None, None) => continue,
        };
        n += 1;
        if lines.len() < limit {
            lines.push(format!(
                "db{} {:?}: {what}",
                k.0,
                String::from_utf8_lossy(&k.1)
            ));
        }
    }
    (n, lines)
}

/// Vector sets to search in: up to `n` of them, with a member of each to search near.
pub fn vector_samples(ks: &Keyspace, n: usize) -> Vec<(u32, Vec<u8>)> {
    ks.iter()
        .filter(|(_, d)| d.kind == "vectorset")
        .map(|(k, _)| k.clone())
        .take(n)
        .collect()
}

/// The 10 nearest members to `near` in the vector set `key`, with their similarity: by a
/// linear scan with `exact` (`TRUTH`), else through the set's graph.
pub async fn neighbours(
    c: &mut RedisClient,
    db: u32,
    key: &[u8],
    near: &[u8],
    exact: bool,
) -> Result<Vec<(String, f64)>, ClientError> {
    c.ok(&["SELECT", &db.to_string()]).await?;
    let mut cmd = words(&[b"VSIM", key, b"ELE", near, b"COUNT", b"10", b"WITHSCORES"]);
    if exact {
        cmd.push(b"TRUTH".to_vec());
    }
    let r = c.call(&cmd).await?;
    let items = r.items().ok_or_else(|| refused("VSIM", &r))?;
    Ok(items
        .chunks(2)
        .filter_map(|p| {
            let score = std::str::from_utf8(p.get(1)?.bytes()?).ok()?.parse().ok()?;
            Some((String::from_utf8_lossy(p[0].bytes()?).into_owned(), score))
        })
        .collect())
}

/// A member of a vector set to search near: the smallest, so both sides pick the same.
pub async fn first_member(
    c: &mut RedisClient,
    db: u32,
    key: &[u8],
) -> Result<Option<Vec<u8>>, ClientError> {
    c.ok(&["SELECT", &db.to_string()]).await?;
    let r = c
        .call(&words(&[b"VRANDMEMBER", key, b"2147483647"]))
        .await?;
    Ok(r.items()
        .unwrap_or_default()
        .iter()
        .filter_map(Value::bytes)
        .min()
        .map(<[u8]>::to_vec))
}

/// RediSearch indexes and their document counts; empty without the module.
pub async fn indexes(c: &mut RedisClient) -> Result<BTreeMap<String, i64>, ClientError> {
    let list = c.call(&words(&[b"FT._LIST"])).await?;
    let mut out = BTreeMap::new();
    for name in list
        .items()
        .unwrap_or_default()
        .iter()
        .filter_map(Value::bytes)
    {
        let info = c.call(&words(&[b"FT.INFO", name])).await?;
        let fields = info.items().unwrap_or_default();
        let docs = fields
            .chunks(2)
            .find(|p| p[0].bytes() == Some(b"num_docs"))
            .and_then(|p| p.get(1)?.int())
            .unwrap_or(-1);
        out.insert(String::from_utf8_lossy(name).into_owned(), docs);
    }
    Ok(out)
}
