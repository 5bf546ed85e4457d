//! One-line, human-readable summaries of record payloads. Payloads are never dumped raw:
//! vectors are binary and values may be sensitive.

use vecwal_format::{Kind, Operation, Record};

const MAX_ARGS: usize = 8;
const MAX_ARG_CHARS: usize = 40;

/// A one-line description of what the record does.
pub fn summarize(r: &Record) -> String {
    match Operation::decode(r.kind, &r.payload) {
        Ok(op) => summarize_op(&op),
        Err(_) if matches!(r.kind, Kind::Unknown(_)) => {
            format!(
                "<record kind {} unknown to this vecwal: {} payload bytes>",
                r.kind.code(),
                r.payload.len()
            )
        }
        Err(e) => format!(
            "<undecodable {} payload of {} bytes: {e}>",
            r.kind.name(),
            r.payload.len()
        ),
    }
}

fn summarize_op(op: &Operation) -> String {
    match op {
        Operation::RedisCommand { argv } => argv_line(argv),
        Operation::RedisMulti { commands } => {
            let parts: Vec<String> = commands.iter().take(4).map(|a| argv_line(a)).collect();
            let more = commands.len().saturating_sub(4);
            let tail = if more > 0 {
                format!("; … (+{more} commands)")
            } else {
                String::new()
            };
            format!("MULTI[{}] {}{tail}", commands.len(), parts.join("; "))
        }
        Operation::QdrantRest {
            method,
            path,
            content_type,
            body,
        } => format!("{method} {path} ({}{})", ct(content_type), size(body.len())),
        Operation::QdrantGrpc { path, message } => format!("{path} ({})", size(message.len())),
        Operation::StreamStart {
            source,
            vecwal_version,
        } => {
            format!("stream start: source {source}, vecwal {vecwal_version}")
        }
        Operation::Snapshot {
            snapshot_lsn,
            size: n,
            sha256,
            name,
        } => format!(
            "snapshot aligned to LSN {snapshot_lsn}: {name} ({}, sha256 {})",
            size(*n as usize),
            sha256
                .iter()
                .take(6)
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
                + "…"
        ),
        Operation::RestorePoint { name } => format!("restore point {name:?}"),
    }
}

fn ct(content_type: &str) -> String {
    if content_type.is_empty() {
        String::new()
    } else {
        format!("{content_type}, ")
    }
}

fn size(n: usize) -> String {
    match n {
        n if n < 10 * 1024 => format!("{n} bytes"),
        n if n < 10 << 20 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{:.1} MiB", n as f64 / (1 << 20) as f64),
    }
}

fn argv_line(argv: &[Vec<u8>]) -> String {
    let mut parts: Vec<String> = argv.iter().take(MAX_ARGS).map(|a| arg(a)).collect();
    if argv.len() > MAX_ARGS {
        parts.push(format!("… (+{} args)", argv.len() - MAX_ARGS));
    }
    parts.join(" ")
}

/// Printable text is shown (quoted when it has spaces), binary as its size.
fn arg(a: &[u8]) -> String {
    match std::str::from_utf8(a) {
        Ok(s) if !s.chars().any(|c| c.is_control()) && s.chars().count() <= MAX_ARG_CHARS => {
            if s.is_empty() || s.contains(' ') || s.contains('"') {
                format!("{s:?}")
            } else {
                s.to_string()
            }
        }
        Ok(s) if !s.chars().any(|c| c.is_control()) => {
            let head: String = s.chars().take(MAX_ARG_CHARS).collect();
            format!("{head:?}…({} bytes)", a.len())
        }
        _ => format!("<{} bytes>", a.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_arguments_are_summarized_not_dumped() {
        let argv = vec![
            b"HSET".to_vec(),
            b"doc:1".to_vec(),
            b"emb".to_vec(),
            vec![0x80, 0, 1, 2],
            b"a b".to_vec(),
        ];
        assert_eq!(argv_line(&argv), r#"HSET doc:1 emb <4 bytes> "a b""#);
        let long = vec![b'x'; 100];
        assert_eq!(arg(&long), format!("\"{}\"…(100 bytes)", "x".repeat(40)));
    }
}
