//! `vecwal prune`: delete what no restore inside the retention window needs.

use std::process::ExitCode;
use std::time::Duration;

use super::store_args::{resolve_stream, StoreArgs, StreamArg};
use crate::catalog::{prune, Catalog};
use crate::log::now_us;
use crate::time::{format_us, parse_duration};

/// Delete segments and snapshots that no restore inside the retention window needs.
///
/// Keeps everything a restore to any moment of the last --retain needs: the newest
/// snapshot at or before the window's start (the base) and every segment after it. Never
/// deletes the base snapshot a retained segment depends on. Without a snapshot that old,
/// nothing is deleted: the stream's start is then the base.
///
/// Examples:
///   vecwal prune --store s3://backups/vecwal --retain 30d --dry-run
///   vecwal prune --store s3://backups/vecwal --retain 7d
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    stream: StreamArg,
    /// How far back restores must stay possible (e.g. 30d, 12h).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    retain: Duration,
    /// Print what would be deleted; delete nothing.
    #[arg(long)]
    dry_run: bool,
}

pub async fn run(a: Args) -> anyhow::Result<ExitCode> {
    let window_start = now_us() - a.retain.as_micros() as i64;
    for store in a.store.open_all().await? {
        let stream = resolve_stream(&*store, a.stream.stream.as_deref()).await?;
        let cat = Catalog::load(&*store, &stream).await?;
        let plan = prune::plan(&cat, window_start);
        println!(
            "{}  stream {stream}: window starts {}",
            store.url(),
            format_us(window_start)
        );
        match (plan.base_lsn, plan.base_time_us) {
            (Some(l), Some(t)) => println!("  base: snapshot at LSN {l} ({})", format_us(t)),
            _ => {
                println!("  no snapshot at or before the window's start: nothing can be deleted");
                continue;
            }
        }
        let verb = if a.dry_run {
            "would delete"
        } else {
            "deleting"
        };
        for key in &plan.delete {
            println!("  {verb} {key}");
            if !a.dry_run {
                store.delete(key).await?;
            }
        }
        println!(
            "  {} objects, {} bytes{}",
            plan.delete.len(),
            plan.bytes,
            if a.dry_run { " (dry run)" } else { "" }
        );
    }
    Ok(ExitCode::SUCCESS)
}
