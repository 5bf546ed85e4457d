//! Which Qdrant REST requests are logged, and what they touch.
//!
//! Qdrant reads by POST as often as by GET (search, query, scroll, count, retrieve), so a
//! request is a write only when its route is one [`super::api`] lists as logged.

use super::api::{Disposition, Scope};

/// What a mutation touches, for ordering conflicting writes (promise 3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Touches {
    /// A whole collection: writes by filter, collection and index changes.
    Collection(String),
    /// Points of one collection by id, sorted ([`super::points`]).
    Points(String, Vec<super::points::PointKey>),
    /// Collections named in the body (alias changes): ordered against everything.
    All,
}

impl Touches {
    /// The collection, unless it is everything.
    pub fn collection(&self) -> Option<&str> {
        match self {
            Touches::Collection(c) | Touches::Points(c, _) => Some(c),
            Touches::All => None,
        }
    }

    /// Whether two writes could see each other's effect, so their order matters.
    pub fn conflicts(&self, other: &Touches) -> bool {
        match (self, other) {
            (Touches::All, _) | (_, Touches::All) => true,
            _ if self.collection() != other.collection() => false,
            (Touches::Points(_, a), Touches::Points(_, b)) => intersect(a, b),
            _ => true,
        }
    }

    /// The same, with the collection's name mapped by `f` (an alias to its collection).
    pub fn resolve(self, f: impl Fn(&str) -> String) -> Touches {
        match self {
            Touches::Collection(c) => Touches::Collection(f(&c)),
            Touches::Points(c, ids) => Touches::Points(f(&c), ids),
            Touches::All => Touches::All,
        }
    }

    /// Narrowed to the points a body names (`keys` of [`super::points::read_rest`]), when
    /// it names them by id.
    pub fn narrow(self, keys: &Option<Vec<super::points::PointKey>>) -> Touches {
        match (self, keys) {
            (Touches::Collection(c), Some(ids)) => Touches::Points(c, ids.clone()),
            (t, _) => t,
        }
    }
}

/// Whether two sorted lists share an element.
fn intersect<T: Ord>(a: &[T], b: &[T]) -> bool {
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => return true,
        }
    }
    false
}

/// A REST request that changes data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mutation {
    pub touches: Touches,
    /// What kind, for logs and `inspect`.
    pub what: &'static str,
}

/// The logged request `method path` is, if any. `path` is the request path without the
/// query. A cluster-setup request counts (its body decides whether it is logged).
pub fn classify(method: &str, path: &str) -> Option<Mutation> {
    let m = super::api::rest_route(method, path)?;
    let c = || Touches::Collection(m.collection.clone().unwrap_or_default());
    match m.route.3 {
        Disposition::Logged(what, Scope::Aliases) => Some(Mutation {
            touches: Touches::All,
            what,
        }),
        Disposition::Logged(what, _) => Some(Mutation { touches: c(), what }),
        Disposition::Cluster => Some(Mutation {
            touches: c(),
            what: "cluster setup",
        }),
        _ => None,
    }
}

/// Whether a logged REST write replays to the same state over a snapshot that may already
/// hold it (see `capture::qdrant::order`): an upsert without a condition (`update_filter`,
/// `update_mode`) or a delete, of points named by id. Payload and vector changes are not:
/// replayed over a snapshot where a later write deleted their point, they fail.
pub fn replayable(what: &str, touches: &Touches, body: &super::points::RestBody) -> bool {
    if !matches!(touches, Touches::Points(..)) {
        return false;
    }
    match what {
        "delete points" => true,
        "upsert points" => body.unconditional,
        _ => false,
    }
}

/// A path segment with its percent-escapes decoded (collection names may need them).
pub fn decode(seg: &str) -> String {
    let b = seg.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(name: &str) -> Touches {
        Touches::Collection(name.into())
    }

    #[test]
    fn mutations_are_told_from_reads_by_method_and_path() {
        let w = |m, p| classify(m, p).map(|m| m.touches);
        assert_eq!(w("PUT", "/collections/docs/points"), Some(c("docs")));
        assert_eq!(
            w("POST", "/collections/docs/points/delete"),
            Some(c("docs"))
        );
        assert_eq!(
            w("POST", "/collections/docs/points/payload/clear"),
            Some(c("docs"))
        );
        assert_eq!(w("POST", "/collections/docs/points/batch"), Some(c("docs")));
        assert_eq!(w("PUT", "/collections/docs"), Some(c("docs")));
        assert_eq!(w("DELETE", "/collections/docs/index/city"), Some(c("docs")));
        assert_eq!(w("POST", "/collections/aliases"), Some(Touches::All));
        assert_eq!(
            w("PUT", "/collections/my%20docs/points"),
            Some(c("my docs"))
        );
        // Reads, even by POST, and snapshots: not logged.
        for (m, p) in [
            ("POST", "/collections/docs/points"),
            ("POST", "/collections/docs/points/search"),
            ("POST", "/collections/docs/points/query"),
            ("POST", "/collections/docs/points/scroll"),
            ("POST", "/collections/docs/points/count"),
            ("GET", "/collections/docs"),
            ("GET", "/collections"),
            ("POST", "/collections/docs/snapshots"),
            ("GET", "/"),
            ("PUT", "/collections/docs/points/unknown"),
        ] {
            assert_eq!(classify(m, p), None, "{m} {p}");
        }
    }

    #[test]
    fn writes_conflict_when_they_could_see_each_other() {
        let p =
            |c: &str, ids: &[u8]| Touches::Points(c.into(), ids.iter().map(|&i| vec![i]).collect());
        assert!(p("a", &[1, 3]).conflicts(&p("a", &[2, 3])));
        assert!(!p("a", &[1, 3]).conflicts(&p("a", &[2, 4])));
        assert!(!p("a", &[1]).conflicts(&p("b", &[1])));
        assert!(p("a", &[1]).conflicts(&c("a")));
        assert!(c("a").conflicts(&p("a", &[])));
        assert!(!c("a").conflicts(&c("b")));
        assert!(Touches::All.conflicts(&p("b", &[])));
    }

    #[test]
    fn only_unconditional_upserts_and_deletes_by_id_replay_over_themselves() {
        let replayable = |what, t: &Touches, body: &[u8]| {
            replayable(
                what,
                t,
                &crate::protocol::qdrant::points::read_rest(what, body),
            )
        };
        let ids = Touches::Points("c".into(), vec![vec![1]]);
        let up = br#"{"points":[{"id":1,"vector":[1,0]}]}"#;
        assert!(replayable("upsert points", &ids, up));
        assert!(replayable("delete points", &ids, br#"{"points":[1]}"#));
        assert!(!replayable("upsert points", &c("c"), up), "not by id");
        let cond = br#"{"points":[{"id":1,"vector":[1,0]}],"update_filter":{"must":[]}}"#;
        assert!(!replayable("upsert points", &ids, cond));
        let mode = br#"{"points":[{"id":1,"vector":[1,0]}],"update_mode":"insert_only"}"#;
        assert!(!replayable("upsert points", &ids, mode));
        assert!(!replayable(
            "set payload",
            &ids,
            br#"{"payload":{},"points":[1]}"#
        ));
        assert!(!replayable("upsert points", &ids, b"not json"));
    }

    #[test]
    fn percent_decoding_never_panics() {
        for s in ["%", "%4", "%zz", "a%", "%41%", "%E2%82%AC"] {
            let _ = decode(s);
        }
        assert_eq!(decode("%E2%82%AC"), "€");
        assert_eq!(decode("a%4"), "a%4");
    }
}
