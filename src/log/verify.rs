//! Full verification of local segment files: every checksum, every record, and LSN
//! continuity across files (promise 7: nothing unverified is trusted).

use std::path::{Path, PathBuf};

use serde::Serialize;
use vecwal_format::Tail;

use super::error::LogError;
use super::reader::{open_live, SegmentFile};

#[derive(Debug, Clone, Serialize)]
pub struct FileSummary {
    pub path: PathBuf,
    pub kind: &'static str,
    pub first_lsn: u64,
    /// `None` for an open segment with no records yet.
    pub last_lsn: Option<u64>,
    pub records: u64,
    pub first_ts_us: Option<i64>,
    pub last_ts_us: Option<i64>,
    pub bytes: u64,
}

/// The first fault found, located.
#[derive(Debug, Clone, Serialize)]
pub struct Fault {
    pub path: PathBuf,
    pub offset: u64,
    /// The last LSN read intact before the fault, when there is one.
    pub after_lsn: Option<u64>,
    pub message: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    pub files: Vec<FileSummary>,
    pub records: u64,
    /// A torn tail at the end of the last file, when it is an open segment: what a crash
    /// mid-append leaves, and what recovery truncates. Not a fault.
    pub torn_tail: Option<Fault>,
    pub fault: Option<Fault>,
}

impl VerifyReport {
    pub fn is_sound(&self) -> bool {
        self.fault.is_none()
    }
}

/// Verifies `files` in order (as [`super::reader::resolve`] lists them). Stops at the
/// first fault.
pub fn verify_files(files: &[PathBuf]) -> VerifyReport {
    let mut report = VerifyReport::default();
    // (stream id, timeline, next LSN) carried from file to file.
    let mut expect: Option<(u64, u32, u64)> = None;
    let mut last_lsn = None;
    let mut last_ts: Option<i64> = None;
    for (i, path) in files.iter().enumerate() {
        let is_last = i + 1 == files.len();
        match verify_file(path, is_last, &mut report) {
            Ok(Some(summary)) => {
                let h = (summary.stream_id, summary.timeline, summary.file.first_lsn);
                if let Some((sid, tl, next)) = expect {
                    let fault = if sid != h.0 {
                        Some(format!(
                            "belongs to stream {:016x}, the files before to {sid:016x}",
                            h.0
                        ))
                    } else if let Some(msg) = time_back(last_ts, summary.file.first_ts_us) {
                        Some(msg)
                    } else if tl == h.1 && next != h.2 {
                        Some(format!(
                            "starts at LSN {} but the previous file ends at LSN {}",
                            h.2,
                            next - 1
                        ))
                    } else {
                        None
                    };
                    if let Some(message) = fault {
                        report.fault = Some(Fault {
                            path: path.clone(),
                            offset: 0,
                            after_lsn: last_lsn,
                            message: format!("LSN gap: {message}"),
                        });
                        return report;
                    }
                }
                let end = summary.file.last_lsn.unwrap_or(summary.file.first_lsn - 1);
                expect = Some((h.0, h.1, end + 1));
                last_lsn = summary.file.last_lsn.or(last_lsn);
                last_ts = summary.file.last_ts_us.or(last_ts);
                report.records += summary.file.records;
                report.files.push(summary.file);
            }
            Ok(None) => return report,
            Err(fault) => {
                report.fault = Some(Fault {
                    after_lsn: fault.after_lsn.or(last_lsn),
                    ..fault
                });
                return report;
            }
        }
    }
    report
}

struct Checked {
    file: FileSummary,
    stream_id: u64,
    timeline: u32,
}

fn verify_file(
    path: &Path,
    is_last: bool,
    report: &mut VerifyReport,
) -> Result<Option<Checked>, Fault> {
    let fault = |e: LogError, after_lsn| {
        // The fault already names the file and offset; its message is the cause alone.
        let (offset, message) = match &e {
            LogError::Corruption { offset, cause, .. } => (*offset, cause.to_string()),
            other => (0, other.to_string()),
        };
        Fault {
            path: path.to_path_buf(),
            offset,
            after_lsn,
            message,
        }
    };
    let (opened, file) = open_live(path).map_err(|e| fault(e, None))?;
    let path = opened.as_path();
    let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let header = file.header().clone();
    let mut summary = FileSummary {
        path: path.to_path_buf(),
        kind: "sealed",
        first_lsn: header.first_lsn,
        last_lsn: None,
        records: 0,
        first_ts_us: None,
        last_ts_us: None,
        bytes,
    };
    match file {
        SegmentFile::Sealed { seg, .. } => {
            let n = seg
                .verify()
                .map_err(|e| fault(LogError::corruption(path, e), None))?;
            summary.records = n;
            summary.last_lsn = Some(seg.trailer.last_lsn);
            summary.first_ts_us = Some(seg.trailer.first_ts);
            summary.last_ts_us = Some(seg.trailer.last_ts);
        }
        SegmentFile::Open { mut frames, .. } => {
            summary.kind = "open";
            for (_, r) in frames.by_ref() {
                summary.records += 1;
                summary.last_lsn = Some(r.lsn);
                summary.first_ts_us.get_or_insert(r.timestamp_us);
                summary.last_ts_us = Some(r.timestamp_us);
            }
            if let Some(v) = frames.violation() {
                return Err(fault(
                    LogError::corruption(path, v.clone()),
                    summary.last_lsn,
                ));
            }
            if let Some(Tail::Torn { offset, cause }) = frames.tail() {
                let torn = Fault {
                    path: path.to_path_buf(),
                    offset: *offset,
                    after_lsn: summary.last_lsn,
                    message: format!(
                        "torn tail of {} bytes: {cause}",
                        bytes.saturating_sub(*offset)
                    ),
                };
                if !is_last {
                    return Err(torn);
                }
                report.torn_tail = Some(torn);
            }
        }
    }
    Ok(Some(Checked {
        file: summary,
        stream_id: header.stream_id,
        timeline: header.timeline,
    }))
}

/// A fault message when a file's first record is older than the previous file's last
/// (promise 10: time never goes back within a stream).
fn time_back(prev_last: Option<i64>, first: Option<i64>) -> Option<String> {
    match (prev_last, first) {
        (Some(prev), Some(first)) if first < prev => Some(format!(
            "time goes back: its first record is at {first} µs, the file before ends at {prev} µs"
        )),
        _ => None,
    }
}
