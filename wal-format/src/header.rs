//! The segment header, shared by open and sealed segments (SPEC.md §2).

use crate::cursor::{put_str16, Cursor};
use crate::error::{FormatError, Result};

/// First eight bytes of every segment. Like PNG's signature: the high first byte and the
/// `\n` catch transfers that strip the eighth bit or rewrite line endings.
pub const MAGIC: [u8; 8] = *b"\x89VECWAL\n";
/// The format version this crate writes and the only one it reads.
pub const FORMAT_VERSION: u16 = 1;
/// Incompatible feature bits this reader understands (none in version 1).
pub const KNOWN_FEATURES: u32 = 0;
/// Header bytes before the stream name.
const HEADER_FIXED_LEN: usize = 50;
/// Longest stream name, in bytes.
pub const MAX_STREAM_NAME_LEN: usize = 255;

/// Which body follows the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentKind {
    /// Frames appended one after another; the tail may be torn.
    Open,
    /// Compressed blocks, footer index and trailer; immutable.
    Sealed,
}

impl SegmentKind {
    fn code(self) -> u8 {
        match self {
            SegmentKind::Open => 1,
            SegmentKind::Sealed => 2,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentHeader {
    pub kind: SegmentKind,
    pub stream_id: u64,
    pub timeline: u32,
    /// LSN of the segment's first record.
    pub first_lsn: u64,
    /// When the segment was created, UTC microseconds.
    pub created_us: i64,
    pub stream_name: String,
}

impl SegmentHeader {
    /// The longest a header can be: a stream name of [`MAX_STREAM_NAME_LEN`] bytes.
    pub const MAX_LEN: usize = HEADER_FIXED_LEN + MAX_STREAM_NAME_LEN + 4;

    /// Encoded length in bytes.
    pub fn encoded_len(&self) -> usize {
        HEADER_FIXED_LEN + self.stream_name.len() + 4
    }

    pub fn validate(&self) -> Result<()> {
        if self.stream_name.is_empty() || self.stream_name.len() > MAX_STREAM_NAME_LEN {
            return Err(FormatError::malformed(
                "segment header",
                48,
                format!(
                    "stream name must be 1..={MAX_STREAM_NAME_LEN} bytes, got {}",
                    self.stream_name.len()
                ),
            ));
        }
        Ok(())
    }

    pub fn encode(&self) -> Vec<u8> {
        self.validate().expect("header validated before encoding");
        let mut out = Vec::with_capacity(self.encoded_len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.push(self.kind.code());
        out.push(0);
        out.extend_from_slice(&KNOWN_FEATURES.to_le_bytes());
        out.extend_from_slice(&self.stream_id.to_le_bytes());
        out.extend_from_slice(&self.timeline.to_le_bytes());
        out.extend_from_slice(&(self.encoded_len() as u32).to_le_bytes());
        out.extend_from_slice(&self.first_lsn.to_le_bytes());
        out.extend_from_slice(&self.created_us.to_le_bytes());
        put_str16(&mut out, &self.stream_name);
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        debug_assert_eq!(out.len(), self.encoded_len());
        out
    }

    /// Decodes the header at the start of `data`; returns it and its length.
    ///
    /// Checks, in this order: magic, version, checksum, then the fields. Magic and version
    /// come first because a newer version may lay out the rest differently.
    pub fn decode(data: &[u8]) -> Result<(SegmentHeader, usize)> {
        let mut c = Cursor::new(data, 0, "segment header");
        if data.len() < MAGIC.len() || data[..MAGIC.len()] != MAGIC {
            return Err(FormatError::BadMagic {
                offset: 0,
                found: data[..data.len().min(MAGIC.len())].to_vec(),
            });
        }
        c.bytes(MAGIC.len())?;
        let version = c.u16()?;
        if version != FORMAT_VERSION {
            return Err(FormatError::UnsupportedVersion {
                offset: 8,
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let kind_code = c.u8()?;
        let reserved = c.u8()?;
        let features = c.u32()?;
        let stream_id = c.u64()?;
        let timeline = c.u32()?;
        let header_len = c.u32()? as usize;
        let min = HEADER_FIXED_LEN + 1 + 4;
        let max = HEADER_FIXED_LEN + MAX_STREAM_NAME_LEN + 4;
        if !(min..=max).contains(&header_len) {
            return Err(FormatError::malformed(
                "segment header",
                28,
                format!("header length {header_len} outside {min}..={max}"),
            ));
        }
        if data.len() < header_len {
            return Err(FormatError::Truncated {
                what: "segment header".into(),
                offset: 0,
                need: header_len as u64,
                have: data.len() as u64,
            });
        }
        let stored = u32::from_le_bytes(
            data[header_len - 4..header_len]
                .try_into()
                .expect("4 bytes"),
        );
        let computed = crc32fast::hash(&data[..header_len - 4]);
        if stored != computed && !crate::SKIP_CRC {
            return Err(FormatError::Checksum {
                what: "segment header".into(),
                offset: (header_len - 4) as u64,
                stored,
                computed,
            });
        }
        // Past the checksum, a bad field was written that way: report it as malformed.
        if features & !KNOWN_FEATURES != 0 {
            return Err(FormatError::UnsupportedFeatures {
                offset: 12,
                flags: features,
            });
        }
        if reserved != 0 {
            return Err(FormatError::malformed(
                "segment header",
                11,
                "reserved byte is not 0",
            ));
        }
        let kind = match kind_code {
            1 => SegmentKind::Open,
            2 => SegmentKind::Sealed,
            k => {
                return Err(FormatError::malformed(
                    "segment header",
                    10,
                    format!("unknown segment kind {k}"),
                ))
            }
        };
        let first_lsn = c.u64()?;
        let created_us = c.i64()?;
        let stream_name = c.str16("stream name")?;
        if HEADER_FIXED_LEN + stream_name.len() + 4 != header_len {
            return Err(FormatError::malformed(
                "segment header",
                48,
                "stream name length disagrees with header length",
            ));
        }
        let header = SegmentHeader {
            kind,
            stream_id,
            timeline,
            first_lsn,
            created_us,
            stream_name,
        };
        header.validate()?;
        Ok((header, header_len))
    }
}
