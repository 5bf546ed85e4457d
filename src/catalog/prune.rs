//! `prune --retain`: delete what no restore inside the retention window needs.
//!
//! To restore any moment T in [now - retain, now], a restore needs a base at or before T
//! and every segment after that base. The newest base at or before the window's start
//! serves every T in the window, so everything older than that base can go: snapshots
//! before it, and segments that end at or before its LSN. Without a snapshot at or before
//! the window's start the base is the stream's start, and nothing can go. A stream with
//! snapshots per namespace (Qdrant collections) keeps what the namespace with the oldest
//! such base needs.

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
    // With timelines, every timeline's path must stay restorable through the window: an
    // object goes only when the path of each timeline it is on can do without it.
    let mut plans = Vec::new();
    for tl in cat.timeline_ids() {
        match cat.on_path(tl) {
            Ok(view) => plans.push((plan_path(&view, window_start_us), view)),
            // A path that cannot be followed: what it needs cannot be told, so keep all.
            Err(_) => return PrunePlan::default(),
        }
    }
    let Some((newest, _)) = plans.last() else {
        return PrunePlan::default();
    };
    let mut out = PrunePlan {
        base_lsn: newest.base_lsn,
        base_time_us: newest.base_time_us,
        ..Default::default()
    };
    let needed: std::collections::HashSet<String> = plans
        .iter()
        .flat_map(|(p, view)| {
            let objects = view.segments.iter().map(|s| s.key.clone()).chain(
                view.snapshots
                    .iter()
                    .flat_map(|s| [s.data_key.clone(), manifest_key(cat, s)]),
            );
            objects.filter(|k| !p.delete.contains(k))
        })
        .collect();
    let sizes: std::collections::HashMap<&str, u64> = cat
        .segments
        .iter()
        .map(|s| (s.key.as_str(), s.size))
        .chain(cat.snapshots.iter().map(|s| (s.data_key.as_str(), s.size)))
        .collect();
    for (p, _) in &plans {
        for k in &p.delete {
            if !needed.contains(k) && !out.delete.contains(k) {
                out.bytes += sizes.get(k.as_str()).copied().unwrap_or(0);
                out.delete.push(k.clone());
            }
        }
    }
    out
}

fn manifest_key(cat: &Catalog, s: &crate::catalog::SnapshotManifest) -> String {
    super::keys::snapshot_manifest_key(&cat.stream, s.timeline, s.lsn, &s.namespace)
}

/// The prune plan of one path (a view from [`Catalog::on_path`]: its segments are one run of
/// LSNs, its snapshots in path order).
fn plan_path(cat: &Catalog, window_start_us: i64) -> PrunePlan {
    // A base must really be there: a manifest whose data is missing or cut short cannot
    // start a restore, so it must not license deleting what came before it.
    let usable = |s: &&crate::catalog::SnapshotManifest| {
        s.time_us <= window_start_us && cat.snapshot_present(s)
    };
    // Snapshots of one namespace each (Qdrant collections): every namespace needs its own
    // base, so the oldest of their newest bases decides; a namespace without one in the
    // window keeps everything.
    let mut namespaces: Vec<&str> = cat.snapshots.iter().map(|s| s.namespace.as_str()).collect();
    namespaces.sort_unstable();
    namespaces.dedup();
    // Along a path, order is by LSN; a parent's snapshot at the branch record comes before
    // the child's (parents have smaller numbers).
    let order = |s: &crate::catalog::SnapshotManifest| (s.lsn, s.timeline);
    let newest = |ns: &str| {
        cat.snapshots
            .iter()
            .filter(usable)
            .filter(|s| s.namespace == ns)
            .max_by_key(|s| order(s))
    };
    let bases: Option<Vec<_>> = namespaces.iter().map(|ns| newest(ns)).collect();
    let Some(base) = bases.and_then(|b| b.into_iter().min_by_key(|s| order(s))) else {
        return PrunePlan::default();
    };
    let mut plan = PrunePlan {
        base_lsn: Some(base.lsn),
        base_time_us: Some(base.time_us),
        ..Default::default()
    };
    for seg in &cat.segments {
        if seg.range.last_lsn <= base.lsn {
            plan.delete.push(seg.key.clone());
            plan.bytes += seg.size;
        }
    }
    for s in &cat.snapshots {
        if order(s) < order(base) {
            // The manifest first: a snapshot never appears complete with its data gone.
            plan.delete.push(manifest_key(cat, s));
            plan.delete.push(s.data_key.clone());
            plan.bytes += s.size;
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::keys::SegmentKey;
    use crate::catalog::{SegmentEntry, SnapshotManifest};

    fn catalog(snaps: &[(&str, u64)]) -> Catalog {
        let mut cat = Catalog {
            stream: "q".into(),
            ..Default::default()
        };
        for (i, first) in [1u64, 11, 21, 31, 41, 51].iter().enumerate() {
            let range = SegmentKey {
                timeline: 1,
                first_lsn: *first,
                last_lsn: first + 9,
                first_ts: *first as i64,
                last_ts: (first + 9) as i64,
                encrypted: false,
            };
            cat.segments.push(SegmentEntry {
                key: format!("seg{i}"),
                size: 1,
                range,
                object_last_lsn: range.last_lsn,
            });
        }
        for (ns, lsn) in snaps {
            let data_key = format!("{ns}@{lsn}");
            cat.snapshot_objects.insert(data_key.clone(), 1);
            cat.snapshots.push(SnapshotManifest {
                timeline: 1,
                lsn: *lsn,
                time_us: *lsn as i64,
                format: "qdrant-snapshot".into(),
                namespace: ns.to_string(),
                data_key,
                size: 1,
                sha256: String::new(),
                encrypted: false,
            });
        }
        cat
    }

    #[test]
    fn every_collection_keeps_its_base() {
        // a has bases at 10 and 50, b only at 20: b's restore needs everything after 20.
        let p = plan(&catalog(&[("a", 10), ("b", 20), ("a", 50)]), 1000);
        assert_eq!(p.base_lsn, Some(20));
        assert!(p.delete.contains(&"seg0".to_string()), "{:?}", p.delete);
        assert!(
            p.delete.contains(&"seg1".to_string()),
            "ends at 20: {:?}",
            p.delete
        );
        assert!(!p.delete.contains(&"seg2".to_string()));
        assert!(p.delete.contains(&"a@10".to_string()));
        assert!(!p.delete.contains(&"b@20".to_string()) && !p.delete.contains(&"a@50".to_string()));
        // c's only base is after the window's start: nothing can go.
        let p = plan(&catalog(&[("a", 10), ("c", 50)]), 30);
        assert_eq!(p.base_lsn, None);
        assert!(p.delete.is_empty());
    }
}
