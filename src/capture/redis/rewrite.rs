//! Deterministic forms (promise 4): what the proxy logs for a write that succeeded, given
//! the upstream's reply and the time it was applied. Relative expirations become absolute,
//! random and reply-dependent commands become their effect, as Redis itself replicates them
//! (EXPIRE→PEXPIREAT, SET EX→SET PXAT, SPOP→SREM, INCRBYFLOAT→SET KEEPTTL, XADD *→its id,
//! a blocking pop→the pop it did). A write that changed nothing logs nothing.

use crate::protocol::resp_value::Value;

pub type Argv = Vec<Vec<u8>>;

fn lower(a: &[u8]) -> String {
    String::from_utf8_lossy(a).to_ascii_lowercase()
}

fn num(a: &[u8]) -> Option<i64> {
    std::str::from_utf8(a).ok()?.parse().ok()
}

fn b(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

fn cmd(name: &str, rest: &[&[u8]]) -> Argv {
    let mut v = vec![b(name)];
    v.extend(rest.iter().map(|a| a.to_vec()));
    v
}

/// An absolute time in ms from an expiry option and its value, `None` when malformed (the
/// upstream accepted it, so that does not happen; the write is then logged verbatim).
fn absolute_ms(unit: &str, value: &[u8], now_ms: i64) -> Option<i64> {
    let v = num(value)?;
    Some(match unit {
        "ex" => now_ms.checked_add(v.checked_mul(1000)?)?,
        "px" => now_ms.checked_add(v)?,
        "exat" => v.checked_mul(1000)?,
        "pxat" => v,
        _ => return None,
    })
}

/// The commands to log for `argv`, which the upstream applied with `reply` at `now_ms`.
/// Empty: the write had no effect. Commands this does not know are logged as they are.
pub fn deterministic(argv: &[Vec<u8>], reply: &Value, now_ms: i64) -> Vec<Argv> {
    rewrite(argv, reply, now_ms).unwrap_or_else(|| vec![argv.to_vec()])
}

fn rewrite(argv: &[Vec<u8>], reply: &Value, now_ms: i64) -> Option<Vec<Argv>> {
    let name = lower(argv.first()?);
    let arg = |i: usize| argv.get(i).map(Vec::as_slice);
    let zero = reply.int() == Some(0);
    Some(match name.as_str() {
        "expire" | "pexpire" | "expireat" => {
            if zero {
                return Some(vec![]);
            }
            let unit = match name.as_str() {
                "expire" => "ex",
                "pexpire" => "px",
                _ => "exat",
            };
            let at = absolute_ms(unit, arg(2)?, now_ms)?.to_string();
            let mut out = cmd("PEXPIREAT", &[arg(1)?, at.as_bytes()]);
            out.extend(argv[3..].iter().cloned()); // NX | XX | GT | LT
            vec![out]
        }
        "pexpireat" | "persist" if zero => vec![],
        "setex" | "psetex" => {
            let unit = if name == "setex" { "ex" } else { "px" };
            let at = absolute_ms(unit, arg(2)?, now_ms)?.to_string();
            vec![cmd("SET", &[arg(1)?, arg(3)?, b"PXAT", at.as_bytes()])]
        }
        "set" => return set(argv, reply, now_ms),
        "getex" => {
            if reply.is_null() {
                return Some(vec![]);
            }
            match argv.get(2).map(|o| lower(o)) {
                None => vec![],
                Some(o) if o == "persist" => vec![cmd("PERSIST", &[arg(1)?])],
                Some(o) => {
                    let at = absolute_ms(&o, arg(3)?, now_ms)?.to_string();
                    vec![cmd("PEXPIREAT", &[arg(1)?, at.as_bytes()])]
                }
            }
        }
        "getdel" if reply.is_null() => vec![],
        "getdel" => vec![cmd("DEL", &[arg(1)?])],
        "spop" => {
            let members: Vec<&[u8]> = match reply {
                Value::Array(Some(items)) => items.iter().filter_map(Value::bytes).collect(),
                v => v.bytes().into_iter().collect(),
            };
            if members.is_empty() {
                return Some(vec![]);
            }
            let mut out = cmd("SREM", &[arg(1)?]);
            out.extend(members.iter().map(|m| m.to_vec()));
            vec![out]
        }
        "incrbyfloat" => vec![cmd("SET", &[arg(1)?, reply.bytes()?, b"KEEPTTL"])],
        "hincrbyfloat" => vec![cmd("HSET", &[arg(1)?, arg(2)?, reply.bytes()?])],
        "xadd" => return xadd(argv, reply),
        "hexpire" | "hpexpire" | "hexpireat" => {
            let unit = match name.as_str() {
                "hexpire" => "ex",
                "hpexpire" => "px",
                _ => "exat",
            };
            let at = absolute_ms(unit, arg(2)?, now_ms)?.to_string();
            let mut out = cmd("HPEXPIREAT", &[arg(1)?, at.as_bytes()]);
            out.extend(argv[3..].iter().cloned());
            vec![out]
        }
        "hgetex" | "hsetex" => return hash_ex(&name, argv, reply, now_ms),
        "restore" => {
            let ttl = num(arg(2)?)?;
            let abs = argv[4..].iter().any(|a| lower(a) == "absttl");
            if ttl == 0 || abs {
                return None;
            }
            let at = (now_ms + ttl).to_string();
            let mut out = argv.to_vec();
            out[2] = b(&at);
            out.push(b("ABSTTL"));
            vec![out]
        }
        // Blocking pops: log the pop they did, not the wait.
        "blpop" | "brpop" => {
            let items = reply.items().filter(|i| i.len() == 2);
            let Some(key) = items.and_then(|i| i[0].bytes()) else {
                return Some(vec![]);
            };
            vec![cmd(if name == "blpop" { "LPOP" } else { "RPOP" }, &[key])]
        }
        "blmove" | "brpoplpush" => {
            if reply.is_null() {
                return Some(vec![]);
            }
            if name == "blmove" {
                vec![cmd("LMOVE", &[arg(1)?, arg(2)?, arg(3)?, arg(4)?])]
            } else {
                vec![cmd("RPOPLPUSH", &[arg(1)?, arg(2)?])]
            }
        }
        "bzpopmin" | "bzpopmax" => {
            let items = reply.items().filter(|i| i.len() >= 2);
            let Some(i) = items else {
                return Some(vec![]);
            };
            vec![cmd("ZREM", &[i[0].bytes()?, i[1].bytes()?])]
        }
        "blmpop" | "bzmpop" => {
            let Some(i) = reply.items().filter(|i| i.len() == 2) else {
                return Some(vec![]);
            };
            let key = i[0].bytes()?;
            let popped = i[1].items()?;
            if name == "bzmpop" {
                let mut out = cmd("ZREM", &[key]);
                for p in popped {
                    out.push(p.items()?.first()?.bytes()?.to_vec());
                }
                vec![out]
            } else {
                let left = argv.iter().any(|a| lower(a) == "left");
                let n = popped.len().to_string();
                vec![cmd(
                    if left { "LPOP" } else { "RPOP" },
                    &[key, n.as_bytes()],
                )]
            }
        }
        _ => return None,
    })
}

/// SET with its options: applied or not (NX/XX, with or without GET), the expiry absolute.
fn set(argv: &[Vec<u8>], reply: &Value, now_ms: i64) -> Option<Vec<Argv>> {
    let opts: Vec<String> = argv[3..].iter().map(|a| lower(a)).collect();
    let has = |o: &str| opts.iter().any(|x| x == o);
    let applied = match (has("get"), has("nx"), has("xx")) {
        (false, _, _) => !reply.is_null(),
        (true, true, _) => reply.is_null(),
        (true, _, true) => !reply.is_null(),
        (true, false, false) => true,
    };
    if !applied {
        return Some(vec![]);
    }
    let mut out = cmd("SET", &[argv.get(1)?, argv.get(2)?]);
    let mut i = 0;
    while i < opts.len() {
        match opts[i].as_str() {
            u @ ("ex" | "px" | "exat" | "pxat") => {
                let at = absolute_ms(u, argv.get(3 + i + 1)?, now_ms)?;
                out.extend([b("PXAT"), b(&at.to_string())]);
                i += 1;
            }
            "keepttl" => out.push(b("KEEPTTL")),
            _ => {} // NX, XX, GET: the outcome is known
        }
        i += 1;
    }
    Some(vec![out])
}

/// XADD with an auto id: the id Redis assigned, from the reply.
fn xadd(argv: &[Vec<u8>], reply: &Value) -> Option<Vec<Argv>> {
    let Some(id) = reply.bytes() else {
        return Some(vec![]); // NOMKSTREAM on a missing stream: nil, nothing added
    };
    let mut i = 2;
    while i < argv.len() {
        match lower(&argv[i]).as_str() {
            "nomkstream" | "keepref" | "delref" | "acked" => i += 1,
            "maxlen" | "minid" => {
                i += 1;
                if matches!(argv.get(i).map(|a| a.as_slice()), Some(b"=") | Some(b"~")) {
                    i += 1;
                }
                i += 1;
            }
            "limit" => i += 2,
            _ => break,
        }
    }
    let mut out = argv.to_vec();
    // Approximate trimming depends on the stream's node layout; replay trims exactly.
    for a in out.iter_mut().take(i) {
        if a.as_slice() == b"~" {
            *a = b("=");
        }
    }
    *out.get_mut(i)? = id.to_vec();
    Some(vec![out])
}

/// HGETEX / HSETEX (Redis 8): field expirations made absolute.
fn hash_ex(name: &str, argv: &[Vec<u8>], reply: &Value, now_ms: i64) -> Option<Vec<Argv>> {
    // From the options on: the key itself may be named "fields".
    let fields_at = 2 + argv.get(2..)?.iter().position(|a| lower(a) == "fields")?;
    let opts: Vec<String> = argv[2..fields_at].iter().map(|a| lower(a)).collect();
    let key = argv.get(1)?;
    let mut expiry = None;
    let mut persist = false;
    for (j, o) in opts.iter().enumerate() {
        match o.as_str() {
            u @ ("ex" | "px" | "exat" | "pxat") => {
                expiry = Some(absolute_ms(u, argv.get(2 + j + 1)?, now_ms)?)
            }
            "persist" => persist = true,
            _ => {}
        }
    }
    if name == "hsetex" {
        if reply.int() == Some(0) {
            return Some(vec![]);
        }
        let mut out = cmd("HSETEX", &[key]);
        if let Some(at) = expiry {
            out.extend([b("PXAT"), b(&at.to_string())]);
        } else if opts.iter().any(|o| o == "keepttl") {
            out.push(b("KEEPTTL"));
        }
        out.extend(argv[fields_at..].iter().cloned());
        return Some(vec![out]);
    }
    let fields = &argv[fields_at..];
    Some(match (expiry, persist) {
        (Some(at), _) => {
            let mut out = cmd("HPEXPIREAT", &[key, at.to_string().as_bytes()]);
            out.extend(fields.iter().cloned());
            vec![out]
        }
        (None, true) => {
            let mut out = cmd("HPERSIST", &[key]);
            out.extend(fields.iter().cloned());
            vec![out]
        }
        (None, false) => vec![],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(words: &[&str]) -> Argv {
        words.iter().map(|w| w.as_bytes().to_vec()).collect()
    }
    fn ok() -> Value {
        Value::Simple(b"OK".to_vec())
    }
    fn bulk(s: &str) -> Value {
        Value::Bulk(Some(s.as_bytes().to_vec()))
    }
    const NOW: i64 = 1_700_000_000_000;

    #[test]
    fn relative_times_become_absolute() {
        let d = |w: &[&str], r: Value| deterministic(&a(w), &r, NOW);
        assert_eq!(
            d(&["EXPIRE", "k", "10", "NX"], Value::Int(1)),
            vec![a(&["PEXPIREAT", "k", "1700000010000", "NX"])]
        );
        assert!(d(&["expire", "k", "10"], Value::Int(0)).is_empty());
        assert_eq!(
            d(&["SET", "k", "v", "EX", "5", "NX"], ok()),
            vec![a(&["SET", "k", "v", "PXAT", "1700000005000"])]
        );
        assert!(d(&["SET", "k", "v", "NX"], Value::Bulk(None)).is_empty());
        assert!(d(&["SET", "k", "v", "NX", "GET"], bulk("old")).is_empty());
        assert_eq!(d(&["SET", "k", "v", "XX", "GET"], bulk("old")).len(), 1);
        assert_eq!(
            d(&["SETEX", "k", "2", "v"], ok()),
            vec![a(&["SET", "k", "v", "PXAT", "1700000002000"])]
        );
        assert_eq!(
            d(&["GETEX", "k", "PX", "7"], bulk("v")),
            vec![a(&["PEXPIREAT", "k", "1700000000007"])]
        );
        assert!(d(&["GETEX", "k"], bulk("v")).is_empty());
        assert_eq!(
            d(&["RESTORE", "k", "100", "payload"], ok()),
            vec![a(&["RESTORE", "k", "1700000000100", "payload", "ABSTTL"])]
        );
        assert_eq!(
            d(
                &["HEXPIRE", "h", "1", "FIELDS", "1", "f"],
                Value::Array(Some(vec![]))
            ),
            vec![a(&["HPEXPIREAT", "h", "1700000001000", "FIELDS", "1", "f"])]
        );
    }

    #[test]
    fn random_and_reply_dependent_writes_log_their_effect() {
        let d = |w: &[&str], r: Value| deterministic(&a(w), &r, NOW);
        assert_eq!(
            d(
                &["SPOP", "s", "2"],
                Value::Array(Some(vec![bulk("x"), bulk("y")]))
            ),
            vec![a(&["SREM", "s", "x", "y"])]
        );
        assert!(d(&["SPOP", "s"], Value::Bulk(None)).is_empty());
        assert_eq!(
            d(&["INCRBYFLOAT", "f", "0.1"], bulk("1.1")),
            vec![a(&["SET", "f", "1.1", "KEEPTTL"])]
        );
        assert_eq!(
            d(
                &["XADD", "st", "MAXLEN", "~", "10", "*", "f", "v"],
                bulk("5-0")
            ),
            vec![a(&["XADD", "st", "MAXLEN", "=", "10", "5-0", "f", "v"])]
        );
        assert_eq!(
            d(
                &["BLPOP", "a", "b", "0"],
                Value::Array(Some(vec![bulk("b"), bulk("x")]))
            ),
            vec![a(&["LPOP", "b"])]
        );
        assert!(d(&["BLPOP", "a", "1"], Value::Array(None)).is_empty());
        assert_eq!(
            d(&["XADD", "st", "KEEPREF", "*", "f", "v"], bulk("6-0")),
            vec![a(&["XADD", "st", "KEEPREF", "6-0", "f", "v"])]
        );
        assert_eq!(
            d(
                &["HSETEX", "fields", "EX", "1", "FIELDS", "1", "f", "v"],
                Value::Int(1)
            ),
            vec![a(&[
                "HSETEX",
                "fields",
                "PXAT",
                "1700000001000",
                "FIELDS",
                "1",
                "f",
                "v"
            ])]
        );
        assert_eq!(
            d(&["HSET", "h", "f", "v"], Value::Int(1)),
            vec![a(&["HSET", "h", "f", "v"])]
        );
    }
}
