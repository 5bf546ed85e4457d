//! Prometheus metrics of a running capture, on an optional listener (`--metrics ADDR`).
//!
//! One process runs one capture, so the figures live in one process-wide [`Registry`]:
//! the log and the shipper count into it as they work (a relaxed atomic add each, nothing
//! on the hot path waits), and gauges are read from the log and the shipper when scraped.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use crate::log::Log;
use crate::ship::DestinationStatus;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
];

/// A latency histogram with fixed buckets.
#[derive(Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|&b| s <= b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_ns
            .fetch_add(d.as_nanos().min(u64::MAX as u128) as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (b, c) in BUCKETS.iter().zip(&self.counts) {
            cumulative += c.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

type ShipSource = Box<dyn Fn() -> Vec<DestinationStatus> + Send + Sync>;

/// Everything `/metrics` shows.
#[derive(Default)]
pub struct Registry {
    /// Bytes the log wrote (records and segment headers).
    pub log_bytes: AtomicU64,
    pub fsync: Histogram,
    /// Client requests through the Qdrant proxy, until the answer's head.
    pub requests: Histogram,
    /// Replies to writes the Redis proxy held until the log covered them: the latency it
    /// adds to a write.
    pub write_waits: Histogram,
    /// Writes the Redis proxy kept from Redis while the log was `MAX_UNLOGGED_WRITES`
    /// behind (waits under a millisecond are not counted).
    pub unlogged_waits: Histogram,
    /// The log, the LSN it stood at when set, and when (UTC µs).
    log: Mutex<Option<(Weak<Log>, u64, i64)>>,
    ship: Mutex<Option<ShipSource>>,
}

/// The process's registry.
pub fn global() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(Registry::default)
}

impl Registry {
    /// The log whose gauges to show; records logged count from where it stands now.
    pub fn set_log(&self, log: &Arc<Log>) {
        *self.log.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((Arc::downgrade(log), log.last_lsn(), crate::log::now_us()));
    }

    /// Where the destinations' status comes from (the shipper, once started).
    pub fn set_ship(&self, f: impl Fn() -> Vec<DestinationStatus> + Send + Sync + 'static) {
        *self.ship.lock().unwrap_or_else(|p| p.into_inner()) = Some(Box::new(f));
    }

    /// The Prometheus text exposition of everything, at `now_us`.
    pub fn render(&self, now_us: i64) -> String {
        let mut out = String::new();
        let mut gauge = |name: &str, help: &str, kind: &str, rows: &[(String, f64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, v) in rows {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        };
        let log = self.log.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some((log, start, since)) = log.and_then(|(w, s, t)| Some((w.upgrade()?, s, t))) {
            let (lsn, ts) = log.last_appended();
            let one = |v: f64| vec![(String::new(), v)];
            gauge(
                "vecwal_records_logged_total",
                "Records appended to the log by this process.",
                "counter",
                &one(lsn.saturating_sub(start) as f64),
            );
            gauge(
                "vecwal_log_last_lsn",
                "LSN of the last record appended.",
                "gauge",
                &one(lsn as f64),
            );
            gauge(
                "vecwal_log_last_record_timestamp_seconds",
                "Timestamp of the last record appended.",
                "gauge",
                &one(ts as f64 / 1e6),
            );
            gauge(
                "vecwal_log_bytes_written_total",
                "Bytes the log wrote.",
                "counter",
                &one(self.log_bytes.load(Ordering::Relaxed) as f64),
            );
            gauge(
                "vecwal_refusing_writes",
                "1 while new writes are refused (spool full, log failed, capture unable to log).",
                "gauge",
                &one(f64::from(u8::from(log.check_admission().is_err()))),
            );
            gauge(
                "vecwal_spool_bytes",
                "Bytes of log kept locally until every destination has them.",
                "gauge",
                &one(log.spool_bytes() as f64),
            );
            gauge(
                "vecwal_spool_limit_bytes",
                "Spool size past which writes are refused or held.",
                "gauge",
                &one(log.spool_limit() as f64),
            );
            let ship = self.ship.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(ship) = ship.as_ref() {
                destinations(&mut gauge, &ship(), lsn, now_us, since);
            }
        }
        self.fsync.render(
            &mut out,
            "vecwal_fsync_seconds",
            "Time each fsync of the log took.",
        );
        self.requests.render(
            &mut out,
            "vecwal_proxy_request_seconds",
            "Time from a client's request to the Qdrant proxy's answer.",
        );
        self.write_waits.render(
            &mut out,
            "vecwal_proxy_write_wait_seconds",
            "Time the Redis proxy held replies to writes until the log covered them.",
        );
        self.unlogged_waits.render(
            &mut out,
            "vecwal_proxy_backpressure_seconds",
            "Time the Redis proxy kept writes from Redis because the log was 32 MiB behind them (waits over 1 ms).",
        );
        out
    }
}

/// Per destination: the RPO exposure (lag), what was shipped, upload errors.
fn destinations(
    gauge: &mut impl FnMut(&str, &str, &str, &[(String, f64)]),
    ship: &[DestinationStatus],
    appended: u64,
    now_us: i64,
    since_us: i64,
) {
    let rows = |f: &dyn Fn(&DestinationStatus) -> f64| -> Vec<(String, f64)> {
        ship.iter()
            .map(|d| (format!("{{destination=\"{}\"}}", escape(&d.url)), f(d)))
            .collect()
    };
    gauge(
        "vecwal_ship_lag_seconds",
        "Age of the oldest record not yet in the destination (0 when it holds everything): \
         the history lost if this machine vanished now.",
        "gauge",
        // As `vecwal status` counts it: from the last record the destination holds; with
        // none shipped by this process yet, from when it started.
        &rows(&|d| {
            let through = if d.shipped_lsn >= appended {
                now_us
            } else if d.shipped_time_us > 0 {
                d.shipped_time_us
            } else {
                since_us
            };
            (now_us - through).max(0) as f64 / 1e6
        }),
    );
    gauge(
        "vecwal_ship_shipped_lsn",
        "Last LSN the destination confirmed.",
        "gauge",
        &rows(&|d| d.shipped_lsn as f64),
    );
    gauge(
        "vecwal_ship_segments_total",
        "Segments shipped to the destination.",
        "counter",
        &rows(&|d| d.segments_shipped as f64),
    );
    gauge(
        "vecwal_ship_bytes_total",
        "Bytes shipped to the destination.",
        "counter",
        &rows(&|d| d.bytes_shipped as f64),
    );
    gauge(
        "vecwal_ship_upload_errors_total",
        "Failed shipping rounds (each is retried).",
        "counter",
        &rows(&|d| d.upload_errors as f64),
    );
    gauge(
        "vecwal_ship_up",
        "1 while the last shipping round to the destination succeeded.",
        "gauge",
        &rows(&|d| f64::from(u8::from(d.last_error.is_none() && !d.stopped))),
    );
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Serves `GET /metrics` on `addr` until the process ends; the address it bound.
pub async fn serve(addr: &str) -> std::io::Result<SocketAddr> {
    use http_body_util::Full;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    |req: http::Request<hyper::body::Incoming>| async move {
                        let resp = if req.uri().path() == "/metrics" {
                            http::Response::builder()
                                .header("content-type", "text/plain; version=0.0.4")
                                .body(Full::new(bytes::Bytes::from(
                                    global().render(crate::log::now_us()),
                                )))
                        } else {
                            http::Response::builder()
                                .status(404)
                                .body(Full::new(bytes::Bytes::from_static(b"try /metrics\n")))
                        };
                        Ok::<_, std::convert::Infallible>(resp.expect("a valid response"))
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(bound)
}
