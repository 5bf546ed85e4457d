//! Differential restore through the replication tap, on real Redis 8.2 with RediSearch and
//! RedisJSON: clients write straight to Redis while vecwal follows it as a replica; the
//! link is cut (partial resync), the master forces a full resync (new base), the tap is
//! restarted while writes go on (partial resync from the saved position), and an on-demand
//! snapshot is taken while clients write, and finally the master takes writes while the tap
//! is down and can only offer a full resync. Every recorded moment is restored into
//! another Redis and compared key by key (promises 1, 4, 5, 7).

#[path = "support/proxy.rs"]
mod proxy;
#[path = "support/redis.rs"]
mod redis;
#[path = "support/workload.rs"]
mod workload;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use vecwal::capture::redis::tap::{RunningTap, Started, TapOptions};
use vecwal::log::{Log, LogConfig};
use vecwal::protocol::redis_client::RedisTarget;
use vecwal::ship::ShipConfig;
use vecwal::store::{FsStore, Store};

use proxy::words;
use redis::{Conn, Redis};
use workload::{prepare, run_clients, verify_moments, Moment};

fn start_tap(
    rt: &tokio::runtime::Runtime,
    master: &Redis,
    dir: &Path,
    store: &Arc<dyn Store>,
) -> RunningTap {
    let mut cfg = LogConfig::new("redis");
    cfg.segment_max_age = Duration::from_secs(1);
    let data = dir.join("data");
    let (log, _) = Log::open(&data, cfg).unwrap();
    let opts = TapOptions {
        source: RedisTarget {
            addr: master.addr(),
            ..Default::default()
        },
        data_dir: data,
        stores: vec![store.clone()],
        keyring: None,
        ship: ShipConfig {
            interval: Duration::from_secs(1),
            ..Default::default()
        },
        snapshot_interval: Duration::ZERO,
        control: Some("127.0.0.1:0".into()),
    };
    rt.block_on(RunningTap::start(Arc::new(log), opts)).unwrap()
}

fn repl_offset(c: &mut Conn) -> u64 {
    let info = words(c, &["INFO", "replication"]).text();
    info.lines()
        .find_map(|l| l.strip_prefix("master_repl_offset:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

/// Waits until the tap has logged everything the master has replicated so far.
fn caught_up(rt: &tokio::runtime::Runtime, tap: &RunningTap, master: &mut Conn) {
    let want = repl_offset(master);
    let mut committed = tap.committed();
    rt.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(30),
            committed.wait_for(|(_, o)| *o >= want),
        )
        .await
        .expect("the tap caught up within 30 s")
        .unwrap();
    });
}

#[test]
fn restoring_a_tapped_stream_to_any_moment_gives_that_moment_exactly() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // DEBUG CHANGE-REPL-ID (below) gives the master a new replication history, as a
    // failover does; Redis disables DEBUG by default since 7.0.
    let master = Redis::start(&["--enable-debug-command", "yes"]);
    let mut admin = master.conn();
    prepare(&mut admin);
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(FsStore::new(dir.path().join("store")).unwrap());
    let mut tap = start_tap(&rt, &master, dir.path(), &store);
    assert!(
        matches!(tap.started, Started::FullSync { lsn: 0, .. }),
        "{:?}",
        tap.started
    );
    let mut moments = vec![Moment::record(&mut admin)];

    // 0: plain following.
    run_clients(&master.addr(), 0, false);
    caught_up(&rt, &tap, &mut admin);
    moments.push(Moment::record(&mut admin));

    // 1: the link is cut while clients write, and a snapshot is taken while they write.
    let addr = master.addr();
    let writers = std::thread::spawn(move || run_clients(&addr, 1, false));
    let killed = words(&mut admin, &["CLIENT", "KILL", "TYPE", "replica"]);
    assert_eq!(killed.int(), Some(1), "the tap's link was cut");
    // Through the control port, as `vecwal snapshot redis --tap` asks.
    let mut control = Conn::connect(&tap.control_addr.unwrap().to_string());
    assert_eq!(words(&mut control, &["PING"]).text(), "PONG");
    let refused = words(&mut control, &["GET", "k"]);
    assert!(
        refused.is_error() && refused.text().contains("control port"),
        "{refused:?}"
    );
    let answer = words(&mut control, &["VECWAL.SNAPSHOT"]).text();
    let snapshot_lsn: u64 = answer
        .strip_prefix("snapshot at LSN ")
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{answer}"));
    writers.join().unwrap();
    caught_up(&rt, &tap, &mut admin);
    moments.push(Moment::record(&mut admin));
    // 2: more writes on top of that snapshot.
    run_clients(&master.addr(), 2, false);
    caught_up(&rt, &tap, &mut admin);
    moments.push(Moment::record(&mut admin));

    // 3: the master forgets the tap's history: it can only offer a full resync.
    let before = tap.committed().borrow().0.clone();
    assert_eq!(words(&mut admin, &["DEBUG", "CHANGE-REPL-ID"]).text(), "OK");
    words(&mut admin, &["CLIENT", "KILL", "TYPE", "replica"]);
    rt.block_on(async {
        let mut c = tap.committed();
        tokio::time::timeout(Duration::from_secs(30), c.wait_for(|(r, _)| *r != before))
            .await
            .expect("the tap took the full resync within 30 s")
            .unwrap();
    });
    run_clients(&master.addr(), 3, false);
    caught_up(&rt, &tap, &mut admin);
    moments.push(Moment::record(&mut admin));

    // 4: the tap stops; clients write meanwhile; it comes back and continues from its
    // saved position.
    rt.block_on(tap.shutdown(Duration::from_secs(30)));
    run_clients(&master.addr(), 4, false);
    tap = start_tap(&rt, &master, dir.path(), &store);
    assert!(
        matches!(tap.started, Started::Resumed { .. }),
        "{:?}",
        tap.started
    );
    caught_up(&rt, &tap, &mut admin);
    moments.push(Moment::record(&mut admin));

    // The tap acknowledges what it logged: WAIT sees it as a replica.
    words(&mut admin, &["SET", "last", "write"]);
    assert_eq!(words(&mut admin, &["WAIT", "1", "10000"]).int(), Some(1));
    moments.push(Moment::record(&mut admin));

    // 5: the tap is down, the master takes writes and then forgets the tap's history: the
    // tap comes back with a full resync whose base holds writes no record has. Restores to
    // before it must not use that base; restores after it must.
    rt.block_on(tap.shutdown(Duration::from_secs(30)));
    words(&mut admin, &["SET", "written", "while-the-tap-was-down"]);
    words(&mut admin, &["DEBUG", "CHANGE-REPL-ID"]);
    tap = start_tap(&rt, &master, dir.path(), &store);
    assert!(
        matches!(tap.started, Started::FullSync { .. }),
        "{:?}",
        tap.started
    );
    moments.push(Moment::record(&mut admin));
    rt.block_on(tap.shutdown(Duration::from_secs(30)));

    let used = verify_moments(&rt, &store, &moments);
    assert!(
        used.len() >= 4 && used.contains(&snapshot_lsn),
        "the start base, the on-demand snapshot (LSN {}) and both full resyncs' bases were used: {used:?}",
        snapshot_lsn
    );
}
