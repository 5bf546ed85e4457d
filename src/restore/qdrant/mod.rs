//! Restoring one Qdrant collection: upload the base snapshot (`priority=snapshot`), then
//! apply the collection's records in LSN order, REST as REST and gRPC as gRPC, each with
//! `wait=true` so the next one sees it applied. `--as` renames the collection on the way
//! (the path segment of REST records, protobuf field 1 of gRPC ones).

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use vecwal_format::{Kind, Operation, Record};

use super::{fetch_snapshot, records, Plan, RestoreError};
use crate::capture::qdrant::grpc::varint;
use crate::capture::qdrant::snapshot::percent;
use crate::store::{Keyring, Store};

/// Where to restore to.
#[derive(Debug, Clone)]
pub struct QdrantTarget {
    /// `http://host:port` of the REST API.
    pub rest: Uri,
    /// `http://host:port` of the gRPC API; needed when the log holds gRPC records.
    pub grpc: Option<Uri>,
    /// Sent as the `api-key` header; never logged.
    pub api_key: Option<String>,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    pub records_applied: u64,
    pub records_total: u64,
}

#[derive(Debug, Clone)]
pub struct Summary {
    pub records_applied: u64,
    /// Records of other collections (and alias changes), not applied.
    pub records_skipped: u64,
    /// `wait=false` writes whose apply failed, in the replay as (necessarily) in the
    /// original: Qdrant had acknowledged them before applying them.
    pub failed_unwaited: u64,
    pub final_lsn: u64,
    pub final_time_us: i64,
    pub elapsed: Duration,
}

type Body = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

fn apply_err(msg: impl Into<String>) -> RestoreError {
    RestoreError::Apply(msg.into())
}

struct Target<'a> {
    t: &'a QdrantTarget,
    h1: Client<HttpConnector, Body>,
    h2: Client<HttpConnector, Body>,
}

impl Target<'_> {
    /// A REST call; the status and body.
    async fn rest(
        &self,
        method: &str,
        pq: &str,
        content_type: &str,
        body: Bytes,
    ) -> Result<(u16, Bytes), RestoreError> {
        let uri = crate::capture::qdrant::proxy::join(&self.t.rest, pq).map_err(apply_err)?;
        let method = Method::from_bytes(method.as_bytes()).map_err(|e| apply_err(e.to_string()))?;
        let mut req = Request::builder().method(method).uri(uri);
        if !content_type.is_empty() {
            req = req.header(header::CONTENT_TYPE, content_type);
        }
        if let Some(k) = &self.t.api_key {
            req = req.header("api-key", k);
        }
        let req = req
            .body(Full::new(body).boxed())
            .map_err(|e| apply_err(e.to_string()))?;
        let resp = self
            .h1
            .request(req)
            .await
            .map_err(|e| apply_err(format!("Qdrant at {} unreachable: {e}", self.t.rest)))?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| apply_err(format!("Qdrant's answer broke off: {e}")))?
            .to_bytes();
        Ok((status, body))
    }

    /// A unary gRPC call; `Ok` when `grpc-status` is 0, else the status and message.
    async fn grpc(&self, path: &str, message: &[u8]) -> Result<Result<(), String>, RestoreError> {
        let base = self.t.grpc.as_ref().ok_or_else(|| {
            apply_err("the log holds gRPC requests: give the target's gRPC address (--target-grpc)")
        })?;
        let uri = crate::capture::qdrant::proxy::join(base, path).map_err(apply_err)?;
        let mut framed = Vec::with_capacity(message.len() + 5);
        framed.push(0);
        framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
        framed.extend_from_slice(message);
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(header::CONTENT_TYPE, "application/grpc")
            .header(header::TE, "trailers");
        if let Some(k) = &self.t.api_key {
            req = req.header("api-key", k);
        }
        let req = req
            .body(Full::new(Bytes::from(framed)).boxed())
            .map_err(|e| apply_err(e.to_string()))?;
        let resp = self
            .h2
            .request(req)
            .await
            .map_err(|e| apply_err(format!("Qdrant gRPC at {base} unreachable: {e}")))?;
        let (parts, body) = resp.into_parts();
        let collected = body
            .collect()
            .await
            .map_err(|e| apply_err(format!("Qdrant's gRPC answer broke off: {e}")))?;
        let trailers = collected.trailers().cloned().unwrap_or_default();
        let get = |name: &str| {
            trailers
                .get(name)
                .or_else(|| parts.headers.get(name))
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        Ok(match get("grpc-status").as_deref() {
            Some("0") => Ok(()),
            s => Err(format!(
                "grpc-status {}: {}",
                s.unwrap_or("missing"),
                get("grpc-message").unwrap_or_default()
            )),
        })
    }
}

/// Restores `collection` of `plan` into `target` as `name`. Refuses when `name` exists
/// unless `force` (which deletes it first).
#[allow(clippy::too_many_arguments)]
pub async fn restore(
    store: std::sync::Arc<dyn Store>,
    plan: &Plan,
    keyring: Option<std::sync::Arc<Keyring>>,
    target: &QdrantTarget,
    collection: &str,
    name: &str,
    force: bool,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<Summary, RestoreError> {
    let started = Instant::now();
    let t = Target {
        t: target,
        h1: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
        h2: Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build(HttpConnector::new()),
    };
    let coll = format!("/collections/{}", percent(name));
    let (status, body) = t.rest("GET", &coll, "", Bytes::new()).await?;
    match status {
        200 if !force => {
            return Err(RestoreError::Apply(format!(
                "collection {name:?} exists in the target; restore next to it with --as NEW_NAME, \
                 or replace it with --force"
            )))
        }
        200 => {
            let (s, b) = t.rest("DELETE", &coll, "", Bytes::new()).await?;
            if s != 200 {
                return Err(apply_err(format!(
                    "deleting {name:?} failed ({s}): {}",
                    String::from_utf8_lossy(&b)
                )));
            }
        }
        404 => {}
        s => {
            return Err(apply_err(format!(
                "the target answered {s} for {coll}: {}",
                String::from_utf8_lossy(&body)
            )))
        }
    }
    if let Some(b) = &plan.base {
        let data = fetch_snapshot(store.as_ref(), b, keyring.as_deref()).await?;
        let boundary = format!("vecwal-{}", &b.sha256[..16]);
        let mut form = Vec::with_capacity(data.len() + 256);
        form.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"snapshot\"; \
                 filename=\"base.snapshot\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        form.extend_from_slice(&data);
        form.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let ct = format!("multipart/form-data; boundary={boundary}");
        let (s, b) = t
            .rest(
                "POST",
                &format!("{coll}/snapshots/upload?priority=snapshot&wait=true"),
                &ct,
                Bytes::from(form),
            )
            .await?;
        if s != 200 {
            return Err(apply_err(format!(
                "uploading the base snapshot failed ({s}): {}",
                String::from_utf8_lossy(&b)
            )));
        }
    }
    let mut rx = records(store, plan, keyring);
    let mut p = Progress {
        records_total: plan.record_count(),
        ..Default::default()
    };
    let mut skipped = 0;
    let mut failed_unwaited = 0;
    let mut last = (plan.base_lsn(), plan.base.as_ref().map_or(0, |b| b.time_us));
    while let Some(batch) = rx.recv().await {
        for r in batch? {
            last = (r.lsn, r.timestamp_us);
            if r.kind.is_marker() {
                continue;
            }
            if r.namespace != collection {
                skipped += 1;
                continue;
            }
            match apply(&t, &r, collection, name).await? {
                Applied::Done => p.records_applied += 1,
                Applied::FailedAsOriginal => failed_unwaited += 1,
            }
            progress(p);
        }
    }
    Ok(Summary {
        records_applied: p.records_applied,
        records_skipped: skipped,
        failed_unwaited,
        final_lsn: last.0,
        final_time_us: last.1,
        elapsed: started.elapsed(),
    })
}

/// What applying a record did.
enum Applied {
    Done,
    /// A write acknowledged without waiting, which failed (see [`apply`]).
    FailedAsOriginal,
}

async fn apply(t: &Target<'_>, r: &Record, from: &str, to: &str) -> Result<Applied, RestoreError> {
    let op = match r.kind {
        Kind::QdrantRest | Kind::QdrantGrpc => {
            Operation::decode(r.kind, &r.payload).map_err(|e| RestoreError::Corrupt {
                key: "record".into(),
                offset: None,
                lsn: Some(r.lsn),
                message: e.to_string(),
            })?
        }
        k => {
            return Err(apply_err(format!(
                "record {} is a {k:?} record, which Qdrant cannot apply",
                r.lsn
            )))
        }
    };
    match op {
        Operation::QdrantRest {
            method,
            path,
            content_type,
            body,
        } => {
            let pq = rest_path(&path, from, to);
            let (s, b) = t
                .rest(&method, &pq, &content_type, Bytes::from(body))
                .await?;
            // Qdrant acknowledges a `wait=false` write before applying it, and the apply
            // may then fail (a payload change of a point deleted meanwhile): the original
            // changed nothing either. Replayed on the same state it fails the same way.
            let unwaited = path
                .split_once('?')
                .is_some_and(|(_, q)| q.split('&').any(|kv| kv == "wait=false"));
            if unwaited && (400..500).contains(&s) {
                tracing::info!(
                    lsn = r.lsn,
                    status = s,
                    "a write acknowledged without waiting failed in replay as in the original"
                );
                return Ok(Applied::FailedAsOriginal);
            }
            if !(200..300).contains(&s) {
                return Err(apply_err(format!(
                    "record {} ({method} {path}): the target answered {s}: {}",
                    r.lsn,
                    String::from_utf8_lossy(&b)
                        .chars()
                        .take(300)
                        .collect::<String>()
                )));
            }
        }
        Operation::QdrantGrpc { path, message } => {
            let message = if from == to {
                message
            } else {
                rename_field_1(&message, to).ok_or_else(|| {
                    apply_err(format!("record {}: cannot rename its collection", r.lsn))
                })?
            };
            if let Err(e) = t.grpc(&path, &message).await? {
                return Err(apply_err(format!(
                    "record {} ({path}): the target answered {e}",
                    r.lsn
                )));
            }
        }
        _ => unreachable!("decoded from a Qdrant kind"),
    }
    Ok(Applied::Done)
}

/// What a forensic replay did.
#[derive(Debug, Clone, Default)]
pub struct ReplaySummary {
    pub records_matched: u64,
    pub errors: u64,
    /// The first few errors, for the report.
    pub first_errors: Vec<String>,
    pub elapsed: Duration,
}

/// One line describing a record, for `--dry-run`: LSN, collection, method and path, size.
pub fn describe(r: &Record) -> String {
    match Operation::decode(r.kind, &r.payload) {
        Ok(Operation::QdrantRest {
            method, path, body, ..
        }) => format!("{} {} ({} bytes)", method, path, body.len()),
        Ok(Operation::QdrantGrpc { path, message }) => {
            format!("gRPC {path} ({} bytes)", message.len())
        }
        Ok(_) => format!("a {:?} record", r.kind),
        Err(e) => format!("undecodable: {e}"),
    }
}

/// What a forensic replay replays: records stamped within `from_us..=to_us`, of
/// `collection` only if given.
#[derive(Debug, Clone)]
pub struct Window<'a> {
    pub from_us: i64,
    pub to_us: i64,
    pub collection: Option<&'a str>,
}

/// Replays the Qdrant records of a window (`plan` from [`super::window_plan`]) into
/// `target` (`None`: a dry run), at most `rate` records a second, calling `each` with every
/// chosen record first. A record the target refuses is counted and reported, and the
/// replay goes on: this is forensics on a staging copy, not a restore.
pub async fn replay_window(
    store: std::sync::Arc<dyn Store>,
    plan: &Plan,
    keyring: Option<std::sync::Arc<Keyring>>,
    target: Option<&QdrantTarget>,
    w: &Window<'_>,
    rate: Option<u64>,
    each: &mut (dyn FnMut(&Record) + Send),
) -> Result<ReplaySummary, RestoreError> {
    let started = Instant::now();
    let t = target.map(|target| Target {
        t: target,
        h1: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
        h2: Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build(HttpConnector::new()),
    });
    let mut s = ReplaySummary::default();
    let mut rx = records(store, plan, keyring);
    while let Some(batch) = rx.recv().await {
        for r in batch? {
            let chosen = matches!(r.kind, Kind::QdrantRest | Kind::QdrantGrpc)
                && (w.from_us..=w.to_us).contains(&r.timestamp_us)
                && w.collection.is_none_or(|c| r.namespace == c);
            if !chosen {
                continue;
            }
            s.records_matched += 1;
            each(&r);
            let Some(t) = &t else { continue };
            if let Some(ops) = rate.filter(|&o| o > 0) {
                let due = Duration::from_secs_f64(s.records_matched as f64 / ops as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
            }
            let ns = r.namespace.clone();
            if let Err(e) = apply(t, &r, &ns, &ns).await {
                s.errors += 1;
                if s.first_errors.len() < 5 {
                    s.first_errors.push(e.to_string());
                }
            }
        }
    }
    s.elapsed = started.elapsed();
    Ok(s)
}

/// The path of a REST record for the restore: the collection renamed, and `wait=true` so
/// each write is applied before the next.
fn rest_path(pq: &str, from: &str, to: &str) -> String {
    let (path, query) = pq.split_once('?').unwrap_or((pq, ""));
    let prefix = format!("/collections/{}", percent(from));
    let path = match path.strip_prefix(&prefix) {
        Some(rest) if from != to && (rest.is_empty() || rest.starts_with('/')) => {
            format!("/collections/{}{rest}", percent(to))
        }
        _ => path.to_string(),
    };
    let mut q: Vec<&str> = query
        .split('&')
        .filter(|kv| !kv.is_empty() && !kv.starts_with("wait="))
        .collect();
    q.push("wait=true");
    format!("{path}?{}", q.join("&"))
}

/// The message with protobuf field 1 (the collection name) replaced by `name`.
fn rename_field_1(m: &[u8], name: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(m.len() + name.len());
    put_varint(&mut out, (1 << 3) | 2);
    put_varint(&mut out, name.len() as u64);
    out.extend_from_slice(name.as_bytes());
    let mut rest = m;
    let mut found = false;
    while !rest.is_empty() {
        let start = rest;
        let (key, n) = varint(rest)?;
        rest = &rest[n..];
        let len = match key & 7 {
            0 => varint(rest)?.1,
            1 => 8,
            5 => 4,
            2 => {
                let (l, n) = varint(rest)?;
                n.checked_add(usize::try_from(l).ok()?)?
            }
            _ => return None,
        };
        let field = rest.get(..len)?;
        rest = &rest[len..];
        if key >> 3 == 1 && key & 7 == 2 {
            found = true;
            continue;
        }
        out.extend_from_slice(&start[..n]);
        out.extend_from_slice(field);
    }
    found.then_some(out)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::qdrant::grpc::string_field_1;

    #[test]
    fn rest_paths_are_renamed_and_wait() {
        assert_eq!(
            rest_path(
                "/collections/docs/points?wait=false&ordering=weak",
                "docs",
                "copy"
            ),
            "/collections/copy/points?ordering=weak&wait=true"
        );
        assert_eq!(
            rest_path("/collections/docs", "docs", "copy"),
            "/collections/copy?wait=true"
        );
        assert_eq!(
            rest_path("/collections/docs2/points", "docs", "copy"),
            "/collections/docs2/points?wait=true",
            "another collection whose name starts the same"
        );
        assert_eq!(
            rest_path("/collections/docs/points", "docs", "docs"),
            "/collections/docs/points?wait=true"
        );
    }

    #[test]
    fn the_collection_field_is_replaced_and_the_rest_kept() {
        let msg = [
            0x0a, 0x04, b'd', b'o', b'c', b's', 0x10, 0x01, 0x1a, 0x02, b'x', b'y',
        ];
        let out = rename_field_1(&msg, "copy").unwrap();
        assert_eq!(string_field_1(&out).as_deref(), Some("copy"));
        assert!(out.ends_with(&[0x10, 0x01, 0x1a, 0x02, b'x', b'y']));
        assert_eq!(
            rename_field_1(&[0x10, 0x01], "x"),
            None,
            "no collection field"
        );
        assert_eq!(rename_field_1(&[0x0a, 0x09, b'a'], "x"), None, "truncated");
    }
}
