//! The Redis proxy against a real Redis 8.2: what it logs (only what Redis applied, in
//! deterministic form, transactions as one record, databases tracked), what it refuses,
//! and that replies reach the client unchanged.

#[path = "support/proxy.rs"]
mod proxy;
#[path = "support/redis.rs"]
mod redis;

use proxy::{line, words, Proxied};

const FT_CREATE: &str = "FT.CREATE idx ON HASH PREFIX 1 doc: SCHEMA title TEXT";
use redis::Redis;

fn w(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn logs_what_redis_replicates_of_the_writes_it_applied() {
    let server = Redis::start(&[]);
    let mut p = Proxied::start(&server, None);
    let mut c = p.conn();

    assert_eq!(
        words(&mut c, &["HSET", "doc:1", "title", "a"]).int(),
        Some(1)
    );
    assert_eq!(words(&mut c, &["HGET", "doc:1", "title"]).text(), "a"); // a read
                                                                        // Rejected by Redis: never logged (promise 2).
    assert!(words(&mut c, &["LPUSH", "doc:1", "x"]).is_error());
    assert!(words(&mut c, &["INCR", "doc:1"]).is_error());
    // Applied but changing nothing: not logged.
    assert!(words(&mut c, &["SET", "doc:1", "v", "NX"]).is_null());
    assert_eq!(words(&mut c, &["EXPIRE", "nokey", "10"]).int(), Some(0));
    // Relative and random forms are logged as their deterministic effect, on Redis's clock.
    words(&mut c, &["SET", "s", "v", "EX", "100"]);
    let expire_at = words(&mut c, &["PEXPIRETIME", "s"]).int().unwrap();
    assert_eq!(words(&mut c, &["INCRBYFLOAT", "f", "1.5"]).text(), "1.5");
    words(&mut c, &["SADD", "set", "only"]);
    assert_eq!(words(&mut c, &["SPOP", "set"]).text(), "only");
    let id = words(&mut c, &["XADD", "st", "*", "k", "v"]).text();
    // A transaction is one record, SELECT inside it included; the database is tracked.
    assert_eq!(words(&mut c, &["MULTI"]).text(), "OK");
    assert_eq!(words(&mut c, &["SET", "m1", "1"]).text(), "QUEUED");
    assert_eq!(words(&mut c, &["GET", "m1"]).text(), "QUEUED");
    words(&mut c, &["SELECT", "2"]);
    words(&mut c, &["SET", "m2", "2"]);
    let exec = words(&mut c, &["EXEC"]);
    assert_eq!(exec.items().unwrap().len(), 4);
    words(&mut c, &["DEL", "m2"]); // in database 2 now
                                   // A transaction WATCH aborted ran nothing: not logged.
    let mut other = p.conn();
    words(&mut c, &["SELECT", "0"]);
    words(&mut c, &["WATCH", "w"]);
    words(&mut other, &["SET", "w", "by-other"]);
    words(&mut c, &["MULTI"]);
    words(&mut c, &["SET", "w", "mine"]);
    assert!(words(&mut c, &["EXEC"]).is_null());
    // Scripts are logged as their effects, whoever loaded them: EVALSHA of a script loaded
    // on Redis directly works through the proxy.
    let script = "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('TIME')[1]";
    let sha = words(&mut server.conn(), &["SCRIPT", "LOAD", script]).text();
    assert!(words(&mut c, &["EVALSHA", &sha, "1", "sk", "y"])
        .int()
        .is_some());
    // Pipelined writes: every reply, in order.
    let mut pipe = Vec::new();
    for i in 0..50 {
        pipe.extend(vecwal::protocol::resp::encode_command(&[
            b"RPUSH".to_vec(),
            b"list".to_vec(),
            i.to_string().into_bytes(),
        ]));
    }
    let replies = c.raw_pipeline(&pipe, 50);
    assert_eq!(replies.len(), 50);
    assert_eq!(replies[49], b":50\r\n");
    // Module commands.
    words(&mut c, &["VADD", "vs", "VALUES", "2", "1", "0", "e1"]);
    words(&mut c, &["JSON.SET", "j", "$", "{\"a\":1}"]);
    line(&mut c, FT_CREATE);
    words(&mut c, &["FT.SEARCH", "idx", "*"]); // a read

    p.stop();
    let got = p.logged_commands();
    let mut want: Vec<(String, Vec<Vec<String>>)> = vec![
        ("0".into(), vec![w(&["HSET", "doc:1", "title", "a"])]),
        (
            "0".into(),
            vec![w(&["SET", "s", "v", "PXAT", &expire_at.to_string()])],
        ),
        ("0".into(), vec![w(&["SET", "f", "1.5", "KEEPTTL"])]),
        ("0".into(), vec![w(&["SADD", "set", "only"])]),
        ("0".into(), vec![w(&["SREM", "set", "only"])]),
        ("0".into(), vec![w(&["XADD", "st", &id, "k", "v"])]),
        (
            "0".into(),
            vec![
                w(&["SET", "m1", "1"]),
                w(&["SELECT", "2"]),
                w(&["SET", "m2", "2"]),
            ],
        ),
        ("2".into(), vec![w(&["DEL", "m2"])]),
        ("0".into(), vec![w(&["SET", "w", "by-other"])]),
        ("0".into(), vec![w(&["SET", "sk", "y"])]),
    ];
    for i in 0..50 {
        want.push(("0".into(), vec![w(&["RPUSH", "list", &i.to_string()])]));
    }
    want.push((
        "0".into(),
        vec![w(&["VADD", "vs", "VALUES", "2", "1", "0", "e1"])],
    ));
    want.push(("0".into(), vec![w(&["JSON.SET", "j", "$", "{\"a\":1}"])]));
    // FT.CREATE as RediSearch replicates it.
    let create = FT_CREATE.replace("FT.CREATE", "FT._CREATEIFNX");
    want.push((
        "0".into(),
        vec![w(&create.split_whitespace().collect::<Vec<_>>())],
    ));
    assert_eq!(got, want);
}

#[test]
fn a_full_spool_refuses_writes_before_they_reach_redis_and_reads_go_on() {
    let server = Redis::start(&[]);
    words(&mut server.conn(), &["SET", "a", "1"]);
    // A spool limit below what the open segment already takes: the spool is full.
    let p = Proxied::start_with(&server, None, |cfg| cfg.spool_max_bytes = 1);
    let mut c = p.conn();
    let r = words(&mut c, &["SET", "b", "2"]);
    assert!(r.is_error() && r.text().contains("spool"), "{r:?}");
    assert!(
        words(&mut server.conn(), &["GET", "b"]).is_null(),
        "a refused write must not reach Redis"
    );
    assert_eq!(words(&mut c, &["GET", "a"]).text(), "1");
    // A refused EXEC discards the transaction upstream.
    words(&mut c, &["MULTI"]);
    words(&mut c, &["SET", "t", "1"]);
    let r = words(&mut c, &["EXEC"]);
    assert!(r.is_error() && r.text().contains("spool"), "{r:?}");
    assert_eq!(words(&mut c, &["PING"]).text(), "PONG");
    assert!(words(&mut server.conn(), &["GET", "t"]).is_null());
}

#[test]
fn conflicting_writes_from_many_connections_are_logged_in_redis_order() {
    // APPEND does not commute: the final string is the order Redis applied the writes in,
    // and replaying the log must build the same string (promise 3).
    let server = Redis::start(&[]);
    let mut p = Proxied::start(&server, None);
    let addr = p.addr();
    let workers: Vec<_> = (0..4u8)
        .map(|t| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut c = redis::Conn::connect(&addr);
                for round in 0..20 {
                    let mut pipe = Vec::new();
                    for i in 0..25 {
                        let key = if (round + i) % 3 == 0 { "k2" } else { "k" };
                        pipe.extend(vecwal::protocol::resp::encode_command(&[
                            b"APPEND".to_vec(),
                            key.as_bytes().to_vec(),
                            vec![b'a' + t],
                        ]));
                    }
                    c.raw_pipeline(&pipe, 25);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let mut direct = server.conn();
    let k = words(&mut direct, &["GET", "k"]).text();
    let k2 = words(&mut direct, &["GET", "k2"]).text();
    p.stop();
    let (mut rk, mut rk2) = (String::new(), String::new());
    for (_, cmds) in p.logged_commands() {
        for c in cmds {
            match c[1].as_str() {
                "k" => rk.push_str(&c[2]),
                _ => rk2.push_str(&c[2]),
            }
        }
    }
    assert_eq!(rk.len() + rk2.len(), 2000);
    assert_eq!(rk, k, "log order of writes to k differs from Redis's");
    assert_eq!(rk2, k2, "log order of writes to k2 differs from Redis's");
}

#[test]
fn pubsub_resp3_and_blocking_pops_pass_through_and_pops_are_logged_as_their_effect() {
    let server = Redis::start(&[]);
    let mut p = Proxied::start(&server, None);
    // RESP3: a map reply and client-tracking pushes do not upset reply matching.
    let mut c3 = p.conn();
    let hello = words(&mut c3, &["HELLO", "3"]);
    assert!(hello.items().is_some(), "{hello:?}");
    words(&mut c3, &["CLIENT", "TRACKING", "on"]);
    words(&mut c3, &["SET", "tracked", "1"]);
    words(&mut c3, &["GET", "tracked"]);
    words(&mut p.conn(), &["SET", "tracked", "2"]); // invalidation push to c3
    let mut r = c3.cmd(&["INCR", "n"]);
    let mut pushes = 0;
    while r.starts_with(b">") {
        pushes += 1; // the invalidation, forwarded as it came
        r = c3.read_reply();
    }
    assert_eq!((r.as_slice(), pushes), (&b":1\r\n"[..], 1));

    // Pub/sub: the subscriber's connection becomes a byte pipe; messages arrive.
    let mut sub = p.conn();
    let r = sub.cmd(&["SUBSCRIBE", "news"]);
    assert!(String::from_utf8_lossy(&r).contains("subscribe"), "{r:?}");
    words(&mut p.conn(), &["PUBLISH", "news", "hello"]);
    let msg = sub.read_reply();
    assert!(String::from_utf8_lossy(&msg).contains("hello"), "{msg:?}");

    // A blocking pop waits through the proxy and is logged as the pop it did.
    let addr = p.addr();
    let waiter = std::thread::spawn(move || {
        let mut c = redis::Conn::connect(&addr);
        words(&mut c, &["BLPOP", "jobs", "other", "10"])
    });
    while words(&mut server.conn(), &["CLIENT", "LIST", "TYPE", "normal"])
        .text()
        .contains("cmd=blpop")
        .then_some(())
        .is_none()
    {
        std::thread::yield_now();
    }
    words(&mut p.conn(), &["RPUSH", "jobs", "j1"]);
    let popped = waiter.join().unwrap();
    assert_eq!(popped.items().unwrap()[1].text(), "j1");

    p.stop();
    let got: Vec<Vec<String>> = p
        .logged_commands()
        .into_iter()
        .flat_map(|(_, c)| c)
        .collect();
    let w = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        got,
        vec![
            w(&["SET", "tracked", "1"]),
            w(&["SET", "tracked", "2"]),
            w(&["INCR", "n"]),
            w(&["RPUSH", "jobs", "j1"]),
            w(&["LPOP", "jobs"]),
        ]
    );
}

#[test]
fn odd_pipelines_and_refused_transaction_commands_keep_logging_straight() {
    let server = Redis::start(&[]);
    let mut p = Proxied::start(&server, None);
    let mut c = p.conn();
    words(&mut c, &["RPUSH", "l", "a"]);
    // A blocking pop pipelined before a keyspace-wide write: both answered, nothing stuck.
    let enc = vecwal::protocol::resp::encode_command;
    let mut pipe = enc(&[b"BLPOP".to_vec(), b"l".to_vec(), b"0".to_vec()]);
    pipe.extend(enc(&[b"FLUSHDB".to_vec()]));
    let r = c.raw_pipeline(&pipe, 2);
    assert_eq!(r[1], b"+OK\r\n");
    words(&mut p.conn(), &["SET", "x", "1"]);
    // DISCARD with an argument is refused and leaves the transaction open (and failed).
    words(&mut c, &["MULTI"]);
    assert!(words(&mut c, &["DISCARD", "extra"]).is_error());
    assert_eq!(words(&mut c, &["SET", "k", "v"]).text(), "QUEUED");
    assert!(words(&mut c, &["EXEC"]).is_error()); // EXECABORT
                                                  // MULTI with an argument is refused: what follows runs at once and is logged.
    assert!(words(&mut c, &["MULTI", "extra"]).is_error());
    assert_eq!(words(&mut c, &["SET", "k2", "v"]).text(), "OK");
    // MULTI refused by an ACL, pipelined with what follows: the SET runs at once, so it is
    // logged as a plain write; the EXEC fails. A nested MULTI leaves a transaction open.
    line(&mut c, "ACL SETUSER limited on >pw ~* &* +@all -multi");
    let mut limited = p.conn();
    words(&mut limited, &["AUTH", "limited", "pw"]);
    let mut pipe = enc(&[b"MULTI".to_vec()]);
    pipe.extend(enc(&[b"SET".to_vec(), b"k3".to_vec(), b"v".to_vec()]));
    pipe.extend(enc(&[b"EXEC".to_vec()]));
    let r = limited.raw_pipeline(&pipe, 3);
    assert!(
        r[0].starts_with(b"-NOPERM"),
        "{:?}",
        String::from_utf8_lossy(&r[0])
    );
    assert_eq!(r[1], b"+OK\r\n");
    assert!(r[2].starts_with(b"-ERR EXEC without MULTI"));
    words(&mut c, &["MULTI"]);
    assert!(words(&mut c, &["MULTI"]).is_error());
    assert_eq!(words(&mut c, &["SET", "k4", "v"]).text(), "QUEUED");
    assert_eq!(words(&mut c, &["EXEC"]).items().map(|i| i.len()), Some(1));
    p.stop();
    let got: Vec<Vec<String>> = p
        .logged_commands()
        .into_iter()
        .flat_map(|(_, c)| c)
        .collect();
    assert_eq!(
        got,
        vec![
            w(&["RPUSH", "l", "a"]),
            w(&["LPOP", "l"]),
            w(&["FLUSHDB"]),
            w(&["SET", "x", "1"]),
            w(&["SET", "k2", "v"]),
            w(&["SET", "k3", "v"]),
            w(&["SET", "k4", "v"]),
        ]
    );
}
