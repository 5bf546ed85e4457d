//! The data directory: file names, the lock, the stream's identity, and the crash-safe
//! file operations everything else uses.
//!
//! ```text
//! DATA_DIR/
//!   LOCK                                   held (flock) while a process has the log open
//!   stream.json                            stream name, id and timeline
//!   wal/<timeline>-<first_lsn>.wal         open segments; the newest takes appends
//!   sealed/<timeline>-<first>-<last>.seg   sealed segments awaiting shipment
//! ```
//! Numbers in names are zero-padded decimal (10 digits for timelines, 20 for LSNs), so
//! names sort by timeline, then LSN.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::{LogError, Result};

pub const WAL_DIR: &str = "wal";
pub const SEALED_DIR: &str = "sealed";
pub const TMP_SUFFIX: &str = ".tmp";

pub fn open_name(timeline: u32, first_lsn: u64) -> String {
    format!("{timeline:010}-{first_lsn:020}.wal")
}

pub fn sealed_name(timeline: u32, first_lsn: u64, last_lsn: u64) -> String {
    format!("{timeline:010}-{first_lsn:020}-{last_lsn:020}.seg")
}

/// What a segment file name says about its contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SegmentName {
    pub timeline: u32,
    pub first_lsn: u64,
    /// `None` for an open segment.
    pub last_lsn: Option<u64>,
}

impl SegmentName {
    pub fn parse(file_name: &str) -> Option<SegmentName> {
        let (stem, sealed) = if let Some(s) = file_name.strip_suffix(".seg") {
            (s, true)
        } else {
            (file_name.strip_suffix(".wal")?, false)
        };
        let mut parts = stem.split('-');
        let timeline = parts.next()?.parse().ok()?;
        let first_lsn = parts.next()?.parse().ok()?;
        let last_lsn = if sealed {
            Some(parts.next()?.parse().ok()?)
        } else {
            None
        };
        if parts.next().is_some() {
            return None;
        }
        Some(SegmentName {
            timeline,
            first_lsn,
            last_lsn,
        })
    }
}

/// The stream a data directory captures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamMeta {
    pub name: String,
    /// Random, fixed at creation: tells two streams that were given the same name apart.
    #[serde(with = "hex_u64")]
    pub stream_id: u64,
    pub timeline: u32,
    pub created: String,
    /// Where this timeline branched off the stream's history; `None` for timeline 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<Branch>,
}

/// Where a timeline after the first branched off the stream: it holds the records after
/// `lsn`, and the history up to `lsn` is the `parent` timeline's (a database restored to that
/// record, or a capture that lost its data directory, took writes again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Branch {
    pub parent: u32,
    pub lsn: u64,
    /// Timestamp of record `lsn` (UTC µs): a floor for the new timeline's timestamps, so
    /// time never goes back along a history.
    pub time_us: i64,
    /// When the timeline began (RFC 3339).
    pub created: String,
}

mod hex_u64 {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{v:016x}"))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let s = String::deserialize(d)?;
        u64::from_str_radix(&s, 16).map_err(serde::de::Error::custom)
    }
}

/// Validates a stream name: it becomes part of file and object names.
pub fn check_stream_name(name: &str) -> std::result::Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "stream name {name:?} must be 1 to 64 characters of letters, digits, '-', '_' or '.', not starting with '.'"
        ))
    }
}

/// A random 64-bit id from the OS, without pulling in an RNG crate.
fn random_u64() -> Result<u64> {
    let mut b = [0u8; 8];
    let mut f = File::open("/dev/urandom").map_err(|e| LogError::io("open", "/dev/urandom", e))?;
    std::io::Read::read_exact(&mut f, &mut b)
        .map_err(|e| LogError::io("read", "/dev/urandom", e))?;
    Ok(u64::from_le_bytes(b))
}

/// Loads `stream.json`, or creates it for a new directory.
pub fn load_or_create_meta(dir: &Path, wanted: &str) -> Result<StreamMeta> {
    let path = dir.join("stream.json");
    match fs::read(&path) {
        Ok(bytes) => {
            let meta: StreamMeta =
                serde_json::from_slice(&bytes).map_err(|e| LogError::Layout {
                    path: path.clone(),
                    detail: format!("not valid stream metadata: {e}"),
                })?;
            if meta.name != wanted {
                return Err(LogError::StreamMismatch {
                    dir: dir.to_path_buf(),
                    found: meta.name,
                    wanted: wanted.to_string(),
                });
            }
            Ok(meta)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let meta = StreamMeta {
                name: wanted.to_string(),
                stream_id: random_u64()?,
                timeline: 1,
                created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                branch: None,
            };
            let json = serde_json::to_vec_pretty(&meta).expect("stream metadata serializes");
            write_atomic(&path, &json)?;
            Ok(meta)
        }
        Err(e) => Err(LogError::io("read", path, e)),
    }
}

/// Creates `stream.json` for a new timeline of an existing stream (`meta.branch` says
/// where it branched), in a data directory that holds none; the same metadata already there
/// is a restart and is fine, any other is refused.
pub fn create_branch_meta(dir: &Path, meta: &StreamMeta) -> Result<()> {
    create_dir(dir)?;
    let path = dir.join("stream.json");
    if let Some(found) = read_meta(dir)? {
        if &found == meta {
            return Ok(());
        }
        return Err(LogError::Layout {
            path,
            detail: format!(
                "the data directory already captures timeline {} of stream {:?}; a new timeline \
                 starts in an empty data directory (ship what this one holds with `vecwal ship`, \
                 then move it aside)",
                found.timeline, found.name
            ),
        });
    }
    let json = serde_json::to_vec_pretty(meta).expect("stream metadata serializes");
    write_atomic(&path, &json)
}

/// Reads `stream.json` without creating anything (for read-only tools).
pub fn read_meta(dir: &Path) -> Result<Option<StreamMeta>> {
    let path = dir.join("stream.json");
    match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| LogError::Layout {
                path,
                detail: format!("not valid stream metadata: {e}"),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(LogError::io("read", path, e)),
    }
}

/// Holds the data directory's lock for as long as it lives.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

pub fn lock_dir(dir: &Path) -> Result<DirLock> {
    let path = dir.join("LOCK");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| LogError::io("open", &path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(DirLock { _file: file }),
        Err(fs::TryLockError::WouldBlock) => Err(LogError::Locked {
            dir: dir.to_path_buf(),
        }),
        Err(fs::TryLockError::Error(e)) => Err(LogError::io("lock", path, e)),
    }
}

/// Creates a directory (and parents) durably.
pub fn create_dir(path: &Path) -> Result<()> {
    crate::fsutil::create_dir_durable(path).map_err(|e| LogError::io("create directory", path, e))
}

/// fsyncs a directory so that entries created, renamed or removed in it are durable.
pub fn sync_dir(path: &Path) -> Result<()> {
    crate::fsutil::sync_dir(path).map_err(|e| LogError::io("fsync directory", path, e))
}

/// Writes `bytes` to `path` so that a crash leaves either the old file or the new one:
/// temp file, fsync, rename, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    let mut f = File::create(&tmp).map_err(|e| LogError::io("create", &tmp, e))?;
    f.write_all(bytes)
        .map_err(|e| LogError::io("write", &tmp, e))?;
    f.sync_all().map_err(|e| LogError::io("fsync", &tmp, e))?;
    drop(f);
    fs::rename(&tmp, path).map_err(|e| LogError::io("rename", &tmp, e))?;
    sync_dir(path.parent().expect("file has a parent"))
}

pub fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(TMP_SUFFIX);
    PathBuf::from(s)
}

/// Segment files of one directory, sorted by name (timeline, then LSN). Temp files and
/// names vecwal does not write are left out; `strays` collects the latter.
pub fn list_segments(dir: &Path, strays: &mut Vec<PathBuf>) -> Result<Vec<(SegmentName, PathBuf)>> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(LogError::io("list", dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| LogError::io("list", dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(TMP_SUFFIX) {
            continue;
        }
        match SegmentName::parse(&name) {
            Some(n) => out.push((n, entry.path())),
            None => strays.push(entry.path()),
        }
    }
    out.sort();
    Ok(out)
}

/// Removes leftover temp files (from a crash mid-write); returns how many.
pub fn remove_temp_files(dir: &Path) -> Result<usize> {
    let mut n = 0;
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(LogError::io("list", dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| LogError::io("list", dir, e))?;
        if entry.file_name().to_string_lossy().ends_with(TMP_SUFFIX) {
            fs::remove_file(entry.path()).map_err(|e| LogError::io("remove", entry.path(), e))?;
            n += 1;
        }
    }
    if n > 0 {
        sync_dir(dir)?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort_by_lsn() {
        let a = open_name(1, 9);
        let b = sealed_name(1, 10, 99);
        assert_eq!(
            SegmentName::parse(&a).unwrap(),
            SegmentName {
                timeline: 1,
                first_lsn: 9,
                last_lsn: None
            }
        );
        assert_eq!(SegmentName::parse(&b).unwrap().last_lsn, Some(99));
        assert!(open_name(1, 9) < open_name(1, 10));
        assert!(SegmentName::parse("1-x.wal").is_none());
        assert!(SegmentName::parse("1-2-3-4.seg").is_none());
        assert!(check_stream_name("redis-main_1.a").is_ok());
        assert!(check_stream_name("../etc").is_err());
    }
}
