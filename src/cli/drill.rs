//! `vecwal drill`: a restore into a scratch target, checked, timed and recorded.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::store_args::{resolve_stream, CryptArgs, StoreArgs, StreamArg};
use crate::catalog::Catalog;
use crate::drill::{self, redis as rd, Report, Status, Window};
use crate::protocol::redis_client::{RedisClient, RedisTarget};
use crate::restore::to_dir::{Scratch, ScratchServer};
use crate::restore::{self, Target};
use crate::snapshot::{put_snapshot, SnapshotPoint};
use crate::store::{Keyring, Store};
use crate::time::{parse_duration, parse_time};

/// Prove that the store restores: restore into a scratch target, check it, time it.
///
/// A drill restores into a scratch target (one it starts itself, or --scratch-target),
/// then checks what came back: every planned record applied up to the planned LSN, and,
/// with --source, every key or point equal to the source's and exact nearest-neighbour
/// searches answering alike. It reports the recovery time split by phase (plan, snapshot
/// download, snapshot load, replay), the recovery window, and PASS or FAIL, as text or
/// JSON (--json, --report FILE). The report is also kept in the store, where
/// `vecwal status --max-drill-age 35d` looks for the last passing drill.
///
/// Exit code 0 on PASS, 1 on FAIL: a failed check, or a restore that stopped (a damaged
/// or missing object, a snapshot the target could not load), named in the report.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    target: Kind,
}

#[derive(Debug, clap::Subcommand)]
enum Kind {
    Redis(RedisArgs),
    Qdrant(super::drill_qdrant::Args),
}

/// What every drill takes.
#[derive(Debug, clap::Args)]
pub struct Common {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub stream: StreamArg,
    #[command(flatten)]
    pub crypt: CryptArgs,
    /// Drill a restore to this time (RFC 3339 or relative, -1h) instead of the latest.
    #[arg(
        long,
        value_name = "TIME",
        conflicts_with_all = ["lsn", "source"],
        allow_hyphen_values = true
    )]
    pub at: Option<String>,
    /// Drill a restore to exactly this record instead of the latest.
    #[arg(long, value_name = "LSN", conflicts_with = "source")]
    pub lsn: Option<u64>,
    /// Follow this timeline of the stream instead of the newest (`vecwal ls` lists them): a
    /// stream branches when a restored database takes writes again.
    #[arg(long, value_name = "N", conflicts_with = "source")]
    pub timeline: Option<u32>,
    /// With --source: how long to wait for the store to hold everything the capture had
    /// logged when the drill began (its shipper's heartbeat says so).
    #[arg(long, value_name = "DURATION", default_value = "3m", value_parser = parse_duration)]
    pub catch_up: Duration,
    /// Nearest-neighbour searches compared per vector set or collection.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub searches: usize,
    /// Also write the report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Print the report as JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// After a PASS, store the restored state as a new base snapshot at the restored LSN,
    /// so later restores replay less (made off the production path).
    #[arg(long)]
    pub promote: bool,
    /// Do not keep the report in the store.
    #[arg(long)]
    pub no_record: bool,
}

/// Drill a Redis restore.
///
/// Without --scratch-target the drill starts a scratch redis-server on loopback
/// (--redis-server, with the --loadmodule modules the data needs) and removes it after.
/// --source compares every key with the source Redis (types, values, expiry times,
/// search index sizes, exact VSIM results): differences fail the drill when the store's
/// heartbeat shows the source took no writes after the restored record, and are reported
/// as inconclusive when it did.
///
/// Examples:
///   vecwal drill redis --store s3://backups/vecwal --loadmodule /opt/redisearch.so
///   vecwal drill redis --store ./backups --scratch-target redis://127.0.0.1:6390 \
///       --source redis://127.0.0.1:6379 --report drill.json
///   vecwal drill redis --store s3://backups/vecwal --at -1d --promote
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
struct RedisArgs {
    #[command(flatten)]
    common: Common,
    /// An empty Redis to restore into (replaced with --force), instead of a scratch server.
    #[arg(long, value_name = "URL", conflicts_with = "promote")]
    scratch_target: Option<String>,
    /// The redis-server the drill starts (same version as the source).
    #[arg(long, value_name = "PATH", default_value = "redis-server")]
    redis_server: PathBuf,
    /// A module the data needs (RediSearch, RedisJSON, …); repeatable.
    #[arg(long, value_name = "PATH")]
    loadmodule: Vec<PathBuf>,
    /// The live Redis the store was captured from, to compare with.
    #[arg(long, value_name = "URL")]
    source: Option<String>,
    /// Replace what --scratch-target holds.
    #[arg(long, requires = "scratch_target")]
    force: bool,
}

impl Common {
    pub fn goal(&self) -> anyhow::Result<Target> {
        Ok(match (&self.at, self.lsn) {
            (Some(t), _) => Target::Time(
                parse_time(t, crate::log::now_us()).map_err(|e| anyhow::anyhow!("--at: {e}"))?,
            ),
            (None, Some(n)) => Target::Lsn(n),
            (None, None) => Target::Latest,
        })
    }

    /// Waits for the store to hold what the capture has logged when a source will be
    /// compared, then plans the restore of `namespace` (`""`: a whole Redis) and notes its
    /// window and base in `r`. Returns the plan, when the recovery time started (waiting for
    /// the store is not part of it) and how long planning took.
    pub async fn plan(
        &self,
        store: &Arc<dyn Store>,
        stream: &str,
        namespace: &str,
        keyring: Option<&Keyring>,
        compare: bool,
        r: &mut Report,
    ) -> anyhow::Result<(restore::Plan, Instant, Duration)> {
        if compare {
            eprintln!("waiting for the store to hold what the capture has logged (--catch-up)…");
            drill::caught_up(store.as_ref(), stream, r.started_us, self.catch_up).await?;
        }
        let started = Instant::now();
        let plan = restore::plan_on(
            store.as_ref(),
            stream,
            namespace,
            self.goal()?,
            keyring,
            false,
            self.timeline,
        )
        .await?;
        let cat = Catalog::load(store.as_ref(), stream).await?;
        let collection = (!namespace.is_empty()).then_some(namespace);
        r.window = Window::of(&cat.on_path(plan.timeline)?, collection);
        r.base_lsn = plan.base.as_ref().map(|b| b.lsn);
        let planned = started.elapsed();
        eprintln!("restore plan:\n{}", plan.describe());
        Ok((plan, started, planned))
    }

    /// Opens the store and names the stream; the keyring.
    pub async fn open(&self) -> anyhow::Result<(Arc<dyn Store>, String, Option<Arc<Keyring>>)> {
        let keyring = self.crypt.keyring()?.map(Arc::new);
        let store = self.store.open_all().await?.remove(0);
        let stream = resolve_stream(store.as_ref(), self.stream.stream.as_deref()).await?;
        Ok((store, stream, keyring))
    }

    /// Prints, writes and records `r`; the exit code.
    pub async fn finish(&self, store: &dyn Store, r: &Report) -> anyhow::Result<ExitCode> {
        let json = serde_json::to_string_pretty(r)?;
        if let Some(f) = &self.report {
            std::fs::write(f, format!("{json}\n"))
                .with_context(|| format!("cannot write --report {}", f.display()))?;
        }
        if self.json {
            println!("{json}");
        } else {
            print!("{}", r.human());
        }
        if !self.no_record {
            if let Err(e) = drill::record(store, r).await {
                eprintln!("vecwal: the report could not be kept in the store: {e}");
            }
        }
        Ok(if r.passed() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    }
}

/// Whether the source took writes after `restored` (the record the drill restored to),
/// by a heartbeat written after now; `None` when none came within `wait`.
pub async fn source_moved(
    store: &dyn Store,
    stream: &str,
    restored: u64,
    wait: Duration,
) -> anyhow::Result<Option<bool>> {
    let after = crate::log::now_us();
    let deadline = Instant::now() + wait;
    loop {
        if let Some(h) = crate::ship::Heartbeat::read(store, stream).await? {
            if h.written_us >= after {
                return Ok(Some(h.appended_lsn > restored));
            }
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// What a comparison found, as a check's detail.
pub fn compare_detail(n: usize, lines: &[String], moved: Option<bool>) -> String {
    if n == 0 {
        return "equal".into();
    }
    let why = match moved {
        Some(false) => "",
        Some(true) => " (the source took writes after the restored record: not counted)",
        None => " (no heartbeat told whether the source moved: not counted)",
    };
    format!("{n} differ{why}: {}", lines.join("; "))
}

pub async fn run(a: Args) -> anyhow::Result<ExitCode> {
    let a = match a.target {
        Kind::Redis(a) => a,
        Kind::Qdrant(q) => return super::drill_qdrant::run(q).await,
    };
    let c = &a.common;
    let (store, stream, keyring) = c.open().await?;
    let mut r = Report::new("redis", store.url(), &stream, None);
    let fatal = drill_redis(&a, &store, &stream, keyring, &mut r)
        .await
        .err()
        .map(|e| format!("{e:#}"));
    r.settle(fatal);
    c.finish(store.as_ref(), &r).await
}

async fn drill_redis(
    a: &RedisArgs,
    store: &Arc<dyn Store>,
    stream: &str,
    keyring: Option<Arc<Keyring>>,
    r: &mut Report,
) -> anyhow::Result<()> {
    let c = &a.common;
    let source = match &a.source {
        Some(s) => Some(RedisTarget::parse(s).map_err(|e| anyhow::anyhow!("--source: {e}"))?),
        None => None,
    };
    let (plan, started, planned) = c
        .plan(store, stream, "", keyring.as_deref(), source.is_some(), r)
        .await?;

    let mut scratch = None;
    let target = match &a.scratch_target {
        Some(t) => RedisTarget::parse(t).map_err(|e| anyhow::anyhow!("--scratch-target: {e}"))?,
        None => {
            let dir = std::env::temp_dir().join(format!(
                "vecwal-drill-redis-{}-{}",
                std::process::id(),
                r.started_us
            ));
            let how = ScratchServer {
                binary: a.redis_server.clone(),
                modules: a.loadmodule.clone(),
            };
            let s = Scratch::start(&how, &dir, "dump.rdb", true)?;
            let t = s.target.clone();
            scratch = Some((s, dir));
            t
        }
    };
    let result = async {
        eprintln!("restoring into {}…", target.addr);
        let s = restore::redis::restore(
            store.clone(),
            &plan,
            keyring.clone(),
            &target,
            a.force,
            &|_| {},
        )
        .await?;
        let rto = drill::Rto::new(planned, s.phases, started.elapsed());
        let n = s.records_applied;
        r.restored(&plan, rto, (n, n), (s.final_lsn, s.final_time_us));
        let mut restored = target.connect().await?;
        restored.set_timeout(Duration::from_secs(600));
        match &source {
            Some(src) => {
                compare(
                    &mut restored,
                    src,
                    store.as_ref(),
                    stream,
                    plan.target_lsn,
                    c,
                    r,
                )
                .await?
            }
            None => self_search(&mut restored, c.searches, r).await?,
        }
        anyhow::Ok(())
    }
    .await;
    let promote = result.is_ok() && c.promote && r.checks.iter().all(|x| x.status != Status::Fail);
    if let Some((s, dir)) = scratch {
        if promote {
            let file = s.save().await?;
            let data = std::fs::read(&file)?;
            let what = ("rdb", "");
            promote_base(
                store.as_ref(),
                stream,
                &plan,
                what,
                data,
                keyring.as_deref(),
                r,
            )
            .await?;
        }
        let _ = std::fs::remove_dir_all(dir);
    }
    result
}

/// Stores `data`, the restored state, as a base snapshot at the plan's target (of
/// `namespace`, in `format`), unless the plan's base is that already.
#[allow(clippy::too_many_arguments)]
pub async fn promote_base(
    store: &dyn Store,
    stream: &str,
    plan: &restore::Plan,
    (format, namespace): (&str, &str),
    data: Vec<u8>,
    keyring: Option<&Keyring>,
    r: &mut Report,
) -> anyhow::Result<()> {
    if plan.target_lsn == plan.base_lsn() {
        eprintln!(
            "--promote: the base at LSN {} is already the restored state",
            plan.base_lsn()
        );
        return Ok(());
    }
    let point = SnapshotPoint {
        timeline: plan.timeline_of(plan.target_lsn),
        lsn: plan.target_lsn,
        time_us: plan.target_time_us,
        format,
        namespace,
    };
    put_snapshot(store, stream, point, data, keyring)
        .await
        .context("--promote: storing the new base")?;
    r.promoted_lsn = Some(point.lsn);
    Ok(())
}

/// With --source: every key, the search indexes and exact searches, against the source.
async fn compare(
    restored: &mut RedisClient,
    source: &RedisTarget,
    store: &dyn Store,
    stream: &str,
    restored_lsn: u64,
    c: &Common,
    r: &mut Report,
) -> anyhow::Result<()> {
    let mut src = source.connect().await.context("--source")?;
    src.set_timeout(Duration::from_secs(600));
    let now_ms = crate::log::now_us() / 1000;
    eprintln!("reading every key of the source and of the restore…");
    let (a, b) = (
        rd::keyspace(&mut src, now_ms).await?,
        rd::keyspace(restored, now_ms).await?,
    );
    let moved = source_moved(store, stream, restored_lsn, c.catch_up).await?;
    let (n, lines) = rd::differences(&a, &b, 10);
    r.check(
        "keys",
        drill::compare_status(n, moved),
        format!("{} keys: {}", a.len(), compare_detail(n, &lines, moved)),
    );
    let (ia, ib) = (rd::indexes(&mut src).await?, rd::indexes(restored).await?);
    if !ia.is_empty() || !ib.is_empty() {
        let n = usize::from(ia != ib);
        r.check(
            "search indexes",
            drill::compare_status(n, moved),
            if n == 0 {
                format!("{} indexes, document counts equal", ia.len())
            } else {
                format!("source {ia:?}, restore {ib:?}")
            },
        );
    }
    let mut differ = Vec::new();
    let samples = rd::vector_samples(&a, c.searches);
    for (db, key) in &samples {
        let Some(near) = rd::first_member(&mut src, *db, key).await? else {
            continue;
        };
        let x = rd::neighbours(&mut src, *db, key, &near, true).await?;
        let y = rd::neighbours(restored, *db, key, &near, true).await?;
        if !drill::same_neighbours(&x, &y) {
            differ.push(String::from_utf8_lossy(key).into_owned());
        }
    }
    if !samples.is_empty() {
        r.check(
            "searches",
            drill::compare_status(differ.len(), moved),
            format!(
                "{} exact VSIM searches, {} differ{}",
                samples.len(),
                differ.len(),
                if differ.is_empty() {
                    String::new()
                } else {
                    format!(": {}", differ.join(", "))
                }
            ),
        );
    }
    Ok(())
}

/// Without a source: the restored vector sets answer searches, by their graph as by a
/// linear scan.
async fn self_search(restored: &mut RedisClient, n: usize, r: &mut Report) -> anyhow::Result<()> {
    let now_ms = crate::log::now_us() / 1000;
    let ks = rd::keyspace(restored, now_ms).await?;
    let keys = ks.len();
    let mut failed = Vec::new();
    let samples = rd::vector_samples(&ks, n);
    for (db, key) in &samples {
        let Some(near) = rd::first_member(restored, *db, key).await? else {
            continue;
        };
        // Through the graph, the best match must be as close as a linear scan's.
        let graph = rd::neighbours(restored, *db, key, &near, false).await?;
        let scan = rd::neighbours(restored, *db, key, &near, true).await?;
        let best = |v: &[(String, f64)]| v.first().map(|x| x.1);
        if best(&graph).is_none() || best(&graph) < best(&scan).map(|b| b - 1e-6) {
            failed.push(format!(
                "{}: best match {:?} through the graph, {:?} by a scan",
                String::from_utf8_lossy(key),
                best(&graph),
                best(&scan)
            ));
        }
    }
    r.check(
        "keys",
        Status::Pass,
        format!("{keys} keys read back (no --source to compare with)"),
    );
    if !samples.is_empty() {
        r.check(
            "searches",
            if failed.is_empty() {
                Status::Pass
            } else {
                Status::Fail
            },
            format!(
                "{} vector sets searched near a member of each; {}",
                samples.len(),
                if failed.is_empty() {
                    "the graph found the best match each time".to_string()
                } else {
                    failed.join("; ")
                }
            ),
        );
    }
    Ok(())
}
