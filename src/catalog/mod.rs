//! What a store holds for a stream, read from a LIST of its keys: segments and their LSN
//! and time ranges, snapshots, the recoverable window, and gaps. Nothing here trusts object
//! LastModified times: every time comes from the records (through the names vecwal gave
//! the objects).

pub mod keys;
pub mod prune;
pub mod timeline;
pub mod verify;

use serde::{Deserialize, Serialize};

use crate::store::{Store, StoreError};
use keys::SegmentKey;

/// A stream's identity in a store, written once by the first shipper.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamIdentity {
    pub name: String,
    /// Hex, as in the data directory's `stream.json`.
    pub stream_id: String,
}

/// Manifest of a base snapshot, written after its data object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotManifest {
    pub timeline: u32,
    /// The snapshot reflects every record with LSN <= this and none after.
    pub lsn: u64,
    /// Timestamp of record `lsn` (UTC microseconds); 0 for a snapshot of an empty start.
    pub time_us: i64,
    /// `rdb`, `qdrant-snapshot`, …
    pub format: String,
    /// What it holds: empty for a whole database (Redis), else the namespace (a Qdrant
    /// collection) whose records it is the base of.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    pub data_key: String,
    pub size: u64,
    pub sha256: String,
    pub encrypted: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct SegmentEntry {
    pub key: String,
    pub size: u64,
    /// What the object's name says; on a path ([`Catalog::on_path`]) a parent's segment
    /// that runs past the branch point ends at the branch record here.
    #[serde(flatten)]
    pub range: SegmentKey,
    /// The last LSN the object holds (its name's, even where `range` is cut).
    #[serde(skip)]
    pub object_last_lsn: u64,
}

/// A span of LSNs no segment in the store covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Gap {
    pub timeline: u32,
    pub after_lsn: u64,
    pub next_lsn: u64,
}

/// A run of history that can be restored to any point inside: a base (a snapshot, or the
/// stream's start from an empty database) and unbroken segments after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Window {
    pub timeline: u32,
    /// LSN the base reflects (0: the empty start).
    pub base_lsn: u64,
    pub earliest_lsn: u64,
    pub earliest_time_us: i64,
    pub latest_lsn: u64,
    pub latest_time_us: i64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Catalog {
    pub stream: String,
    pub identity: Option<StreamIdentity>,
    pub segments: Vec<SegmentEntry>,
    pub snapshots: Vec<SnapshotManifest>,
    /// Where each timeline after the first branched off.
    pub timelines: Vec<timeline::TimelineHistory>,
    /// Keys under the stream that vecwal did not write, or snapshot data without its
    /// manifest (an upload cut short).
    pub unrecognized: Vec<String>,
    /// Size of every snapshot data object present, by key.
    #[serde(skip)]
    pub snapshot_objects: std::collections::BTreeMap<String, u64>,
}

impl Catalog {
    /// Reads the catalog of `stream`: two LISTs and one GET per snapshot manifest.
    pub async fn load(store: &dyn Store, stream: &str) -> Result<Catalog, StoreError> {
        let mut cat = Catalog {
            stream: stream.to_string(),
            ..Default::default()
        };
        cat.identity = match store.get(&format!("{stream}/{}", keys::STREAM_FILE)).await {
            Ok(b) => serde_json::from_slice(&b).ok(),
            Err(StoreError::NotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        for o in store.list(&keys::wal_prefix(stream)).await? {
            match SegmentKey::parse(stream, &o.key) {
                Some(range) => cat.segments.push(SegmentEntry {
                    key: o.key,
                    size: o.size,
                    range,
                    object_last_lsn: range.last_lsn,
                }),
                None => cat.unrecognized.push(o.key),
            }
        }
        cat.segments
            .sort_by_key(|s| (s.range.timeline, s.range.first_lsn));
        let snaps = store.list(&keys::snapshot_prefix(stream)).await?;
        let mut data_keys: Vec<&str> = Vec::new();
        for o in &snaps {
            if o.key.ends_with(".json") {
                let m: SnapshotManifest = match store.get(&o.key).await {
                    Ok(b) => match serde_json::from_slice(&b) {
                        Ok(m) => m,
                        Err(_) => {
                            cat.unrecognized.push(o.key.clone());
                            continue;
                        }
                    },
                    Err(StoreError::NotFound { .. }) => continue,
                    Err(e) => return Err(e),
                };
                cat.snapshots.push(m);
            } else {
                data_keys.push(&o.key);
                cat.snapshot_objects.insert(o.key.clone(), o.size);
            }
        }
        for k in data_keys {
            if !cat.snapshots.iter().any(|m| m.data_key == k) {
                cat.unrecognized.push(k.to_string());
            }
        }
        cat.snapshots.sort_by_key(|m| (m.timeline, m.lsn));
        for o in store.list(&timeline::timelines_prefix(stream)).await? {
            let h = match store.get(&o.key).await {
                Ok(b) => serde_json::from_slice::<timeline::TimelineHistory>(&b).ok(),
                Err(StoreError::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            match h.filter(|h| o.key == timeline::history_key(stream, h.timeline)) {
                Some(h) => cat.timelines.push(h),
                None => cat.unrecognized.push(o.key),
            }
        }
        cat.timelines.sort_by_key(|h| h.timeline);
        Ok(cat)
    }

    /// LSN spans missing between consecutive segments of a timeline.
    pub fn gaps(&self) -> Vec<Gap> {
        self.segments
            .windows(2)
            .filter(|w| {
                w[0].range.timeline == w[1].range.timeline
                    && w[1].range.first_lsn > w[0].range.last_lsn + 1
            })
            .map(|w| Gap {
                timeline: w[0].range.timeline,
                after_lsn: w[0].range.last_lsn,
                next_lsn: w[1].range.first_lsn,
            })
            .collect()
    }

    /// Every recoverable window, by timeline, oldest first.
    ///
    /// A window starts at a base: the stream's start (segments from LSN 1, restored onto an
    /// empty database) or a snapshot. It runs as far as segments continue without a gap.
    /// A timeline's windows follow its path, so one that began at a branch may start on its
    /// parent; windows that end before the branch point are the parent's and are listed
    /// there only.
    pub fn windows(&self) -> Vec<Window> {
        let mut out = Vec::new();
        for tl in self.timeline_ids() {
            // A timeline whose history object is missing still shows what it holds itself.
            let path = self.path(tl).unwrap_or_else(|_| {
                vec![timeline::Span {
                    timeline: tl,
                    after_lsn: 0,
                    through_lsn: u64::MAX,
                    through_time_us: i64::MAX,
                }]
            });
            let branch = path.last().map_or(0, |s| s.after_lsn);
            let view = self.view(&path);
            out.extend(
                view.path_windows(tl)
                    .into_iter()
                    .filter(|(w, base_tl)| w.latest_lsn > branch || *base_tl == tl)
                    .map(|(w, _)| w),
            );
        }
        out
    }

    /// The windows of a path view (its segments are one run of LSNs), labelled `timeline`,
    /// each with the timeline its base is on.
    fn path_windows(&self, timeline: u32) -> Vec<(Window, u32)> {
        let mut out: Vec<(Window, u32)> = Vec::new();
        let mut bases: Vec<(u64, u32, i64)> = self
            .snapshots
            .iter()
            .map(|s| (s.lsn, s.timeline, s.time_us))
            .collect();
        if let Some(first) = self.segments.first().filter(|s| s.range.first_lsn == 1) {
            bases.push((0, first.range.timeline, first.range.first_ts));
        }
        bases.sort();
        for (base_lsn, base_tl, base_time) in bases {
            // Extend from the base through contiguous segments.
            let mut latest = (base_lsn, base_time);
            for s in &self.segments {
                if s.range.last_lsn <= latest.0 {
                    continue;
                }
                if s.range.first_lsn > latest.0 + 1 {
                    break;
                }
                latest = (s.range.last_lsn, s.range.last_ts);
            }
            // A base inside an earlier window adds nothing new.
            if let Some((w, on)) = out.last_mut() {
                if base_lsn <= w.latest_lsn {
                    if base_tl == timeline {
                        *on = timeline;
                    }
                    if latest.0 > w.latest_lsn {
                        (w.latest_lsn, w.latest_time_us) = latest;
                    }
                    continue;
                }
            }
            let w = Window {
                timeline,
                base_lsn,
                earliest_lsn: base_lsn,
                earliest_time_us: base_time,
                latest_lsn: latest.0,
                latest_time_us: latest.1,
            };
            out.push((w, base_tl));
        }
        out
    }

    /// Whether a snapshot's data object is in the store with the size its manifest implies
    /// (an encrypted one is 60 bytes larger: envelope header and tag).
    pub fn snapshot_present(&self, s: &SnapshotManifest) -> bool {
        let want = if s.encrypted { s.size + 60 } else { s.size };
        self.snapshot_objects.get(&s.data_key) == Some(&want)
    }

    /// The last segment, i.e. how far shipping has come.
    pub fn last_segment(&self) -> Option<&SegmentEntry> {
        self.segments
            .iter()
            .max_by_key(|s| (s.range.timeline, s.range.last_lsn))
    }
}
