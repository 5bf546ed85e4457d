//! `vecwal restore redis`: bring a Redis back to a moment.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use super::store_args::{resolve_stream, CryptArgs, StoreArgs, StreamArg};
use crate::capture::redis::client::RedisTarget;
use crate::restore::{self, redis::Progress, Target};
use crate::time::{format_us, parse_time};

/// Restore a database to a moment from a store.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    target: Kind,
}

#[derive(Debug, clap::Subcommand)]
enum Kind {
    Redis(RedisArgs),
}

/// Restore a Redis as it was at a time or LSN.
///
/// Picks the newest base snapshot at or before the target, loads it into the target Redis
/// and applies the logged writes up to the target: the result is exactly the state after
/// every write stamped at or before --at (or up to --lsn). The plan is printed first; a
/// bad checksum or a missing record stops the restore with the object and LSN named.
///
/// vecwal serves the snapshot and the writes to the target over Redis replication (the
/// target runs REPLICAOF against vecwal, then is detached), so the target must be able to
/// connect back to this machine, and must have the same modules loaded as the original.
///
/// Examples:
///   vecwal restore redis --store s3://backups/vecwal --at 2026-11-21T09:59:00Z \
///       --target redis://127.0.0.1:6390
///   vecwal restore redis --store ./backups --at -15m --target redis://staging:6379 --dry-run
///   vecwal restore redis --store ./backups --lsn 18231 --target redis://127.0.0.1:6390 --force
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
struct RedisArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    stream: StreamArg,
    #[command(flatten)]
    crypt: CryptArgs,
    /// Restore to this time: RFC 3339 (2026-11-21T09:59:00Z) or relative (-15m).
    #[arg(
        long,
        value_name = "TIME",
        conflicts_with = "lsn",
        allow_hyphen_values = true
    )]
    at: Option<String>,
    /// Restore to exactly this record.
    #[arg(long, value_name = "LSN")]
    lsn: Option<u64>,
    /// The Redis to restore into: redis://[user:password@]host:port.
    #[arg(long, value_name = "URL")]
    target: String,
    /// Replace what the target holds (it is refused when not empty).
    #[arg(long)]
    force: bool,
    /// Print the plan and stop.
    #[arg(long)]
    dry_run: bool,
    /// With no snapshot at or before the target, start from an empty database (only right
    /// if the database was empty when capture began).
    #[arg(long)]
    from_empty: bool,
}

pub async fn run(a: Args) -> anyhow::Result<ExitCode> {
    let Kind::Redis(a) = a.target;
    let target = RedisTarget::parse(&a.target).map_err(|e| anyhow::anyhow!("--target: {e}"))?;
    let goal = match (&a.at, a.lsn) {
        (Some(t), _) => Target::Time(
            parse_time(t, crate::log::now_us()).map_err(|e| anyhow::anyhow!("--at: {e}"))?,
        ),
        (None, Some(n)) => Target::Lsn(n),
        (None, None) => Target::Latest,
    };
    let keyring = a.crypt.keyring()?.map(Arc::new);
    let store = a.store.open_all().await?.remove(0);
    let stream = resolve_stream(store.as_ref(), a.stream.stream.as_deref()).await?;
    let plan = restore::plan(
        store.as_ref(),
        &stream,
        goal,
        keyring.as_deref(),
        a.from_empty,
    )
    .await?;
    println!("restore plan for {}:\n{}", target.addr, plan.describe());
    if let Target::Time(t) = goal {
        if t > plan.latest_time_us {
            println!(
                "  note: {} is after the last shipped record; restoring to the latest",
                format_us(t)
            );
        }
    }
    if a.dry_run {
        println!("dry run: nothing changed");
        return Ok(ExitCode::SUCCESS);
    }
    let bar = progress_bar(plan.record_count());
    let report = |p: Progress| {
        if let Some(b) = &bar {
            b.set_position(p.records_sent);
            b.set_message(format!("{} KiB applied", p.bytes_applied >> 10));
        }
    };
    let summary = restore::redis::restore(store, &plan, keyring, &target, a.force, &report).await?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    println!(
        "restored {}: base {}, {} records applied, final LSN {} at {}, in {:.1?}",
        target.addr,
        plan.base
            .as_ref()
            .map_or("empty database".to_string(), |b| format!(
                "snapshot at LSN {}",
                b.lsn
            )),
        summary.records_applied,
        summary.final_lsn,
        format_us(summary.final_time_us),
        summary.elapsed
    );
    Ok(ExitCode::SUCCESS)
}

/// A progress bar on a terminal; nothing otherwise (logs stay clean).
pub fn progress_bar(total: u64) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let b = indicatif::ProgressBar::new(total);
    b.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {pos}/{len} records ({per_sec}, eta {eta}) {msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    Some(b)
}
