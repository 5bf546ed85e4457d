//! A one-pass reading of a REST upsert body's point ids and conditions that does not lex
//! the vectors.
//!
//! An upsert of 100 points of 384 dimensions is about 770 KB of JSON, nearly all of it
//! floats that vecwal never needs. `serde_json` skips an ignored value by lexing it (every
//! digit of every float), and that was the largest cost of the REST proxy (see
//! docs/benchmarks.md). This scanner reads the structure vecwal needs (the top-level keys,
//! `points[].id`, `batch.ids`) exactly and jumps over every other value by counting
//! brackets outside strings.
//!
//! It answers only when it is sure its reading is `serde_json`'s: anything unusual (an
//! escape in a key or id, a number that is not a plain `u64`, a duplicate key, a shape
//! other than the documented objects) returns `None`, and the caller reads the body with
//! `serde_json` instead. What it does not check is the validity of the values it jumps
//! over: a body that is malformed inside a vector gets its ids read here where `serde_json`
//! would read none. Qdrant refuses such a body and applies nothing, so nothing is logged
//! and the ids only ordered a write that did not happen.

use super::{num_key, uuid_key, PointKey, RestBody};

/// The reading of an upsert (or vector update) body, when it is sure.
pub(super) fn upsert(body: &[u8]) -> Option<RestBody> {
    let mut s = Scanner { b: body, i: 0 };
    let (mut points, mut batch) = (None, None);
    let (mut filter, mut mode) = (None, None);
    s.object(|s, key| match key {
        b"points" => once(&mut points, s.nullable(|s| s.list(Scanner::point))?),
        b"batch" => once(&mut batch, s.nullable(Scanner::columns)?),
        b"update_filter" => once(&mut filter, s.nullable(Scanner::skip)?.is_some()),
        b"update_mode" => once(&mut mode, s.nullable(Scanner::skip)?.is_some()),
        _ => s.skip(),
    })?;
    s.ws();
    if s.i != s.b.len() {
        return None; // trailing bytes: serde_json refuses the body
    }
    let keys = match (points.flatten(), batch.flatten()) {
        (Some(k), None) | (None, Some(k)) => Some(k),
        _ => None,
    };
    let conditional = filter.unwrap_or(false) || mode.unwrap_or(false);
    Some(RestBody {
        keys: keys.map(super::sorted),
        unconditional: !conditional,
    })
}

/// Sets a field seen once; a second occurrence is an error to `serde_json`, so unsure.
fn once<T>(slot: &mut Option<T>, v: T) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(v);
    Some(())
}

/// Bytes at which a jump over a container stops to look.
static STOPS: [bool; 256] = {
    let mut t = [false; 256];
    t[b'"' as usize] = true;
    t[b'[' as usize] = true;
    t[b']' as usize] = true;
    t[b'{' as usize] = true;
    t[b'}' as usize] = true;
    t
};

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        self.ws();
        (self.peek()? == c).then(|| self.i += 1)
    }

    /// `null` as `None` (an absent `Option` to serde), anything else read by `f`.
    fn nullable<T>(&mut self, f: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        self.ws();
        if self.b[self.i..].starts_with(b"null")
            && !self.b.get(self.i + 4).is_some_and(|&c| word(c))
        {
            self.i += 4;
            return Some(None);
        }
        f(self).map(Some)
    }

    /// An object, calling `field` with each key once the scanner is at its value.
    fn object(&mut self, mut field: impl FnMut(&mut Self, &[u8]) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        self.ws();
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(());
        }
        loop {
            let key = self.plain_string()?;
            self.eat(b':')?;
            self.ws();
            field(self, key)?;
            self.ws();
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
            self.ws();
        }
    }

    /// An array whose items `item` reads, each adding to the list.
    fn list(
        &mut self,
        item: impl Fn(&mut Self, &mut Vec<PointKey>) -> Option<()>,
    ) -> Option<Vec<PointKey>> {
        let mut out = Vec::new();
        self.eat(b'[')?;
        self.ws();
        if self.peek()? == b']' {
            self.i += 1;
            return Some(out);
        }
        loop {
            item(self, &mut out)?;
            self.ws();
            match self.peek()? {
                b',' => self.i += 1,
                b']' => {
                    self.i += 1;
                    return Some(out);
                }
                _ => return None,
            }
        }
    }

    /// `{"id": ID, ...}`: one point of `points`.
    fn point(&mut self, out: &mut Vec<PointKey>) -> Option<()> {
        let mut id = None;
        self.object(|s, key| match key {
            b"id" => once(&mut id, s.id()?),
            _ => s.skip(),
        })?;
        out.push(id?);
        Some(())
    }

    /// `{"ids": [ID, ...], ...}`: the columnar form.
    fn columns(&mut self) -> Option<Vec<PointKey>> {
        let mut ids = None;
        self.object(|s, key| match key {
            b"ids" => once(
                &mut ids,
                s.list(|s, out| {
                    out.push(s.id()?);
                    Some(())
                })?,
            ),
            _ => s.skip(),
        })?;
        ids
    }

    /// A point id: a plain unsigned integer or a UUID string without escapes.
    fn id(&mut self) -> Option<PointKey> {
        self.ws();
        match self.peek()? {
            b'"' => {
                let s = std::str::from_utf8(self.plain_string()?).ok()?;
                uuid_key(s) // an id that is no UUID: serde decides what it means
            }
            b'0'..=b'9' => {
                let start = self.i;
                while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    self.i += 1;
                }
                let digits = &self.b[start..self.i];
                // A fraction or exponent, a leading zero: not a u64 to serde_json.
                if self.peek().is_some_and(word) || (digits.len() > 1 && digits[0] == b'0') {
                    return None;
                }
                let mut n: u64 = 0;
                for &d in digits {
                    n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
                }
                Some(num_key(n))
            }
            _ => None,
        }
    }

    /// A string without escapes, as its raw bytes.
    fn plain_string(&mut self) -> Option<&'a [u8]> {
        self.ws();
        if self.peek()? != b'"' {
            return None;
        }
        let start = self.i + 1;
        let len = self.b[start..]
            .iter()
            .position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
        if self.b[start + len] != b'"' {
            return None;
        }
        self.i = start + len + 1;
        Some(&self.b[start..start + len])
    }

    /// Past any string, escapes included.
    fn string(&mut self) -> Option<()> {
        self.i += 1; // the opening quote
        loop {
            // `get`: a body may end right after a backslash.
            let rest = self.b.get(self.i..)?;
            let at = rest.iter().position(|&c| c == b'"' || c == b'\\')?;
            if rest[at] == b'"' {
                self.i += at + 1;
                return Some(());
            }
            self.i += at + 2; // a backslash and the byte it escapes
        }
    }

    /// Past any value, without reading it.
    fn skip(&mut self) -> Option<()> {
        self.ws();
        match self.peek()? {
            b'"' => self.string(),
            b'[' | b'{' => {
                let mut depth = 0usize;
                loop {
                    while !STOPS[usize::from(*self.b.get(self.i)?)] {
                        self.i += 1;
                    }
                    match self.b[self.i] {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'[' | b'{' => depth += 1,
                        _ => depth -= 1,
                    }
                    self.i += 1;
                    if depth == 0 {
                        return Some(());
                    }
                }
            }
            _ => {
                let start = self.i;
                while self.peek().is_some_and(word) {
                    self.i += 1;
                }
                (self.i > start).then_some(())
            }
        }
    }
}

/// A byte that continues a number or a literal (`true`, `1e-3`).
fn word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'+')
}

#[cfg(test)]
mod tests {
    use super::super::read_rest_slowly;
    use super::*;
    use serde_json::{json, Value};

    /// The scanner's answer, checked against serde_json's whenever it gives one.
    fn agrees(body: &str) -> bool {
        let fast = upsert(body.as_bytes());
        if let Some(f) = &fast {
            assert_eq!(
                *f,
                read_rest_slowly("upsert points", body.as_bytes()),
                "{body}"
            );
        }
        fast.is_some()
    }

    #[test]
    fn typical_upserts_are_read_without_serde() {
        for body in [
            r#"{"points":[{"id":3,"vector":[0.25,-1e-3,7],"payload":{"t":"a]\"}{"}},{"id":"936DA01F-9ABD-4D9D-80C7-02AF85C822A8","vector":{"img":[1]}}]}"#,
            r#"{"batch":{"ids":[1,2],"vectors":[[1.5],[2]],"payloads":[{},null]},"update_mode":null}"#,
            r#" { "points" : [ { "vector" : [ 1 ] , "id" : 0 } ] , "wait" : true } "#,
            r#"{"points":[],"shard_key":"s"}"#,
            r#"{"points":[{"id":1,"vector":[1]}],"update_filter":{"must":[]}}"#,
        ] {
            assert!(agrees(body), "unsure of {body}");
        }
    }

    #[test]
    fn unusual_spellings_are_left_to_serde() {
        for body in [
            r#"{"po\u0069nts":[{"id":1}]}"#,
            r#"{"points":[{"id":1}],"points":[{"id":2}]}"#,
            r#"{"points":[{"id":1,"id":2}]}"#,
            r#"{"points":[{"id":1.0}]}"#,
            r#"{"points":[{"id":-1}]}"#,
            r#"{"points":[{"id":1e2}]}"#,
            r#"{"points":[{"id":18446744073709551616}]}"#,
            r#"{"points":[{"id":"936DA01F-9ABD-4D9D-80C7-02AF85C822A\u0038"}]}"#,
            r#"{"points":[{"id":"not a uuid"}]}"#,
            r#"{"points":[{"vector":[1]}]}"#,
            r#"{"points":[[1]]}"#,
            r#"[[{"id":1}],null]"#,
            r#"{"points":[{"id":1}]} x"#,
            r#"{"points":[{"id":1}],}"#,
            r#"{"update_filter":{},"update_filter":null,"points":[]}"#,
        ] {
            assert!(!agrees(body), "sure of {body}");
        }
        // Cut anywhere, a body is never read (and never panics the proxy).
        let body = r#"{"points":[{"id":1,"payload":{"s":"a\"b\\"},"vector":[1,2]}]}"#;
        assert!(agrees(body));
        for cut in 0..body.len() {
            assert_eq!(upsert(&body.as_bytes()[..cut]), None, "{cut}");
        }
        assert_eq!(upsert(br#"{"points":[{"x":"\"#), None);
        // Where serde_json reads it, so does the scanner.
        assert!(agrees(
            r#"{"points":null,"batch":{"ids":[18446744073709551615]}}"#
        ));
        assert!(agrees(r#"{"points":[{"id":1}],"batch":{"ids":[2]}}"#));
        assert!(agrees(r#"{"shard_key":"a","shard_key":"b","points":[]}"#));
    }

    /// A small deterministic generator (xorshift), so a failure reproduces.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }

        fn value(&mut self, depth: u32) -> Value {
            match self.next(if depth > 3 { 5 } else { 7 }) {
                0 => Value::Null,
                1 => json!(self.next(2) == 0),
                2 => json!((self.next(2_000_000) as f64 - 1e6) / 997.0),
                3 => {
                    json!(["[", "]", "{", "}", "\"", "\\", "a\nb", "é", ""][self.next(9) as usize])
                }
                4 => json!(self.next(u64::MAX)),
                5 => Value::Array((0..self.next(4)).map(|_| self.value(depth + 1)).collect()),
                _ => Value::Object(
                    (0..self.next(4))
                        .map(|_| {
                            (
                                ["id", "ids", "points", "x"][self.next(4) as usize].to_string(),
                                self.value(depth + 1),
                            )
                        })
                        .collect(),
                ),
            }
        }

        fn id(&mut self) -> Value {
            match self.next(4) {
                0 => json!(self.next(u64::MAX)),
                1 => json!(self.next(10)),
                2 => json!("936da01f-9abd-4d9d-80c7-02af85c822a8"),
                _ => self.value(3),
            }
        }
    }

    #[test]
    fn generated_bodies_read_as_serde_reads_them() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut sure = 0;
        let total = 3_000;
        for _ in 0..total {
            let mut top = serde_json::Map::new();
            for _ in 0..rng.next(4) {
                let (k, v) = match rng.next(6) {
                    0 | 1 => {
                        let pts = (0..rng.next(5))
                            .map(|_| {
                                let mut p = serde_json::Map::new();
                                if rng.next(8) != 0 {
                                    p.insert("id".into(), rng.id());
                                }
                                p.insert("vector".into(), rng.value(1));
                                Value::Object(p)
                            })
                            .collect();
                        ("points", Value::Array(pts))
                    }
                    2 => {
                        let ids: Vec<Value> = (0..rng.next(5)).map(|_| rng.id()).collect();
                        ("batch", json!({ "ids": ids, "vectors": rng.value(1) }))
                    }
                    3 => ("update_filter", rng.value(1)),
                    4 => ("update_mode", rng.value(2)),
                    _ => ("payload", rng.value(0)),
                };
                top.insert(k.into(), v);
            }
            let v = Value::Object(top);
            let body = if rng.next(2) == 0 {
                v.to_string()
            } else {
                serde_json::to_string_pretty(&v).unwrap()
            };
            sure += usize::from(agrees(&body));
        }
        assert!(
            sure > total / 3,
            "the scanner answered only {sure} of {total}"
        );
    }
}
