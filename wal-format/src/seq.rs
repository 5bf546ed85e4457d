//! The ordering rules every reader enforces on a run of records (SPEC.md §7): one stream,
//! one timeline, dense LSNs, timestamps that never go back.

use crate::error::{FormatError, Result};
use crate::record::Record;

#[derive(Debug, Clone)]
pub struct SequenceCheck {
    stream_id: u64,
    timeline: u32,
    next_lsn: u64,
    last_ts: i64,
}

impl SequenceCheck {
    pub fn new(stream_id: u64, timeline: u32, first_lsn: u64) -> Self {
        SequenceCheck {
            stream_id,
            timeline,
            next_lsn: first_lsn,
            last_ts: i64::MIN,
        }
    }

    /// The LSN the next record must have.
    pub fn next_lsn(&self) -> u64 {
        self.next_lsn
    }

    /// Checks `r` follows the records seen so far; `what`/`offset` locate it for errors.
    pub fn check(&mut self, r: &Record, what: &str, offset: u64) -> Result<()> {
        let fault = |detail: String| Err(FormatError::malformed(what, offset, detail));
        if r.stream_id != self.stream_id {
            return fault(format!(
                "record LSN {} belongs to stream {:016x}, expected {:016x}",
                r.lsn, r.stream_id, self.stream_id
            ));
        }
        if r.timeline != self.timeline {
            return fault(format!(
                "record LSN {} is on timeline {}, expected {}",
                r.lsn, r.timeline, self.timeline
            ));
        }
        if r.lsn != self.next_lsn {
            return fault(format!(
                "LSN {} where {} was expected (gap or reorder)",
                r.lsn, self.next_lsn
            ));
        }
        if r.timestamp_us < self.last_ts {
            return fault(format!(
                "timestamp of LSN {} goes back: {} after {}",
                r.lsn, r.timestamp_us, self.last_ts
            ));
        }
        self.next_lsn = r.lsn.checked_add(1).ok_or_else(|| {
            FormatError::malformed(what, offset, "LSN space exhausted (u64::MAX)")
        })?;
        self.last_ts = r.timestamp_us;
        Ok(())
    }
}
