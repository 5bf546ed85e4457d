//! RESP2/RESP3 framing for the Redis capture front ends (proxy and replication tap).
//!
//! The proxy forwards bytes untouched, so what it needs is where each value ends and what
//! kind it is, found without copying: [`scan`]. Commands (arrays of bulk strings, or inline
//! commands) are parsed into argument vectors by [`parse_command`]. Bytes from the network
//! never panic these functions; malformed input is an error naming the offset.

/// Largest bulk string accepted (Redis's own `proto-max-bulk-len` default).
pub const MAX_BULK_LEN: usize = 512 << 20;
/// Most elements one value may contain in total, nested ones included.
pub const MAX_ELEMENTS: usize = 16 << 20;
/// Longest inline command or simple-type line.
pub const MAX_LINE: usize = 64 << 10;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed RESP at offset {offset}: {detail}")]
pub struct RespError {
    pub offset: usize,
    pub detail: String,
}

fn bad(offset: usize, detail: impl Into<String>) -> RespError {
    RespError {
        offset,
        detail: detail.into(),
    }
}

/// A complete value at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// Bytes it takes, attributes before it included.
    pub len: usize,
    /// Its type byte (`+ - : $ * _ , # ! = ( % ~ >`); an attribute (`|`) is skipped, the
    /// kind is that of the value it annotates.
    pub kind: u8,
}

impl Frame {
    /// An error reply (simple or bulk error).
    pub fn is_error(&self) -> bool {
        self.kind == b'-' || self.kind == b'!'
    }

    /// An out-of-band push (RESP3), which answers no command.
    pub fn is_push(&self) -> bool {
        self.kind == b'>'
    }
}

/// Reads the line at `pos` (up to CRLF); `Ok(None)` when the CRLF has not arrived.
fn line(buf: &[u8], pos: usize) -> Result<Option<(&[u8], usize)>, RespError> {
    let window = &buf[pos..buf.len().min(pos + MAX_LINE + 2)];
    match window.windows(2).position(|w| w == b"\r\n") {
        Some(i) => Ok(Some((&buf[pos..pos + i], pos + i + 2))),
        None if window.len() >= MAX_LINE + 2 => Err(bad(pos, "line longer than 64 KiB")),
        None => Ok(None),
    }
}

fn int(s: &[u8], at: usize) -> Result<i64, RespError> {
    std::str::from_utf8(s)
        .ok()
        .and_then(|t| t.parse::<i64>().ok())
        .ok_or_else(|| {
            bad(
                at,
                format!("not an integer: {:?}", String::from_utf8_lossy(s)),
            )
        })
}

/// Finds the complete value at the start of `buf`. `Ok(None)`: more bytes are needed.
pub fn scan(buf: &[u8]) -> Result<Option<Frame>, RespError> {
    let mut pos = 0;
    // Values still to read, in pre-order: a container adds its children.
    let mut remaining: usize = 1;
    let mut kind = None;
    while remaining > 0 {
        let Some(&t) = buf.get(pos) else {
            return Ok(None);
        };
        let Some((head, next)) = line(buf, pos + 1)? else {
            return Ok(None);
        };
        // The top value is the one read while it is the only one outstanding; an attribute
        // there is skipped (with its entries) and the value after it is the top one.
        if remaining == 1 && kind.is_none() && t != b'|' {
            kind = Some(t);
        }
        remaining -= 1;
        pos = next;
        match t {
            b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => {}
            b'$' | b'!' | b'=' => {
                let n = int(head, pos)?;
                if n < 0 {
                    if t != b'$' || n != -1 {
                        return Err(bad(pos, format!("bad length {n}")));
                    }
                    continue; // RESP2 null bulk
                }
                let n = n as usize;
                if n > MAX_BULK_LEN {
                    return Err(bad(
                        pos,
                        format!("bulk of {n} bytes exceeds {MAX_BULK_LEN}"),
                    ));
                }
                if buf.len() < pos + n + 2 {
                    return Ok(None);
                }
                if &buf[pos + n..pos + n + 2] != b"\r\n" {
                    return Err(bad(pos + n, "bulk not followed by CRLF"));
                }
                pos += n + 2;
            }
            b'*' | b'~' | b'>' | b'%' | b'|' => {
                let n = int(head, pos)?;
                if n < 0 {
                    if t != b'*' || n != -1 {
                        return Err(bad(pos, format!("bad count {n}")));
                    }
                    continue; // RESP2 null array
                }
                let n = n as usize;
                let children = match t {
                    b'%' => n.checked_mul(2),
                    // An attribute map is followed by the value it annotates.
                    b'|' => n.checked_mul(2).and_then(|c| c.checked_add(1)),
                    _ => Some(n),
                };
                remaining = children
                    .and_then(|c| remaining.checked_add(c))
                    .filter(|&r| r <= MAX_ELEMENTS)
                    .ok_or_else(|| bad(pos, format!("more than {MAX_ELEMENTS} elements")))?;
            }
            other => {
                return Err(bad(
                    pos - head.len() - 3,
                    format!("unknown type byte {other:#04x}"),
                ))
            }
        }
    }
    Ok(Some(Frame {
        len: pos,
        kind: kind.expect("at least one value read"),
    }))
}

/// Parses the command at the start of `buf`: an array of bulk strings, or an inline command
/// (space-separated words on one line). Returns the arguments and the bytes consumed;
/// `Ok(None)` when more bytes are needed.
pub fn parse_command(buf: &[u8]) -> Result<Option<Parsed>, RespError> {
    let mut spans = Vec::new();
    Ok(parse_command_spans(buf, &mut spans)?
        .map(|n| (spans.iter().map(|r| buf[r.clone()].to_vec()).collect(), n)))
}

/// [`parse_command`] without copying: the arguments' places in `buf` go to `spans`
/// (cleared first), and the bytes the command took are returned. The proxy frames every
/// request this way: copying a 1 KiB value to look at the command's name was a measurable
/// part of its CPU.
pub fn parse_command_spans(
    buf: &[u8],
    spans: &mut Vec<std::ops::Range<usize>>,
) -> Result<Option<usize>, RespError> {
    spans.clear();
    match buf.first() {
        None => Ok(None),
        Some(b'*') => {
            let Some(frame) = scan(buf)? else {
                return Ok(None);
            };
            let Some((head, mut pos)) = line(buf, 1)? else {
                return Ok(None);
            };
            let n = int(head, 1)?;
            for _ in 0..n.max(0) {
                if buf.get(pos) != Some(&b'$') {
                    return Err(bad(pos, "a command's arguments must be bulk strings"));
                }
                let (h, start) = line(buf, pos + 1)?.ok_or_else(|| bad(pos, "truncated"))?;
                let len =
                    usize::try_from(int(h, pos + 1)?).map_err(|_| bad(pos, "null argument"))?;
                spans.push(start..start + len);
                pos = start + len + 2;
            }
            debug_assert_eq!(pos, frame.len);
            Ok(Some(frame.len))
        }
        Some(_) => {
            let Some((text, next)) = line(buf, 0)? else {
                return Ok(None);
            };
            let mut at = 0;
            for w in text.split(|b| *b == b' ' || *b == b'\t') {
                if !w.is_empty() {
                    spans.push(at..at + w.len());
                }
                at += w.len() + 1;
            }
            Ok(Some(next))
        }
    }
}

/// A parsed command: its arguments and the bytes it took.
pub type Parsed = (Vec<Vec<u8>>, usize);

/// Encodes a command as an array of bulk strings.
pub fn encode_command(argv: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + argv.iter().map(|a| a.len() + 16).sum::<usize>());
    encode_command_into(&mut out, argv);
    out
}

/// [`encode_command`] appended to `out`: replay and restore write millions of commands
/// into one buffer, and a buffer (or a formatted length) per command was a third of
/// replay's CPU.
pub fn encode_command_into(out: &mut Vec<u8>, argv: &[Vec<u8>]) {
    out.push(b'*');
    push_len(out, argv.len());
    for a in argv {
        out.push(b'$');
        push_len(out, a.len());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// `n` in decimal, then CRLF.
fn push_len(out: &mut Vec<u8>, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_encode_as_arrays_of_bulk_strings() {
        let long = vec![b'x'; 1234];
        let argv = vec![b"SET".to_vec(), Vec::new(), long.clone()];
        let mut want = b"*3\r\n$3\r\nSET\r\n$0\r\n\r\n$1234\r\n".to_vec();
        want.extend_from_slice(&long);
        want.extend_from_slice(b"\r\n");
        assert_eq!(encode_command(&argv), want);
        let mut out = b"prefix".to_vec();
        encode_command_into(&mut out, &[]);
        assert_eq!(out, b"prefix*0\r\n");
        assert_eq!(parse_command(&want).unwrap().unwrap(), (argv, want.len()));
    }

    #[test]
    fn scans_every_resp3_type_and_needs_more_on_every_prefix() {
        let samples: &[&[u8]] = &[
            b"+OK\r\n",
            b"-ERR wrong type\r\n",
            b":42\r\n",
            b"$5\r\nhello\r\n",
            b"$-1\r\n",
            b"*-1\r\n",
            b"*2\r\n$3\r\nfoo\r\n:1\r\n",
            b"_\r\n",
            b",3.14\r\n",
            b"#t\r\n",
            b"!21\r\nSYNTAX invalid syntax\r\n",
            b"=15\r\ntxt:Some string\r\n",
            b"(3492890328409238509324850943850943825024385\r\n",
            b"%2\r\n+first\r\n:1\r\n+second\r\n:2\r\n",
            b"~2\r\n+a\r\n+b\r\n",
            b">3\r\n+message\r\n+chan\r\n+hi\r\n",
            b"|1\r\n+ttl\r\n:3600\r\n*1\r\n:2\r\n",
            b"*3\r\n*1\r\n*0\r\n%0\r\n~1\r\n$0\r\n\r\n",
        ];
        for s in samples {
            let f = scan(s).unwrap().unwrap();
            assert_eq!(f.len, s.len(), "{}", String::from_utf8_lossy(s));
            for cut in 0..s.len() {
                assert_eq!(
                    scan(&s[..cut]).unwrap(),
                    None,
                    "prefix {cut} of {}",
                    String::from_utf8_lossy(s)
                );
            }
            let mut two = s.to_vec();
            two.extend_from_slice(b"+next\r\n");
            assert_eq!(scan(&two).unwrap().unwrap().len, s.len());
        }
        assert!(scan(b"-ERR x\r\n").unwrap().unwrap().is_error());
        assert_eq!(
            scan(b"|1\r\n+a\r\n+b\r\n-ERR\r\n").unwrap().unwrap().kind,
            b'-'
        );
        assert!(scan(b">1\r\n+x\r\n").unwrap().unwrap().is_push());
    }

    #[test]
    fn refuses_malformed_and_hostile_input() {
        assert!(scan(b"?x\r\n").is_err());
        assert!(scan(b"$abc\r\n").is_err());
        assert!(scan(b"$-2\r\n").is_err());
        assert!(scan(b"$3\r\nabcXY").is_err());
        assert!(scan(b"*99999999999\r\n").is_err());
        assert!(scan(format!("${}\r\n", MAX_BULK_LEN + 1).as_bytes()).is_err());
        assert!(scan(&[b'+'; MAX_LINE + 10]).is_err());
        assert!(parse_command(b"*1\r\n:1\r\n").is_err());
        assert!(parse_command(b"*1\r\n$-1\r\n").is_err());
    }

    #[test]
    fn commands_round_trip_and_inline_commands_parse() {
        let argv = vec![
            b"HSET".to_vec(),
            b"doc:1".to_vec(),
            vec![0, 13, 10, 255],
            Vec::new(),
        ];
        let enc = encode_command(&argv);
        assert_eq!(parse_command(&enc).unwrap(), Some((argv, enc.len())));
        assert_eq!(
            parse_command(b"SET  k   v\r\nGET k\r\n").unwrap(),
            Some((vec![b"SET".to_vec(), b"k".to_vec(), b"v".to_vec()], 12))
        );
        assert_eq!(parse_command(b"*2\r\n$3\r\nGET\r\n$1\r\n").unwrap(), None);
    }
}
