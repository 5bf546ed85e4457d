//! `prune --retain`: delete what no restore inside the retention window needs.
//!
//! To restore any moment T in [now - retain, now], a restore needs a base at or before T
//! and every segment after that base. The newest base at or before the window's start
//! serves every T in the window, so everything older than that base can go: snapshots
//! before it, and segments that end at or before its LSN. Without a snapshot at or before
//! the window's start the base is the stream's start, and nothing can go.

use serde::Serialize;

use super::Catalog;

#[derive(Debug, Clone, Default, Serialize)]
pub struct PrunePlan {
    /// LSN of the snapshot the window starts from; `None`: nothing can be deleted.
    pub base_lsn: Option<u64>,
    pub base_time_us: Option<i64>,
    /// Keys to delete, in the order to delete them.
    pub delete: Vec<String>,
    pub bytes: u64,
}

pub fn plan(cat: &Catalog, window_start_us: i64) -> PrunePlan {
    // A base must really be there: a manifest whose data is missing or cut short cannot
    // start a restore, so it must not license deleting what came before it.
    let Some(base) = cat
        .snapshots
        .iter()
        .filter(|s| s.time_us <= window_start_us && cat.snapshot_present(s))
        .max_by_key(|s| (s.timeline, s.lsn))
    else {
        return PrunePlan::default();
    };
    let mut plan = PrunePlan {
        base_lsn: Some(base.lsn),
        base_time_us: Some(base.time_us),
        ..Default::default()
    };
    for seg in &cat.segments {
        if seg.range.timeline < base.timeline
            || seg.range.timeline == base.timeline && seg.range.last_lsn <= base.lsn
        {
            plan.delete.push(seg.key.clone());
            plan.bytes += seg.size;
        }
    }
    for s in &cat.snapshots {
        if (s.timeline, s.lsn) < (base.timeline, base.lsn) {
            // The manifest first: a snapshot never appears complete with its data gone.
            plan.delete.push(super::keys::snapshot_manifest_key(
                &cat.stream,
                s.timeline,
                s.lsn,
                &s.namespace,
            ));
            plan.delete.push(s.data_key.clone());
            plan.bytes += s.size;
        }
    }
    plan
}
