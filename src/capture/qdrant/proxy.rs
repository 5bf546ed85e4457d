//! The Qdrant proxy: REST (HTTP/1.1 and HTTP/2) and gRPC (HTTP/2 with trailers) in, the
//! same out to Qdrant's REST and gRPC ports.
//!
//! Every request passes through with its headers (the api-key among them) and a streaming
//! body. A mutation ([`crate::protocol::qdrant::rest::classify`], [`crate::protocol::qdrant::grpc::classify`]) is different in
//! three ways: its body is
//! read whole (it is what the log keeps); it claims its points (or its collection, when it
//! selects by filter) before it is forwarded and holds the claim until its record has an
//! LSN, so conflicting writes are logged in the order Qdrant applied them (promise 3,
//! [`super::order`]); and its response is held until the
//! record is durable (promises 1, 2). A failed request (any status but 2xx) is not logged.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use vecwal_format::Operation;

use super::order::Order;
use crate::log::{Entry, Log};
use crate::protocol::http::{client_builder, connector, join, H2_CONN_WINDOW, H2_STREAM_WINDOW};
use crate::protocol::qdrant::api::{cluster_rest, rest_route, Disposition};
use crate::protocol::qdrant::rest::{classify, Mutation, Touches};
use crate::store::{Keyring, Store};

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Body = http_body_util::combinators::BoxBody<Bytes, Error>;

/// Largest mutation body: a record's payload is at most 256 MiB, less room for the path.
pub(super) const MAX_BODY: usize = (256 << 20) - (64 << 10);

/// Headers that describe one hop, not the request (RFC 9110 §7.6.1).
const HOP: [header::HeaderName; 6] = [
    header::CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

pub struct Proxy {
    pub(super) log: Arc<Log>,
    pub(super) order: Arc<Order>,
    pub(super) client: Client<HttpConnector, Body>,
    /// HTTP/2 only, for gRPC.
    pub(super) h2: Client<HttpConnector, Body>,
    /// `http://host:port` of Qdrant's REST API.
    pub(super) upstream: Uri,
    /// `http://host:port` of Qdrant's gRPC API.
    upstream_grpc: Option<Uri>,
    pub(super) next_id: AtomicU64,
    pub(super) stores: Vec<Arc<dyn Store>>,
    pub(super) keyring: Option<Arc<Keyring>>,
    /// Held while a snapshot is taken: one at a time.
    pub(super) snapshots: tokio::sync::Mutex<()>,
    pub(super) aliases: super::aliases::Aliases,
    /// The api-key of the proxy's own requests (alias lists; snapshots get the caller's).
    pub(super) api_key: Option<HeaderValue>,
}

/// Where snapshots go.
pub struct SnapshotStores {
    pub stores: Vec<Arc<dyn Store>>,
    pub keyring: Option<Arc<Keyring>>,
}

impl Proxy {
    pub fn new(
        log: Arc<Log>,
        order: Arc<Order>,
        upstream: Uri,
        upstream_grpc: Option<Uri>,
        snapshots: SnapshotStores,
        api_key: Option<HeaderValue>,
    ) -> Arc<Proxy> {
        let client = client_builder().build(connector());
        let h2 = client_builder()
            .http2_only(true)
            // Upserts of a few hundred 384-dim points are hundreds of KiB: windows of the
            // default 64 KiB would cost round trips of window updates per request.
            .http2_initial_stream_window_size(H2_STREAM_WINDOW)
            .http2_initial_connection_window_size(H2_CONN_WINDOW)
            .build(connector());
        Arc::new(Proxy {
            log,
            order,
            client,
            h2,
            upstream,
            upstream_grpc,
            next_id: AtomicU64::new(1),
            stores: snapshots.stores,
            keyring: snapshots.keyring,
            snapshots: tokio::sync::Mutex::new(()),
            aliases: Default::default(),
            api_key,
        })
    }

    /// Accepts clients until the listener fails.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) -> std::io::Result<()> {
        // Connections live in this set: when the proxy stops (this task is aborted) they
        // end with it, and none keeps the log alive.
        let mut connections = tokio::task::JoinSet::new();
        loop {
            while connections.try_join_next().is_some() {}
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            let me = self.clone();
            connections.spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let me = me.clone();
                    async move {
                        let started = std::time::Instant::now();
                        let answer = me.handle(req).await;
                        crate::metrics::global().requests.observe(started.elapsed());
                        Ok::<_, Infallible>(answer)
                    }
                });
                let mut builder =
                    hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                builder
                    .http2()
                    .initial_stream_window_size(H2_STREAM_WINDOW)
                    .initial_connection_window_size(H2_CONN_WINDOW);
                if let Err(e) = builder.serve_connection(TokioIo::new(stream), svc).await {
                    tracing::debug!(error = %e, "REST client connection ended");
                }
            });
        }
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let grpc = req
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        if grpc {
            return match &self.upstream_grpc {
                Some(up) => super::grpc_proxy::handle(self, up, req).await,
                None => grpc_error(12, "vecwal: no --upstream-grpc configured"),
            };
        }
        if req.uri().path() == "/vecwal/snapshot" {
            return self.snapshot_request(&req).await;
        }
        let (mut parts, body) = req.into_parts();
        let pq = parts
            .uri
            .path_and_query()
            .map_or("/".to_string(), |p| p.as_str().to_string());
        let uri = match join(&self.upstream, &pq) {
            Ok(u) => u,
            Err(e) => return error(StatusCode::BAD_REQUEST, &e),
        };
        parts.uri = uri;
        strip_hop_headers(&mut parts.headers);
        let route = rest_route(parts.method.as_str(), parts.uri.path());
        let Some(route) = route else {
            if matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) {
                return self.pass(parts, body.map_err(Error::from).boxed()).await;
            }
            return error(
                StatusCode::NOT_IMPLEMENTED,
                &format!(
                    "{} {} is not an endpoint vecwal knows (it knows Qdrant 1.18.3's API) and it \
                     refuses what it cannot tell to be a read, so that no write goes unlogged",
                    parts.method,
                    parts.uri.path()
                ),
            );
        };
        let collection = route.collection.unwrap_or_default();
        match route.route.3 {
            Disposition::Read | Disposition::ReadByPost(_) | Disposition::Ignored(_) => {
                self.pass(parts, body.map_err(Error::from).boxed()).await
            }
            Disposition::Refused(why) => error(
                StatusCode::BAD_REQUEST,
                &format!("refused through the proxy: {why}"),
            ),
            Disposition::Rebase(what) => {
                let collection = self.aliases.resolve(&collection);
                super::bases::rebase(self, parts, body, collection, what).await
            }
            Disposition::Logged(..) | Disposition::Cluster => {
                let Some(m) = classify(parts.method.as_str(), parts.uri.path()) else {
                    return error(StatusCode::INTERNAL_SERVER_ERROR, "unclassified write");
                };
                self.mutation(parts, body, pq, m, route.route.3).await
            }
        }
    }

    /// Streams a request that is not logged both ways.
    async fn pass(&self, parts: http::request::Parts, body: Body) -> Response<Body> {
        match self.client.request(Request::from_parts(parts, body)).await {
            Ok(resp) => {
                let (mut p, b) = resp.into_parts();
                strip_hop_headers(&mut p.headers);
                Response::from_parts(p, b.map_err(Error::from).boxed())
            }
            Err(e) => error(StatusCode::BAD_GATEWAY, &format!("Qdrant unreachable: {e}")),
        }
    }

    /// A write: read whole, ordered, forwarded, logged once Qdrant accepted it, answered
    /// once the record is durable.
    async fn mutation(
        &self,
        parts: http::request::Parts,
        body: Incoming,
        pq: String,
        m: Mutation,
        d: Disposition,
    ) -> Response<Body> {
        if let Err(e) = self.log.admit().await {
            return error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string());
        }
        // Said too large before a byte of it is read: no client waits to send it all.
        if http_body::Body::size_hint(&body).lower() > MAX_BODY as u64 {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!(
                    "request body of {} bytes is over the {MAX_BODY} a write may have",
                    http_body::Body::size_hint(&body).lower()
                ),
            );
        }
        let bytes = match Limited::new(body, MAX_BODY).collect().await {
            Ok(c) => c.to_bytes(),
            Err(e) => {
                return error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!("request body unreadable or over {MAX_BODY} bytes: {e}"),
                )
            }
        };
        if d == Disposition::Cluster {
            match cluster_rest(&bytes) {
                Disposition::Logged(..) => {}
                Disposition::Refused(why) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        &format!("refused through the proxy: {why}"),
                    )
                }
                _ => return self.pass(parts, full(bytes)).await,
            }
        }
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        // Read once: a large upsert's body is most of the proxy's work on it.
        let read = crate::protocol::qdrant::points::read_rest(m.what, &bytes);
        let (pass, touches) = self
            .claim(
                &m,
                |t| t.narrow(&read.keys),
                |t| crate::protocol::qdrant::rest::replayable(m.what, t, &read),
            )
            .await;
        let (method, namespace) = (parts.method.to_string(), namespace(&touches));
        let req = Request::from_parts(parts, full(bytes.clone()));
        let (mut p, answer) = match self.exchange(req, "the write may have been applied").await {
            Ok(got) => got,
            Err(refusal) => return refusal,
        };
        self.after(&m).await;
        if !p.status.is_success() {
            return Response::from_parts(p, full(answer));
        }
        let op = Operation::QdrantRest {
            method,
            path: pq,
            content_type,
            body: bytes.to_vec(),
        };
        let durable = match Entry::new(namespace.clone(), &op) {
            Ok(e) => self.log.append(e),
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        };
        // The LSN is assigned: the next conflicting write may go.
        drop(pass);
        match durable.await {
            Ok(a) if m.what == "create collection" => {
                super::bases::empty(self, &namespace, a).await
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, what = m.what, "a write Qdrant applied could not be logged");
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("vecwal could not log this write, which Qdrant applied: {e}"),
                );
            }
        }
        p.headers.remove(header::CONTENT_LENGTH);
        Response::from_parts(p, full(answer))
    }
}

impl Proxy {
    /// What a write touches, its collection named as Qdrant resolves it.
    pub(super) fn resolve(&self, m: &Mutation) -> Touches {
        if super::aliases::literal(m.what) {
            return m.touches.clone();
        }
        m.touches.clone().resolve(|c| self.aliases.resolve(c))
    }

    /// Claims what `m` touches (its collection resolved, then `narrow`ed). An alias
    /// change claims everything, so once the claim is held the aliases cannot change
    /// through the proxy until it is released; if they changed while this write waited, it
    /// claims again what it now reaches. Returns the claim and what it covers.
    pub(super) async fn claim(
        &self,
        m: &Mutation,
        narrow: impl Fn(Touches) -> Touches,
        replayable: impl Fn(&Touches) -> bool,
    ) -> (super::order::Claim, Touches) {
        let mut touches = narrow(self.resolve(m));
        loop {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let r = replayable(&touches);
            let pass = self.order.claim(id, touches.clone(), r).await;
            let now = narrow(self.resolve(m));
            if now == touches {
                return (pass, touches);
            }
            touches = now;
        }
    }

    /// After a write was answered, while it still holds its claim: reads the aliases again
    /// when it may have changed them.
    pub(super) async fn after(&self, m: &Mutation) {
        if super::aliases::may_change(m.what) {
            if let Err(e) = self.aliases.refresh(self, self.api_key.as_ref()).await {
                tracing::warn!(error = %e, "could not read the aliases after a change");
            }
        }
    }

    /// `POST /vecwal/snapshot?collection=C`: an aligned snapshot of C, answered in
    /// Qdrant's JSON shape.
    async fn snapshot_request(&self, req: &Request<Incoming>) -> Response<Body> {
        if req.method() != http::Method::POST {
            return error(
                StatusCode::METHOD_NOT_ALLOWED,
                "POST /vecwal/snapshot?collection=NAME",
            );
        }
        let collection = req.uri().query().unwrap_or("").split('&').find_map(|kv| {
            kv.strip_prefix("collection=")
                .map(crate::protocol::qdrant::rest::decode)
        });
        let Some(c) = collection.filter(|c| !c.is_empty()) else {
            return error(
                StatusCode::BAD_REQUEST,
                "which collection? ?collection=NAME",
            );
        };
        match super::snapshot::take(self, &c, req.headers().get("api-key")).await {
            Ok(m) => {
                let body = serde_json::json!({
                    "result": { "collection": c, "lsn": m.lsn, "size": m.size, "sha256": m.sha256 },
                    "status": "ok",
                });
                let mut r = Response::new(full(Bytes::from(body.to_string())));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                r
            }
            Err(e) => error(StatusCode::BAD_GATEWAY, &format!("snapshot failed: {e}")),
        }
    }
}

/// A gRPC error as a trailers-only response.
pub(super) fn grpc_error(code: u32, msg: &str) -> Response<Body> {
    let mut r = Response::new(full(Bytes::new()));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    h.insert("grpc-status", HeaderValue::from(code));
    let msg: String = msg
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    if let Ok(v) = HeaderValue::from_str(&msg) {
        h.insert("grpc-message", v);
    }
    r
}

pub(super) fn namespace(t: &Touches) -> String {
    t.collection().unwrap_or_default().to_string()
}

pub(super) fn full(b: Bytes) -> Body {
    Full::new(b).map_err(|never| match never {}).boxed()
}

pub(super) fn strip_hop_headers(h: &mut HeaderMap) {
    // Headers the Connection header names are hop-by-hop too.
    let named: Vec<String> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|s| s.trim().to_ascii_lowercase()))
        .collect();
    for n in named {
        h.remove(n.as_str());
    }
    for n in HOP {
        // gRPC needs `te: trailers` end to end.
        if n == header::TE && h.get(&n).is_some_and(|v| v == "trailers") {
            continue;
        }
        h.remove(n);
    }
    h.remove("keep-alive");
}

impl Proxy {
    /// Sends `req` to Qdrant and reads its whole answer (hop-by-hop headers gone). A failure
    /// is the 502 the client gets; `broken` says what an answer cut off may mean.
    pub(super) async fn exchange(
        &self,
        req: Request<Body>,
        broken: &str,
    ) -> Result<(http::response::Parts, Bytes), Response<Body>> {
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|e| error(StatusCode::BAD_GATEWAY, &format!("Qdrant unreachable: {e}")))?;
        let (mut p, b) = resp.into_parts();
        strip_hop_headers(&mut p.headers);
        match b.collect().await {
            Ok(c) => Ok((p, c.to_bytes())),
            Err(e) => Err(error(
                StatusCode::BAD_GATEWAY,
                &format!("Qdrant's answer broke off ({e}); {broken}"),
            )),
        }
    }
}

/// A JSON error in Qdrant's own shape, so clients show it.
pub(super) fn error(status: StatusCode, msg: &str) -> Response<Body> {
    let body = serde_json::json!({ "status": { "error": format!("vecwal: {msg}") }, "time": 0.0 });
    let mut r = Response::new(full(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// Where a proxy listens.
pub async fn bind(addr: &str) -> std::io::Result<(TcpListener, SocketAddr)> {
    let l = TcpListener::bind(addr).await?;
    let a = l.local_addr()?;
    Ok((l, a))
}
