//! How a capture starts on a stream the store already holds: carrying on its own data
//! directory, beginning a new timeline after a restore (`--branch-from`), or refused
//! because it would mix a second history into the stream.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;

use crate::catalog::{timeline, Catalog};
use crate::log::layout::{self, Branch, StreamMeta};
use crate::store::{Keyring, Store, StoreError};

/// Prepares `data_dir` for capturing `stream`: with `branch_from`, a new timeline begun in
/// every store and recorded in the directory's `stream.json`; without it, a new directory
/// is refused when a store already holds the stream.
pub async fn prepare(
    data_dir: &Path,
    stores: &[Arc<dyn Store>],
    stream: &str,
    branch_from: Option<(u32, u64)>,
    keyring: Option<&Keyring>,
) -> anyhow::Result<()> {
    let found = layout::read_meta(data_dir)?;
    let Some((parent, lsn)) = branch_from else {
        if found.is_none() {
            refuse_if_held(stores, stream).await?;
        }
        return Ok(());
    };
    if let Some(m) = found {
        let same = m.name == stream
            && m.branch
                .as_ref()
                .is_some_and(|b| (b.parent, b.lsn) == (parent, lsn));
        anyhow::ensure!(
            same,
            "--branch-from {parent}:{lsn}: the data directory {} already captures timeline {} of \
             stream {:?}; a new timeline starts in an empty data directory (ship what this one \
             holds with `vecwal ship`, then move it aside)",
            data_dir.display(),
            m.timeline,
            m.name
        );
        return Ok(()); // a restart of the capture that began this timeline
    }
    let first = stores.first().context("no --store given")?;
    // The branch point must be a record the store holds on that timeline's history.
    let time_us = crate::restore::record_time(first.as_ref(), stream, parent, lsn, keyring)
        .await
        .with_context(|| format!("--branch-from {parent}:{lsn}"))?;
    layout::create_dir(data_dir)?;
    let (h, identity) = timeline::begin(stores, stream, parent, lsn, time_us).await?;
    let stream_id = u64::from_str_radix(&identity.stream_id, 16)
        .with_context(|| format!("the store's stream id {:?} is not hex", identity.stream_id))?;
    let meta = StreamMeta {
        name: stream.to_string(),
        stream_id,
        timeline: h.timeline,
        created: h.created.clone(),
        branch: Some(Branch {
            parent,
            lsn,
            time_us,
            created: h.created.clone(),
        }),
    };
    layout::create_branch_meta(data_dir, &meta)?;
    eprintln!(
        "began timeline {} of stream {stream:?}: it continues after LSN {lsn} of timeline {parent}",
        h.timeline
    );
    Ok(())
}

/// What to pass a capture in front of a database restored to record `lsn` of `plan`'s
/// path, so its new writes continue the stream as a new timeline.
pub fn branch_hint(plan: &crate::restore::Plan, lsn: u64) -> String {
    format!(
        "--stream {} --branch-from {}:{lsn}",
        plan.stream,
        plan.timeline_of(lsn)
    )
}

/// A new data directory on a stream a store already holds would start a second history
/// under the same name; say what to do instead. A store that cannot be asked now is left
/// to the shipper, which refuses another stream's identity anyway.
async fn refuse_if_held(stores: &[Arc<dyn Store>], stream: &str) -> anyhow::Result<()> {
    for s in stores {
        let cat = match Catalog::load(s.as_ref(), stream).await {
            Ok(c) => c,
            Err(StoreError::NotFound { .. }) => continue,
            Err(e) => {
                tracing::warn!(store = %s.url(), error = %e, "cannot check whether the store already holds the stream");
                continue;
            }
        };
        let Some(id) = cat.identity.clone() else {
            continue;
        };
        let newest = cat.newest_timeline().unwrap_or(1);
        let last = cat
            .on_path(newest)
            .ok()
            .and_then(|v| v.segments.last().map(|s| s.range.last_lsn))
            .unwrap_or(0);
        anyhow::bail!(
            "{} already holds stream {stream:?} (id {}) and this data directory is new, so its \
             history would mix with the stream's. If this database was restored from the stream, \
             start with --branch-from TIMELINE:LSN as the restore printed; if this capture's data \
             directory was lost, --branch-from {newest}:{last} carries on after the last record \
             the store holds. Otherwise choose another --stream.",
            s.url(),
            id.stream_id
        );
    }
    Ok(())
}
