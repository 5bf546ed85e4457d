//! Which Qdrant gRPC calls change data, the collection a request names, and the few lines
//! of protobuf reading that needs (here and in [`super::points`], and for the restore).
//!
//! Every mutating request message of Qdrant's API (`qdrant.Points`, `qdrant.Collections`)
//! carries the collection name as protobuf field 1 (a string), so reading that one field is
//! enough to order conflicting writes; the message itself is logged as it came.

use super::rest::{Mutation, Touches};

/// The mutation the method `path` (e.g. `/qdrant.Points/Upsert`) is, given its request
/// message; `None` for reads and everything else. A mutation whose collection cannot be
/// read is ordered against everything.
pub fn classify(path: &str, message: &[u8]) -> Option<Mutation> {
    let (service, method) = path.trim_start_matches('/').split_once('/')?;
    let what = match (service, method) {
        ("qdrant.Points", "Upsert") => "upsert points",
        ("qdrant.Points", "Delete") => "delete points",
        ("qdrant.Points", "UpdateVectors") => "update vectors",
        ("qdrant.Points", "DeleteVectors") => "delete vectors",
        ("qdrant.Points", "SetPayload") => "set payload",
        ("qdrant.Points", "OverwritePayload") => "overwrite payload",
        ("qdrant.Points", "DeletePayload") => "delete payload",
        ("qdrant.Points", "ClearPayload") => "clear payload",
        ("qdrant.Points", "UpdateBatch") => "batch update",
        ("qdrant.Points", "CreateFieldIndex") => "create field index",
        ("qdrant.Points", "DeleteFieldIndex") => "delete field index",
        ("qdrant.Collections", "Create") => "create collection",
        ("qdrant.Collections", "Update") => "update collection",
        ("qdrant.Collections", "Delete") => "delete collection",
        ("qdrant.Collections", "UpdateAliases") => {
            return Some(Mutation {
                touches: Touches::All,
                what: "aliases",
            })
        }
        _ => return None,
    };
    let touches = match (string_field_1(message), super::points::grpc(path, message)) {
        (Some(c), Some(ids)) => Touches::Points(c, ids),
        (Some(c), None) => Touches::Collection(c),
        (None, _) => Touches::All,
    };
    Some(Mutation { touches, what })
}

/// Field 1 of a protobuf message if it is a length-delimited UTF-8 string; malformed
/// input gives `None`, never a panic.
pub fn string_field_1(m: &[u8]) -> Option<String> {
    let mut found = None;
    // Stops at the first field 1 (the callback's `None` ends the walk).
    let _ = walk(m, |field, v| match v {
        Value::Bytes(b) if field == 1 => {
            found = String::from_utf8(b.to_vec()).ok();
            None
        }
        _ => Some(()),
    });
    found
}

/// One field of a protobuf message.
pub enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// Calls `f` with every field of the protobuf message `m`; `None` when `m` is malformed
/// or `f` says so.
pub fn walk<'a>(mut m: &'a [u8], mut f: impl FnMut(u64, Value<'a>) -> Option<()>) -> Option<()> {
    while !m.is_empty() {
        let (key, n) = varint(m)?;
        m = &m[n..];
        let value = match key & 7 {
            0 => {
                let (v, n) = varint(m)?;
                m = &m[n..];
                Value::Varint(v)
            }
            1 => {
                m = m.get(8..)?;
                Value::Fixed
            }
            5 => {
                m = m.get(4..)?;
                Value::Fixed
            }
            2 => {
                let (len, n) = varint(m)?;
                let end = n.checked_add(usize::try_from(len).ok()?)?;
                let b = m.get(n..end)?;
                m = &m[end..];
                Value::Bytes(b)
            }
            _ => return None,
        };
        f(key >> 3, value)?;
    }
    Some(())
}

/// A protobuf varint at the start of `b`: its value and length.
pub fn varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    for (i, &byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_collection_is_read_from_field_1() {
        // field 2 varint 1 (wait), then field 1 "docs"
        let msg = [0x10, 0x01, 0x0a, 0x04, b'd', b'o', b'c', b's'];
        let m = classify("/qdrant.Points/Upsert", &msg).unwrap();
        assert_eq!(m.touches, Touches::Points("docs".into(), vec![]));
        let m = classify("/qdrant.Points/CreateFieldIndex", &msg).unwrap();
        assert_eq!(m.touches, Touches::Collection("docs".into()));
        assert_eq!(classify("/qdrant.Points/Search", &msg), None);
        assert_eq!(classify("/qdrant.Points/Get", &msg), None);
        assert_eq!(
            classify("/qdrant.Points/Upsert", &[0xff]).unwrap().touches,
            Touches::All,
            "unreadable: ordered against everything"
        );
    }

    #[test]
    fn malformed_messages_never_panic() {
        for m in [
            &[][..],
            &[0x0a],
            &[0x0a, 0x05, b'a'],
            &[
                0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            ],
            &[0x09, 1, 2],
            &[0x0b],
            &[0x80; 12],
        ] {
            let _ = string_field_1(m);
        }
    }
}
