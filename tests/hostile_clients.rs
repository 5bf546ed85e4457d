//! Malformed and hostile input on every proxy listener, against real Redis and Qdrant: the
//! offending connection gets an error and is closed, every other connection keeps working
//! and logging, and stalled half-sent requests hold no more memory than they sent.

#[path = "support/proxy.rs"]
mod proxy;
#[path = "support/qdrant.rs"]
mod qdrant;
#[path = "support/qdrant_proxy.rs"]
mod qdrant_proxy;
#[path = "support/redis.rs"]
mod redis;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use proxy::{words, Proxied};
use redis::Redis;

/// This process's resident memory (the proxy runs in it), in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap();
    kb << 10
}

/// Sends `bytes` and reads until the peer closes (or 30 s pass): what it answered.
fn answer_then_close(addr: &str, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let closed = s.read_to_end(&mut out).is_ok();
    let text = String::from_utf8_lossy(&out).into_owned();
    assert!(closed, "the connection stayed open after {text:?}");
    text
}

#[test]
fn malformed_resp_gets_redis_own_error_and_stalled_clients_hold_only_what_they_sent() {
    let server = Redis::start(&[]);
    let p = Proxied::start(&server, None);
    let a = p.addr();
    let mut c = p.conn();
    words(&mut c, &["SET", "before", "1"]);

    let cases: [(&str, Vec<u8>); 4] = [
        ("a bulk over 512 MB", b"*1\r\n$600000000\r\n".to_vec()),
        ("a non-numeric count", b"*abc\r\n".to_vec()),
        ("an inline line over 64 KiB", vec![b'a'; 70 << 10]),
        ("an integer for an argument", b"*1\r\n:5\r\n".to_vec()),
    ];
    for (what, bytes) in &cases {
        let got = answer_then_close(&a, bytes);
        assert!(got.starts_with("-ERR Protocol error"), "{what}: {got:?}");
        words(&mut c, &["SET", what, "still logged"]);
    }

    // Stalled half-sent commands: each declared 100 MB and sent 64 KiB.
    let before = rss();
    let stalled: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut s = TcpStream::connect(&a).unwrap();
            s.write_all(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100000000\r\n")
                .unwrap();
            s.write_all(&[b'x'; 64 << 10]).unwrap();
            s
        })
        .collect();
    words(&mut c, &["SET", "during", "1"]);
    assert_eq!(
        words(&mut c, &["GET", "during"]),
        vecwal::protocol::resp_value::Value::Bulk(Some(b"1".to_vec()))
    );
    let grown = rss().saturating_sub(before);
    assert!(
        grown < 100 << 20,
        "200 stalled clients that sent 12.5 MiB grew the process by {} MiB",
        grown >> 20
    );
    drop(stalled);
    p.shipped_lsn("during");
    let logged: Vec<String> = p
        .logged_commands()
        .into_iter()
        .flat_map(|(_, cmds)| cmds.into_iter().filter_map(|c| c.get(1).cloned()))
        .collect();
    for key in ["before", "during"]
        .iter()
        .chain(cases.iter().map(|(w, _)| w))
    {
        assert!(logged.iter().any(|k| k == key), "{key} logged: {logged:?}");
    }
    assert!(
        !logged.iter().any(|k| k == "k"),
        "no stalled write was logged"
    );
}

#[test]
fn malformed_http_is_answered_and_closed_and_an_oversized_body_refused_unread() {
    let Some(q) = qdrant::Qdrant::start(None) else {
        return;
    };
    let p = qdrant_proxy::Proxied::start(&q);
    let a = p.addr();
    let (s, b) = qdrant::http(
        &a,
        "PUT",
        "/collections/c",
        Some(r#"{"vectors":{"size":2,"distance":"Dot"}}"#),
        &[],
    );
    assert_eq!(s, 200, "{b}");

    let got = answer_then_close(&a, b"GARBAGE\r\n\r\n");
    assert!(got.starts_with("HTTP/1.1 400"), "{got:?}");
    let got = answer_then_close(
        &a,
        b"PUT /collections/c/points HTTP/1.1\r\nContent-Length: nope\r\n\r\n",
    );
    assert!(got.starts_with("HTTP/1.1 400"), "{got:?}");

    // A body said to be 1 GB: refused before any of it is sent.
    let mut s = TcpStream::connect(&a).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(
        b"PUT /collections/c/points?wait=true HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n{",
    )
    .unwrap();
    let mut head = [0u8; 512];
    let n = s.read(&mut head).unwrap();
    let head = String::from_utf8_lossy(&head[..n]);
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert!(head.contains("over the"), "{head}");

    // Half-sent requests stalled on many connections; others go on.
    let stalled: Vec<TcpStream> = (0..100)
        .map(|_| {
            let mut s = TcpStream::connect(&a).unwrap();
            s.write_all(b"PUT /collections/c/points HTTP/1.1\r\nHost: x\r\nContent-Le")
                .unwrap();
            s
        })
        .collect();
    let (s, b) = qdrant::http(
        &a,
        "PUT",
        "/collections/c/points?wait=true",
        Some(r#"{"points":[{"id":1,"vector":[1,2]}]}"#),
        &[],
    );
    assert_eq!(s, 200, "{b}");
    drop(stalled);
    let (s, b) = qdrant::http(&q.http_addr(), "GET", "/collections/c", None, &[]);
    assert_eq!(s, 200);
    assert!(
        b.contains("\"points_count\":1"),
        "only the sound write reached Qdrant: {b}"
    );
}
