//! Which points a Qdrant mutation touches, so that writes to different points of one
//! collection need not wait for each other (promise 3 asks only that *conflicting* writes
//! be logged in the order Qdrant applied them).
//!
//! A write names its points by id (upserts, deletes, payload and vector changes with a
//! `points` list) or by filter. Only the first kind is narrowed: a filter (and anything this
//! module does not recognise) touches the whole collection, which is always safe. Conditional
//! writes (`update_filter`, `update_mode`) stay narrow: their condition is read from the very
//! points they name.
//!
//! Point ids are compared in a canonical form, so `"8E6F…"`, `"8e6f…"` and `"{8e6f…}"` are
//! one point, as they are to Qdrant: `n` + the big-endian u64 of a numeric id, `u` + the 16
//! bytes of a UUID.

use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::protocol::protobuf::{walk, Value};

mod scan;

/// A point id in canonical form.
pub type PointKey = Vec<u8>;

/// A REST write's body, read once for everything the proxy asks of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestBody {
    /// The points it touches, as [`rest`] reads them.
    pub keys: Option<Vec<PointKey>>,
    /// Whether it is valid JSON without an `update_filter` or `update_mode` (which only an
    /// upsert has): then an upsert by id replays to the same state over a snapshot that
    /// may already hold it.
    pub unconditional: bool,
}

/// Reads the body of the REST mutation `what`: upserts and vector updates by the fast
/// scanner ([`scan`]) when it is sure, everything else (and whatever it is unsure of) by
/// `serde_json`.
pub fn read_rest(what: &str, body: &[u8]) -> RestBody {
    if matches!(what, "upsert points" | "update vectors") {
        if let Some(r) = scan::upsert(body) {
            return r;
        }
    }
    read_rest_slowly(what, body)
}

/// [`read_rest`] by `serde_json` alone: the reference the scanner is tested against.
fn read_rest_slowly(what: &str, body: &[u8]) -> RestBody {
    #[derive(Deserialize)]
    struct Conditions {
        update_filter: Option<IgnoredAny>,
        update_mode: Option<IgnoredAny>,
    }
    RestBody {
        keys: rest(what, body),
        unconditional: serde_json::from_slice::<Conditions>(body)
            .is_ok_and(|c| c.update_filter.is_none() && c.update_mode.is_none()),
    }
}

/// The points the REST mutation `what` (from [`super::rest::classify`]) with `body` touches,
/// sorted; `None` when it is filter-based, unreadable or not a per-point write.
pub fn rest(what: &str, body: &[u8]) -> Option<Vec<PointKey>> {
    let mut keys = Vec::new();
    match what {
        "upsert points" | "update vectors" => serde_json::from_slice::<Upsert>(body)
            .ok()?
            .keys(&mut keys)?,
        "delete points" | "delete vectors" | "set payload" | "overwrite payload"
        | "delete payload" | "clear payload" => serde_json::from_slice::<Selector>(body)
            .ok()?
            .keys(&mut keys)?,
        "batch update" => {
            let b: Batch = serde_json::from_slice(body).ok()?;
            for op in b.operations {
                op.keys(&mut keys)?;
            }
        }
        _ => return None,
    }
    Some(sorted(keys))
}

/// A point id as JSON: a number or a UUID string.
#[derive(Deserialize)]
#[serde(untagged)]
enum Id {
    Num(u64),
    Uuid(String),
}

impl Id {
    fn key(&self) -> Option<PointKey> {
        match self {
            Id::Num(n) => Some(num_key(*n)),
            Id::Uuid(s) => uuid_key(s),
        }
    }
}

fn push_all<'a>(ids: impl Iterator<Item = &'a Id>, out: &mut Vec<PointKey>) -> Option<()> {
    for id in ids {
        out.push(id.key()?);
    }
    Some(())
}

#[derive(Deserialize)]
struct WithId {
    id: Id,
}

/// Upserts (`points` or the columnar `batch`) and vector updates (`points`).
#[derive(Deserialize)]
struct Upsert {
    points: Option<Vec<WithId>>,
    batch: Option<Columns>,
}

#[derive(Deserialize)]
struct Columns {
    ids: Vec<Id>,
}

impl Upsert {
    fn keys(self, out: &mut Vec<PointKey>) -> Option<()> {
        match (self.points, self.batch) {
            (Some(p), None) => push_all(p.iter().map(|p| &p.id), out),
            (None, Some(b)) => push_all(b.ids.iter(), out),
            _ => None,
        }
    }
}

/// Everything that selects points by `points` (ids) or `filter`.
#[derive(Deserialize)]
struct Selector {
    points: Option<Vec<Id>>,
    filter: Option<IgnoredAny>,
}

impl Selector {
    fn keys(self, out: &mut Vec<PointKey>) -> Option<()> {
        match (self.points, self.filter) {
            (Some(ids), None) => push_all(ids.iter(), out),
            _ => None,
        }
    }
}

#[derive(Deserialize)]
struct Batch {
    operations: Vec<BatchOp>,
}

/// One operation of a batch update: exactly one of these is set.
#[derive(Deserialize)]
struct BatchOp {
    upsert: Option<Upsert>,
    update_vectors: Option<Upsert>,
    delete: Option<Selector>,
    delete_vectors: Option<Selector>,
    set_payload: Option<Selector>,
    overwrite_payload: Option<Selector>,
    delete_payload: Option<Selector>,
    clear_payload: Option<Selector>,
}

impl BatchOp {
    fn keys(self, out: &mut Vec<PointKey>) -> Option<()> {
        let ups = [self.upsert, self.update_vectors];
        let sels = [
            self.delete,
            self.delete_vectors,
            self.set_payload,
            self.overwrite_payload,
            self.delete_payload,
            self.clear_payload,
        ];
        let set = ups.iter().flatten().count() + sels.iter().flatten().count();
        if set != 1 {
            return None;
        }
        for u in ups.into_iter().flatten() {
            u.keys(out)?;
        }
        for s in sels.into_iter().flatten() {
            s.keys(out)?;
        }
        Some(())
    }
}

/// The points the gRPC mutation `method` (e.g. `/qdrant.Points/Upsert`) with `message`
/// touches, sorted; `None` when it is filter-based, malformed or not a per-point write.
///
/// Field numbers are those of Qdrant's `points.proto`. Every occurrence of a field is read
/// (protobuf merges repeated occurrences of a message field), so the set is never smaller
/// than what Qdrant acts on.
pub fn grpc(method: &str, message: &[u8]) -> Option<Vec<PointKey>> {
    let mut keys = Vec::new();
    let k = &mut keys;
    match method.trim_start_matches('/') {
        "qdrant.Points/Upsert" => each_bytes(message, 3, |p| point_struct(p, k))?,
        "qdrant.Points/UpdateVectors" => each_bytes(message, 3, |p| point_struct(p, k))?,
        "qdrant.Points/Delete" | "qdrant.Points/DeleteVectors" | "qdrant.Points/ClearPayload" => {
            required_selector(message, 3, k)?
        }
        "qdrant.Points/SetPayload"
        | "qdrant.Points/OverwritePayload"
        | "qdrant.Points/DeletePayload" => required_selector(message, 5, k)?,
        "qdrant.Points/UpdateBatch" => each_bytes(message, 3, |op| batch_op(op, k))?,
        _ => return None,
    }
    Some(sorted(keys))
}

/// One `PointsUpdateOperation` (a oneof: exactly one field).
fn batch_op(op: &[u8], out: &mut Vec<PointKey>) -> Option<()> {
    let mut seen = 0;
    walk(op, |field, v| {
        seen += 1;
        let Value::Bytes(b) = v else { return None };
        match field {
            // PointStructList { repeated PointStruct points = 1 }
            1 => each_bytes(b, 1, |p| point_struct(p, out)),
            // The deprecated bare PointsSelector forms.
            2 | 6 => selector(b, out),
            // SetPayload, OverwritePayload, DeletePayload { PointsSelector = 2 }
            3..=5 => required_selector(b, 2, out),
            // UpdateVectors { repeated PointVectors points = 1 }
            7 => each_bytes(b, 1, |p| point_struct(p, out)),
            // DeleteVectors, DeletePoints, ClearPayload { PointsSelector = 1 }
            8..=10 => required_selector(b, 1, out),
            _ => None,
        }
    })?;
    (seen == 1).then_some(())
}

/// A `PointStruct` or `PointVectors`: its id is field 1, and it must have one.
fn point_struct(p: &[u8], out: &mut Vec<PointKey>) -> Option<()> {
    let mut ids = 0;
    each_bytes(p, 1, |id| {
        ids += 1;
        out.push(point_id(id)?);
        Some(())
    })?;
    (ids > 0).then_some(())
}

/// The `PointsSelector` in field `field` of `m`, which must be there.
fn required_selector(m: &[u8], field: u64, out: &mut Vec<PointKey>) -> Option<()> {
    let mut found = false;
    each_bytes(m, field, |s| {
        found = true;
        selector(s, out)
    })?;
    found.then_some(())
}

/// `PointsSelector { oneof { PointsIdsList points = 1; Filter filter = 2; } }`.
fn selector(s: &[u8], out: &mut Vec<PointKey>) -> Option<()> {
    let mut ids = false;
    walk(s, |field, v| match (field, v) {
        (1, Value::Bytes(list)) => {
            ids = true;
            each_bytes(list, 1, |id| {
                out.push(point_id(id)?);
                Some(())
            })
        }
        // A filter, or anything else: not narrowed.
        _ => None,
    })?;
    ids.then_some(())
}

/// `PointId { oneof { uint64 num = 1; string uuid = 2; } }`.
fn point_id(id: &[u8]) -> Option<PointKey> {
    let mut key = None;
    walk(id, |field, v| {
        key = Some(match (field, v) {
            (1, Value::Varint(n)) => num_key(n),
            (2, Value::Bytes(s)) => uuid_key(std::str::from_utf8(s).ok()?)?,
            _ => return None,
        });
        Some(())
    })?;
    key
}

/// Calls `f` with every length-delimited occurrence of `field`; a malformed message, or
/// `field` with another wire type, is `None`.
fn each_bytes<'a>(
    m: &'a [u8],
    field: u64,
    mut f: impl FnMut(&'a [u8]) -> Option<()>,
) -> Option<()> {
    walk(m, |n, v| match v {
        Value::Bytes(b) if n == field => f(b),
        _ if n == field => None,
        _ => Some(()),
    })
}

fn num_key(n: u64) -> PointKey {
    let mut k = Vec::with_capacity(9);
    k.push(b'n');
    k.extend_from_slice(&n.to_be_bytes());
    k
}

/// The 16 bytes of a UUID in any form Qdrant accepts (hyphenated, simple, braced, URN),
/// any case; `None` when it is not one.
fn uuid_key(s: &str) -> Option<PointKey> {
    let s = s.strip_prefix("urn:uuid:").unwrap_or(s);
    let s = s
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .unwrap_or(s);
    let hex: Vec<u8> = s.bytes().filter(|&b| b != b'-').collect();
    let mut k = vec![0u8; 17];
    k[0] = b'u';
    hex::decode_to_slice(&hex, &mut k[1..]).ok()?;
    Some(k)
}

fn sorted(mut keys: Vec<PointKey>) -> Vec<PointKey> {
    keys.sort_unstable();
    keys.dedup();
    keys
}

#[cfg(test)]
mod tests;
