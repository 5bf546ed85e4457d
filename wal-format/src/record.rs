//! Records and the frame that carries one: the unit shared by open segments (frames
//! appended one after another) and sealed segments (frames inside compressed blocks).
//! Byte tables: SPEC.md §3 (frame) and §4 (record body).

use crate::cursor::Cursor;
use crate::error::{FormatError, Result};

/// Bytes before a frame's body: `body_len: u32`, `crc: u32`.
pub const FRAME_HEADER_LEN: usize = 8;
/// Fixed part of a record body before namespace and payload.
pub const BODY_FIXED_LEN: usize = 36;
/// Largest payload a record may carry. Redis caps one bulk string at 512 MiB, Qdrant's
/// default request limit is 32 MiB; 256 MiB keeps a hostile length from making a reader
/// reserve gigabytes while covering every realistic write.
pub const MAX_PAYLOAD_LEN: usize = 256 << 20;
/// Largest namespace (Redis db number or Qdrant collection name), in bytes.
pub const MAX_NAMESPACE_LEN: usize = u16::MAX as usize;
/// Largest body a frame may declare.
pub const MAX_BODY_LEN: usize = BODY_FIXED_LEN + MAX_NAMESPACE_LEN + MAX_PAYLOAD_LEN;

/// What a record's payload is. Codes are part of the format (SPEC.md §4.1).
///
/// Codes 64..=127 are markers: they describe the stream and never change data, so a
/// reader may skip a marker kind it does not know. Any other unknown code is an
/// operation this reader cannot apply; a restore must stop on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    RedisCommand,
    RedisMulti,
    QdrantRest,
    QdrantGrpc,
    StreamStart,
    Snapshot,
    RestorePoint,
    Unknown(u8),
}

impl Kind {
    pub fn code(self) -> u8 {
        match self {
            Kind::RedisCommand => 1,
            Kind::RedisMulti => 2,
            Kind::QdrantRest => 3,
            Kind::QdrantGrpc => 4,
            Kind::StreamStart => 64,
            Kind::Snapshot => 65,
            Kind::RestorePoint => 66,
            Kind::Unknown(c) => c,
        }
    }

    pub fn from_code(code: u8) -> Kind {
        match code {
            1 => Kind::RedisCommand,
            2 => Kind::RedisMulti,
            3 => Kind::QdrantRest,
            4 => Kind::QdrantGrpc,
            64 => Kind::StreamStart,
            65 => Kind::Snapshot,
            66 => Kind::RestorePoint,
            c => Kind::Unknown(c),
        }
    }

    /// Markers describe the stream; they never change the database.
    pub fn is_marker(self) -> bool {
        (64..=127).contains(&self.code())
    }

    pub fn name(self) -> String {
        match self {
            Kind::RedisCommand => "redis".into(),
            Kind::RedisMulti => "redis-multi".into(),
            Kind::QdrantRest => "qdrant-rest".into(),
            Kind::QdrantGrpc => "qdrant-grpc".into(),
            Kind::StreamStart => "stream-start".into(),
            Kind::Snapshot => "snapshot".into(),
            Kind::RestorePoint => "restore-point".into(),
            Kind::Unknown(c) => format!("unknown-{c}"),
        }
    }
}

/// One logged event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Position in the stream; dense: each record's LSN is the previous one's plus one.
    pub lsn: u64,
    /// vecwal's clock when the write was acknowledged, UTC microseconds since the Unix
    /// epoch; never decreases within a stream.
    pub timestamp_us: i64,
    pub stream_id: u64,
    pub timeline: u32,
    pub kind: Kind,
    /// Redis database number (decimal) or Qdrant collection name; empty when none applies.
    pub namespace: String,
    pub payload: Vec<u8>,
}

impl Record {
    /// Bytes this record takes as a frame.
    pub fn frame_len(&self) -> usize {
        FRAME_HEADER_LEN + BODY_FIXED_LEN + self.namespace.len() + self.payload.len()
    }

    /// Checks the limits the encoder relies on, so that encoding cannot fail later.
    pub fn validate(&self) -> Result<()> {
        if self.namespace.len() > MAX_NAMESPACE_LEN {
            return Err(FormatError::malformed(
                "record",
                0,
                format!(
                    "namespace of {} bytes exceeds {MAX_NAMESPACE_LEN}",
                    self.namespace.len()
                ),
            ));
        }
        if self.payload.len() > MAX_PAYLOAD_LEN {
            return Err(FormatError::malformed(
                "record",
                0,
                format!(
                    "payload of {} bytes exceeds {MAX_PAYLOAD_LEN}",
                    self.payload.len()
                ),
            ));
        }
        Ok(())
    }

    /// Appends this record as a frame (SPEC.md §3) to `out`.
    ///
    /// Panics if [`Record::validate`] would fail; callers validate at the API edge.
    pub fn encode_frame(&self, out: &mut Vec<u8>) {
        self.validate().expect("record validated before encoding");
        let body_len = (BODY_FIXED_LEN + self.namespace.len() + self.payload.len()) as u32;
        let start = out.len();
        out.reserve(FRAME_HEADER_LEN + body_len as usize);
        out.extend_from_slice(&body_len.to_le_bytes());
        out.extend_from_slice(&[0; 4]); // crc, filled below
        out.extend_from_slice(&self.lsn.to_le_bytes());
        out.extend_from_slice(&self.timestamp_us.to_le_bytes());
        out.extend_from_slice(&self.stream_id.to_le_bytes());
        out.extend_from_slice(&self.timeline.to_le_bytes());
        out.push(self.kind.code());
        out.push(0); // reserved
        out.extend_from_slice(&(self.namespace.len() as u16).to_le_bytes());
        out.extend_from_slice(&(self.payload.len() as u32).to_le_bytes());
        out.extend_from_slice(self.namespace.as_bytes());
        out.extend_from_slice(&self.payload);
        let crc = frame_crc(&out[start..start + 4], &out[start + FRAME_HEADER_LEN..]);
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }
}

/// CRC-32/ISO-HDLC over the body length field followed by the body.
fn frame_crc(len_field: &[u8], body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(len_field);
    h.update(body);
    h.finalize()
}

/// Decodes the frame that starts at `data[0]`. `base` is that position's offset in the
/// whole input (for errors). Returns the record and the frame's length in bytes.
///
/// A frame that runs past the end of `data` is `Truncated`; callers scanning an open
/// segment treat that as a torn tail.
pub fn decode_frame(data: &[u8], base: u64) -> Result<(Record, usize)> {
    let mut c = Cursor::new(data, base, "frame header");
    let len_field = c.array::<4>()?;
    let body_len = u32::from_le_bytes(len_field) as usize;
    let stored = c.u32()?;
    if !(BODY_FIXED_LEN..=MAX_BODY_LEN).contains(&body_len) {
        return Err(FormatError::malformed(
            "frame",
            base,
            format!("body length {body_len} outside {BODY_FIXED_LEN}..={MAX_BODY_LEN}"),
        ));
    }
    let mut c = Cursor::new(
        &data[FRAME_HEADER_LEN..],
        base + FRAME_HEADER_LEN as u64,
        "frame body",
    );
    let body = c.bytes(body_len)?;
    let computed = frame_crc(&len_field, body);
    if computed != stored && !crate::SKIP_CRC {
        return Err(FormatError::Checksum {
            what: "frame".into(),
            offset: base,
            stored,
            computed,
        });
    }
    let record = decode_body(body, base + FRAME_HEADER_LEN as u64)?;
    Ok((record, FRAME_HEADER_LEN + body_len))
}

fn decode_body(body: &[u8], base: u64) -> Result<Record> {
    let mut c = Cursor::new(body, base, "record body");
    let lsn = c.u64()?;
    let timestamp_us = c.i64()?;
    let stream_id = c.u64()?;
    let timeline = c.u32()?;
    let kind = Kind::from_code(c.u8()?);
    let reserved = c.u8()?;
    if reserved != 0 {
        return Err(FormatError::malformed(
            "record body",
            base + 29,
            format!("reserved byte is {reserved}, must be 0"),
        ));
    }
    let ns_len = c.u16()? as usize;
    let payload_len = c.u32()? as usize;
    if BODY_FIXED_LEN + ns_len + payload_len != body.len() {
        return Err(FormatError::malformed(
            "record body",
            base,
            format!(
                "namespace ({ns_len}) and payload ({payload_len}) lengths do not add up to the body length {}",
                body.len()
            ),
        ));
    }
    let ns_at = c.offset();
    let namespace = String::from_utf8(c.bytes(ns_len)?.to_vec())
        .map_err(|_| FormatError::malformed("record body", ns_at, "namespace is not UTF-8"))?;
    let payload = c.bytes(payload_len)?.to_vec();
    Ok(Record {
        lsn,
        timestamp_us,
        stream_id,
        timeline,
        kind,
        namespace,
        payload,
    })
}
