//! Shipping to a real SeaweedFS through an outage: the server is killed under steady
//! appends, the spool holds everything, fills and refuses writes with a clear error, and
//! when the server is back the backlog drains by itself and `vecwal verify` passes.

#[path = "support/seaweed.rs"]
mod seaweed;
mod support;

use std::sync::Arc;
use std::time::Duration;

use support::{config, entry, op};
use vecwal::catalog::Catalog;
use vecwal::log::{Log, LogError};
use vecwal::ship::{ShipConfig, Shipper};
use vecwal_format::{Operation, SealedSegment};

/// Steady appends, as a capture front end makes them: admission first, then append.
async fn append(log: &Log, appended: &mut u64, n: u64) {
    for _ in 0..n {
        log.check_admission().unwrap();
        log.append(entry(7, *appended)).await.unwrap();
        *appended += 1;
    }
}

async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(120), f)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_store_outage_loses_nothing_refuses_when_full_and_drains_after() {
    let mut server = seaweed::Seaweed::start();
    let store = server.store("backups").await;
    let data = tempfile::tempdir().unwrap();
    let mut cfg = config();
    cfg.segment_max_bytes = 32 << 10;
    cfg.spool_max_bytes = 1 << 20;
    let (log, _) = Log::open(data.path(), cfg).unwrap();
    let log = Arc::new(log);
    let ship = ShipConfig {
        interval: Duration::from_millis(200),
        min_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(500),
        keyring: None,
    };
    let shipper = Shipper::start(log.clone(), vec![store.clone()], ship);

    let mut appended = 0u64;
    append(&log, &mut appended, 100).await;
    let sealed = log.roll().await.unwrap();
    bounded("the first segments to ship", shipper.wait_shipped(sealed)).await;

    // Outage under steady appends: segments pile up locally.
    server.stop();
    append(&log, &mut appended, 200).await;
    log.roll().await.unwrap();
    assert!(
        log.sealed_segments().unwrap().len() >= 3,
        "segments wait in the spool"
    );
    bounded("the shipper to notice the outage", async {
        while shipper.status()[0].last_error.is_none() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;

    // The spool fills: writes are refused with a clear, recoverable error.
    let refused = loop {
        match log.check_admission() {
            Ok(()) => append(&log, &mut appended, 1).await,
            Err(e) => break e,
        }
        assert!(appended < 100_000, "the spool never filled");
    };
    assert!(matches!(refused, LogError::SpoolFull { .. }), "{refused}");
    assert!(refused
        .to_string()
        .contains("new writes are refused until the object store takes segments again"));

    // Back: the backlog drains by itself and writes are admitted again.
    server.restart();
    let last = log.roll().await.unwrap();
    assert_eq!(last, appended);
    bounded("the backlog to drain", shipper.wait_shipped(last)).await;
    bounded("the spool to empty", async {
        while !log.sealed_segments().unwrap().is_empty() || log.check_admission().is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    shipper.stop().await;

    // Every appended record is in the store, once, in order, byte for byte.
    let cat = Catalog::load(&*store, "test").await.unwrap();
    assert!(cat.gaps().is_empty(), "{:?}", cat.gaps());
    assert_eq!(cat.windows()[0].latest_lsn, appended);
    let mut next = 1u64;
    for seg in &cat.segments {
        let bytes = store.get(&seg.key).await.unwrap();
        let seg = SealedSegment::open(&bytes[..]).unwrap();
        for r in seg.records_from_block(0) {
            let r = r.unwrap();
            assert_eq!(r.lsn, next);
            assert_eq!(
                Operation::decode(r.kind, &r.payload).unwrap(),
                op(7, next - 1)
            );
            next += 1;
        }
    }
    assert_eq!(next - 1, appended);

    // And the operator's check agrees.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vecwal"))
        .args(["verify", "--store", "s3://vecwal-test/backups"])
        .envs(server.env())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains(&format!("({appended} records)")), "{text}");
    assert!(
        !text.contains(seaweed::SECRET_KEY),
        "the secret key leaked into output"
    );
}
