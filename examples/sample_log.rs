//! Writes a sample log: a stream of Redis HSETs of 384-dim embeddings from 8 concurrent
//! writers, rolled into a few sealed segments plus an open one. Used by the README demo.
//!
//!     cargo run --release --example sample_log -- DATA_DIR [RECORDS]

use std::time::Duration;

use vecwal::log::{Entry, Log, LogConfig};
use vecwal_format::Operation;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: sample_log DATA_DIR [RECORDS]"))?;
    let n: u64 = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(20_000);
    let mut cfg = LogConfig::new("sample");
    cfg.segment_max_bytes = 8 << 20; // small, so the sample has several sealed segments
    cfg.segment_max_age = Duration::from_secs(3600);
    let (log, report) = Log::open(dir.as_ref(), cfg)?;
    eprintln!("opened {dir}: next LSN {}", report.next_lsn);
    let start = Entry::new(
        "",
        &Operation::StreamStart {
            source: "sample".into(),
            vecwal_version: env!("CARGO_PKG_VERSION").into(),
        },
    )?;
    log.append(start).await?;

    let log = std::sync::Arc::new(log);
    let writers = 8;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            for i in (w..n).step_by(writers as usize) {
                let op = Operation::RedisCommand {
                    argv: vec![
                        b"HSET".to_vec(),
                        format!("doc:{i}").into_bytes(),
                        b"embedding".to_vec(),
                        embedding(i),
                        b"title".to_vec(),
                        format!("document number {i}").into_bytes(),
                    ],
                };
                log.append(Entry::new("0", &op)?).await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let sealed = log.roll().await?;
    eprintln!("appended {n} records; sealed through LSN {sealed}");
    let point = Entry::new(
        "",
        &Operation::RestorePoint {
            name: "sample-done".into(),
        },
    )?;
    log.append(point).await?;
    std::sync::Arc::into_inner(log)
        .expect("writers finished")
        .close()?;
    Ok(())
}

/// A deterministic unit-length 384-dim f32 vector, shaped like a sentence embedding.
fn embedding(seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let v: Vec<f32> = (0..384)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect();
    let norm = v.iter().map(|a| a * a).sum::<f32>().sqrt();
    v.iter().flat_map(|a| (a / norm).to_le_bytes()).collect()
}
