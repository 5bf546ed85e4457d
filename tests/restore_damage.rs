//! A store damaged after shipping, found at restore time (promise 7): `vecwal restore` stops
//! with the damaged object named; with `--stop-at-last-good` it restores exactly the state
//! before the damage and says, by its exit code 3 and its output, that it fell short.

#[path = "support/proxy.rs"]
mod proxy;
#[path = "support/redis.rs"]
mod redis;

use std::process::Command;

use proxy::{assert_same, dump, words, Proxied};
use redis::Redis;
use vecwal::catalog::Catalog;

fn vecwal() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vecwal"))
}

fn restore(store: &std::path::Path, target: &Redis, extra: &[&str]) -> (Option<i32>, String) {
    let out = vecwal()
        .args(["restore", "redis", "--store"])
        .arg(store)
        .arg("--target")
        .arg(format!("redis://{}", target.addr()))
        .args(extra)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code(), text)
}

#[test]
fn a_damaged_segment_stops_the_restore_or_with_stop_at_last_good_ends_just_before_it() {
    let server = Redis::start(&[]);
    let mut p = Proxied::start(&server, None);
    let mut c = p.conn();
    // One write per segment: a segment rolls a second after its first record, and each
    // write waits until it is shipped.
    words(&mut c, &["SET", "first", "1"]);
    p.shipped_lsn("first");
    let before_damage = dump(&mut server.conn(), 1);
    words(&mut c, &["SET", "second", "2"]);
    let second = p.shipped_lsn("second");
    words(&mut c, &["SET", "third", "3"]);
    p.shipped_lsn("third");
    p.stop();

    // A byte flipped in the middle of the segment that holds the second write.
    let store_dir = p.dir.path().join("store");
    let cat =
        p.rt.block_on(Catalog::load(p.store.as_ref(), "redis"))
            .unwrap();
    let seg = cat
        .segments
        .iter()
        .find(|s| s.range.first_lsn <= second && second <= s.range.last_lsn)
        .expect("a segment holds the second write");
    assert!(
        seg.range.first_lsn > 1,
        "the first write is in an earlier segment"
    );
    let file = store_dir.join(&seg.key);
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&file, bytes).unwrap();

    // Without the flag: an error that names the damaged object.
    let target = Redis::start(&[]);
    let (code, text) = restore(&store_dir, &target, &[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains(&seg.key),
        "the damaged object is named: {text}"
    );

    // With it: exactly the state before the damage, and a run that says it fell short.
    let target = Redis::start(&[]);
    let (code, text) = restore(&store_dir, &target, &["--stop-at-last-good"]);
    assert_eq!(code, Some(3), "{text}");
    assert!(text.contains("STOPS SHORT"), "{text}");
    assert!(text.contains(&seg.key), "{text}");
    assert_same(
        &dump(&mut target.conn(), 1),
        &before_damage,
        "restored to the last sound record before the damage",
    );
}
