//! Aligned base snapshots of a Redis behind the proxy (promise 5).
//!
//! Under the gate's exclusive claim no write is in flight through the proxy, so the log's
//! last LSN is exactly what Redis holds. vecwal then asks Redis for a full sync as a
//! replica (without `capa eof`, so Redis forks for it at once), and lets writes go again
//! as soon as Redis answers FULLRESYNC: the fork has happened, the RDB that follows is the
//! database at the barrier. The barrier lasts one fork, not the RDB transfer.

use std::sync::Arc;
use std::time::Duration;

use vecwal_format::Operation;

use super::gate::Gate;
use crate::capture::redis_repl::{ReplClient, ReplConfig, ReplError, ReplEvent};
use crate::catalog::SnapshotManifest;
use crate::log::{Entry, Log, LogError};
use crate::protocol::redis_client::{ClientError, RedisTarget};
use crate::snapshot::{put_snapshot, SnapshotPoint};
use crate::store::{Keyring, Store, StoreError};

/// Longest the barrier waits for Redis to fork (it waits for a BGSAVE already running).
pub(crate) const FORK_WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("full sync from Redis failed: {0}")]
    Repl(#[from] ReplError),
    #[error("Redis did not fork for the snapshot within {0:?} (a long BGSAVE running?)")]
    ForkTimeout(Duration),
    #[error("Redis served an RDB from before the barrier (offset {got} < {want}): a BGSAVE for another replica was running; try again")]
    Stale { got: u64, want: u64 },
    /// Redis wrote between the barrier and the fork (offset {got} > {want}): a blocking pop
    /// answered but not yet logged, a client that does not go through the proxy, or an
    /// expiry. The RDB then holds a write the log's LSN does not: tagging it would be wrong.
    #[error("Redis changed between the barrier and the fork (replication offset {want} → {got}): a blocking pop answered at that moment, a client writing around the proxy, or a key expiring; try again")]
    Moved { got: u64, want: u64 },
    #[error("storing the snapshot failed: {0}")]
    Store(#[from] StoreError),
    #[error("logging the snapshot marker failed: {0}")]
    Log(#[from] LogError),
}

/// Attempts before a snapshot gives up on a Redis that keeps changing under the barrier.
const ATTEMPTS: u32 = 5;

/// Takes an RDB of `upstream` aligned to the log's last LSN and stores it in every store;
/// tries again (a few times) when Redis changed under the barrier.
pub async fn take(
    upstream: &RedisTarget,
    gate: &Arc<Gate>,
    log: &Log,
    stores: &[Arc<dyn Store>],
    keyring: Option<&Keyring>,
) -> Result<SnapshotManifest, SnapshotError> {
    let mut attempt = 1;
    loop {
        match take_once(upstream, gate, log, stores, keyring).await {
            Err(e @ (SnapshotError::Moved { .. } | SnapshotError::Stale { .. }))
                if attempt < ATTEMPTS =>
            {
                tracing::info!(error = %e, attempt, "snapshot barrier missed; trying again");
                tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
                attempt += 1;
            }
            r => return r,
        }
    }
}

async fn take_once(
    upstream: &RedisTarget,
    gate: &Arc<Gate>,
    log: &Log,
    stores: &[Arc<dyn Store>],
    keyring: Option<&Keyring>,
) -> Result<SnapshotManifest, SnapshotError> {
    let mut info = upstream.connect().await?;
    let cfg = ReplConfig {
        addr: upstream.addr.clone(),
        username: upstream.username.clone(),
        password: upstream.password.clone(),
        listening_port: 0,
        rdb_from_disk: true,
    };
    let barrier = gate.exclusive(u64::MAX).await;
    let (lsn, time_us) = log.last_appended();
    let want = info
        .info("replication")
        .await?
        .into_iter()
        .find(|(k, _)| k == "master_repl_offset")
        .and_then(|(_, v)| v.parse::<u64>().ok())
        .unwrap_or(0);
    let (tx, forked) = tokio::sync::oneshot::channel();
    let sync = tokio::spawn(async move { ReplClient::connect_notify(&cfg, None, Some(tx)).await });
    let got = match tokio::time::timeout(FORK_WAIT, forked).await {
        Ok(Ok((_replid, off))) => off,
        Ok(Err(_)) => {
            drop(barrier);
            return Err(match sync.await {
                Ok(Err(e)) => e.into(),
                _ => SnapshotError::Repl(ReplError::Protocol("full sync ended early".into())),
            });
        }
        Err(_) => {
            sync.abort();
            return Err(SnapshotError::ForkTimeout(FORK_WAIT));
        }
    };
    drop(barrier);
    if got < want {
        sync.abort();
        return Err(SnapshotError::Stale { got, want });
    }
    if got > want {
        sync.abort();
        return Err(SnapshotError::Moved { got, want });
    }
    let mut client = match sync.await {
        Ok(r) => r?,
        Err(_) => return Err(ReplError::Protocol("full sync task failed".into()).into()),
    };
    let rdb = match client.next().await? {
        ReplEvent::FullSync { rdb, .. } => rdb,
        other => {
            return Err(ReplError::Protocol(format!("expected the RDB, got {other:?}")).into())
        }
    };
    drop(client);
    // A base taken before the first record holds the database as it was when capture
    // began: restorable from that moment on.
    let time_us = if lsn == 0 {
        crate::log::now_us()
    } else {
        time_us
    };
    let manifest = store_rdb(log, stores, keyring, lsn, time_us, rdb).await?;
    log.append(marker(&manifest)?).await?;
    tracing::info!(lsn, bytes = manifest.size, "aligned snapshot stored");
    Ok(manifest)
}

/// Stores `rdb`, which reflects exactly the records up to `lsn` (the newest of them logged
/// at `time_us`), as a base snapshot in every store.
pub async fn store_rdb(
    log: &Log,
    stores: &[Arc<dyn Store>],
    keyring: Option<&Keyring>,
    lsn: u64,
    time_us: i64,
    rdb: Vec<u8>,
) -> Result<SnapshotManifest, SnapshotError> {
    let stream = &log.meta().name;
    let point = SnapshotPoint {
        timeline: log.meta().timeline,
        lsn,
        time_us,
        format: "rdb",
        namespace: "",
    };
    let mut manifest = None;
    for s in stores {
        manifest = Some(put_snapshot(s.as_ref(), stream, point, rdb.clone(), keyring).await?);
    }
    let manifest = manifest.unwrap_or_else(|| SnapshotManifest {
        timeline: point.timeline,
        lsn,
        time_us: point.time_us,
        format: "rdb".into(),
        namespace: String::new(),
        data_key: String::new(),
        size: rdb.len() as u64,
        sha256: String::new(),
        encrypted: false,
    });
    Ok(manifest)
}

/// The marker record of a stored snapshot, so `inspect` shows where snapshots were taken.
pub fn marker(manifest: &SnapshotManifest) -> Result<Entry, LogError> {
    let mut sha = [0u8; 32];
    hex::decode_to_slice(&manifest.sha256, &mut sha).ok();
    let marker = Operation::Snapshot {
        snapshot_lsn: manifest.lsn,
        size: manifest.size,
        sha256: sha,
        name: manifest.data_key.clone(),
    };
    Entry::new("", &marker)
}
