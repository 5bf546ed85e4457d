//! Reading local segments through memory maps: one file (open or sealed) or a whole data
//! directory, from an LSN or a time.

use std::path::{Path, PathBuf};

use memmap2::Mmap;
use vecwal_format::seal_reader::SealedRecords;
use vecwal_format::{
    open_segment_header, peek_header, Frames, Record, SealedSegment, SegmentHeader, SegmentKind,
    Tail,
};

use super::error::{LogError, Result};
use super::layout;
use super::sealer::map;

/// Where reading starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Start {
    #[default]
    Beginning,
    /// The first record with an LSN at or after this.
    Lsn(u64),
    /// The first record with a timestamp at or after this (UTC microseconds).
    Time(i64),
}

impl Start {
    fn admits(self, r: &Record) -> bool {
        match self {
            Start::Beginning => true,
            Start::Lsn(l) => r.lsn >= l,
            Start::Time(t) => r.timestamp_us >= t,
        }
    }
}

/// Segment files of a data directory in LSN order.
///
/// Safe against a live log: `wal/` is listed before `sealed/` (the sealer renames a sealed
/// segment into place before it removes the open one, so a segment is always in one of the
/// two listings), and where both copies of a segment are listed the sealed one is kept.
pub fn local_segments(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut strays = Vec::new();
    let open = layout::list_segments(&dir.join(layout::WAL_DIR), &mut strays)?;
    let sealed = layout::list_segments(&dir.join(layout::SEALED_DIR), &mut strays)?;
    let is_sealed = |t: u32, f: u64| {
        sealed
            .iter()
            .any(|(n, _)| n.timeline == t && n.first_lsn == f)
    };
    let mut all: Vec<_> = open
        .into_iter()
        .filter(|(n, _)| !is_sealed(n.timeline, n.first_lsn))
        .chain(sealed.iter().cloned())
        .collect();
    all.sort_by_key(|(n, _)| (n.timeline, n.first_lsn));
    Ok(all.into_iter().map(|(_, p)| p).collect())
}

/// The files `path` names: itself if it is a file, its segments if it is a data directory.
pub fn resolve(path: &Path) -> Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(path).map_err(|e| LogError::io("open", path, e))?;
    if meta.is_dir() {
        if !path.join(layout::WAL_DIR).is_dir() && !path.join(layout::SEALED_DIR).is_dir() {
            return Err(LogError::Layout {
                path: path.to_path_buf(),
                detail: "not a vecwal data directory (no wal/ or sealed/ inside)".into(),
            });
        }
        local_segments(path)
    } else {
        Ok(vec![path.to_path_buf()])
    }
}

/// Opens the segment at `path`; if it is an open segment that has meanwhile been sealed
/// and removed (a live log: the sealer may finish between listing and opening), opens its
/// sealed twin instead, which holds the same records. Returns the path actually opened.
pub fn open_live(path: &Path) -> Result<(PathBuf, SegmentFile)> {
    match SegmentFile::open(path) {
        Err(LogError::Io { ref source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            let twin = sealed_twin(path)
                .ok_or_else(|| LogError::io("open", path, std::io::ErrorKind::NotFound.into()))?;
            Ok((twin.clone(), SegmentFile::open(&twin)?))
        }
        other => other.map(|f| (path.to_path_buf(), f)),
    }
}

/// The sealed segment made from the open segment at `path`, if there is one.
fn sealed_twin(path: &Path) -> Option<PathBuf> {
    let name = layout::SegmentName::parse(&path.file_name()?.to_string_lossy())?;
    if name.last_lsn.is_some() {
        return None;
    }
    let sealed = path.parent()?.parent()?.join(layout::SEALED_DIR);
    layout::list_segments(&sealed, &mut Vec::new())
        .ok()?
        .into_iter()
        .find(|(n, _)| {
            n.timeline == name.timeline && n.first_lsn == name.first_lsn && n.last_lsn.is_some()
        })
        .map(|(_, p)| p)
}

/// One mapped segment file.
pub enum SegmentFile {
    Open {
        path: PathBuf,
        header: SegmentHeader,
        frames: Frames<Mmap>,
    },
    Sealed {
        path: PathBuf,
        seg: SealedSegment<Mmap>,
    },
}

impl SegmentFile {
    pub fn open(path: &Path) -> Result<SegmentFile> {
        let data = map(path)?;
        let header = peek_header(&data).map_err(|e| LogError::corruption(path, e))?;
        Ok(match header.kind {
            SegmentKind::Open => {
                let (header, first) =
                    open_segment_header(&data).map_err(|e| LogError::corruption(path, e))?;
                let frames = Frames::new(data, &header, first);
                SegmentFile::Open {
                    path: path.to_path_buf(),
                    header,
                    frames,
                }
            }
            SegmentKind::Sealed => SegmentFile::Sealed {
                path: path.to_path_buf(),
                seg: SealedSegment::open(data).map_err(|e| LogError::corruption(path, e))?,
            },
        })
    }

    pub fn header(&self) -> &SegmentHeader {
        match self {
            SegmentFile::Open { header, .. } => header,
            SegmentFile::Sealed { seg, .. } => &seg.header,
        }
    }
}

/// Records of a list of segment files, in order, from a start point.
///
/// A torn tail ends the iteration quietly only in the last file, and only if it is an
/// open segment (a live log being appended, or one not yet recovered); anywhere else it
/// is an error. Continuity between files is checked by [`super::verify`], not here.
pub struct RecordReader {
    files: std::vec::IntoIter<PathBuf>,
    start: Start,
    current: Option<Current>,
    done: bool,
}

enum Current {
    Open {
        path: PathBuf,
        frames: Frames<Mmap>,
        is_last: bool,
    },
    Sealed {
        path: PathBuf,
        records: SealedRecords<SealedSegment<Mmap>>,
    },
}

impl RecordReader {
    pub fn new(files: Vec<PathBuf>, start: Start) -> Self {
        RecordReader {
            files: files.into_iter(),
            start,
            current: None,
            done: false,
        }
    }

    fn next_file(&mut self) -> Result<bool> {
        let Some(path) = self.files.next() else {
            return Ok(false);
        };
        let is_last = self.files.len() == 0;
        let (path, file) = open_live(&path)?;
        self.current = Some(match file {
            SegmentFile::Open { frames, .. } => Current::Open {
                path,
                frames,
                is_last,
            },
            SegmentFile::Sealed { seg, .. } => {
                // Skip whole blocks before the start through the footer index.
                let block = match self.start {
                    Start::Beginning => Some(0),
                    Start::Lsn(l) => seg.block_for_lsn(l),
                    Start::Time(t) => seg.block_for_time(t),
                };
                let block = block.unwrap_or(seg.block_count());
                Current::Sealed {
                    path,
                    records: seg.into_records_from_block(block),
                }
            }
        });
        Ok(true)
    }

    fn next_in_current(&mut self) -> Option<Result<Record>> {
        match self.current.as_mut()? {
            Current::Open {
                path,
                frames,
                is_last,
            } => {
                if let Some((_, r)) = frames.next() {
                    return Some(Ok(r));
                }
                if let Some(v) = frames.violation() {
                    return Some(Err(LogError::corruption(&*path, v.clone())));
                }
                match frames.tail() {
                    Some(Tail::Torn { cause, .. }) if !*is_last => {
                        Some(Err(LogError::corruption(&*path, cause.clone())))
                    }
                    _ => None,
                }
            }
            Current::Sealed { path, records } => match records.next()? {
                Ok(r) => Some(Ok(r)),
                Err(e) => Some(Err(LogError::corruption(&*path, e))),
            },
        }
    }
}

impl Iterator for RecordReader {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Result<Record>> {
        while !self.done {
            match self.next_in_current() {
                Some(Ok(r)) if !self.start.admits(&r) => continue,
                Some(Ok(r)) => return Some(Ok(r)),
                Some(Err(e)) => {
                    self.done = true;
                    return Some(Err(e));
                }
                None => match self.next_file() {
                    Ok(true) => continue,
                    Ok(false) => self.done = true,
                    Err(e) => {
                        self.done = true;
                        return Some(Err(e));
                    }
                },
            }
        }
        None
    }
}
