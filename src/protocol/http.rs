//! HTTP plumbing shared by the Qdrant proxy and the Qdrant restore: joining a base URL with
//! a request's path, percent-encoding a path segment, and the HTTP/2 windows both use.

use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Builder;
use hyper_util::rt::TokioExecutor;

/// The TCP connector of every HTTP client vecwal runs (the proxy's upstream, the restore's
/// target). A request goes out in parts (headers, then its body); without TCP_NODELAY a
/// small last part waits for the previous one's delayed ACK: some 40 ms a request.
pub fn connector() -> HttpConnector {
    let mut c = HttpConnector::new();
    c.set_nodelay(true);
    c
}

/// A client builder for every HTTP client vecwal runs. Idle pooled connections are
/// dropped after 2 s, before Qdrant's server (5 s keep-alive) closes them: a request sent
/// on a connection the server is closing at that moment fails without having been sent.
pub fn client_builder() -> Builder {
    let mut b = hyper_util::client::legacy::Client::builder(TokioExecutor::new());
    b.pool_idle_timeout(Duration::from_secs(2));
    b
}

/// HTTP/2 flow-control windows, both ways (see `Proxy::new`).
pub const H2_STREAM_WINDOW: u32 = 4 << 20;
pub const H2_CONN_WINDOW: u32 = 16 << 20;

/// `base` (scheme and authority) with the path and query of a request.
pub fn join(base: &Uri, pq: &str) -> Result<Uri, String> {
    format!("{}{}", base.to_string().trim_end_matches('/'), pq)
        .parse::<Uri>()
        .map_err(|e| format!("bad request path: {e}"))
}

/// Percent-encodes what is not unreserved (RFC 3986), for a path segment.
pub fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
