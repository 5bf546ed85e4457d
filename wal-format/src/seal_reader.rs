//! Reading sealed segments from a byte slice (typically a memory map): structure checks on
//! open, per-block decode on demand, seeks by LSN or time through the footer index.

use crate::cursor::Cursor;
use crate::error::{FormatError, Result};
use crate::header::{SegmentHeader, SegmentKind};
use crate::record::{decode_frame, Record};
use crate::sealed::{
    BlockHeader, Codec, Filter, IndexEntry, Trailer, INDEX_ENTRY_LEN, TRAILER_LEN,
};
use crate::seq::SequenceCheck;
use crate::shuffle::unshuffle4;

/// A sealed segment whose header, index and trailer have been checked.
///
/// Opening checks that every byte of the file belongs to exactly one checksummed structure
/// (header, a block, index, trailer) and that the index is consistent; block contents are
/// checked when a block is read. [`SealedSegment::verify`] reads every block.
/// `D` is whatever holds the bytes: a slice, a `Vec`, or a memory map.
#[derive(Debug)]
pub struct SealedSegment<D> {
    data: D,
    pub header: SegmentHeader,
    pub trailer: Trailer,
    pub index: Vec<IndexEntry>,
}

impl<D: AsRef<[u8]>> SealedSegment<D> {
    pub fn open(owner: D) -> Result<Self> {
        let data = owner.as_ref();
        let (header, header_len) = SegmentHeader::decode(data)?;
        if header.kind != SegmentKind::Sealed {
            return Err(FormatError::malformed(
                "segment header",
                10,
                "an open segment, not a sealed one",
            ));
        }
        let len = data.len();
        if len < header_len + TRAILER_LEN {
            return Err(FormatError::Truncated {
                what: "sealed segment".into(),
                offset: header_len as u64,
                need: TRAILER_LEN as u64,
                have: (len - header_len) as u64,
            });
        }
        let trailer_at = len - TRAILER_LEN;
        let trailer = Trailer::decode(&data[trailer_at..], trailer_at as u64)?;
        let bad = |offset: usize, detail: String| {
            Err(FormatError::malformed(
                "sealed segment index",
                offset as u64,
                detail,
            ))
        };

        let index_len = (trailer.block_count as usize).checked_mul(INDEX_ENTRY_LEN);
        let index_offset = usize::try_from(trailer.index_offset).unwrap_or(usize::MAX);
        if trailer.block_count == 0
            || index_len.and_then(|l| index_offset.checked_add(l)) != Some(trailer_at)
            || index_offset < header_len
        {
            return bad(
                trailer_at,
                format!(
                    "trailer places {} index entries at offset {}, which does not end at the trailer ({trailer_at})",
                    trailer.block_count, trailer.index_offset
                ),
            );
        }
        let index_bytes = &data[index_offset..trailer_at];
        let computed = crc32fast::hash(index_bytes);
        if computed != trailer.index_crc && !crate::SKIP_CRC {
            return Err(FormatError::Checksum {
                what: "index".into(),
                offset: index_offset as u64,
                stored: trailer.index_crc,
                computed,
            });
        }
        let mut c = Cursor::new(index_bytes, index_offset as u64, "index");
        let mut index = Vec::with_capacity(trailer.block_count as usize);
        let mut expect_offset = header_len as u64;
        let mut expect_lsn = header.first_lsn;
        let mut last_ts = i64::MIN;
        let mut count = 0u64;
        for i in 0..trailer.block_count as usize {
            let at = index_offset + i * INDEX_ENTRY_LEN;
            let e = IndexEntry::decode(&mut c)?;
            if e.block_offset != expect_offset {
                return bad(
                    at,
                    format!(
                        "block {i} at offset {} where {expect_offset} was expected",
                        e.block_offset
                    ),
                );
            }
            if e.first_lsn != expect_lsn
                || e.last_lsn < e.first_lsn
                || (e.last_lsn - e.first_lsn).checked_add(1) != Some(e.record_count as u64)
            {
                return bad(
                    at,
                    format!(
                        "block {i} claims LSN {}..={} with {} records; expected to start at {expect_lsn}",
                        e.first_lsn, e.last_lsn, e.record_count
                    ),
                );
            }
            if e.first_ts < last_ts || e.last_ts < e.first_ts {
                return bad(at, format!("block {i} time range goes back"));
            }
            expect_offset += e.block_len as u64;
            expect_lsn = e.last_lsn.wrapping_add(1);
            last_ts = e.last_ts;
            count += e.record_count as u64;
            index.push(e);
        }
        if expect_offset != trailer.index_offset {
            return bad(
                trailer_at,
                format!(
                    "blocks end at {expect_offset}, index starts at {}",
                    trailer.index_offset
                ),
            );
        }
        let (first, last) = (index[0], index[index.len() - 1]);
        if (
            trailer.first_lsn,
            trailer.last_lsn,
            trailer.first_ts,
            trailer.last_ts,
            trailer.record_count,
        ) != (
            first.first_lsn,
            last.last_lsn,
            first.first_ts,
            last.last_ts,
            count,
        ) {
            return bad(trailer_at, "trailer totals disagree with the index".into());
        }
        Ok(SealedSegment {
            data: owner,
            header,
            trailer,
            index,
        })
    }

    /// Decodes block `i` and checks every record in it against the index.
    pub fn block_records(&self, i: usize) -> Result<Vec<Record>> {
        let e = self.index[i];
        let what = format!("block {i} (LSN {}..={})", e.first_lsn, e.last_lsn);
        let start = e.block_offset as usize;
        let block = &self.data.as_ref()[start..start + e.block_len as usize];
        let bh = BlockHeader::decode(block, e.block_offset, &what)?;
        if bh.record_count != e.record_count {
            return Err(FormatError::malformed(
                &what,
                e.block_offset,
                "record count disagrees with the index",
            ));
        }
        let stored = &block[crate::sealed::BLOCK_HEADER_LEN..];
        let raw = match bh.codec {
            Codec::Stored => stored.to_vec(),
            Codec::Zstd => {
                // Check the size the zstd frame declares before reserving memory for it.
                let declared = zstd::zstd_safe::get_frame_content_size(stored)
                    .ok()
                    .flatten();
                if declared != Some(bh.uncompressed_len as u64) {
                    return Err(FormatError::malformed(
                        &what,
                        e.block_offset,
                        format!(
                            "zstd frame declares {declared:?} bytes, header says {}",
                            bh.uncompressed_len
                        ),
                    ));
                }
                let out = decompress(stored, bh.uncompressed_len as usize).map_err(|err| {
                    FormatError::malformed(&what, e.block_offset, format!("zstd: {err}"))
                })?;
                if out.len() != bh.uncompressed_len as usize {
                    return Err(FormatError::malformed(
                        &what,
                        e.block_offset,
                        format!(
                            "decompressed to {} bytes, header says {}",
                            out.len(),
                            bh.uncompressed_len
                        ),
                    ));
                }
                out
            }
        };
        let raw = match bh.filter {
            Filter::None => raw,
            Filter::Shuffle4 => unshuffle4(&raw),
        };
        // Offsets inside decompressed data have no place in the file; report the block's.
        let in_block = |err: FormatError| {
            FormatError::malformed(
                &what,
                e.block_offset,
                format!("at uncompressed offset {}: {err}", err.offset()),
            )
        };
        let mut seq = SequenceCheck::new(self.header.stream_id, self.header.timeline, e.first_lsn);
        // The count is checked against the frames below; bound the reservation by what the
        // bytes could hold so a crafted count cannot demand gigabytes first.
        let fits = raw.len() / (crate::record::FRAME_HEADER_LEN + crate::record::BODY_FIXED_LEN);
        let mut records = Vec::with_capacity((e.record_count as usize).min(fits));
        let mut pos = 0;
        while pos < raw.len() {
            let (r, n) = decode_frame(&raw[pos..], pos as u64).map_err(in_block)?;
            seq.check(&r, &what, e.block_offset).map_err(in_block)?;
            if r.timestamp_us < e.first_ts || r.timestamp_us > e.last_ts {
                return Err(FormatError::malformed(
                    &what,
                    e.block_offset,
                    format!("LSN {} has a timestamp outside the index's range", r.lsn),
                ));
            }
            records.push(r);
            pos += n;
        }
        if records.len() != e.record_count as usize
            || records.last().map(|r| r.timestamp_us) != Some(e.last_ts)
        {
            return Err(FormatError::malformed(
                &what,
                e.block_offset,
                format!(
                    "holds {} records, index says {} (or its last timestamp disagrees)",
                    records.len(),
                    e.record_count
                ),
            ));
        }
        if records[0].timestamp_us != e.first_ts {
            return Err(FormatError::malformed(
                &what,
                e.block_offset,
                "first timestamp disagrees with the index",
            ));
        }
        Ok(records)
    }

    /// Index of the first block that holds a record with LSN >= `lsn`.
    pub fn block_for_lsn(&self, lsn: u64) -> Option<usize> {
        let i = self.index.partition_point(|e| e.last_lsn < lsn);
        (i < self.index.len()).then_some(i)
    }

    /// Index of the first block that holds a record with timestamp >= `ts_us`.
    pub fn block_for_time(&self, ts_us: i64) -> Option<usize> {
        let i = self.index.partition_point(|e| e.last_ts < ts_us);
        (i < self.index.len()).then_some(i)
    }

    /// Iterates records from block `start`, decoding one block at a time. Stops after the
    /// first error.
    pub fn records_from_block(&self, start: usize) -> SealedRecords<&Self> {
        SealedRecords::new(self, start)
    }

    /// Like [`SealedSegment::records_from_block`], owning the segment.
    pub fn into_records_from_block(self, start: usize) -> SealedRecords<Self> {
        SealedRecords::new(self, start)
    }

    /// Number of blocks.
    pub fn block_count(&self) -> usize {
        self.index.len()
    }

    /// Reads every block; returns the number of records, or the first fault.
    pub fn verify(&self) -> Result<u64> {
        let mut n = 0;
        for i in 0..self.index.len() {
            n += self.block_records(i)?.len() as u64;
        }
        Ok(n)
    }
}

/// Iterates a sealed segment's records block by block; `S` is the segment or a reference
/// to it. Stops after the first error.
/// Decompresses one block with this thread's zstd context: `zstd::bulk::decompress`
/// makes a context per call, which was 4% of a 1 GB restore's CPU (one per 256 KiB block).
fn decompress(stored: &[u8], capacity: usize) -> std::io::Result<Vec<u8>> {
    thread_local! {
        static DCTX: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    DCTX.with(|cell| {
        let mut slot = cell.borrow_mut();
        let d = match slot.as_mut() {
            Some(d) => d,
            None => slot.insert(zstd::bulk::Decompressor::new()?),
        };
        d.decompress(stored, capacity)
    })
}

pub struct SealedRecords<S> {
    seg: S,
    next_block: usize,
    buf: std::vec::IntoIter<Record>,
    failed: bool,
}

impl<S> SealedRecords<S> {
    fn new(seg: S, start: usize) -> Self {
        SealedRecords {
            seg,
            next_block: start,
            buf: Vec::new().into_iter(),
            failed: false,
        }
    }
}

impl<D: AsRef<[u8]>> Iterator for SealedRecords<SealedSegment<D>> {
    type Item = Result<Record>;
    fn next(&mut self) -> Option<Self::Item> {
        next_record(
            &self.seg,
            &mut self.next_block,
            &mut self.buf,
            &mut self.failed,
        )
    }
}

impl<D: AsRef<[u8]>> Iterator for SealedRecords<&SealedSegment<D>> {
    type Item = Result<Record>;
    fn next(&mut self) -> Option<Self::Item> {
        next_record(
            self.seg,
            &mut self.next_block,
            &mut self.buf,
            &mut self.failed,
        )
    }
}

fn next_record<D: AsRef<[u8]>>(
    seg: &SealedSegment<D>,
    next_block: &mut usize,
    buf: &mut std::vec::IntoIter<Record>,
    failed: &mut bool,
) -> Option<Result<Record>> {
    loop {
        if let Some(r) = buf.next() {
            return Some(Ok(r));
        }
        if *failed || *next_block >= seg.index.len() {
            return None;
        }
        match seg.block_records(*next_block) {
            Ok(records) => {
                *next_block += 1;
                *buf = records.into_iter();
            }
            Err(e) => {
                *failed = true;
                return Some(Err(e));
            }
        }
    }
}
