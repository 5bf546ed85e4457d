//! `vecwal restore qdrant`: bring one Qdrant collection back to a moment.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use super::proxy::http_uri as uri;
use super::restore::{progress_bar, RestoreTo, SHORT_OF_TARGET};
use super::store_args::{resolve_stream, CryptArgs, StoreArgs, StreamArg};
use crate::restore;
use crate::restore::qdrant::{Progress, QdrantTarget};
use crate::time::format_us;

/// Restore a Qdrant collection as it was at a time or LSN.
///
/// Picks the newest snapshot of the collection at or before the target, uploads it to the
/// target Qdrant (priority=snapshot), then applies the collection's logged writes up to the
/// target in order (REST as REST, gRPC as gRPC, each waited for). The plan is printed
/// first; a bad checksum or a missing record stops the restore with the object and LSN
/// named.
///
/// --as restores next to the live collection under another name, for comparison; an
/// existing collection of that name is replaced only with --force.
///
/// Examples:
///   vecwal restore qdrant --store s3://backups/vecwal --collection docs \
///       --at 2026-11-21T09:59:00Z --target http://127.0.0.1:6333 --as docs_0959
///   vecwal restore qdrant --store ./backups --collection docs --at -15m \
///       --target http://staging:6333 --dry-run
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    stream: StreamArg,
    #[command(flatten)]
    crypt: CryptArgs,
    /// The collection to restore.
    #[arg(long, value_name = "NAME")]
    collection: String,
    #[command(flatten)]
    to: RestoreTo,
    /// The target Qdrant's REST API.
    #[arg(long, value_name = "URL")]
    target: String,
    /// The target Qdrant's gRPC API, for writes logged from gRPC clients [default: the
    /// --target port + 1, Qdrant's own default (6333 → 6334)].
    #[arg(long, value_name = "URL")]
    target_grpc: Option<String>,
    /// Read the target's api-key from this environment variable.
    #[arg(long, value_name = "VAR")]
    api_key_env: Option<String>,
    /// Restore under this name instead of --collection.
    #[arg(long = "as", value_name = "NAME")]
    as_name: Option<String>,
    /// Replace a collection of that name in the target.
    #[arg(long)]
    force: bool,
    /// Print the plan and stop.
    #[arg(long)]
    dry_run: bool,
    /// With no snapshot at or before the target, start from nothing (right when the
    /// collection was created through the proxy).
    #[arg(long)]
    from_empty: bool,
}

/// The gRPC address: `given`, or the REST port + 1 as Qdrant configures itself by
/// default, said in one line.
pub fn grpc_target(rest: &http::Uri, given: Option<&str>) -> anyhow::Result<http::Uri> {
    if let Some(g) = given {
        return uri("--target-grpc", g);
    }
    let host = rest.host().unwrap_or("127.0.0.1");
    let port = rest.port_u16().unwrap_or(6333);
    let port = port
        .checked_add(1)
        .ok_or_else(|| anyhow::anyhow!("give the target's gRPC address with --target-grpc"))?;
    let g = uri("--target-grpc", &format!("http://{host}:{port}"))?;
    eprintln!(
        "gRPC writes go to {g} (the REST port + 1, Qdrant's default; --target-grpc to change)"
    );
    Ok(g)
}

pub async fn run(a: Args) -> anyhow::Result<ExitCode> {
    let rest = uri("--target", &a.target)?;
    let target = QdrantTarget {
        grpc: Some(grpc_target(&rest, a.target_grpc.as_deref())?),
        rest,
        api_key: match &a.api_key_env {
            Some(v) => Some(
                std::env::var(v).with_context(|| format!("environment variable {v} is not set"))?,
            ),
            None => None,
        },
    };
    let goal = a.to.goal()?;
    let keyring = a.crypt.keyring()?.map(Arc::new);
    let store = a.store.open_all().await?.remove(0);
    let stream = resolve_stream(store.as_ref(), a.stream.stream.as_deref()).await?;
    let plan = restore::plan_on(
        store.as_ref(),
        &stream,
        &a.collection,
        goal,
        keyring.as_deref(),
        a.from_empty,
        a.to.timeline,
    )
    .await?;
    let (plan, short_of) = a.to.settle(&store, plan, &keyring).await?;
    let name = a.as_name.clone().unwrap_or_else(|| a.collection.clone());
    println!(
        "restore plan for collection {:?} into {} as {name:?}:\n{}",
        a.collection,
        a.target,
        plan.describe()
    );
    if let Some(d) = &short_of {
        println!("{}", RestoreTo::short_note(&plan, d));
    }
    if a.dry_run {
        println!("dry run: nothing changed");
        return Ok(ExitCode::SUCCESS);
    }
    let bar = progress_bar(plan.record_count());
    let report = |p: Progress| {
        if let Some(b) = &bar {
            b.set_position(p.records_applied);
        }
    };
    let s = restore::qdrant::restore(
        store,
        &plan,
        keyring,
        &target,
        &a.collection,
        &name,
        a.force,
        &report,
    )
    .await?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    println!(
        "restored {name:?}: base {}, {} records applied ({} of other collections or markers skipped, {} \
         unwaited writes failed as in the original), final LSN {} at {}, in {:.1?}",
        plan.base.as_ref().map_or("empty".to_string(), |b| format!(
            "snapshot at LSN {}",
            b.lsn
        )),
        s.records_applied,
        s.records_skipped,
        s.failed_unwaited,
        s.final_lsn,
        format_us(s.final_time_us),
        s.elapsed
    );
    // A stream holds every collection the proxy saw: only a restore of all of them to the
    // same record makes the database the branch point of a new timeline.
    println!(
        "when every collection of this stream is restored to LSN {}, capture the new writes as a \
         new timeline of it: start the proxy with an empty --data-dir and {}",
        s.final_lsn,
        super::timeline::branch_hint(&plan, s.final_lsn)
    );
    if let Some(d) = short_of {
        eprintln!(
            "vecwal: restored to LSN {}, short of the requested target: {d}",
            s.final_lsn
        );
        return Ok(ExitCode::from(SHORT_OF_TARGET));
    }
    Ok(ExitCode::SUCCESS)
}
