//! The vecwal segment format: encoder and decoder for the files in which vecwal keeps its
//! write-ahead log. The byte-level contract is `SPEC.md` beside this crate; this code and
//! the golden files in `testdata/` follow it.
//!
//! Layout of this crate:
//! - [`header`]: the segment header shared by open and sealed segments.
//! - [`record`]: records, their kinds, and the checksummed frame that carries one.
//! - [`op`]: typed payloads of each record kind (Redis argv, Qdrant requests, markers).
//! - [`open`]: reading open segments (frames, torn-tail detection).
//! - [`sealed`]: fixed layouts of sealed segments (block header, index entry, trailer).
//! - [`seal_writer`] / [`seal_reader`]: writing and reading sealed segments.
//! - [`seq`]: the ordering rules every reader enforces (dense LSNs, time never going back).
//! - [`shuffle`]: the byte-plane shuffle filter for f32 vectors.
//!
//! Decoding never panics on any input: every length read from the input is checked
//! against the bytes that remain (fuzzed in `fuzz/`).

mod cursor;

/// Under a fuzzer (`--cfg fuzzing`, which cargo-fuzz sets) the CRC checks pass whatever the
/// stored value: a mutated input would almost never carry a matching CRC, so coverage would
/// stop at the first check and never reach the parsing behind it. Never set otherwise.
pub(crate) const SKIP_CRC: bool = cfg!(fuzzing);
pub mod envelope;
pub mod error;
pub mod header;
pub mod op;
pub mod open;
pub mod record;
pub mod seal_reader;
pub mod seal_writer;
pub mod sealed;
pub mod seq;
pub mod shuffle;

pub use error::{FormatError, Result, WriteError};
pub use header::{SegmentHeader, SegmentKind, FORMAT_VERSION, MAGIC};
pub use op::{Argv, Operation};
pub use open::{open_segment_header, Frames, Tail};
pub use record::{decode_frame, Kind, Record};
pub use seal_reader::SealedSegment;
pub use seal_writer::{SealOptions, SealSummary, SealedWriter};
pub use sealed::Filter;
pub use seq::SequenceCheck;

/// Reads the header at the start of any segment, to tell open from sealed.
pub fn peek_header(data: &[u8]) -> Result<SegmentHeader> {
    SegmentHeader::decode(data).map(|(h, _)| h)
}
