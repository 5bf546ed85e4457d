//! The replication client against a real Redis 8.2 with RediSearch and RedisJSON: full
//! sync with an aligned offset, the deterministic command forms Redis replicates, exact
//! offsets, partial resync, and a refused password that is never echoed.

#[path = "support/redis.rs"]
mod redis;

use std::time::Duration;

use vecwal::capture::redis_repl::{ReplClient, ReplConfig, ReplError, ReplEvent};

const PASSWORD: &str = "s3cret-tap-password";

fn text(argv: &[Vec<u8>]) -> Vec<String> {
    argv.iter()
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// Replicated commands until (and including) `SET sentinel <tag>`, skipping the master's
/// keep-alive PINGs; bounded in time.
async fn until_sentinel(c: &mut ReplClient, tag: &str) -> Vec<(u64, Vec<String>)> {
    tokio::time::timeout(Duration::from_secs(60), async {
        let mut out = Vec::new();
        loop {
            match c.next().await.unwrap() {
                ReplEvent::Command { offset, argv } => {
                    let t = text(&argv);
                    if t[0].eq_ignore_ascii_case("PING") {
                        continue;
                    }
                    let done = t == ["SET", "sentinel", tag];
                    out.push((offset, t));
                    if done {
                        return out;
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await
    .expect("the sentinel was replicated in time")
}

fn master_offset(conn: &mut redis::Conn) -> u64 {
    let info = String::from_utf8(conn.ok(&["INFO", "replication"])).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("master_repl_offset:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_sync_then_deterministic_commands_with_exact_offsets_then_partial_resync() {
    let server = redis::Redis::start(&["--requirepass", PASSWORD]);
    let mut conn = server.conn();
    conn.ok(&["AUTH", PASSWORD]);
    conn.ok(&["HSET", "doc:1", "title", "before the tap"]);
    conn.ok(&["VADD", "vs", "VALUES", "2", "1", "0", "e1"]);

    let cfg = ReplConfig {
        addr: server.addr(),
        password: Some(PASSWORD.into()),
        listening_port: 1,
        ..Default::default()
    };
    let mut tap = ReplClient::connect(&cfg, None).await.unwrap();
    let (replid, base) = match tap.next().await.unwrap() {
        ReplEvent::FullSync {
            replid,
            offset,
            rdb,
        } => {
            assert!(
                rdb.starts_with(b"REDIS"),
                "not an RDB: {:?}",
                &rdb[..rdb.len().min(9)]
            );
            (replid, offset)
        }
        other => panic!("expected a full sync, got {other:?}"),
    };

    conn.ok(&["SET", "k", "v", "EX", "100"]);
    conn.ok(&["SADD", "s", "a"]);
    conn.ok(&["SPOP", "s"]);
    conn.ok(&["SET", "f", "3"]);
    conn.ok(&["INCRBYFLOAT", "f", "1.5"]);
    conn.ok(&["MULTI"]);
    conn.ok(&["HSET", "doc:2", "title", "in a transaction"]);
    conn.ok(&["VADD", "vs", "VALUES", "2", "0", "1", "e2"]);
    conn.ok(&["EXEC"]);
    conn.ok(&["SELECT", "1"]);
    conn.ok(&["SET", "sentinel", "one"]);
    let got = until_sentinel(&mut tap, "one").await;
    let cmds: Vec<Vec<String>> = got.iter().map(|(_, a)| a.clone()).collect();
    let at = |i: usize| cmds[i].iter().map(String::as_str).collect::<Vec<_>>();

    // The master replicates deterministic forms: what vecwal logs replays the same way.
    assert_eq!(at(0), ["SELECT", "0"]);
    assert_eq!(&at(1)[..4], ["SET", "k", "v", "PXAT"], "{cmds:?}");
    let pxat: i64 = cmds[1][4].parse().unwrap();
    let now_ms = vecwal::log::now_us() / 1000;
    assert!(
        (now_ms + 90_000..=now_ms + 100_000).contains(&pxat),
        "EX 100 became PXAT {pxat}"
    );
    assert_eq!(at(2), ["SADD", "s", "a"]);
    assert_eq!(
        at(3),
        ["SREM", "s", "a"],
        "SPOP is replicated as the SREM of what it popped"
    );
    assert_eq!(at(4), ["SET", "f", "3"]);
    assert_eq!(
        at(5),
        ["SET", "f", "4.5", "KEEPTTL"],
        "INCRBYFLOAT is replicated as SET"
    );
    assert_eq!(at(6), ["MULTI"]);
    assert_eq!(at(7), ["HSET", "doc:2", "title", "in a transaction"]);
    assert_eq!(at(8)[..2], ["VADD", "vs"]);
    assert_eq!(at(9), ["EXEC"]);
    assert_eq!(at(10), ["SELECT", "1"]);
    assert_eq!(at(11), ["SET", "sentinel", "one"]);

    // Offsets grow with every command and end exactly at the master's.
    assert!(got.windows(2).all(|w| w[0].0 < w[1].0));
    assert!(got[0].0 > base);
    conn.ok(&["SELECT", "0"]);
    assert_eq!(got.last().unwrap().0, master_offset(&mut conn));

    // Reconnect where we stopped: a partial resync, and the stream goes on from there.
    let pos = tap.position();
    assert_eq!(pos.replid, replid);
    drop(tap);
    let mut tap = ReplClient::connect(&cfg, Some(&pos)).await.unwrap();
    assert!(
        matches!(tap.next().await.unwrap(), ReplEvent::Continue { offset, .. } if offset == pos.offset)
    );
    conn.ok(&["SET", "sentinel", "two"]);
    let more = until_sentinel(&mut tap, "two").await;
    assert_eq!(more.last().unwrap().1, ["SET", "sentinel", "two"]);
    assert_eq!(more.last().unwrap().0, master_offset(&mut conn));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_refused_without_echoing_it() {
    let server = redis::Redis::start(&["--requirepass", PASSWORD]);
    let wrong = "not-the-password-123";
    let cfg = ReplConfig {
        addr: server.addr(),
        password: Some(wrong.into()),
        ..Default::default()
    };
    let err = ReplClient::connect(&cfg, None)
        .await
        .err()
        .expect("refused");
    assert!(
        matches!(err, ReplError::Refused { step: "AUTH", .. }),
        "{err}"
    );
    assert!(!err.is_recoverable());
    assert!(
        !format!("{err} {err:?}").contains(wrong),
        "the password leaked: {err}"
    );

    let err = ReplClient::connect(
        &ReplConfig {
            addr: server.addr(),
            ..Default::default()
        },
        None,
    )
    .await
    .err()
    .expect("no password: refused");
    assert!(err.to_string().contains("NOAUTH"), "{err}");
}
