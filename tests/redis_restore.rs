//! Differential restore through the proxy, on real Redis 8.2 with RediSearch and RedisJSON:
//! concurrent clients write hashes with vectors, JSON, vector sets, expirations,
//! transactions and random forms to overlapping keys; the database's whole state is
//! recorded at several moments; each moment is restored into another Redis and compared
//! key by key, and a KNN query on the restored index returns the same documents
//! (promises 1–7).

#[path = "support/proxy.rs"]
mod proxy;
#[path = "support/redis.rs"]
mod redis;
#[path = "support/workload.rs"]
mod workload;

use proxy::{words, Proxied};
use redis::Redis;
use workload::{prepare, run_clients, verify_moments, Moment};

#[test]
fn restoring_to_any_recorded_moment_gives_that_moment_exactly() {
    let original = Redis::start(&[]);
    // Data from before capture began: the base snapshot at start must hold it.
    prepare(&mut original.conn());
    let mut p = Proxied::start(&original, None);
    let mut moments = Vec::new();
    let mut watcher = p.conn();
    moments.push(Moment::record(&mut watcher));
    for phase in 0..4u64 {
        run_clients(&p.addr(), phase, true);
        if phase == 1 {
            // An on-demand snapshot mid-history: later moments restore from it.
            let r = words(&mut watcher, &["VECWAL.SNAPSHOT"]);
            assert!(r.text().starts_with("snapshot at LSN"), "{r:?}");
        }
        moments.push(Moment::record(&mut watcher));
    }
    p.stop();
    let used_snapshots = verify_moments(&p.rt, &p.store, &moments);
    assert!(
        used_snapshots.len() >= 2,
        "both the start and the mid-run snapshot were used: {used_snapshots:?}"
    );
}
