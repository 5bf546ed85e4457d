//! Fixed layouts of a sealed segment: block header, index entry, trailer (SPEC.md §6).

use crate::cursor::Cursor;
use crate::error::{FormatError, Result};
use crate::record::{FRAME_HEADER_LEN, MAX_BODY_LEN};

pub const BLOCK_HEADER_LEN: usize = 20;
pub const INDEX_ENTRY_LEN: usize = 48;
pub const TRAILER_LEN: usize = 64;
/// Closes every sealed segment; with the trailer checksum it tells a complete file from
/// one cut short.
pub const TRAILER_MAGIC: [u8; 4] = *b"VWS\n";
/// Largest block target a writer may use.
pub const MAX_BLOCK_TARGET: usize = 16 << 20;
/// Largest uncompressed block a reader accepts: a full target plus one maximal frame.
pub const MAX_BLOCK_LEN: usize = MAX_BLOCK_TARGET + FRAME_HEADER_LEN + MAX_BODY_LEN;

/// How a block's bytes are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// Stored as is: used when compression would not make the block smaller.
    Stored = 0,
    Zstd = 1,
}

/// A transform applied before compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    None = 0,
    /// Byte-plane shuffle with 4-byte words, for f32 vectors.
    Shuffle4 = 1,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockHeader {
    pub compressed_len: u32,
    pub uncompressed_len: u32,
    pub record_count: u32,
    pub codec: Codec,
    pub filter: Filter,
}

impl BlockHeader {
    /// Encodes the header with the checksum over it and `data`.
    pub fn encode(&self, data: &[u8]) -> [u8; BLOCK_HEADER_LEN] {
        let mut out = [0u8; BLOCK_HEADER_LEN];
        out[0..4].copy_from_slice(&self.compressed_len.to_le_bytes());
        out[4..8].copy_from_slice(&self.uncompressed_len.to_le_bytes());
        out[8..12].copy_from_slice(&self.record_count.to_le_bytes());
        out[12] = self.codec as u8;
        out[13] = self.filter as u8;
        let mut h = crc32fast::Hasher::new();
        h.update(&out[..16]);
        h.update(data);
        out[16..20].copy_from_slice(&h.finalize().to_le_bytes());
        out
    }

    /// Decodes the block at `block` (header plus data, exactly), checking its checksum.
    pub fn decode(block: &[u8], offset: u64, what: &str) -> Result<BlockHeader> {
        let mut c = Cursor::new(block, offset, "block header");
        let compressed_len = c.u32()?;
        let uncompressed_len = c.u32()?;
        let record_count = c.u32()?;
        let codec = c.u8()?;
        let filter = c.u8()?;
        let reserved = c.u16()?;
        let stored = c.u32()?;
        if BLOCK_HEADER_LEN + compressed_len as usize != block.len() {
            return Err(FormatError::malformed(
                what,
                offset,
                format!(
                    "compressed length {compressed_len} disagrees with the index's block length {}",
                    block.len()
                ),
            ));
        }
        let mut h = crc32fast::Hasher::new();
        h.update(&block[..16]);
        h.update(&block[BLOCK_HEADER_LEN..]);
        let computed = h.finalize();
        if computed != stored && !crate::SKIP_CRC {
            return Err(FormatError::Checksum {
                what: what.to_string(),
                offset,
                stored,
                computed,
            });
        }
        let codec = match codec {
            0 => Codec::Stored,
            1 => Codec::Zstd,
            c => {
                return Err(FormatError::malformed(
                    what,
                    offset + 12,
                    format!("unknown codec {c}"),
                ))
            }
        };
        let filter = match filter {
            0 => Filter::None,
            1 => Filter::Shuffle4,
            f => {
                return Err(FormatError::malformed(
                    what,
                    offset + 13,
                    format!("unknown filter {f}"),
                ))
            }
        };
        if reserved != 0 {
            return Err(FormatError::malformed(
                what,
                offset + 14,
                "reserved bytes are not 0",
            ));
        }
        if uncompressed_len as usize > MAX_BLOCK_LEN {
            return Err(FormatError::malformed(
                what,
                offset + 4,
                format!("uncompressed length {uncompressed_len} exceeds {MAX_BLOCK_LEN}"),
            ));
        }
        if codec == Codec::Stored && compressed_len != uncompressed_len {
            return Err(FormatError::malformed(
                what,
                offset,
                "stored block whose lengths differ",
            ));
        }
        Ok(BlockHeader {
            compressed_len,
            uncompressed_len,
            record_count,
            codec,
            filter,
        })
    }
}

/// One footer index entry: where a block is and which records it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    pub block_offset: u64,
    pub first_lsn: u64,
    pub last_lsn: u64,
    pub first_ts: i64,
    pub last_ts: i64,
    pub record_count: u32,
    /// Block header plus compressed data.
    pub block_len: u32,
}

impl IndexEntry {
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.block_offset.to_le_bytes());
        out.extend_from_slice(&self.first_lsn.to_le_bytes());
        out.extend_from_slice(&self.last_lsn.to_le_bytes());
        out.extend_from_slice(&self.first_ts.to_le_bytes());
        out.extend_from_slice(&self.last_ts.to_le_bytes());
        out.extend_from_slice(&self.record_count.to_le_bytes());
        out.extend_from_slice(&self.block_len.to_le_bytes());
    }

    pub(crate) fn decode(c: &mut Cursor<'_>) -> Result<IndexEntry> {
        Ok(IndexEntry {
            block_offset: c.u64()?,
            first_lsn: c.u64()?,
            last_lsn: c.u64()?,
            first_ts: c.i64()?,
            last_ts: c.i64()?,
            record_count: c.u32()?,
            block_len: c.u32()?,
        })
    }
}

/// The last 64 bytes of a sealed segment: where the index is and what the segment holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trailer {
    pub index_offset: u64,
    pub block_count: u32,
    pub index_crc: u32,
    pub first_lsn: u64,
    pub last_lsn: u64,
    pub first_ts: i64,
    pub last_ts: i64,
    pub record_count: u64,
}

impl Trailer {
    pub fn encode(&self) -> [u8; TRAILER_LEN] {
        let mut out = Vec::with_capacity(TRAILER_LEN);
        out.extend_from_slice(&self.index_offset.to_le_bytes());
        out.extend_from_slice(&self.block_count.to_le_bytes());
        out.extend_from_slice(&self.index_crc.to_le_bytes());
        out.extend_from_slice(&self.first_lsn.to_le_bytes());
        out.extend_from_slice(&self.last_lsn.to_le_bytes());
        out.extend_from_slice(&self.first_ts.to_le_bytes());
        out.extend_from_slice(&self.last_ts.to_le_bytes());
        out.extend_from_slice(&self.record_count.to_le_bytes());
        out.extend_from_slice(&TRAILER_MAGIC);
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out.try_into().expect("trailer is 64 bytes")
    }

    /// Decodes the trailer from the last [`TRAILER_LEN`] bytes, at `offset` in the file.
    pub fn decode(bytes: &[u8], offset: u64) -> Result<Trailer> {
        let mut c = Cursor::new(bytes, offset, "trailer");
        let t = Trailer {
            index_offset: c.u64()?,
            block_count: c.u32()?,
            index_crc: c.u32()?,
            first_lsn: c.u64()?,
            last_lsn: c.u64()?,
            first_ts: c.i64()?,
            last_ts: c.i64()?,
            record_count: c.u64()?,
        };
        let magic = c.array::<4>()?;
        let stored = c.u32()?;
        c.expect_end()?;
        if magic != TRAILER_MAGIC {
            return Err(FormatError::malformed(
                "trailer",
                offset + 56,
                "end magic missing: the segment is incomplete or not sealed",
            ));
        }
        let computed = crc32fast::hash(&bytes[..60]);
        if computed != stored && !crate::SKIP_CRC {
            return Err(FormatError::Checksum {
                what: "trailer".into(),
                offset,
                stored,
                computed,
            });
        }
        Ok(t)
    }
}
