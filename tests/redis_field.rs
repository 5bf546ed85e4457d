//! What broke when Redis's own test suite ran through the proxy: blocking commands with
//! movable keys, running scripts, CLIENT PAUSE, timed-out reads, killed scripts, chained
//! blocking moves, EVALSHA of a script the proxy never saw, UNSUBSCRIBE without a
//! subscription, protocol errors, PFCOUNT's cached count, and VADD updates. Each test runs
//! the case through the proxy on a real Redis 8.2 with its defaults, then restores the log
//! into a fresh Redis and compares the whole keyspace with the original.

#[path = "support/proxy.rs"]
mod proxy;
#[path = "support/redis.rs"]
mod redis;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use proxy::{assert_same, dump, flat, words, Proxied};
use redis::{Conn, Redis};
use vecwal::restore::Target;

/// Restores everything logged into a fresh Redis and compares it with `original`.
fn restore_and_compare(p: &mut Proxied, original: &Redis, dbs: u32) {
    let want = dump(&mut original.conn(), dbs);
    p.stop();
    let target = Redis::start(&[]);
    p.restore_into(&target, Target::Latest);
    assert_same(&dump(&mut target.conn(), dbs), &want, "restored");
}

/// Waits until `client list` on `server` shows a client blocked in `cmd`.
fn wait_blocked(server: &Redis, cmd: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut c = server.conn();
    loop {
        let list = words(&mut c, &["CLIENT", "LIST", "TYPE", "normal"]).text();
        if list.contains(&format!("cmd={cmd}")) && list.contains("flags=b") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no client blocked in {cmd}: {list}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A connection whose reads give up after `secs`: a reply that never comes fails the test
/// instead of hanging it.
fn impatient(p: &Proxied, secs: u64) -> Conn {
    let s = TcpStream::connect(p.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(secs))).unwrap();
    Conn::from_stream(s)
}

#[test]
fn blocking_commands_with_movable_keys_leave_every_other_writer_alone() {
    let server = Redis::start(&[]);
    let mut p = Proxied::start(&server, None);
    let mut setup = p.conn();
    words(&mut setup, &["XGROUP", "CREATE", "s", "g", "$", "MKSTREAM"]);
    let blocked: Vec<_> = [
        vec!["BLMPOP", "0", "1", "q", "LEFT"],
        vec!["BZMPOP", "0", "1", "z", "MIN"],
        vec![
            "XREADGROUP",
            "GROUP",
            "g",
            "c1",
            "BLOCK",
            "0",
            "STREAMS",
            "s",
            ">",
        ],
    ]
    .into_iter()
    .map(|argv| {
        let addr = p.addr();
        let name = argv[0].to_ascii_lowercase();
        let t = std::thread::spawn(move || {
            let mut c = Conn::connect(&addr);
            words(&mut c, &argv)
        });
        wait_blocked(&server, &name);
        t
    })
    .collect();
    // Three clients blocked on keys only found by parsing their commands: writes to other
    // keys, and the very writes that wake them, go through at once.
    let mut c = impatient(&p, 10);
    assert_eq!(words(&mut c, &["SET", "unrelated", "1"]).text(), "OK");
    words(&mut c, &["LPUSH", "q", "x"]);
    words(&mut c, &["ZADD", "z", "1", "m"]);
    words(&mut c, &["XADD", "s", "1-1", "f", "v"]);
    let answers: Vec<Vec<String>> = blocked
        .into_iter()
        .map(|t| flat(&t.join().unwrap()))
        .collect();
    assert_eq!(answers[0], ["q", "x"]);
    assert_eq!(answers[1], ["z", "m", "1"]);
    assert_eq!(answers[2], ["s", "1-1", "f", "v"]);
    words(&mut c, &["SET", "after", "1"]);
    restore_and_compare(&mut p, &server, 1);
}

#[test]
fn a_running_script_is_answered_busy_and_a_killed_one_leaves_nothing_to_replay() {
    let server = Redis::start(&[]);
    let mut p = Proxied::start(&server, None);
    let mut c = impatient(&p, 10);
    words(&mut c, &["SET", "before", "1"]);
    let addr = p.addr();
    let spinner = std::thread::spawn(move || {
        let mut s = Conn::connect(&addr);
        words(&mut s, &["EVAL", "while true do end", "0"])
    });
    // Redis answers BUSY once the script has run `busy-reply-threshold` (5 s); another
    // client's writes get that answer from Redis itself, not held by the proxy.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = words(&mut c, &["GET", "before"]);
        if r.text().starts_with("BUSY") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no BUSY while a script runs: {r:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(words(&mut c, &["SET", "during", "1"])
        .text()
        .starts_with("BUSY"));
    words(&mut c, &["MULTI"]);
    words(&mut c, &["SET", "in-tx", "1"]);
    let exec = words(&mut c, &["EXEC"]);
    assert!(exec.is_error(), "{exec:?}");
    assert_eq!(words(&mut c, &["SCRIPT", "KILL"]).text(), "OK");
    let killed = spinner.join().unwrap();
    assert!(killed.text().contains("killed"), "{killed:?}");
    // A read that timed out changed nothing and is not logged either. (Its consumer is
    // made first: Redis 8.2 creates the consumer of a timed-out XREADGROUP without
    // replicating it, a gap of Redis's own listed in docs/redis.md.)
    words(&mut c, &["XGROUP", "CREATE", "s", "g", "$", "MKSTREAM"]);
    words(&mut c, &["XGROUP", "CREATECONSUMER", "s", "g", "c"]);
    let r = words(
        &mut c,
        &[
            "XREADGROUP",
            "GROUP",
            "g",
            "c",
            "BLOCK",
            "10",
            "STREAMS",
            "s",
            ">",
        ],
    );
    assert!(r.is_null(), "{r:?}");
    words(&mut c, &["SET", "after", "1"]);
    restore_and_compare(&mut p, &server, 1);
    let logged = format!("{:?}", p.logged_commands());
    assert!(
        logged.contains("after") && !logged.contains("EVAL") && !logged.contains("XREADGROUP"),
        "{logged}"
    );
}

#[test]
fn client_pause_write_holds_writes_in_redis_and_lets_reads_through() {
    let server = Redis::start(&[]);
    let mut p = Proxied::start(&server, None);
    let mut c = impatient(&p, 10);
    words(&mut c, &["SET", "r", "1"]);
    assert_eq!(
        words(&mut c, &["CLIENT", "PAUSE", "20000", "WRITE"]).text(),
        "OK"
    );
    let paused: Vec<_> = [
        vec!["EVAL", "return redis.call('SET', KEYS[1], 'v')", "1", "e"],
        vec!["SET", "w", "1"],
    ]
    .into_iter()
    .map(|argv| {
        let addr = p.addr();
        std::thread::spawn(move || words(&mut Conn::connect(&addr), &argv))
    })
    .collect();
    wait_blocked(&server, "set");
    // Reads go on while writes are paused.
    assert_eq!(words(&mut c, &["GET", "r"]).text(), "1");
    assert_eq!(words(&mut c, &["CLIENT", "UNPAUSE"]).text(), "OK");
    for t in paused {
        assert!(!t.join().unwrap().is_error());
    }
    restore_and_compare(&mut p, &server, 1);
}

#[test]
fn chained_blocking_moves_restore_in_the_order_redis_applied_them() {
    let server = Redis::start(&[]);
    let mut p = Proxied::start(&server, None);
    // c{t} <- BRPOPLPUSH b{t} <- BLMOVE a{t} <- LPUSH: one push wakes both, in Redis's order.
    let first = {
        let addr = p.addr();
        std::thread::spawn(move || {
            words(
                &mut Conn::connect(&addr),
                &["BRPOPLPUSH", "b{t}", "c{t}", "0"],
            )
        })
    };
    wait_blocked(&server, "brpoplpush");
    let second = {
        let addr = p.addr();
        std::thread::spawn(move || {
            let argv = ["BLMOVE", "a{t}", "b{t}", "LEFT", "RIGHT", "0"];
            words(&mut Conn::connect(&addr), &argv)
        })
    };
    wait_blocked(&server, "blmove");
    let mut c = impatient(&p, 10);
    words(&mut c, &["LPUSH", "a{t}", "x", "y"]);
    assert_eq!(second.join().unwrap().text(), "y");
    assert_eq!(first.join().unwrap().text(), "y");
    words(&mut c, &["LMOVE", "a{t}", "c{t}", "LEFT", "LEFT"]);
    words(&mut c, &["LMOVE", "c{t}", "b{t}", "RIGHT", "LEFT"]);
    let waiter = {
        let addr = p.addr();
        std::thread::spawn(move || words(&mut Conn::connect(&addr), &["BLPOP", "d{t}", "0"]))
    };
    wait_blocked(&server, "blpop");
    words(&mut c, &["RPUSH", "d{t}", "1", "2"]);
    assert_eq!(flat(&waiter.join().unwrap()), ["d{t}", "1"]);
    restore_and_compare(&mut p, &server, 1);
}

#[test]
fn scripts_pubsub_protocol_errors_and_hyperloglogs_behave_as_on_redis() {
    let server = Redis::start(&[]);
    let mut p = Proxied::start(&server, None);
    let mut c = impatient(&p, 10);
    // EVALSHA of a script that reached Redis by EVAL (the proxy never saw it loaded).
    let script = "return redis.call('INCR', KEYS[1])";
    assert_eq!(words(&mut c, &["EVAL", script, "1", "n"]).int(), Some(1));
    let sha = words(&mut c, &["SCRIPT", "LOAD", script]).text();
    assert_eq!(words(&mut c, &["EVALSHA", &sha, "1", "n"]).int(), Some(2));
    // UNSUBSCRIBE without a subscription: the connection keeps working for writes, and a
    // RESET brings it back to normal.
    let r = c.cmd(&["UNSUBSCRIBE"]);
    assert!(String::from_utf8_lossy(&r).contains("unsubscribe"), "{r:?}");
    assert_eq!(words(&mut c, &["SET", "after-unsub", "1"]).text(), "OK");
    assert_eq!(words(&mut c, &["RESET"]).text(), "RESET");
    assert_eq!(words(&mut c, &["SET", "after-reset", "1"]).text(), "OK");
    // PFCOUNT rewrites the HLL's cached count: its bytes must restore exactly.
    words(&mut c, &["PFADD", "hll", "a", "b", "c"]);
    assert_eq!(words(&mut c, &["PFCOUNT", "hll"]).int(), Some(3));
    // Malformed input is answered as Redis answers it.
    let garbage = b"*abc\r\n";
    let ask = |addr: String| {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(garbage).unwrap();
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        got
    };
    let direct = ask(server.addr());
    assert!(direct.starts_with(b"-ERR Protocol error"), "{direct:?}");
    assert_eq!(
        String::from_utf8_lossy(&ask(p.addr())),
        String::from_utf8_lossy(&direct)
    );
    assert_eq!(
        words(&mut c, &["PING"]).text(),
        "PONG",
        "others keep working"
    );
    restore_and_compare(&mut p, &server, 1);
}

#[test]
fn vadd_updates_are_logged_and_restore_exactly() {
    let server = Redis::start(&[]);
    let mut p = Proxied::start(&server, None);
    let mut c = impatient(&p, 10);
    let vadd = |c: &mut Conn, extra: &[&str], v: [&str; 2], e: &str| {
        let mut argv = vec!["VADD", "vs", "VALUES", "2", v[0], v[1], e];
        argv.extend(extra);
        words(c, &argv)
    };
    assert_eq!(
        vadd(&mut c, &["SETATTR", "{\"a\":1}"], ["1", "0"], "e1").int(),
        Some(1)
    );
    assert_eq!(vadd(&mut c, &[], ["0", "1"], "e2").int(), Some(1));
    // Updates: a new vector (the attribute stays), a new attribute, the attribute removed.
    assert_eq!(vadd(&mut c, &[], ["0.5", "0.5"], "e1").int(), Some(0));
    assert_eq!(
        vadd(&mut c, &["SETATTR", "{\"b\":2}"], ["0", "1"], "e2").int(),
        Some(0)
    );
    assert_eq!(
        vadd(&mut c, &["SETATTR", ""], ["0", "-1"], "e2").int(),
        Some(0)
    );
    // The only element of a set with an expiry: the key keeps it.
    words(&mut c, &["VADD", "one", "VALUES", "2", "1", "1", "x"]);
    words(&mut c, &["PEXPIRE", "one", "3600000"]);
    assert_eq!(
        words(&mut c, &["VADD", "one", "VALUES", "2", "2", "1", "x"]).int(),
        Some(0)
    );
    // Errors are Redis's own, byte for byte.
    let bad = ["VADD", "vs", "VALUES", "3", "1", "2", "3", "e9"];
    assert_eq!(c.cmd(&bad), server.conn().cmd(&bad));
    let wrong = ["VADD", "before", "VALUES", "2", "1", "2", "e9"];
    words(&mut c, &["SET", "before", "s"]);
    assert_eq!(c.cmd(&wrong), server.conn().cmd(&wrong));
    // RESP3 clients see VADD's boolean answer, also inside a transaction.
    let mut c3 = impatient(&p, 10);
    words(&mut c3, &["HELLO", "3"]);
    assert_eq!(
        c3.cmd(&["VADD", "vs", "VALUES", "2", "1", "1", "e1"]),
        b"#f\r\n"
    );
    assert_eq!(
        c3.cmd(&["VADD", "vs", "VALUES", "2", "1", "2", "e3"]),
        b"#t\r\n"
    );
    words(&mut c3, &["MULTI"]);
    c3.cmd(&["VADD", "vs", "VALUES", "2", "2", "2", "e3"]);
    c3.cmd(&["INCR", "n"]);
    assert_eq!(c3.cmd(&["EXEC"]), b"*2\r\n#f\r\n:1\r\n");
    restore_and_compare(&mut p, &server, 1);
}

/// Redis's own tests read the replication stream by sending SYNC on a plain connection; a
/// replica may sit behind the proxy too. The answer (an RDB payload without a CRLF after
/// it, then the stream) is not RESP replies: the proxy must pass it, not cut the
/// connection for "malformed" bytes.
#[test]
fn sync_through_the_proxy_gets_redis_replication_stream() {
    let server = Redis::start(&[]);
    let mut p = Proxied::start(&server, None);
    let mut link = TcpStream::connect(p.addr()).unwrap();
    link.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    // A command before the SYNC (not in the same pipeline: Redis refuses SYNC while a reply
    // is pending), as the inline commands Redis's tests send.
    link.write_all(b"PING\r\n").unwrap();
    let mut got = vec![0u8; 7];
    link.read_exact(&mut got).unwrap();
    link.write_all(b"SYNC\r\n").unwrap();
    let mut chunk = [0u8; 4096];
    let mut read_until = |got: &mut Vec<u8>, what: &str, done: &dyn Fn(&[u8]) -> bool| {
        while !done(got) {
            let n = link
                .read(&mut chunk)
                .unwrap_or_else(|e| panic!("waiting for {what}: {e}; got {got:?}"));
            assert!(n > 0, "connection closed waiting for {what}; got {got:?}");
            got.extend_from_slice(&chunk[..n]);
        }
    };
    read_until(&mut got, "+PONG and the RDB's length", &|g| {
        g.starts_with(b"+PONG\r\n") && g[7..].windows(2).any(|w| w == b"\r\n")
    });
    // Newlines are Redis's keep-alives while the RDB is made; then `$LEN\r\n`.
    let rest = &got[7..];
    let start = rest.iter().position(|&b| b != b'\n').unwrap();
    let line_end = start + rest[start..].windows(2).position(|w| w == b"\r\n").unwrap();
    assert_eq!(rest[start], b'$', "{rest:?}");
    let len: usize = std::str::from_utf8(&rest[start + 1..line_end])
        .unwrap()
        .parse()
        .unwrap();
    let rdb_end = 7 + line_end + 2 + len;
    read_until(&mut got, "the RDB payload", &|g| g.len() >= rdb_end);
    assert_eq!(&got[rdb_end - len..rdb_end - len + 5], b"REDIS", "an RDB");
    // A write by another client arrives on the link as Redis propagates it.
    assert_eq!(
        words(&mut p.conn(), &["SET", "seen", "on-the-link"]).text(),
        "OK"
    );
    let want = b"$4\r\nseen\r\n$11\r\non-the-link\r\n";
    read_until(&mut got, "the SET on the link", &|g| {
        g[rdb_end..].windows(want.len()).any(|w| w == want)
    });
    drop(link);
    assert_eq!(
        words(&mut p.conn(), &["PING"]).text(),
        "PONG",
        "others keep working"
    );
    restore_and_compare(&mut p, &server, 1);
}
