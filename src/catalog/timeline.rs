//! Timelines: when a database restored from a stream takes writes again (or a capture that
//! lost its data directory starts over), its capture begins a new **timeline** of the same
//! stream, so two histories never mix.
//!
//! Timeline 1 is the stream's start. Timeline N > 1 is described by
//! `<stream>/timelines/<N>.json` ([`TimelineHistory`]): the parent timeline and the record it
//! branched after. Its own records have LSNs from that record's plus one, so along a
//! **path** (from timeline 1 to a timeline, following parents) LSNs stay unique and dense:
//! the parent's records up to the branch point, then the child's. A restore reads a path;
//! [`Catalog::on_path`] is the catalog as one path sees it.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Catalog, SegmentEntry, StreamIdentity};
use crate::store::{Store, StoreError};

/// `<stream>/timelines/<timeline>.json`: where a timeline after the first branched off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineHistory {
    pub timeline: u32,
    pub parent: u32,
    /// The last record of the parent's history this timeline continues from.
    pub branch_lsn: u64,
    /// Timestamp of that record (UTC µs).
    pub branch_time_us: i64,
    /// When the timeline began (RFC 3339).
    pub created: String,
}

pub fn timelines_prefix(stream: &str) -> String {
    format!("{stream}/timelines/")
}

pub fn history_key(stream: &str, timeline: u32) -> String {
    format!("{stream}/timelines/{timeline:010}.json")
}

/// One timeline's stretch of a path: its records after `after_lsn`, through `through_lsn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Span {
    pub timeline: u32,
    /// The branch point this stretch starts after (0 for timeline 1).
    pub after_lsn: u64,
    /// `u64::MAX` for the path's last timeline; else the branch point of the next.
    pub through_lsn: u64,
    /// Timestamp of record `through_lsn` when it is a branch point.
    #[serde(skip)]
    pub through_time_us: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum TimelineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("timeline {timeline} of stream {stream:?}: {detail}")]
    Path {
        stream: String,
        timeline: u32,
        detail: String,
    },
    #[error("the stores disagree about timeline {timeline} of stream {stream:?}: {detail}")]
    Disagree {
        stream: String,
        timeline: u32,
        detail: String,
    },
}

impl Catalog {
    /// Every timeline the store knows of (by segments, snapshots or history objects), in order.
    pub fn timeline_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self
            .segments
            .iter()
            .map(|s| s.range.timeline)
            .chain(self.snapshots.iter().map(|s| s.timeline))
            .chain(self.timelines.iter().map(|h| h.timeline))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// The timeline that began last: the one a restore follows unless told otherwise.
    pub fn newest_timeline(&self) -> Option<u32> {
        self.timeline_ids().last().copied()
    }

    pub fn history(&self, timeline: u32) -> Option<&TimelineHistory> {
        self.timelines.iter().find(|h| h.timeline == timeline)
    }

    /// The path from timeline 1 to `timeline`, root first.
    pub fn path(&self, timeline: u32) -> Result<Vec<Span>, TimelineError> {
        let err = |detail: String| TimelineError::Path {
            stream: self.stream.clone(),
            timeline,
            detail,
        };
        let mut spans = vec![Span {
            timeline,
            after_lsn: 0,
            through_lsn: u64::MAX,
            through_time_us: i64::MAX,
        }];
        let mut tl = timeline;
        while tl > 1 {
            let h = self.history(tl).ok_or_else(|| {
                err(format!(
                    "timeline {tl} has no history object ({}), so where it branched off is unknown",
                    history_key(&self.stream, tl)
                ))
            })?;
            // Parents always began earlier, so they have smaller numbers: no cycles.
            if h.parent >= tl || h.parent == 0 {
                return Err(err(format!(
                    "timeline {tl} names timeline {} as its parent",
                    h.parent
                )));
            }
            spans.last_mut().expect("one span at least").after_lsn = h.branch_lsn;
            spans.push(Span {
                timeline: h.parent,
                after_lsn: 0,
                through_lsn: h.branch_lsn,
                through_time_us: h.branch_time_us,
            });
            tl = h.parent;
        }
        spans.reverse();
        Ok(spans)
    }

    /// The catalog as a restore along the path to `timeline` sees it: the segments and
    /// snapshots of each timeline on the path within its stretch, in LSN order. A parent's
    /// segment that runs past the branch point is cut there (its range ends at the branch
    /// record; its object, `object_last_lsn`, is unchanged), so readers stop at the branch.
    pub fn on_path(&self, timeline: u32) -> Result<Catalog, TimelineError> {
        let path = self.path(timeline)?;
        Ok(self.view(&path))
    }

    pub(super) fn view(&self, path: &[Span]) -> Catalog {
        let mut view = Catalog {
            stream: self.stream.clone(),
            identity: self.identity.clone(),
            timelines: self.timelines.clone(),
            snapshot_objects: self.snapshot_objects.clone(),
            ..Default::default()
        };
        for span in path {
            for s in self.segments.iter().filter(|s| {
                s.range.timeline == span.timeline
                    && s.range.last_lsn > span.after_lsn
                    && s.range.first_lsn <= span.through_lsn
            }) {
                let mut e: SegmentEntry = s.clone();
                if e.range.last_lsn > span.through_lsn {
                    e.range.last_lsn = span.through_lsn;
                    e.range.last_ts = span.through_time_us.max(e.range.first_ts);
                }
                view.segments.push(e);
            }
            view.snapshots.extend(
                self.snapshots
                    .iter()
                    .filter(|s| {
                        s.timeline == span.timeline
                            && s.lsn >= span.after_lsn
                            && s.lsn <= span.through_lsn
                    })
                    .cloned(),
            );
        }
        view
    }
}

/// Begins a new timeline of `stream` in every store: the next number after every timeline
/// any of them knows, recorded as branching from record `branch_lsn` (at `branch_time_us`)
/// of `parent`. Returns the history and the stream's identity, which the new timeline's
/// data directory takes. Two captures beginning a timeline at once get different numbers:
/// the history object is created, never overwritten, and a taken number moves on to the next.
pub async fn begin(
    stores: &[Arc<dyn Store>],
    stream: &str,
    parent: u32,
    branch_lsn: u64,
    branch_time_us: i64,
) -> Result<(TimelineHistory, StreamIdentity), TimelineError> {
    let mut identity: Option<StreamIdentity> = None;
    let mut next = 0;
    for s in stores {
        let cat = Catalog::load(s.as_ref(), stream).await?;
        let Some(id) = cat.identity.clone() else {
            return Err(TimelineError::Path {
                stream: stream.into(),
                timeline: parent,
                detail: format!("{} holds no stream of that name to branch from", s.url()),
            });
        };
        if identity.get_or_insert_with(|| id.clone()) != &id {
            return Err(TimelineError::Disagree {
                stream: stream.into(),
                timeline: parent,
                detail: format!("{} holds stream id {}", s.url(), id.stream_id),
            });
        }
        next = next.max(cat.newest_timeline().unwrap_or(0) + 1);
    }
    let identity = identity.ok_or_else(|| TimelineError::Path {
        stream: stream.into(),
        timeline: parent,
        detail: "no store given".into(),
    })?;
    let created = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    'number: for _ in 0..16 {
        let h = TimelineHistory {
            timeline: next.max(2),
            parent,
            branch_lsn,
            branch_time_us,
            created: created.clone(),
        };
        let bytes = serde_json::to_vec_pretty(&h).expect("history serializes");
        for (i, s) in stores.iter().enumerate() {
            match s
                .put_new(&history_key(stream, h.timeline), bytes.clone())
                .await
            {
                Ok(_) => {}
                // Another capture took this number first: the next one.
                Err(StoreError::Conflict { .. }) if i == 0 => {
                    next = h.timeline + 1;
                    continue 'number;
                }
                Err(StoreError::Conflict { .. }) => {
                    return Err(TimelineError::Disagree {
                        stream: stream.into(),
                        timeline: h.timeline,
                        detail: format!("{} already holds another history for it", s.url()),
                    })
                }
                Err(e) => return Err(e.into()),
            }
        }
        return Ok((h, identity));
    }
    Err(TimelineError::Disagree {
        stream: stream.into(),
        timeline: next,
        detail: "16 numbers in a row were taken while beginning a timeline".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::keys::SegmentKey;
    use crate::catalog::{prune, SnapshotManifest};

    fn seg(timeline: u32, first: u64, last: u64, first_ts: i64) -> SegmentEntry {
        let range = SegmentKey {
            timeline,
            first_lsn: first,
            last_lsn: last,
            first_ts,
            last_ts: first_ts + (last - first) as i64,
            encrypted: false,
        };
        SegmentEntry {
            key: format!("s{timeline}/{first}-{last}"),
            size: 1,
            range,
            object_last_lsn: last,
        }
    }

    fn snap(cat: &mut Catalog, timeline: u32, lsn: u64, time_us: i64) {
        let data_key = format!("b{timeline}/{lsn}");
        cat.snapshot_objects.insert(data_key.clone(), 1);
        cat.snapshots.push(SnapshotManifest {
            timeline,
            lsn,
            time_us,
            format: "rdb".into(),
            namespace: String::new(),
            data_key,
            size: 1,
            sha256: String::new(),
            encrypted: false,
        });
    }

    fn history(
        timeline: u32,
        parent: u32,
        branch_lsn: u64,
        branch_time_us: i64,
    ) -> TimelineHistory {
        TimelineHistory {
            timeline,
            parent,
            branch_lsn,
            branch_time_us,
            created: String::new(),
        }
    }

    /// Timeline 1: LSN 1..=30 at times = LSN. Timeline 2 branched after LSN 15 (a restore
    /// to it), began with a base at 15 taken at time 90 and wrote 16..=25 at 100..; timeline
    /// 3 branched off timeline 2 after its LSN 20 and wrote 21..=22.
    fn branched() -> Catalog {
        let mut cat = Catalog {
            stream: "r".into(),
            segments: vec![
                seg(1, 1, 10, 1),
                seg(1, 11, 20, 11),
                seg(1, 21, 30, 21),
                seg(2, 16, 25, 100),
                seg(3, 21, 22, 200),
            ],
            timelines: vec![history(2, 1, 15, 15), history(3, 2, 20, 104)],
            ..Default::default()
        };
        snap(&mut cat, 2, 15, 90);
        cat
    }

    #[test]
    fn a_path_follows_parents_to_the_stream_start() {
        let cat = branched();
        assert_eq!(cat.timeline_ids(), [1, 2, 3]);
        assert_eq!(cat.newest_timeline(), Some(3));
        let p: Vec<_> = cat
            .path(3)
            .unwrap()
            .iter()
            .map(|s| (s.timeline, s.after_lsn, s.through_lsn))
            .collect();
        assert_eq!(p, [(1, 0, 15), (2, 15, 20), (3, 20, u64::MAX)]);
        assert_eq!(cat.path(1).unwrap().len(), 1);

        let mut broken = cat.clone();
        broken.timelines.remove(0);
        let e = broken.path(3).unwrap_err().to_string();
        assert!(
            e.contains("timeline 2 has no history object (r/timelines/0000000002.json)"),
            "{e}"
        );
        let mut cycle = cat.clone();
        cycle.timelines[0].parent = 3;
        let e = cycle.path(2).unwrap_err().to_string();
        assert!(e.contains("names timeline 3 as its parent"), "{e}");
    }

    #[test]
    fn a_path_view_cuts_parent_segments_at_the_branch() {
        let v = branched().on_path(2).unwrap();
        let r: Vec<_> = v
            .segments
            .iter()
            .map(|s| {
                (
                    s.range.timeline,
                    s.range.first_lsn,
                    s.range.last_lsn,
                    s.object_last_lsn,
                )
            })
            .collect();
        // 21..=30 of timeline 1 is not on timeline 2's history; 11..=20 stops at 15.
        assert_eq!(r, [(1, 1, 10, 10), (1, 11, 15, 20), (2, 16, 25, 25)]);
        assert_eq!(v.segments[1].range.last_ts, 15, "the branch record's time");
        assert_eq!(v.snapshots.len(), 1);
        // Timeline 1's own history does not hold timeline 2's base.
        assert!(branched().on_path(1).unwrap().snapshots.is_empty());
    }

    #[test]
    fn windows_are_listed_per_timeline_along_their_paths() {
        let w: Vec<_> = branched()
            .windows()
            .iter()
            .map(|w| (w.timeline, w.earliest_lsn, w.latest_lsn, w.latest_time_us))
            .collect();
        assert_eq!(w, [(1, 0, 30, 30), (2, 0, 25, 109), (3, 0, 22, 201)]);
        // A timeline that only began (its base, no records yet) is a window of its own.
        let mut cat = branched();
        cat.segments.retain(|s| s.range.timeline == 1);
        cat.timelines.pop();
        let w: Vec<_> = cat
            .windows()
            .iter()
            .map(|w| (w.timeline, w.latest_lsn))
            .collect();
        assert_eq!(w, [(1, 30), (2, 15)]);
    }

    #[test]
    fn prune_keeps_what_any_timeline_needs() {
        let keys = |p: prune::PrunePlan| p.delete;
        // Timeline 1 has no base: its whole history stays, and with it timeline 2's past.
        assert!(keys(prune::plan(&branched(), 1000)).is_empty());
        // With a base at 20 on timeline 1 and timeline 2's at 15, both paths start late
        // enough to drop 1..=10 and 11..=20 (timeline 2 needs 11..=15 only up to its base).
        let mut cat = branched();
        snap(&mut cat, 1, 20, 20);
        cat.snapshots.sort_by_key(|m| (m.timeline, m.lsn));
        assert_eq!(keys(prune::plan(&cat, 95)), ["s1/1-10", "s1/11-20"]);
        // Before timeline 2's base was taken (time 90) its path still needs everything.
        assert!(keys(prune::plan(&cat, 50)).is_empty());
    }
}
