//! Typed operation payloads (SPEC.md §5). A record's payload is opaque bytes to the
//! frame layer; this module gives each kind its layout.

use crate::cursor::{put_bytes32, put_str16, Cursor};
use crate::error::{FormatError, Result};
use crate::record::Kind;

/// A Redis command as argument vector: `argv[0]` is the command name.
pub type Argv = Vec<Vec<u8>>;

/// The decoded payload of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// One Redis command, in the deterministic form it is replayed in.
    RedisCommand { argv: Argv },
    /// A MULTI/EXEC group that the upstream executed atomically; replayed atomically.
    RedisMulti { commands: Vec<Argv> },
    /// A Qdrant REST request that Qdrant accepted.
    QdrantRest {
        method: String,
        /// Path and query, e.g. `/collections/c/points?wait=true`.
        path: String,
        content_type: String,
        body: Vec<u8>,
    },
    /// A Qdrant gRPC request that Qdrant accepted: the method path and the protobuf message.
    QdrantGrpc { path: String, message: Vec<u8> },
    /// First record of a stream (or of a new timeline).
    StreamStart {
        source: String,
        vecwal_version: String,
    },
    /// A base snapshot containing every record with LSN <= `snapshot_lsn` and none after.
    Snapshot {
        snapshot_lsn: u64,
        size: u64,
        sha256: [u8; 32],
        name: String,
    },
    /// A named point an operator can restore to.
    RestorePoint { name: String },
}

impl Operation {
    pub fn kind(&self) -> Kind {
        match self {
            Operation::RedisCommand { .. } => Kind::RedisCommand,
            Operation::RedisMulti { .. } => Kind::RedisMulti,
            Operation::QdrantRest { .. } => Kind::QdrantRest,
            Operation::QdrantGrpc { .. } => Kind::QdrantGrpc,
            Operation::StreamStart { .. } => Kind::StreamStart,
            Operation::Snapshot { .. } => Kind::Snapshot,
            Operation::RestorePoint { .. } => Kind::RestorePoint,
        }
    }

    /// Encodes the payload. Fails only on a field longer than its length prefix allows.
    pub fn encode(&self) -> Result<Vec<u8>> {
        self.check_lengths()?;
        let mut out = Vec::new();
        match self {
            Operation::RedisCommand { argv } => put_argv(&mut out, argv),
            Operation::RedisMulti { commands } => {
                out.extend_from_slice(&(commands.len() as u32).to_le_bytes());
                for argv in commands {
                    put_argv(&mut out, argv);
                }
            }
            Operation::QdrantRest {
                method,
                path,
                content_type,
                body,
            } => {
                put_str16(&mut out, method);
                put_str16(&mut out, path);
                put_str16(&mut out, content_type);
                put_bytes32(&mut out, body);
            }
            Operation::QdrantGrpc { path, message } => {
                put_str16(&mut out, path);
                put_bytes32(&mut out, message);
            }
            Operation::StreamStart {
                source,
                vecwal_version,
            } => {
                put_str16(&mut out, source);
                put_str16(&mut out, vecwal_version);
            }
            Operation::Snapshot {
                snapshot_lsn,
                size,
                sha256,
                name,
            } => {
                out.extend_from_slice(&snapshot_lsn.to_le_bytes());
                out.extend_from_slice(&size.to_le_bytes());
                out.extend_from_slice(sha256);
                put_str16(&mut out, name);
            }
            Operation::RestorePoint { name } => put_str16(&mut out, name),
        }
        Ok(out)
    }

    fn check_lengths(&self) -> Result<()> {
        let strs: Vec<&str> = match self {
            Operation::QdrantRest {
                method,
                path,
                content_type,
                ..
            } => vec![method, path, content_type],
            Operation::QdrantGrpc { path, .. } => vec![path],
            Operation::StreamStart {
                source,
                vecwal_version,
            } => vec![source, vecwal_version],
            Operation::Snapshot { name, .. } | Operation::RestorePoint { name } => vec![name],
            Operation::RedisCommand { .. } | Operation::RedisMulti { .. } => vec![],
        };
        for s in strs {
            if s.len() > u16::MAX as usize {
                return Err(FormatError::malformed(
                    "operation",
                    0,
                    format!(
                        "a {} field of {} bytes exceeds 65535",
                        self.kind().name(),
                        s.len()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Decodes the payload of a record of `kind`. An unknown kind is an error: the caller
    /// decides whether it may be skipped (markers) or must stop a restore (operations).
    pub fn decode(kind: Kind, payload: &[u8]) -> Result<Operation> {
        let mut c = Cursor::new(payload, 0, "operation payload");
        let op = match kind {
            Kind::RedisCommand => Operation::RedisCommand {
                argv: get_argv(&mut c)?,
            },
            Kind::RedisMulti => {
                let n = c.u32()? as usize;
                // Each command takes at least its 4-byte argc: bound the count by the input
                // so a hostile count cannot reserve memory the input could never fill.
                check_count(&c, n, 4)?;
                let mut commands = Vec::with_capacity(n);
                for _ in 0..n {
                    commands.push(get_argv(&mut c)?);
                }
                Operation::RedisMulti { commands }
            }
            Kind::QdrantRest => Operation::QdrantRest {
                method: c.str16("method")?,
                path: c.str16("path")?,
                content_type: c.str16("content type")?,
                body: c.bytes32()?.to_vec(),
            },
            Kind::QdrantGrpc => Operation::QdrantGrpc {
                path: c.str16("path")?,
                message: c.bytes32()?.to_vec(),
            },
            Kind::StreamStart => Operation::StreamStart {
                source: c.str16("source")?,
                vecwal_version: c.str16("vecwal version")?,
            },
            Kind::Snapshot => Operation::Snapshot {
                snapshot_lsn: c.u64()?,
                size: c.u64()?,
                sha256: c.array()?,
                name: c.str16("name")?,
            },
            Kind::RestorePoint => Operation::RestorePoint {
                name: c.str16("name")?,
            },
            Kind::Unknown(code) => {
                return Err(FormatError::malformed(
                    "operation payload",
                    0,
                    format!("unknown record kind {code}"),
                ))
            }
        };
        c.expect_end()?;
        Ok(op)
    }
}

fn check_count(c: &Cursor<'_>, n: usize, min_each: usize) -> Result<()> {
    if n.saturating_mul(min_each) > c.remaining() {
        return Err(FormatError::malformed(
            "operation payload",
            c.offset(),
            format!(
                "count {n} cannot fit in the {} remaining bytes",
                c.remaining()
            ),
        ));
    }
    Ok(())
}

fn put_argv(out: &mut Vec<u8>, argv: &Argv) {
    out.extend_from_slice(&(argv.len() as u32).to_le_bytes());
    for arg in argv {
        put_bytes32(out, arg);
    }
}

fn get_argv(c: &mut Cursor<'_>) -> Result<Argv> {
    let n = c.u32()? as usize;
    check_count(c, n, 4)?;
    let mut argv = Vec::with_capacity(n);
    for _ in 0..n {
        argv.push(c.bytes32()?.to_vec());
    }
    Ok(argv)
}
