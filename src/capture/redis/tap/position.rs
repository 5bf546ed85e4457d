//! Where the tap stands: the replication position its log covers, kept beside the log so a
//! restart continues with a partial resync instead of a full one, and the recent mapping
//! from replication offsets to LSNs that aligns on-demand snapshots.

use std::collections::VecDeque;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::capture::redis_repl::ReplPosition;
use crate::log::StreamMeta;

/// The file in the data directory.
pub const FILE: &str = "tap-position.json";

/// What the log holds, up to `lsn`, is exactly the master's history up to `offset` of
/// `replid`; at that offset the stream had `db` selected.
///
/// Written before every batch the tap logs, naming both the position the batch brings the
/// log to and the one it starts from (see [`PositionFile`]). One of them is trusted on
/// restart only when its `lsn` equals the log's last LSN: then no record is missing or
/// doubled whatever crashed when. Any other state (a crash that cut a batch short, a file
/// from another stream) makes the tap ask for a full resync, which takes a new aligned
/// base: slower, never wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    pub stream_id: String,
    pub timeline: u32,
    pub lsn: u64,
    pub replid: String,
    pub offset: u64,
    pub db: u32,
}

impl Saved {
    pub fn new(meta: &StreamMeta, lsn: u64, replid: &str, offset: u64, db: u32) -> Saved {
        Saved {
            stream_id: format!("{:016x}", meta.stream_id),
            timeline: meta.timeline,
            lsn,
            replid: replid.to_string(),
            offset,
            db,
        }
    }

    pub fn position(&self) -> ReplPosition {
        ReplPosition {
            replid: self.replid.clone(),
            offset: self.offset,
        }
    }

    /// The saved position in `dir` that describes exactly this log; otherwise why none does.
    pub fn load(dir: &Path, meta: &StreamMeta, last_lsn: u64) -> Result<Saved, String> {
        let path = dir.join(FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err("no saved replication position".into())
            }
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let stored: Stored = serde_json::from_slice(&bytes)
            .map_err(|e| format!("{} is not a replication position: {e}", path.display()))?;
        // Files from before the check was added were replaced whole, never torn.
        if stored
            .crc
            .is_some_and(|c| c != crc_of(&stored.saved, stored.before.as_ref()))
        {
            return Err(format!(
                "{} fails its check (a write torn by a power cut)",
                path.display()
            ));
        }
        let ours = |s: &Saved| *s == Saved::new(meta, s.lsn, &s.replid, s.offset, s.db);
        if !ours(&stored.saved) || !stored.before.as_ref().is_none_or(ours) {
            return Err("the saved position belongs to another stream or timeline".into());
        }
        let Stored { saved, before, .. } = stored;
        match before {
            _ if saved.lsn == last_lsn => Ok(saved),
            Some(b) if b.lsn == last_lsn => Ok(b),
            Some(b) if b.lsn < last_lsn && last_lsn < saved.lsn => Err(format!(
                "the log ends at LSN {last_lsn}, inside the batch of LSNs {} to {} that a \
                 crash cut short",
                b.lsn + 1,
                saved.lsn
            )),
            _ => Err(format!(
                "the saved position is for LSN {} but the log ends at LSN {last_lsn}",
                saved.lsn
            )),
        }
    }
}

/// The file as written: the position the log reaches once the batch being appended is in
/// (at the top level, where files before `before` existed kept their only position, so an
/// older vecwal reads it as it always did), the position before that batch, and a CRC-32
/// of their compact JSON.
#[derive(Serialize, Deserialize)]
struct Stored {
    #[serde(flatten)]
    saved: Saved,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    before: Option<Saved>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    crc: Option<u32>,
}

fn crc_of(saved: &Saved, before: Option<&Saved>) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&serde_json::to_vec(saved).expect("serializes"));
    if let Some(b) = before {
        h.update(&serde_json::to_vec(b).expect("serializes"));
    }
    h.finalize()
}

/// Bytes the file is padded to, so a shorter position overwrites all of a longer one.
const PADDED: usize = 512;

/// The position file, open for the tap's life and overwritten in place before every batch:
/// one `pwrite` instead of a create, write and rename per batch (the rename was a sixth of
/// the proxy's CPU at pipeline 1, and put the journal on the write path).
///
/// Written before the batch, naming where the log stands and where the batch takes it, so
/// a kill anywhere around the append leaves a file that matches the log: before the
/// records reach the log file, or after. Written after it instead, a kill between the two
/// (a likely moment for a busy tap) left the file a batch behind and cost a full resync.
///
/// Not fsynced: after a power cut an older version may come back, whose LSN then no longer
/// matches the log's (a full resync), or matches it exactly because the log lost the same
/// records (a correct resume). A write torn by the power cut fails the CRC (a full resync).
/// A killed process leaves a whole write: the kernel finishes a `pwrite` it has started.
pub struct PositionFile {
    file: std::fs::File,
    len: usize,
}

impl PositionFile {
    pub fn open(dir: &Path) -> std::io::Result<PositionFile> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(FILE))?;
        let len = file.metadata()?.len() as usize;
        Ok(PositionFile { file, len })
    }

    /// Replaces the file's content with `saved`, and `before` if the log may still be there.
    pub fn write(&mut self, saved: &Saved, before: Option<&Saved>) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let stored = Stored {
            saved: saved.clone(),
            before: before.cloned(),
            crc: Some(crc_of(saved, before)),
        };
        let mut line = serde_json::to_vec(&stored).expect("serializes");
        // Spaces (JSON whitespace) cover whatever a longer earlier write left.
        let len = (line.len() + 1).max(PADDED).max(self.len);
        line.resize(len - 1, b' ');
        line.push(b'\n');
        self.file.write_all_at(&line, 0)?;
        self.len = len;
        Ok(())
    }
}

/// Entries kept for aligning snapshots: a snapshot's fork happens within moments of its
/// request, so only the recent past is ever looked up.
const HISTORY: usize = 1 << 16;

/// Which LSN the log had reached at each replication offset, recently.
#[derive(Debug, Clone)]
pub struct History {
    replid: String,
    /// At `floor.0` and before any entry, the log ended at LSN `floor.1` (time `floor.2`).
    floor: (u64, u64, i64),
    /// `(offset after a logged unit, its last LSN, its time)`, offsets increasing.
    entries: VecDeque<(u64, u64, i64)>,
}

impl History {
    pub fn new(replid: &str, offset: u64, lsn: u64, time_us: i64) -> History {
        History {
            replid: replid.to_string(),
            floor: (offset, lsn, time_us),
            entries: VecDeque::new(),
        }
    }

    pub fn set_replid(&mut self, replid: &str) {
        // A failover keeps the offsets (PSYNC2): the mapping stays valid under the new id.
        self.replid = replid.to_string();
    }

    pub fn push(&mut self, offset: u64, lsn: u64, time_us: i64) {
        if self.entries.len() == HISTORY {
            self.floor = self.entries.pop_front().expect("full");
        }
        self.entries.push_back((offset, lsn, time_us));
    }

    /// The LSN and time the log had reached when the master's history reached `offset` of
    /// `replid`; `None` when that is not known (another replid, or too long ago).
    pub fn lsn_at(&self, replid: &str, offset: u64) -> Option<(u64, i64)> {
        if replid != self.replid || offset < self.floor.0 {
            return None;
        }
        let i = self.entries.partition_point(|e| e.0 <= offset);
        let e = if i == 0 {
            self.floor
        } else {
            self.entries[i - 1]
        };
        Some((e.1, e.2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> StreamMeta {
        StreamMeta {
            name: "r".into(),
            stream_id: 42,
            timeline: 1,
            created: String::new(),
            branch: None,
        }
    }

    #[test]
    fn offsets_map_to_the_last_lsn_logged_at_or_before_them() {
        let mut h = History::new("a", 100, 7, 1);
        h.push(150, 8, 2);
        h.push(180, 10, 3);
        assert_eq!(h.lsn_at("a", 99), None, "before the floor");
        assert_eq!(h.lsn_at("a", 100), Some((7, 1)));
        assert_eq!(h.lsn_at("a", 149), Some((7, 1)));
        assert_eq!(h.lsn_at("a", 150), Some((8, 2)));
        assert_eq!(h.lsn_at("a", 179), Some((8, 2)));
        assert_eq!(h.lsn_at("a", 1000), Some((10, 3)));
        assert_eq!(h.lsn_at("b", 150), None, "another history");
    }

    #[test]
    fn old_entries_become_the_floor() {
        let mut h = History::new("a", 0, 0, 0);
        for i in 1..=(HISTORY as u64 + 2) {
            h.push(i * 10, i, i as i64);
        }
        assert_eq!(h.lsn_at("a", 15), None, "forgotten");
        assert_eq!(h.lsn_at("a", 20), Some((2, 2)));
        assert_eq!(h.lsn_at("a", 25), Some((2, 2)));
    }

    #[test]
    fn a_saved_position_is_trusted_only_for_the_exact_log() {
        let dir = tempfile::tempdir().unwrap();
        let meta = meta();
        let err = Saved::load(dir.path(), &meta, 0).unwrap_err();
        assert!(err.contains("no saved"), "{err}");
        let mut file = PositionFile::open(dir.path()).unwrap();
        file.write(&Saved::new(&meta, 5, "a-long-replication-id", 900, 3), None)
            .unwrap();
        file.write(&Saved::new(&meta, 5, "id", 900, 3), None)
            .unwrap();
        let back = Saved::load(dir.path(), &meta, 5).unwrap();
        assert_eq!((back.replid.as_str(), back.offset), ("id", 900));
        let err = Saved::load(dir.path(), &meta, 6).unwrap_err();
        assert!(err.contains("log ends at LSN 6"), "{err}");
        let other = StreamMeta {
            stream_id: 43,
            ..meta.clone()
        };
        let err = Saved::load(dir.path(), &other, 5).unwrap_err();
        assert!(err.contains("another stream"), "{err}");
        // A torn write: the new LSN beside the old offset.
        let path = dir.path().join(FILE);
        let text = String::from_utf8(std::fs::read(&path).unwrap()).unwrap();
        std::fs::write(&path, text.replace("900", "901")).unwrap();
        let err = Saved::load(dir.path(), &meta, 5).unwrap_err();
        assert!(err.contains("fails its check"), "{err}");
        // A file written whole before the check existed is read as it is.
        let old = serde_json::to_vec_pretty(&Saved::new(&meta, 5, "id", 900, 3)).unwrap();
        std::fs::write(&path, old).unwrap();
        assert_eq!(Saved::load(dir.path(), &meta, 5).unwrap().offset, 900);
        std::fs::write(&path, b"{").unwrap();
        assert!(Saved::load(dir.path(), &meta, 5).is_err());
    }

    #[test]
    fn a_crash_before_or_after_a_batch_reaches_the_log_keeps_a_matching_position() {
        let dir = tempfile::tempdir().unwrap();
        let meta = meta();
        let before = Saved::new(&meta, 5, "id", 900, 0);
        let after = Saved::new(&meta, 8, "id", 1000, 2);
        PositionFile::open(dir.path())
            .unwrap()
            .write(&after, Some(&before))
            .unwrap();
        assert_eq!(Saved::load(dir.path(), &meta, 8).unwrap(), after, "logged");
        assert_eq!(
            Saved::load(dir.path(), &meta, 5).unwrap(),
            before,
            "not yet"
        );
        let err = Saved::load(dir.path(), &meta, 6).unwrap_err();
        assert!(
            err.contains("ends at LSN 6, inside the batch of LSNs 6 to 8"),
            "{err}"
        );
        let err = Saved::load(dir.path(), &meta, 9).unwrap_err();
        assert!(
            err.contains("is for LSN 8 but the log ends at LSN 9"),
            "{err}"
        );
        // The check covers both positions.
        let path = dir.path().join(FILE);
        let text = String::from_utf8(std::fs::read(&path).unwrap()).unwrap();
        std::fs::write(&path, text.replace("900", "901")).unwrap();
        let err = Saved::load(dir.path(), &meta, 5).unwrap_err();
        assert!(err.contains("fails its check"), "{err}");
    }
}
