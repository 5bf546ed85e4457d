//! `vecwal drill qdrant`: a collection restored into a scratch Qdrant, checked, timed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use super::drill::{compare_detail, promote_base, source_moved, Common};
use super::proxy::http_uri as uri;
use super::restore_qdrant::grpc_target;
use crate::drill::{self, qdrant as qd, Report, Status};
use crate::restore::qdrant::target::Target;
use crate::restore::qdrant::QdrantTarget;
use crate::restore::{self};
use crate::store::{Keyring, Store};

/// Drill a Qdrant collection's restore.
///
/// Without --scratch-target the drill starts a scratch Qdrant on loopback (--qdrant) and
/// removes it, with its storage, after. The collection is restored under its own name
/// (or --as into a --scratch-target). --source compares every point (vectors and payload)
/// and exact searches with the live collection: differences fail the drill when the
/// store's heartbeat shows the source took no writes after the restored record.
///
/// Examples:
///   vecwal drill qdrant --store s3://backups/vecwal --collection docs --qdrant /usr/bin/qdrant
///   vecwal drill qdrant --store ./backups --collection docs \
///       --scratch-target http://127.0.0.1:6533 --source http://127.0.0.1:6333 --report drill.json
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    #[command(flatten)]
    common: Common,
    /// The collection to drill.
    #[arg(long, value_name = "NAME")]
    collection: String,
    /// A Qdrant to restore into (its REST API), instead of a scratch server.
    #[arg(long, value_name = "URL")]
    scratch_target: Option<String>,
    /// Its gRPC API [default: the --scratch-target port + 1].
    #[arg(long, value_name = "URL", requires = "scratch_target")]
    scratch_target_grpc: Option<String>,
    /// Restore under this name in --scratch-target.
    #[arg(long = "as", value_name = "NAME", requires = "scratch_target")]
    as_name: Option<String>,
    /// Replace a collection of that name in --scratch-target.
    #[arg(long, requires = "scratch_target")]
    force: bool,
    /// The Qdrant binary the drill starts.
    #[arg(long, value_name = "PATH", default_value = "qdrant")]
    qdrant: PathBuf,
    /// The live Qdrant (REST) the store was captured from, to compare with.
    #[arg(long, value_name = "URL")]
    source: Option<String>,
    /// Read the source's (and --scratch-target's) api-key from this environment variable.
    #[arg(long, value_name = "VAR")]
    api_key_env: Option<String>,
}

pub async fn run(a: Args) -> anyhow::Result<ExitCode> {
    let (store, stream, keyring) = a.common.open().await?;
    let mut r = Report::new("qdrant", store.url(), &stream, Some(&a.collection));
    let fatal = drill(&a, &store, &stream, keyring, &mut r)
        .await
        .err()
        .map(|e| format!("{e:#}"));
    r.settle(fatal);
    a.common.finish(store.as_ref(), &r).await
}

async fn drill(
    a: &Args,
    store: &Arc<dyn Store>,
    stream: &str,
    keyring: Option<Arc<Keyring>>,
    r: &mut Report,
) -> anyhow::Result<()> {
    let c = &a.common;
    let api_key = match &a.api_key_env {
        Some(v) => {
            Some(std::env::var(v).with_context(|| format!("environment variable {v} is not set"))?)
        }
        None => None,
    };
    let (plan, started, planned) = c
        .plan(
            store,
            stream,
            &a.collection,
            keyring.as_deref(),
            a.source.is_some(),
            r,
        )
        .await?;

    let mut scratch = None;
    let target = match &a.scratch_target {
        Some(t) => {
            let rest = uri("--scratch-target", t)?;
            QdrantTarget {
                grpc: Some(grpc_target(&rest, a.scratch_target_grpc.as_deref())?),
                rest,
                api_key: api_key.clone(),
            }
        }
        None => {
            let s = qd::Scratch::start(&a.qdrant).await?;
            let t = s.target.clone();
            scratch = Some(s);
            t
        }
    };
    let name = a.as_name.clone().unwrap_or_else(|| a.collection.clone());
    eprintln!(
        "restoring {:?} into {} as {name:?}…",
        a.collection, target.rest
    );
    let s = restore::qdrant::restore(
        store.clone(),
        &plan,
        keyring.clone(),
        &target,
        &a.collection,
        &name,
        a.force,
        &|_| {},
    )
    .await?;
    let rto = drill::Rto::new(planned, s.phases, started.elapsed());
    // Records of other collections are skipped, not applied: they count as done here.
    let accounted = s.records_applied + s.records_skipped + s.failed_unwaited;
    let counts = (s.records_applied, accounted);
    r.restored(&plan, rto, counts, (s.final_lsn, s.final_time_us));
    let restored = Target::new(&target);
    match &a.source {
        Some(src) => {
            let src = Target::new(&QdrantTarget {
                rest: uri("--source", src)?,
                grpc: None,
                api_key,
            });
            compare(
                &src,
                &restored,
                a,
                &name,
                store.as_ref(),
                stream,
                plan.target_lsn,
                r,
            )
            .await?;
        }
        None => self_search(&restored, &name, c.searches, r).await?,
    }
    if c.promote && r.checks.iter().all(|x| x.status != Status::Fail) {
        let data = qd::snapshot(&restored, &name).await?;
        let what = ("qdrant-snapshot", a.collection.as_str());
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
    drop(scratch);
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn compare(
    src: &Target,
    restored: &Target,
    a: &Args,
    name: &str,
    store: &dyn Store,
    stream: &str,
    restored_lsn: u64,
    r: &mut Report,
) -> anyhow::Result<()> {
    eprintln!("reading every point of the source and of the restore…");
    let x = qd::points(src, &a.collection).await.context("--source")?;
    let y = qd::points(restored, name).await?;
    let moved = source_moved(store, stream, restored_lsn, a.common.catch_up).await?;
    let mut lines = Vec::new();
    let mut n = 0;
    for id in x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))) {
        let what = match (x.get(id), y.get(id)) {
            (Some(p), Some(q)) if p == q => continue,
            (Some(_), Some(_)) => "vectors or payload differ",
            (Some(_), None) => "only in the source",
            _ => "only in the restore",
        };
        n += 1;
        if lines.len() < 10 {
            lines.push(format!("point {id}: {what}"));
        }
    }
    r.check(
        "points",
        drill::compare_status(n, moved),
        format!("{} points: {}", x.len(), compare_detail(n, &lines, moved)),
    );
    let samples = qd::samples(src, &a.collection, a.common.searches).await?;
    let mut differ = 0;
    for (using, v) in &samples {
        let p = qd::nearest(src, &a.collection, using.as_deref(), v, true).await?;
        let q = qd::nearest(restored, name, using.as_deref(), v, true).await?;
        differ += usize::from(!drill::same_neighbours(&p, &q));
    }
    if !samples.is_empty() {
        r.check(
            "searches",
            drill::compare_status(differ, moved),
            format!(
                "{} exact searches, {differ} answered differently",
                samples.len()
            ),
        );
    }
    Ok(())
}

/// Without a source: each sampled point is found by a search near its own vector, through
/// the index.
async fn self_search(
    restored: &Target,
    name: &str,
    n: usize,
    r: &mut Report,
) -> anyhow::Result<()> {
    let info = qd::call(
        restored,
        "GET",
        &format!("/collections/{}", crate::protocol::http::percent(name)),
        serde_json::Value::Null,
    )
    .await?;
    r.check(
        "collection",
        if info["status"] == "red" {
            Status::Fail
        } else {
            Status::Pass
        },
        format!("status {}, {} points", info["status"], info["points_count"]),
    );
    let samples = qd::samples(restored, name, n).await?;
    let mut missed = 0;
    for (using, v) in &samples {
        let found = qd::nearest(restored, name, using.as_deref(), v, false).await?;
        missed += usize::from(found.is_empty());
    }
    if !samples.is_empty() {
        r.check(
            "searches",
            if missed == 0 {
                Status::Pass
            } else {
                Status::Fail
            },
            format!(
                "{} searches through the index, {missed} found nothing",
                samples.len()
            ),
        );
    }
    Ok(())
}
