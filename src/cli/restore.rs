//! `vecwal restore redis`: bring a Redis back to a moment.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use super::store_args::{resolve_stream, CryptArgs, StoreArgs, StreamArg};
use crate::protocol::redis_client::RedisTarget;
use crate::restore::to_dir::{Scratch, ScratchServer};
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
    Qdrant(super::restore_qdrant::Args),
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
///   vecwal restore redis --store ./backups --at -1h --to-dir ./restored \
///       --loadmodule /usr/lib/redis/modules/redisearch.so
///
/// With --to-dir nothing running is touched: vecwal starts a scratch redis-server
/// (--redis-server, with the --loadmodule modules the data needs) on loopback, restores into
/// it, and has it save DIR/dump.rdb, which a redis-server started with --dir DIR loads.
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
#[command(group(clap::ArgGroup::new("into").required(true).args(["target", "to_dir"])))]
struct RedisArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    stream: StreamArg,
    #[command(flatten)]
    crypt: CryptArgs,
    #[command(flatten)]
    to: RestoreTo,
    /// The Redis to restore into: redis://[user:password@]host:port.
    #[arg(long, value_name = "URL")]
    target: Option<String>,
    /// Instead of a running Redis, write an RDB file into this directory.
    #[arg(long, value_name = "DIR")]
    to_dir: Option<PathBuf>,
    /// The file --to-dir writes.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "dump.rdb",
        requires = "to_dir"
    )]
    dbfilename: String,
    /// The redis-server that writes the --to-dir file (same version as, or older than, the
    /// server that will load it).
    #[arg(
        long,
        value_name = "PATH",
        default_value = "redis-server",
        requires = "to_dir"
    )]
    redis_server: PathBuf,
    /// A module the data needs (RediSearch, RedisJSON, …), for --to-dir; repeatable.
    #[arg(long, value_name = "PATH", requires = "to_dir")]
    loadmodule: Vec<PathBuf>,
    /// Replace what the target holds (it is refused when not empty), or the --to-dir file.
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
    let a = match a.target {
        Kind::Redis(a) => a,
        Kind::Qdrant(q) => return super::restore_qdrant::run(q).await,
    };
    let target = match &a.target {
        Some(t) => Some(RedisTarget::parse(t).map_err(|e| anyhow::anyhow!("--target: {e}"))?),
        None => None,
    };
    let into = match (&target, &a.to_dir) {
        (Some(t), _) => t.addr.clone(),
        (None, Some(d)) => d.join(&a.dbfilename).display().to_string(),
        (None, None) => unreachable!("clap requires --target or --to-dir"),
    };
    let goal = a.to.goal()?;
    let keyring = a.crypt.keyring()?.map(Arc::new);
    let store = a.store.open_all().await?.remove(0);
    let stream = resolve_stream(store.as_ref(), a.stream.stream.as_deref()).await?;
    let plan = restore::plan_on(
        store.as_ref(),
        &stream,
        "",
        goal,
        keyring.as_deref(),
        a.from_empty,
        a.to.timeline,
    )
    .await?;
    let (plan, short_of) = a.to.settle(&store, plan, &keyring).await?;
    println!("restore plan for {into}:\n{}", plan.describe());
    if let Some(d) = &short_of {
        println!("{}", RestoreTo::short_note(&plan, d));
    }
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
    let (summary, into) = match (target, &a.to_dir) {
        (Some(t), _) => (
            restore::redis::restore(store, &plan, keyring, &t, a.force, &report).await?,
            into,
        ),
        (None, Some(dir)) => {
            let how = ScratchServer {
                binary: a.redis_server.clone(),
                modules: a.loadmodule.clone(),
            };
            let scratch = Scratch::start(&how, dir, &a.dbfilename, a.force)?;
            let s = restore::redis::restore(store, &plan, keyring, &scratch.target, false, &report)
                .await?;
            let file = scratch.save().await?;
            (s, file.display().to_string())
        }
        (None, None) => unreachable!("clap requires --target or --to-dir"),
    };
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    println!(
        "restored {}: base {}, {} records applied, final LSN {} at {}, in {:.1?}",
        into,
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
    if a.target.is_some() {
        println!(
            "to capture the restored database's new writes as a new timeline of this stream, start \
             its capture with an empty --data-dir and: {}",
            super::timeline::branch_hint(&plan, summary.final_lsn)
        );
    }
    if let Some(d) = short_of {
        eprintln!(
            "vecwal: restored to LSN {}, short of the requested target: {d}",
            summary.final_lsn
        );
        return Ok(ExitCode::from(SHORT_OF_TARGET));
    }
    Ok(ExitCode::SUCCESS)
}

/// Where a restore goes in history; neither flag: the latest record.
#[derive(Debug, clap::Args)]
pub struct RestoreTo {
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
    /// When the store is damaged or has a gap before the target, restore up to the last
    /// sound record before it instead of stopping; exit code 3 then says the target was not
    /// reached. Every planned record is read and verified first (segments are read twice).
    /// Without it, damage stops the restore with an error naming the object, offset and LSN,
    /// after the records before it were applied.
    #[arg(long)]
    stop_at_last_good: bool,
    /// Follow this timeline of the stream instead of the newest (`vecwal ls` lists them): a
    /// stream branches when a restored database takes writes again.
    #[arg(long, value_name = "N")]
    pub timeline: Option<u32>,
}

/// Exit code of a restore that --stop-at-last-good ended before its target.
pub const SHORT_OF_TARGET: u8 = 3;

impl RestoreTo {
    /// With --stop-at-last-good: the plan cut at the last sound record, and the damage
    /// that cut it (printed with the plan).
    pub async fn settle(
        &self,
        store: &Arc<dyn crate::store::Store>,
        plan: restore::Plan,
        keyring: &Option<Arc<crate::store::Keyring>>,
    ) -> anyhow::Result<(restore::Plan, Option<String>)> {
        if !self.stop_at_last_good {
            return Ok((plan, None));
        }
        Ok(
            match restore::last_good(store.clone(), &plan, keyring.clone()).await? {
                None => (plan, None),
                Some((short, damage)) => (short, Some(damage.to_string())),
            },
        )
    }

    /// What the plan's printout says when --stop-at-last-good cut it.
    pub fn short_note(plan: &restore::Plan, damage: &str) -> String {
        format!(
            "  STOPS SHORT of the requested target: {damage}\n  --stop-at-last-good: restoring \
             to LSN {} at {}, the last sound record before it",
            plan.target_lsn,
            format_us(plan.target_time_us)
        )
    }

    pub fn goal(&self) -> anyhow::Result<Target> {
        Ok(match (&self.at, self.lsn) {
            (Some(t), _) => Target::Time(
                parse_time(t, crate::log::now_us()).map_err(|e| anyhow::anyhow!("--at: {e}"))?,
            ),
            (None, Some(n)) => Target::Lsn(n),
            (None, None) => Target::Latest,
        })
    }
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
