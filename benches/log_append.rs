//! Append throughput and compression benchmark (not a test: no assertions on time).
//!
//!     cargo bench --bench log_append [-- --seconds 3 --dir /path/on/the/disk/under/test]
//!
//! Prints markdown tables for docs/benchmarks.md: records/s and MB/s of input for each
//! fsync policy, record size (384- and 768-dim f32 vectors in a Redis HSET) and number of
//! concurrent appenders; then the compression ratio of sealed segments on vector payloads,
//! plain zstd versus shuffle4 + zstd. It also writes the raw frames it compressed to
//! `<dir>/vectors.frames` so `zstd -b` can be run on the very same bytes.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vecwal::log::{Entry, FsyncPolicy, Log, LogConfig};
use vecwal_format::{
    Filter, Operation, Record, SealOptions, SealedWriter, SegmentHeader, SegmentKind,
};

struct Opts {
    seconds: f64,
    dir: PathBuf,
}

fn opts() -> Opts {
    let mut o = Opts {
        seconds: 3.0,
        dir: std::env::temp_dir().join("vecwal-bench"),
    };
    let args: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < args.len() {
        match args[i].as_str() {
            "--seconds" => {
                o.seconds = args[i + 1].parse().expect("--seconds N");
                i += 1;
            }
            "--dir" => {
                o.dir = PathBuf::from(&args[i + 1]);
                i += 1;
            }
            _ => {} // cargo bench passes --bench
        }
        i += 1;
    }
    o
}

/// Deterministic pseudo-random embeddings: Gaussian components (Box-Muller over xorshift),
/// normalized to unit length, as sentence-embedding models produce.
struct Vectors(u64);

impl Vectors {
    fn next_u01(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn embedding(&mut self, dim: usize) -> Vec<u8> {
        let v: Vec<f32> = (0..dim)
            .map(|_| {
                let (a, b) = (self.next_u01(), self.next_u01());
                ((-2.0 * a.ln()).sqrt() * (2.0 * std::f64::consts::PI * b).cos()) as f32
            })
            .collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().flat_map(|x| (x / n).to_le_bytes()).collect()
    }
}

/// An HSET like an application writing a document with its embedding and a small payload.
fn hset(vectors: &mut Vectors, i: u64, dim: usize) -> Operation {
    Operation::RedisCommand {
        argv: vec![
            b"HSET".to_vec(),
            format!("doc:{i}").into_bytes(),
            b"embedding".to_vec(),
            vectors.embedding(dim),
            b"title".to_vec(),
            format!("Document {i} about vector databases").into_bytes(),
            b"category".to_vec(),
            ["news", "blog", "paper", "docs"][(i % 4) as usize]
                .as_bytes()
                .to_vec(),
        ],
    }
}

fn append_run(
    o: &Opts,
    rt: &tokio::runtime::Runtime,
    policy: FsyncPolicy,
    dim: usize,
    appenders: usize,
) -> (f64, f64, usize) {
    let dir = o.dir.join(format!("run-{policy:?}-{dim}-{appenders}"));
    let _ = std::fs::remove_dir_all(&dir);
    let mut cfg = LogConfig::new("bench");
    cfg.fsync = policy;
    let (log, _) = Log::open(&dir, cfg).unwrap();
    let log = Arc::new(log);
    // Pre-built entries: the benchmark measures the log, not vector generation.
    let mut vectors = Vectors(0x1234_5678 + dim as u64);
    let pool: Arc<Vec<Entry>> = Arc::new(
        (0..256)
            .map(|i| Entry::new("0", &hset(&mut vectors, i, dim)).unwrap())
            .collect(),
    );
    let record_bytes = pool[0].payload.len();
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for a in 0..appenders {
            let (log, pool, stop, count, bytes) = (
                log.clone(),
                pool.clone(),
                stop.clone(),
                count.clone(),
                bytes.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut i = a;
                while !stop.load(Ordering::Relaxed) {
                    let e = pool[i % pool.len()].clone();
                    let n = e.payload.len() as u64;
                    log.append(e).await.unwrap();
                    count.fetch_add(1, Ordering::Relaxed);
                    bytes.fetch_add(n, Ordering::Relaxed);
                    i += appenders;
                }
            }));
        }
        tokio::time::sleep(Duration::from_secs_f64(o.seconds)).await;
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.await.unwrap();
        }
    });
    let secs = start.elapsed().as_secs_f64();
    Arc::into_inner(log).unwrap().close().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let n = count.load(Ordering::Relaxed) as f64;
    (
        n / secs,
        bytes.load(Ordering::Relaxed) as f64 / secs / 1e6,
        record_bytes,
    )
}

fn compression(o: &Opts) {
    println!("\n### Compression of sealed segments (256 KiB blocks, one thread)\n");
    println!(
        "| payload | records | raw MB | zstd level | filter | sealed MB | ratio | seal MB/s |"
    );
    println!("|---|---:|---:|---:|---|---:|---:|---:|");
    for dim in [384usize, 768] {
        let mut vectors = Vectors(42 + dim as u64);
        let records: Vec<Record> = (0..20_000u64)
            .map(|i| {
                let op = hset(&mut vectors, i, dim);
                Record {
                    lsn: i + 1,
                    timestamp_us: 1_795_255_140_000_000 + i as i64 * 50,
                    stream_id: 1,
                    timeline: 1,
                    kind: op.kind(),
                    namespace: "0".into(),
                    payload: op.encode().unwrap(),
                }
            })
            .collect();
        let mut raw = Vec::new();
        for r in &records {
            r.encode_frame(&mut raw);
        }
        if dim == 384 {
            std::fs::create_dir_all(&o.dir).unwrap();
            std::fs::write(o.dir.join("vectors.frames"), &raw).unwrap();
        }
        for (zstd_level, filter) in [
            (3, Filter::None),
            (3, Filter::Shuffle4),
            (1, Filter::None),
            (1, Filter::Shuffle4),
        ] {
            let header = SegmentHeader {
                kind: SegmentKind::Sealed,
                stream_id: 1,
                timeline: 1,
                first_lsn: 1,
                created_us: 0,
                stream_name: "bench".into(),
            };
            let opts = SealOptions {
                filter,
                zstd_level,
                ..SealOptions::default()
            };
            let start = Instant::now();
            let mut w = SealedWriter::new(Vec::new(), header, opts).unwrap();
            for r in &records {
                w.push(r).unwrap();
            }
            let (out, s) = w.finish().unwrap();
            let secs = start.elapsed().as_secs_f64();
            println!(
                "| HSET {dim}-dim f32 | {} | {:.1} | {zstd_level} | {filter:?} | {:.1} | {:.3} | {:.0} |",
                records.len(),
                s.raw_bytes as f64 / 1e6,
                out.len() as f64 / 1e6,
                s.raw_bytes as f64 / out.len() as f64,
                s.raw_bytes as f64 / 1e6 / secs
            );
        }
    }
    println!(
        "\n(raw frames of the 384-dim run written to {} for `zstd -b3`)",
        o.dir.join("vectors.frames").display()
    );
}

fn main() {
    let o = opts();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "### Append throughput ({}s per point, data dir {})\n",
        o.seconds,
        o.dir.display()
    );
    println!("| fsync | record | appenders | records/s | MB/s of input |");
    println!("|---|---:|---:|---:|---:|");
    for policy in [FsyncPolicy::Always, FsyncPolicy::Everysec, FsyncPolicy::No] {
        for dim in [384usize, 768] {
            for appenders in [1usize, 8, 64] {
                let (rps, mbps, size) = append_run(&o, &rt, policy, dim, appenders);
                println!(
                    "| {} | {:.1} KiB ({dim}-dim) | {appenders} | {rps:.0} | {mbps:.1} |",
                    format!("{policy:?}").to_lowercase(),
                    size as f64 / 1024.0
                );
            }
        }
    }
    compression(&o);
}
