//! Reading open segments: a header followed by frames, where the tail may be torn by a
//! crash mid-write (SPEC.md §8).

use crate::error::{FormatError, Result};
use crate::header::{SegmentHeader, SegmentKind};
use crate::record::{decode_frame, Record};
use crate::seq::SequenceCheck;

/// Decodes an open segment's header; returns it and the offset of the first frame.
pub fn open_segment_header(data: &[u8]) -> Result<(SegmentHeader, usize)> {
    let (header, len) = SegmentHeader::decode(data)?;
    if header.kind != SegmentKind::Open {
        return Err(FormatError::malformed(
            "segment header",
            10,
            "a sealed segment, not an open one",
        ));
    }
    Ok((header, len))
}

/// How the frames of an open segment end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tail {
    /// The last frame ends exactly at the end of the data.
    Clean,
    /// From `offset` on, the bytes are not a whole valid frame: a torn write, or damage.
    Torn { offset: u64, cause: FormatError },
}

/// Iterates the frames of an open segment from the first one, checking each against the
/// sequence rules. Yields `(offset, record)`; after the last good frame, [`Frames::tail`]
/// says whether the data ended cleanly or where it stopped being readable.
///
/// A frame that decodes but breaks the sequence (wrong stream, LSN gap, time going back)
/// is not a torn write: that is reported as [`Frames::violation`] and iteration stops.
pub struct Frames<D> {
    data: D,
    pos: usize,
    seq: SequenceCheck,
    tail: Option<Tail>,
    violation: Option<FormatError>,
}

impl<D: AsRef<[u8]>> Frames<D> {
    /// `data` is the whole segment (a slice, `Vec` or memory map); `first_frame` the
    /// offset after the header.
    pub fn new(data: D, header: &SegmentHeader, first_frame: usize) -> Self {
        Frames {
            data,
            pos: first_frame,
            seq: SequenceCheck::new(header.stream_id, header.timeline, header.first_lsn),
            tail: None,
            violation: None,
        }
    }

    /// Offset just past the last good frame.
    pub fn valid_len(&self) -> u64 {
        self.pos as u64
    }

    /// The LSN the next frame must have.
    pub fn next_lsn(&self) -> u64 {
        self.seq.next_lsn()
    }

    /// Set once iteration has ended because the bytes stopped being whole frames.
    pub fn tail(&self) -> Option<&Tail> {
        self.tail.as_ref()
    }

    /// Set once iteration has ended on a valid frame that breaks the sequence.
    pub fn violation(&self) -> Option<&FormatError> {
        self.violation.as_ref()
    }
}

impl<D: AsRef<[u8]>> Iterator for Frames<D> {
    type Item = (u64, Record);

    fn next(&mut self) -> Option<(u64, Record)> {
        if self.tail.is_some() || self.violation.is_some() {
            return None;
        }
        let data = self.data.as_ref();
        if self.pos == data.len() {
            self.tail = Some(Tail::Clean);
            return None;
        }
        let at = self.pos as u64;
        match decode_frame(&data[self.pos..], at) {
            Ok((r, n)) => {
                if let Err(e) = self.seq.check(&r, "open segment frame", at) {
                    self.violation = Some(e);
                    return None;
                }
                self.pos += n;
                Some((at, r))
            }
            Err(cause) => {
                self.tail = Some(Tail::Torn { offset: at, cause });
                None
            }
        }
    }
}
