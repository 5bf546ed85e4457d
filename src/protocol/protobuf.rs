//! The few lines of protobuf reading vecwal needs: walking a message's fields without a
//! schema, to read a collection name, point ids or a `wait` flag from a Qdrant gRPC
//! request. Malformed input gives `None`, never a panic.

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
