//! `vecwal ls`: what a store holds for a stream.

use std::process::ExitCode;

use super::store_args::{resolve_stream, StoreArgs, StreamArg};
use crate::catalog::Catalog;
use crate::time::format_us;

/// List what a store holds for a stream: the recoverable window, snapshots, segments, gaps.
///
/// The recoverable window runs from the earliest moment a restore can reach (a snapshot,
/// or the stream's start) to the last record shipped. Times come from the records
/// themselves, never from the store's modification times.
///
/// Examples:
///   vecwal ls --store s3://backups/vecwal
///   vecwal ls --store /mnt/backup --stream redis-main --segments
///   vecwal ls --store s3://backups/vecwal --json
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    stream: StreamArg,
    /// List every segment too.
    #[arg(long)]
    segments: bool,
    /// Print the catalog as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(a: Args) -> anyhow::Result<ExitCode> {
    for store in a.store.open_all().await? {
        let stream = resolve_stream(&*store, a.stream.stream.as_deref()).await?;
        let cat = Catalog::load(&*store, &stream).await?;
        let (windows, gaps) = (cat.windows(), cat.gaps());
        if a.json {
            let v = serde_json::json!({
                "store": store.url(),
                "catalog": cat,
                "windows": windows,
                "gaps": gaps,
            });
            println!("{}", serde_json::to_string_pretty(&v)?);
            continue;
        }
        println!("store   {}", store.url());
        match &cat.identity {
            Some(i) => println!("stream  {} (id {})", i.name, i.stream_id),
            None => println!("stream  {stream} (no identity object: nothing shipped yet?)"),
        }
        for h in &cat.timelines {
            println!(
                "timeline {}: branched from timeline {} after LSN {} ({}), began {}",
                h.timeline,
                h.parent,
                h.branch_lsn,
                format_us(h.branch_time_us),
                h.created
            );
        }
        if let Some(newest) = cat.newest_timeline().filter(|t| *t > 1) {
            println!("restores follow timeline {newest} unless given --timeline");
        }
        let bytes: u64 = cat.segments.iter().map(|s| s.size).sum();
        println!(
            "segments {} ({} bytes)   snapshots {}",
            cat.segments.len(),
            bytes,
            cat.snapshots.len()
        );
        if windows.is_empty() {
            println!(
                "recoverable: nothing yet (no snapshot, and no segments from the stream's start)"
            );
        }
        for w in &windows {
            let base = if w.base_lsn == 0 {
                "stream start".to_string()
            } else {
                format!("snapshot at LSN {}", w.base_lsn)
            };
            println!(
                "recoverable: {} (LSN {}) → {} (LSN {})   timeline {}, from {base}",
                format_us(w.earliest_time_us),
                w.earliest_lsn,
                format_us(w.latest_time_us),
                w.latest_lsn,
                w.timeline
            );
        }
        for g in &gaps {
            println!(
                "GAP: timeline {} has no records {}..={}",
                g.timeline,
                g.after_lsn + 1,
                g.next_lsn - 1
            );
        }
        for s in &cat.snapshots {
            println!(
                "snapshot  LSN {}  {}  {} ({} bytes, sha256 {}…)",
                s.lsn,
                format_us(s.time_us),
                s.data_key,
                s.size,
                &s.sha256[..12.min(s.sha256.len())]
            );
        }
        if a.segments {
            for s in &cat.segments {
                let r = s.range;
                println!(
                    "segment   LSN {}..={}  {} → {}  {} bytes",
                    r.first_lsn,
                    r.last_lsn,
                    format_us(r.first_ts),
                    format_us(r.last_ts),
                    s.size
                );
            }
        }
        for k in &cat.unrecognized {
            println!("unrecognized object: {k}");
        }
        println!();
    }
    Ok(ExitCode::SUCCESS)
}
