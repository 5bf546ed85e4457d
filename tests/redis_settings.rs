//! Redis as users run it, beyond the defaults the other tests use: a clock that is not the
//! proxy's, disk-based full syncs, a least-privilege user for vecwal, eviction under
//! `maxmemory`, a base snapshot of more than 200 MB, and a master that restarts while the
//! proxy captures. Each case ends in a restore compared key by key with the original.
//! Every non-default setting says why it is set.

#[path = "support/proxy.rs"]
mod proxy;
#[path = "support/redis.rs"]
mod redis;

use proxy::{assert_same, dump, words, Proxied};
use redis::{faketime_lib, Redis};
use vecwal::restore::Target;

fn restore_latest(p: &mut Proxied, original: &Redis) -> Redis {
    let want = dump(&mut original.conn(), 1);
    p.stop();
    let target = Redis::start(&[]);
    p.restore_into(&target, Target::Latest);
    assert_same(&dump(&mut target.conn(), 1), &want, "restored");
    target
}

#[test]
fn expiries_are_restored_on_the_clock_of_the_redis_that_set_them() {
    // The original's clock runs 5 s ahead of this machine's (and the proxy's).
    let lib = faketime_lib();
    let original = Redis::start_env(
        &[],
        &[("LD_PRELOAD", lib.to_str().unwrap()), ("FAKETIME", "+5s")],
    );
    let mut c = original.conn();
    let skew_ms = words(&mut c, &["TIME"]).items().unwrap()[0].int().unwrap() * 1000
        - vecwal::log::now_us() / 1000;
    assert!(
        (4000..6000).contains(&skew_ms),
        "faketime did not move the server's clock ({skew_ms} ms)"
    );
    let mut p = Proxied::start(&original, None);
    let mut c = p.conn();
    words(&mut c, &["SET", "ex", "v", "EX", "100"]);
    words(&mut c, &["SET", "px", "v", "PX", "100000"]);
    words(&mut c, &["SET", "e", "v"]);
    words(&mut c, &["EXPIRE", "e", "200"]);
    words(&mut c, &["SET", "g", "v"]);
    words(&mut c, &["GETEX", "g", "EX", "300"]);
    words(&mut c, &["HSET", "h", "a", "1", "b", "2"]);
    words(&mut c, &["HEXPIRE", "h", "400", "FIELDS", "1", "a"]);
    words(
        &mut c,
        &["HSETEX", "hs", "EX", "500", "FIELDS", "1", "f", "v"],
    );
    words(&mut c, &["HGETEX", "h", "PX", "600000", "FIELDS", "1", "b"]);
    let original_view = dump(&mut original.conn(), 1);
    assert!(original_view[&(0, "ex".into())].expire_at_ms > 0);
    restore_latest(&mut p, &original);
}

#[test]
fn a_disk_based_full_sync_gives_the_same_base() {
    // Users may turn diskless sync off (slow networks, fast disks); the base snapshot then
    // comes from an RDB file Redis writes first.
    let original = Redis::start(&["--repl-diskless-sync", "no"]);
    words(&mut original.conn(), &["SET", "before", "1"]);
    let mut p = Proxied::start(&original, None);
    let mut c = p.conn();
    words(&mut c, &["SET", "after", "1"]);
    assert!(words(&mut c, &["VECWAL.SNAPSHOT"])
        .text()
        .starts_with("snapshot at LSN"));
    words(&mut c, &["SET", "later", "1"]);
    restore_latest(&mut p, &original);
}

#[test]
fn a_least_privilege_user_is_enough_for_the_proxy() {
    let original = Redis::start(&[]);
    // docs/redis.md: what vecwal's own connections need (replication, INFO, COMMAND INFO).
    let rules = "ACL SETUSER vecwal reset on >s3cret -@all +psync +replconf +ping +info +command";
    words(
        &mut original.conn(),
        &rules.split_whitespace().collect::<Vec<_>>(),
    );
    let mut as_vecwal = original.conn();
    words(&mut as_vecwal, &["AUTH", "vecwal", "s3cret"]);
    let r = words(&mut as_vecwal, &["GET", "k"]);
    assert!(
        r.text().starts_with("NOPERM"),
        "the user is not minimal: {r:?}"
    );
    let mut p = Proxied::start_user(&original, "vecwal", "s3cret");
    // Clients log in as themselves (the default user here).
    let mut c = p.conn();
    words(&mut c, &["SET", "k", "v"]);
    words(&mut c, &["VADD", "vs", "VALUES", "2", "1", "0", "e"]);
    words(&mut c, &["VADD", "vs", "VALUES", "2", "0", "1", "e"]);
    assert!(words(&mut c, &["VECWAL.SNAPSHOT"])
        .text()
        .starts_with("snapshot at LSN"));
    words(&mut c, &["INCR", "n"]);
    restore_latest(&mut p, &original);
}

#[test]
fn keys_evicted_under_maxmemory_are_logged_as_deletes() {
    // A cache-style Redis that evicts (not the default, which never evicts: eviction is
    // what this test is about): what it drops must be gone after a restore too.
    let original = Redis::start(&["--maxmemory", "4mb", "--maxmemory-policy", "allkeys-lru"]);
    let mut p = Proxied::start(&original, None);
    let mut c = p.conn();
    let value = "x".repeat(8 << 10);
    for i in 0..1500 {
        words(&mut c, &["SET", &format!("k{i}"), &value]);
    }
    // Past the limit, Redis evicts before every command, reads too: lift the limit so the
    // comparison's own reads evict nothing more.
    words(&mut c, &["CONFIG", "SET", "maxmemory", "0"]);
    let kept = words(&mut original.conn(), &["DBSIZE"]).int().unwrap();
    assert!(kept < 1500, "nothing was evicted ({kept} keys)");
    restore_latest(&mut p, &original);
}

#[test]
fn a_base_snapshot_of_more_than_200_mb_restores_exactly() {
    let original = Redis::start(&[]);
    // 218 MB of incompressible values before capture begins: the start full sync carries them.
    let mut c = original.conn();
    let n = 53_248;
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for chunk in 0..(n / 1024) {
        let mut pipe = Vec::new();
        for i in 0..1024 {
            let value: Vec<u8> = (0..4096 / 8)
                .flat_map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x.to_le_bytes()
                })
                .collect();
            let key = format!("big:{}", chunk * 1024 + i).into_bytes();
            pipe.extend(vecwal::protocol::resp::encode_command(&[
                b"SET".to_vec(),
                key,
                value,
            ]));
        }
        c.raw_pipeline(&pipe, 1024);
    }
    let mut p = Proxied::start(&original, None);
    let base =
        p.rt.block_on(vecwal::catalog::Catalog::load(p.store.as_ref(), "redis"));
    let size = base
        .unwrap()
        .snapshots
        .iter()
        .map(|s| s.size)
        .max()
        .unwrap();
    assert!(size > 200 << 20, "the base is only {size} bytes");
    let mut pc = p.conn();
    words(&mut pc, &["SET", "big:0", "changed"]);
    words(&mut pc, &["DEL", "big:1"]);
    let target = restore_latest(&mut p, &original);
    assert_eq!(
        words(&mut target.conn(), &["DBSIZE"]).int(),
        Some(n as i64 - 1)
    );
}

#[test]
fn a_master_restart_during_capture_loses_nothing_the_log_had() {
    let mut original = Redis::start(&[]);
    let mut p = Proxied::start(&original, None);
    words(&mut p.conn(), &["SET", "first", "1"]);
    let before_restart = dump(&mut original.conn(), 1);
    let t1 = vecwal::log::now_us();
    // A restart that keeps the data (SHUTDOWN SAVE, then the RDB loads): the proxy's link
    // comes back and writes go on.
    original.restart(true);
    words(&mut p.conn(), &["SET", "second", "2"]);
    let after_saved_restart = dump(&mut original.conn(), 1);
    let t2 = vecwal::log::now_us();
    // A restart that loses the data: the link comes back with a full resync of the new,
    // empty history, which becomes a new base.
    original.restart(false);
    words(&mut p.conn(), &["SET", "third", "3"]);
    let want = dump(&mut original.conn(), 1);
    p.stop();
    for (at, state, what) in [
        (t1, &before_restart, "before the first restart"),
        (
            t2,
            &after_saved_restart,
            "after the restart that kept the data",
        ),
        (
            vecwal::log::now_us(),
            &want,
            "after the restart that lost it",
        ),
    ] {
        let target = Redis::start(&[]);
        p.restore_into(&target, Target::Time(at));
        assert_same(&dump(&mut target.conn(), 1), state, what);
    }
}
