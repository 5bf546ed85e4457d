//! Bases the Qdrant proxy makes besides its scheduled snapshots, so that every life of a
//! collection can be restored with no more than `--collection --at --target`:
//!
//! - **an empty base when a collection is created**: Qdrant refuses to create a collection
//!   that exists, so a logged creation proves the collection did not exist just before it;
//!   an empty base one LSN before the creation says so in the store, and a restore of a
//!   collection created after the proxy started (or dropped and created again) starts from
//!   it by itself;
//! - **a new base after a recovery from a snapshot** (`…/snapshots/recover`, uploads, the
//!   shard and partial forms): replaying such a request could not work (the snapshot is a
//!   file on Qdrant's disk, a URL or an upload), so the proxy holds writes to the
//!   collection, forwards the request as it streams, and once Qdrant has recovered takes an
//!   aligned snapshot of the collection as its new base.

use http::request::Parts;
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::proxy::{error, Body, Error, Proxy};
use crate::log::{now_us, Appended};
use crate::protocol::qdrant::rest::Touches;
use crate::snapshot::{put_snapshot, SnapshotPoint, QDRANT_EMPTY};

/// Stores an empty base of `collection` just before its logged creation `created`.
/// Failing is logged, not fatal: the creation is logged and applied, and a restore can
/// still start from empty when told (`--from-empty`).
pub async fn empty(proxy: &Proxy, collection: &str, created: Appended) {
    let point = SnapshotPoint {
        timeline: proxy.log.meta().timeline,
        lsn: created.lsn - 1,
        time_us: created.timestamp_us,
        format: QDRANT_EMPTY,
        namespace: collection,
    };
    for s in &proxy.stores {
        let stored = put_snapshot(
            s.as_ref(),
            &proxy.log.meta().name,
            point,
            Vec::new(),
            proxy.keyring.as_deref(),
        )
        .await;
        if let Err(e) = stored {
            tracing::warn!(
                collection,
                error = %e,
                "could not store the empty base of a new collection; restoring it will need --from-empty"
            );
        }
    }
}

/// Forwards a recovery from a snapshot of `collection` and takes its new base.
pub async fn rebase(
    proxy: &Proxy,
    parts: Parts,
    body: Incoming,
    collection: String,
    what: &str,
) -> Response<Body> {
    let waits = !parts
        .uri
        .query()
        .unwrap_or("")
        .split('&')
        .any(|kv| kv.eq_ignore_ascii_case("wait=false"));
    if !waits {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("{what} needs wait=true (Qdrant's default) through the proxy: it takes a new base of the collection once Qdrant has recovered"),
        );
    }
    if let Err(e) = proxy.log.admit().await {
        return error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string());
    }
    let api_key = parts.headers.get("api-key").cloned();
    let id = proxy
        .next_id
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // No write to the collection between the recovery and the new base.
    let claim = proxy
        .order
        .claim(id, Touches::Collection(collection.clone()), false)
        .await;
    let req = http::Request::from_parts(parts, body.map_err(Error::from).boxed());
    let (mut p, answer) = match proxy.exchange(req, "the recovery may have happened").await {
        Ok(got) => got,
        Err(refusal) => return refusal,
    };
    if !p.status.is_success() {
        return Response::from_parts(p, super::proxy::full(answer));
    }
    let recovered_at = now_us();
    match super::snapshot::take_claimed(proxy, &collection, api_key.as_ref(), claim, recovered_at)
        .await
    {
        Ok(m) => {
            tracing::info!(collection, lsn = m.lsn, "{what}: new base stored");
            p.headers.remove(http::header::CONTENT_LENGTH);
            Response::from_parts(p, super::proxy::full(answer))
        }
        Err(e) => {
            tracing::error!(collection, error = %e, "{what} applied, but its new base could not be taken");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("Qdrant recovered {collection:?}, but vecwal could not take its new base ({e}); take one with `vecwal snapshot qdrant` before relying on restores of it"),
            )
        }
    }
}
