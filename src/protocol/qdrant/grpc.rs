//! Which Qdrant gRPC calls change data, the collection a request names, and the few lines
//! of protobuf reading that needs (here and in [`super::points`], and for the restore).
//!
//! Every mutating request message of Qdrant's API (`qdrant.Points`, `qdrant.Collections`)
//! carries the collection name as protobuf field 1 (a string), so reading that one field is
//! enough to order conflicting writes; the message itself is logged as it came.

use super::rest::{Mutation, Touches};
use crate::protocol::protobuf::string_field_1;

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
}
