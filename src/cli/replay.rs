//! `vecwal replay`: forensic replay of a window of history into a staging Redis.

use std::process::ExitCode;
use std::sync::Arc;

use super::store_args::{resolve_stream, CryptArgs, StoreArgs, StreamArg};
use crate::protocol::redis_client::RedisTarget;
use crate::protocol::redis_commands::CommandTable;
use crate::restore::replay::{for_each_chosen, replay, Filter, ReplayOptions};
use crate::restore::window_plan;
use crate::time::{format_us, parse_time};

/// Replay the writes of a time window into a staging Redis or Qdrant.
///
/// Sends every logged write stamped between --from and --to (inclusive), in order. Into a
/// Redis (redis://…) as ordinary commands, pipelined; filter by database and key pattern to
/// follow one document's history. Into a Qdrant (http://…) as the REST and gRPC requests
/// they were (gRPC ones to the REST port + 1 unless --target-grpc), each waited for;
/// filter by --collection.
/// --dry-run prints the writes instead. Writes go to the target as they are: replay into
/// staging, not production.
///
/// Examples:
///   vecwal replay --store ./backups --from 2026-11-21T09:00:00Z --to 2026-11-21T10:00:00Z \
///       --target redis://127.0.0.1:6390 --key-pattern 'doc:42*' --dry-run
///   vecwal replay --store s3://b/vw --from -2h --to -1h --target redis://staging --rate 5000
///   vecwal replay --store ./backups --stream qdrant --from -1h --target http://staging:6333 \
///       --collection docs
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    stream: StreamArg,
    #[command(flatten)]
    crypt: CryptArgs,
    /// Follow this timeline of the stream instead of the newest (`vecwal ls` lists them): a
    /// stream branches when a restored database takes writes again.
    #[arg(long, value_name = "N")]
    timeline: Option<u32>,
    /// Start of the window: RFC 3339 or relative (-1h).
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    from: String,
    /// End of the window (inclusive) [default: now].
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    to: Option<String>,
    /// Where to replay: a Redis (redis://[user:password@]host:port) or a Qdrant's REST API
    /// (http://host:port).
    #[arg(long, value_name = "URL")]
    target: String,
    /// Only writes to this database.
    #[arg(long)]
    db: Option<u32>,
    /// Only writes touching a key matching this glob (as in KEYS).
    #[arg(long, value_name = "GLOB")]
    key_pattern: Option<String>,
    /// At most this many commands (Qdrant: requests) per second.
    #[arg(long, value_name = "OPS")]
    rate: Option<u64>,
    /// Print the commands instead of sending them.
    #[arg(long)]
    dry_run: bool,
    /// Qdrant: replay this collection only.
    #[arg(long, value_name = "NAME")]
    collection: Option<String>,
    /// Qdrant: the target's gRPC API, for writes logged from gRPC clients [default: the
    /// --target port + 1, Qdrant's own default].
    #[arg(long, value_name = "URL")]
    target_grpc: Option<String>,
}

pub async fn run(a: Args) -> anyhow::Result<ExitCode> {
    let now = crate::log::now_us();
    let from = parse_time(&a.from, now).map_err(|e| anyhow::anyhow!("--from: {e}"))?;
    let to = match &a.to {
        Some(t) => parse_time(t, now).map_err(|e| anyhow::anyhow!("--to: {e}"))?,
        None => now,
    };
    anyhow::ensure!(from <= to, "--from is after --to");
    if a.target.starts_with("http://") {
        return run_qdrant(a, from, to).await;
    }
    anyhow::ensure!(
        a.collection.is_none() && a.target_grpc.is_none(),
        "--collection and --target-grpc are for a Qdrant target (http://…)"
    );
    let target = RedisTarget::parse(&a.target).map_err(|e| anyhow::anyhow!("--target: {e}"))?;
    let keyring = a.crypt.keyring()?.map(Arc::new);
    let store = a.store.open_all().await?.remove(0);
    let stream = resolve_stream(store.as_ref(), a.stream.stream.as_deref()).await?;
    let plan = window_plan(store.as_ref(), &stream, from, to, a.timeline).await?;
    // Key positions come from the target's own command table.
    let table = match target.connect().await {
        Ok(mut c) => Some(CommandTable::load(&mut c).await?),
        Err(e) if a.dry_run => {
            eprintln!("note: {e}; taking each command's first argument as its key");
            None
        }
        Err(e) => return Err(e.into()),
    };
    let opts = ReplayOptions {
        from_us: from,
        to_us: to,
        db: a.db,
        key_pattern: a.key_pattern.clone(),
        rate: a.rate,
    };
    let filter = Filter::new(opts, table);
    announce(&stream, from, to, &plan);
    if a.dry_run {
        let n = for_each_chosen(store, &plan, keyring, &filter, |c| {
            for argv in &c.commands {
                println!(
                    "{} {} db{} {}",
                    c.record.lsn,
                    format_us(c.record.timestamp_us),
                    c.record.namespace,
                    quote(argv)
                );
            }
            Ok(())
        })
        .await?;
        eprintln!("dry run: {n} records matched; nothing sent");
        return Ok(ExitCode::SUCCESS);
    }
    let s = replay(store, &plan, keyring, &filter, &target, a.rate).await?;
    let secs = s.elapsed.as_secs_f64().max(1e-9);
    println!(
        "replayed {} records ({} commands) into {} in {:.2?} ({:.0} commands/s); {} errors",
        s.records_matched,
        s.commands_sent,
        target.addr,
        s.elapsed,
        s.commands_sent as f64 / secs,
        s.errors
    );
    for e in &s.first_errors {
        println!("  error: {e}");
    }
    Ok(if s.errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// A command as redis-cli would show it: words quoted, bytes escaped.
pub fn quote(argv: &[Vec<u8>]) -> String {
    argv.iter()
        .map(|a| {
            let mut s = String::from("\"");
            for &b in a {
                match b {
                    b'"' => s.push_str("\\\""),
                    b'\\' => s.push_str("\\\\"),
                    0x20..=0x7e => s.push(b as char),
                    _ => s.push_str(&format!("\\x{b:02x}")),
                }
            }
            s.push('"');
            s
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// What a replay is about to read, on stderr (stdout carries the dry run's listing).
fn announce(stream: &str, from: i64, to: i64, plan: &crate::restore::Plan) {
    eprintln!(
        "replaying {} {} .. {} from {} segments (LSN {}..={})",
        stream,
        format_us(from),
        format_us(to),
        plan.segments.len(),
        plan.first_lsn,
        plan.target_lsn
    );
}

/// `replay` into a Qdrant: REST records as REST, gRPC records as gRPC.
async fn run_qdrant(a: Args, from: i64, to: i64) -> anyhow::Result<ExitCode> {
    use crate::restore::qdrant::{describe, replay_window, QdrantTarget, Window};
    anyhow::ensure!(
        a.db.is_none() && a.key_pattern.is_none(),
        "--db and --key-pattern are for a Redis target; use --collection for Qdrant"
    );
    let uri = super::proxy::http_uri;
    let target = QdrantTarget {
        grpc: Some(super::restore_qdrant::grpc_target(
            &uri("--target", &a.target)?,
            a.target_grpc.as_deref(),
        )?),
        rest: uri("--target", &a.target)?,
        api_key: None,
    };
    let keyring = a.crypt.keyring()?.map(Arc::new);
    let store = a.store.open_all().await?.remove(0);
    let stream = resolve_stream(store.as_ref(), a.stream.stream.as_deref()).await?;
    let plan = window_plan(store.as_ref(), &stream, from, to, a.timeline).await?;
    announce(&stream, from, to, &plan);
    let w = Window {
        from_us: from,
        to_us: to,
        collection: a.collection.as_deref(),
    };
    let dry = a.dry_run;
    let mut each = |r: &vecwal_format::Record| {
        if dry {
            println!(
                "{} {} {} {}",
                r.lsn,
                format_us(r.timestamp_us),
                r.namespace,
                describe(r)
            );
        }
    };
    let t = (!dry).then_some(&target);
    let s = replay_window(store, &plan, keyring, t, &w, a.rate, &mut each).await?;
    if dry {
        eprintln!(
            "dry run: {} records matched; nothing sent",
            s.records_matched
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "replayed {} records into {} in {:.2?}; {} errors",
        s.records_matched, a.target, s.elapsed, s.errors
    );
    for e in &s.first_errors {
        println!("  error: {e}");
    }
    Ok(if s.errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
