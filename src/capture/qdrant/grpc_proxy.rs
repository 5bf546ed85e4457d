//! The gRPC half of the Qdrant proxy. Calls that are not mutations stream both ways
//! untouched (trailers included). A mutation is one request message: it is read whole,
//! ordered by its collection, forwarded, and logged only when Qdrant's `grpc-status` is 0;
//! the answer (message and trailers) is held until the record is durable.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, Uri};
use http_body::Frame;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use vecwal_format::Operation;

use super::proxy::{full, grpc_error, namespace, strip_hop_headers, Body, Error, Proxy, MAX_BODY};
use crate::log::Entry;
use crate::protocol::http::join;
use crate::protocol::qdrant::api::{cluster_grpc, grpc_method, Disposition};
use crate::protocol::qdrant::grpc::classify;

// gRPC status codes used here.
const INVALID_ARGUMENT: u32 = 3;
const FAILED_PRECONDITION: u32 = 9;
const RESOURCE_EXHAUSTED: u32 = 8;
const UNIMPLEMENTED: u32 = 12;
const INTERNAL: u32 = 13;
const UNAVAILABLE: u32 = 14;

pub async fn handle(proxy: &Proxy, upstream: &Uri, req: Request<Incoming>) -> Response<Body> {
    let (mut parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    parts.uri = match join(upstream, &path) {
        Ok(u) => u,
        Err(e) => return grpc_error(INVALID_ARGUMENT, &e),
    };
    strip_hop_headers(&mut parts.headers);
    // The method alone tells a possible mutation; reads never wait for their whole body.
    let d = match grpc_method(&path) {
        None => {
            return grpc_error(
                UNIMPLEMENTED,
                &format!("vecwal: {path} is not a method vecwal knows (it knows Qdrant 1.18.3's API) and it refuses what it cannot tell to be a read"),
            )
        }
        Some(Disposition::Refused(why)) => {
            return grpc_error(FAILED_PRECONDITION, &format!("vecwal: refused: {why}"))
        }
        Some(d @ (Disposition::Logged(..) | Disposition::Cluster)) => d,
        Some(_) => return pass(proxy, parts, body.map_err(Error::from).boxed()).await,
    };
    if let Err(e) = proxy.log.admit().await {
        return grpc_error(UNAVAILABLE, &format!("vecwal: {e}"));
    }
    let bytes = match Limited::new(body, MAX_BODY).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) => {
            return grpc_error(
                RESOURCE_EXHAUSTED,
                &format!("vecwal: request unreadable or over {MAX_BODY} bytes: {e}"),
            )
        }
    };
    // One uncompressed message: the 5-byte prefix (flag, length) and the message.
    let message = match bytes.len() {
        n if n < 5 => return grpc_error(INVALID_ARGUMENT, "vecwal: no request message"),
        _ if bytes[0] != 0 => {
            // A compressed message could not be logged as protobuf: refuse, never pass
            // a write that is not logged.
            return grpc_error(
                UNIMPLEMENTED,
                "vecwal: compressed requests are not supported through the proxy",
            );
        }
        n if u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize != n - 5 => {
            return grpc_error(
                INVALID_ARGUMENT,
                "vecwal: expected exactly one request message",
            )
        }
        _ => bytes.slice(5..),
    };
    if d == Disposition::Cluster {
        match cluster_grpc(&message) {
            Disposition::Logged(..) => {}
            Disposition::Refused(why) => {
                return grpc_error(FAILED_PRECONDITION, &format!("vecwal: refused: {why}"))
            }
            _ => return pass(proxy, parts, full(bytes)).await,
        }
    }
    let Some(m) = classify(&path, &message) else {
        return grpc_error(INTERNAL, "vecwal: unclassified write");
    };
    let (pass, touches) = proxy
        .claim(
            &m,
            |t| t,
            |t| crate::protocol::qdrant::grpc::replayable(&path, t, &message),
        )
        .await;
    let ns = namespace(&touches);
    let req = Request::from_parts(parts, full(bytes));
    let resp = match proxy.h2.request(req).await {
        Ok(r) => r,
        Err(e) => return grpc_error(UNAVAILABLE, &format!("vecwal: Qdrant unreachable: {e}")),
    };
    let (mut p, b) = resp.into_parts();
    strip_hop_headers(&mut p.headers);
    let collected = match b.collect().await {
        Ok(c) => c,
        Err(e) => {
            return grpc_error(
                UNAVAILABLE,
                &format!(
                    "vecwal: Qdrant's answer broke off ({e}); the write may have been applied"
                ),
            )
        }
    };
    let trailers = collected.trailers().cloned();
    let data = collected.to_bytes();
    proxy.after(&m).await;
    // The status is in the trailers, or in the headers of a trailers-only answer.
    let status = trailers
        .as_ref()
        .and_then(|t| t.get("grpc-status"))
        .or_else(|| p.headers.get("grpc-status"))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u32>().ok());
    let answer = |p, data, trailers| {
        Response::from_parts(
            p,
            Replay {
                data: Some(data),
                trailers,
            }
            .boxed(),
        )
    };
    if !(p.status.is_success() && status == Some(0)) {
        return answer(p, data, trailers);
    }
    let op = Operation::QdrantGrpc {
        path: path.clone(),
        message: message.to_vec(),
    };
    let durable = match Entry::new(ns.clone(), &op) {
        Ok(e) => proxy.log.append(e),
        Err(e) => return grpc_error(INTERNAL, &format!("vecwal: {e}")),
    };
    drop(pass); // the LSN is assigned: the next conflicting write may go
    match durable.await {
        Ok(a) if m.what == "create collection" => super::bases::empty(proxy, &ns, a).await,
        Ok(_) => {}
        Err(e) => {
            tracing::error!(error = %e, what = m.what, "a write Qdrant applied could not be logged");
            return grpc_error(
                INTERNAL,
                &format!("vecwal could not log this write, which Qdrant applied: {e}"),
            );
        }
    }
    answer(p, data, trailers)
}

/// Streams a call that is not logged both ways, trailers included.
async fn pass(proxy: &Proxy, parts: http::request::Parts, body: Body) -> Response<Body> {
    match proxy.h2.request(Request::from_parts(parts, body)).await {
        Ok(resp) => {
            let (mut p, b) = resp.into_parts();
            strip_hop_headers(&mut p.headers);
            Response::from_parts(p, b.map_err(Error::from).boxed())
        }
        Err(e) => grpc_error(UNAVAILABLE, &format!("vecwal: Qdrant unreachable: {e}")),
    }
}

/// A collected answer played back: its data, then its trailers (where gRPC keeps the
/// status).
struct Replay {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl http_body::Body for Replay {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        if let Some(d) = self.data.take().filter(|d| !d.is_empty()) {
            return Poll::Ready(Some(Ok(Frame::data(d))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.as_ref().is_none_or(|d| d.is_empty()) && self.trailers.is_none()
    }
}
