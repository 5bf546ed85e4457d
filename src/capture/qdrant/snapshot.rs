//! Aligned collection snapshots through the proxy (promise 5).
//!
//! `POST /vecwal/snapshot?collection=C` to the proxy's REST port (what `vecwal snapshot
//! qdrant` sends) claims collection C ([`super::order`]), so no write to C is in flight through
//! the proxy and the log's last LSN is exactly what C holds; asks Qdrant for a collection
//! snapshot (`wait=true`); lets writes to C go once Qdrant has made it; downloads it,
//! deletes it from Qdrant, and stores it with its SHA-256 as the base of C's records at that
//! LSN, plus a marker record. Writes to other collections are not held.

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, StatusCode};
use http_body_util::BodyExt;
use vecwal_format::Operation;

use super::order::Claim;
use super::proxy::{full, Proxy};
use crate::catalog::SnapshotManifest;
use crate::log::{now_us, Entry};
use crate::protocol::http::{join, percent};
use crate::protocol::qdrant::rest::Touches;
use crate::snapshot::{put_snapshot, SnapshotPoint};

/// Takes an aligned snapshot of `collection`; `api_key` is the caller's, passed to Qdrant
/// (which checks it) and never stored.
pub async fn take(
    proxy: &Proxy,
    collection: &str,
    api_key: Option<&HeaderValue>,
) -> Result<SnapshotManifest, String> {
    let id = proxy
        .next_id
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let pass = proxy
        .order
        .claim(id, Touches::Collection(collection.to_string()))
        .await;
    take_claimed(proxy, collection, api_key, pass, None).await
}

/// [`take`] for a caller that already holds the claim on `collection` (released once
/// Qdrant has made the snapshot). The snapshot is tagged with the time of the log's last
/// record, or `taken_at` for one that holds a change no record has (a recovery from a
/// snapshot file): a restore to an earlier time must not use it.
pub async fn take_claimed(
    proxy: &Proxy,
    collection: &str,
    api_key: Option<&HeaderValue>,
    pass: Claim,
    taken_at: Option<i64>,
) -> Result<SnapshotManifest, String> {
    // One at a time: each ends with a marker record, so the next is at a later LSN.
    let _one = proxy.snapshots.lock().await;
    let enc = percent(collection);
    let (lsn, last_time) = proxy.log.last_appended();
    let time_us = taken_at.unwrap_or(last_time);
    let created = call(
        proxy,
        Method::POST,
        &format!("/collections/{enc}/snapshots?wait=true"),
        api_key,
    )
    .await?;
    drop(pass);
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
        time_us: if lsn == 0 { now_us() } else { time_us },
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

/// Snapshots every collection Qdrant has (at start, and on the schedule); returns how many
/// were taken. One failing is logged and the others go on.
pub async fn take_all(proxy: &Proxy, api_key: Option<&HeaderValue>) -> Result<usize, String> {
    let list = call(proxy, Method::GET, "/collections", api_key).await?;
    let v: serde_json::Value = serde_json::from_slice(&list)
        .map_err(|e| format!("Qdrant's collection list is not JSON: {e}"))?;
    let names: Vec<String> = v["result"]["collections"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let mut taken = 0;
    for c in &names {
        match take(proxy, c, api_key).await {
            Ok(_) => taken += 1,
            Err(e) => tracing::error!(collection = c, error = %e, "snapshot failed"),
        }
    }
    Ok(taken)
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
