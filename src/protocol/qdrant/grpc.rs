//! Which Qdrant gRPC calls are logged ([`super::api`]), and the collection a request names.
//!
//! Every mutating request message of Qdrant's API (`qdrant.Points`, `qdrant.Collections`)
//! carries the collection name as protobuf field 1 (a string), so reading that one field is
//! enough to order conflicting writes; the message itself is logged as it came.

use super::api::{Disposition, Scope};
use super::rest::{Mutation, Touches};
use crate::protocol::protobuf::string_field_1;

/// The logged call the method `path` (e.g. `/qdrant.Points/Upsert`) is, given its request
/// message; `None` for reads and everything else. A mutation whose collection cannot be
/// read is ordered against everything.
pub fn classify(path: &str, message: &[u8]) -> Option<Mutation> {
    let what = match super::api::grpc_method(path)? {
        Disposition::Logged(_, Scope::Aliases) => {
            return Some(Mutation {
                touches: Touches::All,
                what: "aliases",
            })
        }
        Disposition::Logged(what, _) => what,
        Disposition::Cluster => "cluster setup",
        _ => return None,
    };
    let touches = match (string_field_1(message), super::points::grpc(path, message)) {
        (Some(c), Some(ids)) => Touches::Points(c, ids),
        (Some(c), None) => Touches::Collection(c),
        (None, _) => Touches::All,
    };
    Some(Mutation { touches, what })
}

/// Whether a logged gRPC write replays to the same state over a snapshot that may already
/// hold it ([`super::rest::replayable`]): `Upsert` without `update_filter` (field 6) or
/// `update_mode` (field 8), or `Delete`, of points named by id.
pub fn replayable(path: &str, touches: &Touches, message: &[u8]) -> bool {
    if !matches!(touches, Touches::Points(..)) {
        return false;
    }
    match path {
        "/qdrant.Points/Delete" => true,
        "/qdrant.Points/Upsert" => {
            let mut conditional = false;
            let readable = crate::protocol::protobuf::walk(message, |field, _| {
                conditional |= field == 6 || field == 8;
                Some(())
            });
            readable.is_some() && !conditional
        }
        _ => false,
    }
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
