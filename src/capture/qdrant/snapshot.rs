//! Aligned collection snapshots through the proxy (promise 5).
//!
//! `POST /vecwal/snapshot?collection=C` to the proxy's REST port (what `vecwal snapshot
//! qdrant` sends) claims collection C ([`super::order`]), so no write to C is in flight through
//! the proxy and the log's last LSN is exactly what C holds; asks Qdrant for a collection
//! snapshot (`wait=true`); lets writes to C go once Qdrant has made it; downloads it,
//! deletes it from Qdrant, and stores it with its SHA-256 as the base of C's records at that
//! LSN, plus a marker record. Writes to other collections are not held.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, StatusCode};
use http_body_util::BodyExt;
use vecwal_format::Operation;

use super::order::Claim;
use super::proxy::{full, Proxy};
use crate::catalog::SnapshotManifest;
use crate::log::{now_us, Entry};
use crate::protocol::http::{join, percent};
use crate::snapshot::{put_snapshot, SnapshotPoint};
use tokio::sync::OwnedRwLockWriteGuard;

/// Takes a snapshot of `collection`; `api_key` is the caller's, passed to Qdrant (which
/// checks it) and never stored. Writes that could not be replayed over it wait while Qdrant
/// makes it; unconditional upserts and deletes by id go on (`order.rs`).
pub async fn take(
    proxy: &Proxy,
    collection: &str,
    api_key: Option<&HeaderValue>,
) -> Result<SnapshotManifest, String> {
    // One at a time: each ends with a marker record, so the next is at a later LSN.
    let _one = proxy.snapshots.lock().await;
    let barrier = proxy.order.barrier(collection).await;
    make(proxy, collection, api_key, barrier, None).await
}

/// [`take`] for a caller that holds the barrier of `collection` already (the proxy's start:
/// every collection's barrier before the first client is served).
pub async fn take_barred(
    proxy: &Proxy,
    collection: &str,
    api_key: Option<&HeaderValue>,
    barrier: OwnedRwLockWriteGuard<()>,
) -> Result<SnapshotManifest, String> {
    let _one = proxy.snapshots.lock().await;
    make(proxy, collection, api_key, barrier, None).await
}

/// [`take`] for a caller that holds the claim of the whole `collection`, so no write at all
/// goes while Qdrant makes the snapshot: it holds exactly the records up to its LSN. It is
/// tagged with `taken_at`, for one that holds a change no record has (a recovery from a
/// snapshot file): a restore to an earlier time must not use it.
pub async fn take_claimed(
    proxy: &Proxy,
    collection: &str,
    api_key: Option<&HeaderValue>,
    claim: Claim,
    taken_at: i64,
) -> Result<SnapshotManifest, String> {
    let _one = proxy.snapshots.lock().await;
    make(proxy, collection, api_key, claim, Some(taken_at)).await
}

/// Makes, downloads and stores a snapshot of `collection`, releasing `hold` once Qdrant has
/// made it. Its LSN is the log's last when Qdrant began: every record up to it is in it.
/// Records after it that `hold` let through (replayable ones) may be in it too; a restore
/// replays them over it to the same state. It is tagged with the time Qdrant finished (a
/// restore to an earlier time uses an older base), or `taken_at`.
async fn make<H: Send>(
    proxy: &Proxy,
    collection: &str,
    api_key: Option<&HeaderValue>,
    hold: H,
    taken_at: Option<i64>,
) -> Result<SnapshotManifest, String> {
    let enc = percent(collection);
    let lsn = proxy.log.last_lsn();
    let created = call(
        proxy,
        Method::POST,
        &format!("/collections/{enc}/snapshots?wait=true"),
        api_key,
    )
    .await?;
    drop(hold);
    let time_us = taken_at.unwrap_or_else(now_us);
    let v: serde_json::Value = serde_json::from_slice(&created)
        .map_err(|e| format!("Qdrant's snapshot answer is not JSON: {e}"))?;
    let name = v["result"]["name"]
        .as_str()
        .ok_or_else(|| format!("Qdrant's snapshot answer has no name: {v}"))?
        .to_string();
    let path = format!("/collections/{enc}/snapshots/{}", percent(&name));
    let data = call(proxy, Method::GET, &path, api_key).await?;
    if let Err(e) = call(proxy, Method::DELETE, &path, api_key).await {
        tracing::warn!(error = %e, snapshot = name, "could not delete the snapshot from Qdrant");
    }
    let point = SnapshotPoint {
        timeline: proxy.log.meta().timeline,
        lsn,
        time_us,
        format: "qdrant-snapshot",
        namespace: collection,
    };
    let mut manifest = None;
    for s in &proxy.stores {
        let m = put_snapshot(
            s.as_ref(),
            &proxy.log.meta().name,
            point,
            data.to_vec(),
            proxy.keyring.as_deref(),
        )
        .await
        .map_err(|e| format!("storing the snapshot: {e}"))?;
        manifest = Some(m);
    }
    let manifest = manifest.ok_or("no store configured")?;
    let mut sha = [0u8; 32];
    hex::decode_to_slice(&manifest.sha256, &mut sha).ok();
    let marker = Operation::Snapshot {
        snapshot_lsn: lsn,
        size: manifest.size,
        sha256: sha,
        name: manifest.data_key.clone(),
    };
    let entry = Entry::new(collection, &marker).map_err(|e| e.to_string())?;
    proxy
        .log
        .append(entry)
        .await
        .map_err(|e| format!("logging the snapshot marker: {e}"))?;
    tracing::info!(
        lsn,
        collection,
        bytes = manifest.size,
        "aligned snapshot stored"
    );
    Ok(manifest)
}

/// The collections Qdrant has.
async fn collections(proxy: &Proxy, api_key: Option<&HeaderValue>) -> Result<Vec<String>, String> {
    let list = call(proxy, Method::GET, "/collections", api_key).await?;
    let v: serde_json::Value = serde_json::from_slice(&list)
        .map_err(|e| format!("Qdrant's collection list is not JSON: {e}"))?;
    Ok(v["result"]["collections"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default())
}

/// Snapshots every collection Qdrant has (on the schedule); returns how many were taken.
/// One failing is logged and the others go on.
pub async fn take_all(proxy: &Proxy, api_key: Option<&HeaderValue>) -> Result<usize, String> {
    let mut taken = 0;
    for c in &collections(proxy, api_key).await? {
        match take(proxy, c, api_key).await {
            Ok(_) => taken += 1,
            Err(e) => tracing::error!(collection = c, error = %e, "snapshot failed"),
        }
    }
    Ok(taken)
}

/// The snapshots at start: every collection Qdrant has gets its barrier now, before the
/// first client is served, so the stream is restorable from the moment each snapshot is
/// made; the snapshots themselves are made by the task returned, one after the other,
/// while clients are served (writes that could not be replayed over a snapshot wait for
/// their collection's). Returns how many collections, and the task.
pub async fn start_all(
    proxy: &Arc<Proxy>,
    api_key: Option<HeaderValue>,
) -> Result<(usize, tokio::task::JoinHandle<()>), String> {
    let mut barred = Vec::new();
    for c in collections(proxy, api_key.as_ref()).await? {
        let barrier = proxy.order.barrier(&c).await;
        barred.push((c, barrier));
    }
    let n = barred.len();
    let proxy = proxy.clone();
    let task = tokio::spawn(async move {
        for (c, barrier) in barred {
            match take_barred(&proxy, &c, api_key.as_ref(), barrier).await {
                Ok(m) => tracing::info!(collection = c, lsn = m.lsn, "start snapshot stored"),
                Err(e) => tracing::error!(collection = c, error = %e, "start snapshot failed"),
            }
        }
    });
    Ok((n, task))
}

/// One request to Qdrant's REST API; a non-2xx answer is an error naming it.
pub(super) async fn call(
    proxy: &Proxy,
    method: Method,
    path: &str,
    api_key: Option<&HeaderValue>,
) -> Result<Bytes, String> {
    let uri = join(&proxy.upstream, path)?;
    let mut req = Request::builder().method(method.clone()).uri(uri);
    if let Some(k) = api_key {
        req = req.header("api-key", k);
    }
    let req = req
        .header(header::CONTENT_LENGTH, 0)
        .body(full(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let resp = proxy
        .client
        .request(req)
        .await
        .map_err(|e| format!("Qdrant unreachable: {e}"))?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("Qdrant's answer broke off: {e}"))?
        .to_bytes();
    if status != StatusCode::OK {
        return Err(format!(
            "Qdrant answered {method} {path} with {status}: {}",
            String::from_utf8_lossy(&body)
                .chars()
                .take(300)
                .collect::<String>()
        ));
    }
    Ok(body)
}
