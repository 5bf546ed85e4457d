//! Decoding a RESP value into a tree, for the few replies vecwal must understand (COMMAND
//! INFO, the results a deterministic rewrite needs, INFO). The proxy never decodes what it
//! only forwards; [`super::resp::scan`] finds those values' ends without copying.

use super::resp::{scan, RespError};

/// Deepest nesting decoded; replies vecwal reads are at most a few levels deep.
const MAX_DEPTH: usize = 32;

/// A decoded value. RESP3 types map onto the RESP2 shapes a caller compares against:
/// maps and sets become arrays, doubles and big numbers simple strings, booleans integers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Simple(Vec<u8>),
    Error(Vec<u8>),
    Int(i64),
    /// A bulk or verbatim string; `None` is a null (RESP2 `$-1`, RESP3 `_`).
    Bulk(Option<Vec<u8>>),
    /// An array, map (flattened key, value, …), set or push; `None` is a RESP2 null array.
    Array(Option<Vec<Value>>),
}

impl Value {
    /// The bytes of a simple or bulk string.
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Simple(b) | Value::Bulk(Some(b)) => Some(b),
            _ => None,
        }
    }

    pub fn int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => self
                .bytes()
                .and_then(|b| std::str::from_utf8(b).ok()?.parse().ok()),
        }
    }

    pub fn items(&self) -> Option<&[Value]> {
        match self {
            Value::Array(Some(v)) => Some(v),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Bulk(None) | Value::Array(None))
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Value::Error(_))
    }

    /// Text for messages (lossy).
    pub fn text(&self) -> String {
        match self {
            Value::Simple(b) | Value::Error(b) | Value::Bulk(Some(b)) => {
                String::from_utf8_lossy(b).into_owned()
            }
            Value::Int(i) => i.to_string(),
            Value::Bulk(None) | Value::Array(None) => "(nil)".into(),
            Value::Array(Some(v)) => format!("[{} items]", v.len()),
        }
    }
}

/// Decodes the complete value at the start of `buf`; `Ok(None)` when more bytes are needed.
pub fn decode(buf: &[u8]) -> Result<Option<(Value, usize)>, RespError> {
    let Some(frame) = scan(buf)? else {
        return Ok(None);
    };
    // `scan` validated the structure and lengths; decoding cannot run past `frame.len`.
    let mut pos = 0;
    let v = value(&buf[..frame.len], &mut pos, 0)?;
    Ok(Some((v, frame.len)))
}

fn err(offset: usize, detail: &str) -> RespError {
    RespError {
        offset,
        detail: detail.to_string(),
    }
}

fn head<'a>(buf: &'a [u8], pos: &mut usize) -> Result<(u8, &'a [u8]), RespError> {
    let t = *buf.get(*pos).ok_or_else(|| err(*pos, "truncated"))?;
    let rest = &buf[*pos + 1..];
    let end = rest
        .windows(2)
        .position(|w| w == b"\r\n")
        .ok_or_else(|| err(*pos, "truncated"))?;
    *pos += end + 3;
    Ok((t, &rest[..end]))
}

fn num(s: &[u8], at: usize) -> Result<i64, RespError> {
    std::str::from_utf8(s)
        .ok()
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| err(at, "not an integer"))
}

fn value(buf: &[u8], pos: &mut usize, depth: usize) -> Result<Value, RespError> {
    if depth > MAX_DEPTH {
        return Err(err(*pos, "nested too deeply"));
    }
    let at = *pos;
    let (t, line) = head(buf, pos)?;
    Ok(match t {
        b'+' | b',' | b'(' => Value::Simple(line.to_vec()),
        b'-' => Value::Error(line.to_vec()),
        b':' => Value::Int(num(line, at)?),
        b'#' => Value::Int((line == b"t") as i64),
        b'_' => Value::Bulk(None),
        b'$' | b'=' | b'!' => {
            let n = num(line, at)?;
            if n < 0 {
                return Ok(Value::Bulk(None));
            }
            let n = n as usize;
            let data = buf
                .get(*pos..*pos + n)
                .ok_or_else(|| err(at, "truncated"))?;
            *pos += n + 2;
            let data = if t == b'=' && data.len() >= 4 {
                data[4..].to_vec() // verbatim: drop the "txt:" format prefix
            } else {
                data.to_vec()
            };
            if t == b'!' {
                Value::Error(data)
            } else {
                Value::Bulk(Some(data))
            }
        }
        b'*' | b'~' | b'>' | b'%' => {
            let n = num(line, at)?;
            if n < 0 {
                return Ok(Value::Array(None));
            }
            let n = n as usize * if t == b'%' { 2 } else { 1 };
            let mut items = Vec::with_capacity(n.min(1024));
            for _ in 0..n {
                items.push(value(buf, pos, depth + 1)?);
            }
            Value::Array(Some(items))
        }
        b'|' => {
            // An attribute: skip its entries, the annotated value follows.
            let n = num(line, at)? as usize * 2;
            for _ in 0..n {
                value(buf, pos, depth + 1)?;
            }
            value(buf, pos, depth + 1)?
        }
        other => return Err(err(at, &format!("unknown type byte {other:#04x}"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_resp2_and_resp3_shapes() {
        let (v, n) = decode(b"*3\r\n$3\r\nfoo\r\n:-7\r\n*-1\r\n+rest")
            .unwrap()
            .unwrap();
        assert_eq!(n, 23);
        assert_eq!(
            v,
            Value::Array(Some(vec![
                Value::Bulk(Some(b"foo".to_vec())),
                Value::Int(-7),
                Value::Array(None)
            ]))
        );
        let (v, _) = decode(b"%1\r\n+k\r\n,1.5\r\n").unwrap().unwrap();
        assert_eq!(v.items().unwrap()[1].bytes(), Some(&b"1.5"[..]));
        let (v, _) = decode(b"|1\r\n+a\r\n+b\r\n=7\r\ntxt:abc\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(v, Value::Bulk(Some(b"abc".to_vec())));
        assert!(decode(b"!3\r\nbad\r\n").unwrap().unwrap().0.is_error());
        assert_eq!(decode(b"$3\r\nab").unwrap(), None);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let mut b = Vec::new();
        for _ in 0..10_000 {
            b.extend_from_slice(b"*1\r\n");
        }
        b.extend_from_slice(b":1\r\n");
        assert!(decode(&b).is_err());
    }
}
