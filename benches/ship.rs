//! Shipping benchmark (not a test: no assertions on time).
//!
//!     scripts/bench-ship.sh        (starts SeaweedFS, runs the anchors and this)
//!
//! Modes, chosen by the first argument:
//! - `upload DIR_OF_SEGMENTS`: uploads every file with `put_new` (idempotent create plus
//!   verification) to a local-dir store and, when VECWAL_BENCH_S3_ENDPOINT is set, to
//!   that S3 service (bucket vecwal-bench, credentials from the AWS environment); prints MB/s.
//! - `make-segments DIR N`: writes N sealed segments of ~16 MiB of vector records to DIR.
//! - `rpo SECONDS_INTERVAL SECONDS_RUN RATE`: appends RATE records/s for the run with
//!   segments rolling at the interval and a shipper on the store; prints the achieved RPO
//!   (append → confirmed in the store) as percentiles over every record.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "../tests/support/mod.rs"]
mod support;

use vecwal::log::{Entry, Log, LogConfig};
use vecwal::ship::{ShipConfig, Shipper};
use vecwal::store::{FsStore, S3Options, S3Store, Store};

/// The tests' records: a Redis HSET of a 384-dim vector derived from the index.
fn record(i: u64) -> Entry {
    support::entry(0, i)
}

async fn s3_store(prefix: &str) -> Option<Arc<dyn Store>> {
    let endpoint = std::env::var("VECWAL_BENCH_S3_ENDPOINT").ok()?;
    let opts = S3Options {
        endpoint: Some(endpoint),
        ..Default::default()
    };
    Some(Arc::new(
        S3Store::new("vecwal-bench", prefix, &opts).await.unwrap(),
    ))
}

async fn make_segments(dir: &Path, n: usize) {
    let data = dir.join("log");
    let mut cfg = LogConfig::new("bench");
    cfg.segment_max_bytes = 16 << 20;
    cfg.fsync = vecwal::log::FsyncPolicy::No;
    let (log, _) = Log::open(&data, cfg).unwrap();
    let mut i = 0;
    while log.sealed_segments().unwrap().len() < n {
        log.append(record(i)).await.unwrap();
        i += 1;
    }
    log.roll().await.unwrap();
    for (k, (_, p)) in log
        .sealed_segments()
        .unwrap()
        .into_iter()
        .take(n)
        .enumerate()
    {
        std::fs::rename(p, dir.join(format!("seg{k:03}.seg"))).unwrap();
    }
    log.close().unwrap();
    std::fs::remove_dir_all(&data).unwrap();
}

async fn upload(dir: &Path) {
    let files: Vec<PathBuf> = {
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        v
    };
    let blobs: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(p).unwrap(),
            )
        })
        .collect();
    let total: usize = blobs.iter().map(|(_, b)| b.len()).sum();
    let target = tempfile::Builder::new()
        .prefix("vecwal-bench-store")
        .tempdir_in(dir.parent().unwrap())
        .unwrap();
    let mut stores: Vec<(&str, Arc<dyn Store>)> = vec![(
        "local dir (fsync per object)",
        Arc::new(FsStore::new(target.path()).unwrap()),
    )];
    let run = format!("run-{}", std::process::id());
    if let Some(s) = s3_store(&run).await {
        stores.push(("SeaweedFS S3 (Content-MD5 + HEAD check)", s));
    }
    for (name, store) in stores {
        let start = Instant::now();
        for (k, b) in &blobs {
            store.put_new(&format!("wal/{k}"), b.clone()).await.unwrap();
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "| vecwal put_new → {name} | {} objects | {:.1} MB | {:.2} s | {:.0} MB/s |",
            blobs.len(),
            total as f64 / 1e6,
            secs,
            total as f64 / 1e6 / secs
        );
    }
}

async fn rpo(interval: Duration, run: Duration, rate: u64) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = LogConfig::new("bench");
    cfg.segment_max_age = interval;
    let (log, _) = Log::open(dir.path(), cfg).unwrap();
    let log = Arc::new(log);
    let (store, where_): (Arc<dyn Store>, &str) = match s3_store(&format!(
        "rpo-{}-{}",
        std::process::id(),
        interval.as_secs()
    ))
    .await
    {
        Some(s) => (s, "SeaweedFS"),
        None => (
            Arc::new(FsStore::new(dir.path().join("store")).unwrap()),
            "local dir",
        ),
    };
    let shipper = Arc::new(Shipper::start(
        log.clone(),
        vec![store],
        ShipConfig {
            interval,
            ..Default::default()
        },
    ));
    // Watch confirmations: (when, shipped LSN) at every change.
    let watcher = {
        let shipper = shipper.clone();
        tokio::spawn(async move {
            let mut seen = vec![(Instant::now(), 0u64)];
            loop {
                let lsn = shipper.status()[0].shipped_lsn;
                if lsn != seen.last().unwrap().1 {
                    seen.push((Instant::now(), lsn));
                }
                if lsn == u64::MAX {
                    break seen;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
                if STOP.load(std::sync::atomic::Ordering::Relaxed)
                    && lsn >= LAST.load(std::sync::atomic::Ordering::Relaxed)
                {
                    break seen;
                }
            }
        })
    };
    let start = Instant::now();
    let mut appended = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    let mut i = 0;
    while start.elapsed() < run {
        tick.tick().await;
        let a = log.append(record(i)).await.unwrap();
        appended.push((a.lsn, Instant::now()));
        i += 1;
    }
    LAST.store(
        appended.last().unwrap().0,
        std::sync::atomic::Ordering::Relaxed,
    );
    STOP.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = watcher.await.unwrap();
    let mut lags: Vec<f64> = appended
        .iter()
        .map(|(lsn, t)| {
            let (when, _) = seen.iter().find(|(_, l)| l >= lsn).unwrap();
            when.duration_since(*t).as_secs_f64()
        })
        .collect();
    lags.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let p = |q: f64| lags[((lags.len() as f64 - 1.0) * q) as usize];
    println!(
        "| {:.0} s | {where_} | {rate} rec/s for {:.0} s | {} | {:.2} s | {:.2} s | {:.2} s |",
        interval.as_secs_f64(),
        run.as_secs_f64(),
        lags.len(),
        p(0.5),
        p(0.99),
        lags.last().unwrap()
    );
    Arc::into_inner(shipper).map(|s| tokio::spawn(s.stop()));
}

static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static LAST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    match args.first().map(String::as_str) {
        Some("make-segments") => {
            rt.block_on(make_segments(Path::new(&args[1]), args[2].parse().unwrap()))
        }
        Some("upload") => rt.block_on(upload(Path::new(&args[1]))),
        Some("rpo") => rt.block_on(rpo(
            Duration::from_secs(args[1].parse().unwrap()),
            Duration::from_secs(args[2].parse().unwrap()),
            args[3].parse().unwrap(),
        )),
        _ => {
            eprintln!("usage: ship (make-segments DIR N | upload DIR | rpo INTERVAL_S RUN_S RATE)")
        }
    }
}
