//! Restoring one Qdrant collection: upload the base snapshot (`priority=snapshot`), then
//! apply the collection's records, REST as REST and gRPC as gRPC, each with `wait=true`;
//! records in conflict go in LSN order, others side by side ([`pipeline`]). `--as` renames
//! the collection on the way (the path segment of REST records, protobuf field 1 of gRPC
//! ones).
//!
//! - [`target`]: calls to the target Qdrant, and one record applied.
//! - [`pipeline`]: records in flight together where order allows.

mod pipeline;
pub mod target;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Uri;
use vecwal_format::{Kind, Operation, Record};

use self::pipeline::Pipeline;
use self::target::{apply_err, Applied, Target};
use super::{fetch_snapshot, records, Plan, RestoreError};
use crate::protocol::http::percent;
use crate::protocol::qdrant::{grpc, rest};
use crate::snapshot::QDRANT_EMPTY;
use crate::store::{Keyring, Store};

/// Where to restore to.
#[derive(Debug, Clone)]
pub struct QdrantTarget {
    /// `http://host:port` of the REST API.
    pub rest: Uri,
    /// `http://host:port` of the gRPC API; needed when the log holds gRPC records.
    pub grpc: Option<Uri>,
    /// Sent as the `api-key` header; never logged.
    pub api_key: Option<String>,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    pub records_applied: u64,
    pub records_total: u64,
}

#[derive(Debug, Clone)]
pub struct Summary {
    pub records_applied: u64,
    /// Records not applied: other collections', alias changes, the log's own markers.
    pub records_skipped: u64,
    /// Writes that did not wait (no `wait=true`) whose apply failed, in the replay as
    /// (necessarily) in the original: Qdrant had acknowledged them before applying them.
    pub failed_unwaited: u64,
    pub final_lsn: u64,
    pub final_time_us: i64,
    pub elapsed: Duration,
    pub phases: super::Phases,
}

/// Restores `collection` of `plan` into `target` as `name`. Refuses when `name` exists
/// unless `force` (which deletes it first).
#[allow(clippy::too_many_arguments)]
pub async fn restore(
    store: std::sync::Arc<dyn Store>,
    plan: &Plan,
    keyring: Option<std::sync::Arc<Keyring>>,
    target: &QdrantTarget,
    collection: &str,
    name: &str,
    force: bool,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<Summary, RestoreError> {
    let started = Instant::now();
    let t = Arc::new(Target::new(target));
    let coll = format!("/collections/{}", percent(name));
    let (status, body) = t.rest("GET", &coll, "", Bytes::new()).await?;
    match status {
        200 if !force => {
            return Err(RestoreError::Apply(format!(
                "collection {name:?} exists in the target; restore next to it with --as NEW_NAME, \
                 or replace it with --force"
            )))
        }
        200 => {
            let (s, b) = t.rest("DELETE", &coll, "", Bytes::new()).await?;
            if s != 200 {
                return Err(apply_err(format!(
                    "deleting {name:?} failed ({s}): {}",
                    String::from_utf8_lossy(&b)
                )));
            }
        }
        404 => {}
        s => {
            return Err(apply_err(format!(
                "the target answered {s} for {coll}: {}",
                String::from_utf8_lossy(&body)
            )))
        }
    }
    let mut phases = super::Phases::default();
    // An empty base (the collection was created after it): nothing to load.
    if let Some(b) = plan.base.as_ref().filter(|b| b.format != QDRANT_EMPTY) {
        let fetching = Instant::now();
        let data = fetch_snapshot(store.as_ref(), b, keyring.as_deref()).await?;
        phases.snapshot_download = fetching.elapsed();
        let loading = Instant::now();
        let boundary = format!("vecwal-{}", &b.sha256[..16]);
        let mut form = Vec::with_capacity(data.len() + 256);
        form.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"snapshot\"; \
                 filename=\"base.snapshot\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        form.extend_from_slice(&data);
        form.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let ct = format!("multipart/form-data; boundary={boundary}");
        let (s, b) = t
            .rest(
                "POST",
                &format!("{coll}/snapshots/upload?priority=snapshot&wait=true"),
                &ct,
                Bytes::from(form),
            )
            .await?;
        if s != 200 {
            return Err(apply_err(format!(
                "uploading the base snapshot failed ({s}): {}",
                String::from_utf8_lossy(&b)
            )));
        }
        phases.snapshot_load = loading.elapsed();
    }
    let replaying = Instant::now();
    let mut rx = records(store, plan, keyring);
    let mut p = Progress {
        records_total: plan.record_count(),
        ..Default::default()
    };
    let mut skipped = 0;
    let mut failed_unwaited = 0;
    let mut last = (plan.base_lsn(), plan.base.as_ref().map_or(0, |b| b.time_us));
    let mut pipe = Pipeline::new(t);
    let mut done = |outcome: Result<Applied, RestoreError>| {
        match outcome? {
            Applied::Done => p.records_applied += 1,
            Applied::FailedAsOriginal => failed_unwaited += 1,
        }
        progress(p);
        Ok(())
    };
    // The collection's last deletion among the records, unless created again after it.
    let mut deleted: Option<(u64, i64)> = None;
    while let Some(batch) = rx.recv().await {
        for r in batch? {
            last = (r.lsn, r.timestamp_us);
            if r.kind.is_marker() || r.namespace != collection {
                skipped += 1;
                continue;
            }
            match lifecycle(&r) {
                Some("delete collection") => deleted = Some((r.lsn, r.timestamp_us)),
                Some("create collection") => deleted = None,
                _ => {}
            }
            pipe.send(&r, name, &mut done).await?;
        }
    }
    pipe.finish(&mut done).await?;
    if let Some((lsn, time_us)) = deleted {
        return Err(RestoreError::Apply(format!(
            "collection {collection:?} did not exist at that time: it was deleted at {} (LSN \
             {lsn}) and not created again before LSN {}; restore to a time before the deletion",
            crate::time::format_us(time_us),
            last.0
        )));
    }
    Ok(Summary {
        records_applied: p.records_applied,
        records_skipped: skipped,
        failed_unwaited,
        final_lsn: last.0,
        final_time_us: last.1,
        elapsed: started.elapsed(),
        phases: super::Phases {
            replay: replaying.elapsed(),
            ..phases
        },
    })
}

/// Whether a record creates or deletes its collection (REST or gRPC).
fn lifecycle(r: &Record) -> Option<&'static str> {
    let what = match Operation::decode(r.kind, &r.payload).ok()? {
        Operation::QdrantRest { method, path, .. } => {
            rest::classify(&method, path.split('?').next().unwrap_or(""))?.what
        }
        Operation::QdrantGrpc { path, message } => grpc::classify(&path, &message)?.what,
        _ => return None,
    };
    matches!(what, "create collection" | "delete collection").then_some(what)
}

/// What a forensic replay did.
#[derive(Debug, Clone, Default)]
pub struct ReplaySummary {
    pub records_matched: u64,
    pub errors: u64,
    /// The first few errors, for the report.
    pub first_errors: Vec<String>,
    pub elapsed: Duration,
}

/// One line describing a record, for `--dry-run`: LSN, collection, method and path, size.
pub fn describe(r: &Record) -> String {
    match Operation::decode(r.kind, &r.payload) {
        Ok(Operation::QdrantRest {
            method, path, body, ..
        }) => format!("{} {} ({} bytes)", method, path, body.len()),
        Ok(Operation::QdrantGrpc { path, message }) => {
            format!("gRPC {path} ({} bytes)", message.len())
        }
        Ok(_) => format!("a {:?} record", r.kind),
        Err(e) => format!("undecodable: {e}"),
    }
}

/// What a forensic replay replays: records stamped within `from_us..=to_us`, of
/// `collection` only if given.
#[derive(Debug, Clone)]
pub struct Window<'a> {
    pub from_us: i64,
    pub to_us: i64,
    pub collection: Option<&'a str>,
}

/// Replays the Qdrant records of a window (`plan` from [`super::window_plan`]) into
/// `target` (`None`: a dry run), at most `rate` records a second, calling `each` with every
/// chosen record first. A record the target refuses is counted and reported, and the
/// replay goes on: this is forensics on a staging copy, not a restore.
pub async fn replay_window(
    store: std::sync::Arc<dyn Store>,
    plan: &Plan,
    keyring: Option<std::sync::Arc<Keyring>>,
    target: Option<&QdrantTarget>,
    w: &Window<'_>,
    rate: Option<u64>,
    each: &mut (dyn FnMut(&Record) + Send),
) -> Result<ReplaySummary, RestoreError> {
    let started = Instant::now();
    let mut pipe = target.map(|t| Pipeline::new(Arc::new(Target::new(t))));
    let mut s = ReplaySummary::default();
    // Counted, and the first few kept: a long replay may meet many refusals.
    let (mut errors, mut first_errors) = (0u64, Vec::new());
    let mut done = |outcome: Result<Applied, RestoreError>| {
        if let Err(e) = outcome {
            errors += 1;
            if first_errors.len() < 5 {
                first_errors.push(e.to_string());
            }
        }
        Ok(())
    };
    let mut rx = records(store, plan, keyring);
    while let Some(batch) = rx.recv().await {
        for r in batch? {
            let chosen = matches!(r.kind, Kind::QdrantRest | Kind::QdrantGrpc)
                && (w.from_us..=w.to_us).contains(&r.timestamp_us)
                && w.collection.is_none_or(|c| r.namespace == c);
            if !chosen {
                continue;
            }
            s.records_matched += 1;
            each(&r);
            let Some(pipe) = &mut pipe else { continue };
            if let Some(ops) = rate.filter(|&o| o > 0) {
                let due = Duration::from_secs_f64(s.records_matched as f64 / ops as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
            }
            let ns = r.namespace.clone();
            if let Err(e) = pipe.send(&r, &ns, &mut done).await {
                // Counted like a refusal; `done` itself never fails.
                done(Err(e))?;
            }
        }
    }
    if let Some(pipe) = &mut pipe {
        pipe.finish(&mut done).await?;
    }
    (s.errors, s.first_errors) = (errors, first_errors);
    s.elapsed = started.elapsed();
    Ok(s)
}
