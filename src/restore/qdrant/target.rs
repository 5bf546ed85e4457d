//! Calls to the target Qdrant, and one record applied to it.

use bytes::Bytes;
use http::{header, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use vecwal_format::{Kind, Operation, Record};

use super::QdrantTarget;
use crate::protocol::http::{self as proxy, percent};
use crate::protocol::protobuf::string_field_1;
use crate::protocol::protobuf::{varint, walk, Value};
use crate::restore::RestoreError;

type Body = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

pub(super) fn apply_err(msg: impl Into<String>) -> RestoreError {
    RestoreError::Apply(msg.into())
}

/// A target Qdrant with its clients.
pub struct Target {
    t: QdrantTarget,
    h1: Client<HttpConnector, Body>,
    h2: Client<HttpConnector, Body>,
}

impl Target {
    pub fn new(t: &QdrantTarget) -> Target {
        Target {
            t: t.clone(),
            h1: proxy::client_builder().build(proxy::connector()),
            // Up to `pipeline::DEPTH` calls share one connection: windows as the proxy's.
            h2: proxy::client_builder()
                .http2_only(true)
                .http2_initial_stream_window_size(proxy::H2_STREAM_WINDOW)
                .http2_initial_connection_window_size(proxy::H2_CONN_WINDOW)
                .build(proxy::connector()),
        }
    }

    /// A REST call; the status and body.
    pub async fn rest(
        &self,
        method: &str,
        pq: &str,
        content_type: &str,
        body: Bytes,
    ) -> Result<(u16, Bytes), RestoreError> {
        let uri = proxy::join(&self.t.rest, pq).map_err(apply_err)?;
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
        let uri = proxy::join(base, path).map_err(apply_err)?;
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

/// What applying a record did.
pub(super) enum Applied {
    Done,
    /// A write acknowledged without waiting, which failed (see [`apply`]).
    FailedAsOriginal,
}

/// A record's operation, which must be a Qdrant one.
pub(super) fn decode(r: &Record) -> Result<Operation, RestoreError> {
    match r.kind {
        Kind::QdrantRest | Kind::QdrantGrpc => {
            Operation::decode(r.kind, &r.payload).map_err(|e| RestoreError::Corrupt {
                key: "record".into(),
                offset: None,
                lsn: Some(r.lsn),
                message: e.to_string(),
            })
        }
        k => Err(apply_err(format!(
            "record {} is a {k:?} record, which Qdrant cannot apply",
            r.lsn
        ))),
    }
}

/// Applies record `lsn`'s operation (from [`decode`]) to collection `to`, and waits until
/// Qdrant has applied it.
pub(super) async fn apply(
    t: &Target,
    lsn: u64,
    op: Operation,
    to: &str,
) -> Result<Applied, RestoreError> {
    match op {
        Operation::QdrantRest {
            method,
            path,
            content_type,
            body,
        } => {
            let pq = rest_path(&path, to);
            let (s, b) = t
                .rest(&method, &pq, &content_type, Bytes::from(body))
                .await?;
            // Qdrant acknowledges a write without `wait=true` before applying it, and the
            // apply may then fail (a payload change of a point deleted meanwhile): the
            // original changed nothing either. Replayed on the same state it fails the same
            // way.
            if !rest_waits(&path) && (400..500).contains(&s) {
                tracing::info!(
                    lsn = lsn,
                    status = s,
                    "a write acknowledged without waiting failed in replay as in the original"
                );
                return Ok(Applied::FailedAsOriginal);
            }
            if !(200..300).contains(&s) {
                return Err(apply_err(format!(
                    "record {} ({method} {path}): the target answered {s}: {}",
                    lsn,
                    String::from_utf8_lossy(&b)
                        .chars()
                        .take(300)
                        .collect::<String>()
                )));
            }
        }
        Operation::QdrantGrpc { path, message } => {
            let mut out = if string_field_1(&message).as_deref() == Some(to) {
                message.clone()
            } else {
                rename_field_1(&message, to).ok_or_else(|| {
                    apply_err(format!("record {}: cannot rename its collection", lsn))
                })?
            };
            // Field 2 of every `qdrant.Points` write is `wait`; the last value of a scalar
            // field is the one that counts, so appending it makes the call wait.
            let points = path.starts_with("/qdrant.Points/");
            if points {
                out.extend_from_slice(&[0x10, 0x01]);
            }
            if let Err(e) = t.grpc(&path, &out).await? {
                if points && !grpc_waits(&message) {
                    tracing::info!(
                        lsn = lsn,
                        error = e,
                        "a write acknowledged without waiting failed in replay as in the original"
                    );
                    return Ok(Applied::FailedAsOriginal);
                }
                return Err(apply_err(format!(
                    "record {} ({path}): the target answered {e}",
                    lsn
                )));
            }
        }
        _ => unreachable!("decoded from a Qdrant kind"),
    }
    Ok(Applied::Done)
}

/// The path of a REST record for the restore: the collection named `to` (the record may
/// name it by an alias the proxy resolved, or the restore goes to another name), and
/// `wait=true` so each write is applied before the next. Empty segments go, as Qdrant's
/// router drops them.
pub(super) fn rest_path(pq: &str, to: &str) -> String {
    let (path, query) = pq.split_once('?').unwrap_or((pq, ""));
    let mut segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if segs.len() >= 2
        && segs[0] == "collections"
        && crate::protocol::qdrant::rest::decode(&segs[1]) != to
    {
        segs[1] = percent(to);
    }
    let mut q: Vec<&str> = query
        .split('&')
        .filter(|kv| !kv.is_empty() && !kv.starts_with("wait="))
        .collect();
    q.push("wait=true");
    format!("/{}?{}", segs.join("/"), q.join("&"))
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

/// Whether a REST write waited for its apply: Qdrant's `wait` is false unless the query
/// says `wait=true`.
fn rest_waits(pq: &str) -> bool {
    let query = pq.split_once('?').map_or("", |(_, q)| q);
    query
        .split('&')
        .filter_map(|kv| kv.strip_prefix("wait="))
        .next_back()
        .is_some_and(|v| v == "true")
}

/// Whether a gRPC `qdrant.Points` write waited: its field 2 (`optional bool wait`, false
/// when absent), the last occurrence counting.
fn grpc_waits(m: &[u8]) -> bool {
    let mut wait = false;
    // A malformed message waits as far as it could be read.
    let _ = walk(m, |field, v| {
        if let (2, Value::Varint(w)) = (field, v) {
            wait = w != 0;
        }
        Some(())
    });
    wait
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

    #[test]
    fn rest_paths_are_renamed_and_wait() {
        assert_eq!(
            rest_path("/collections/docs/points?wait=false&ordering=weak", "copy"),
            "/collections/copy/points?ordering=weak&wait=true"
        );
        assert_eq!(
            rest_path("/collections/docs", "copy"),
            "/collections/copy?wait=true"
        );
        assert_eq!(
            rest_path("/collections/live/points", "docs_v2"),
            "/collections/docs_v2/points?wait=true",
            "a write through an alias goes to the collection"
        );
        assert_eq!(
            rest_path("/collections/docs//%70oints", "docs"),
            "/collections/docs/%70oints?wait=true"
        );
        assert_eq!(
            rest_path("/collections/my%20docs/points", "my docs"),
            "/collections/my%20docs/points?wait=true"
        );
    }

    #[test]
    fn writes_that_did_not_wait_are_told() {
        assert!(rest_waits("/collections/c/points?wait=true"));
        assert!(rest_waits("/collections/c/points?ordering=weak&wait=true"));
        assert!(!rest_waits("/collections/c/points"), "Qdrant's default");
        assert!(!rest_waits("/collections/c/points?wait=false"));
        assert!(!rest_waits("/collections/c/points?wait=true&wait=false"));
        assert!(grpc_waits(&[0x0a, 0x01, b'c', 0x10, 0x01]));
        assert!(!grpc_waits(&[0x0a, 0x01, b'c']), "absent: false");
        assert!(!grpc_waits(&[0x0a, 0x01, b'c', 0x10, 0x01, 0x10, 0x00]));
        assert!(!grpc_waits(&[0x10]), "truncated");
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
