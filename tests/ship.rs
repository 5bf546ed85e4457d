//! Shipping to local-directory stores: several destinations with their own progress,
//! local copies removed only when every destination confirmed, a full spool refusing
//! writes, and the backlog draining by itself after an outage.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use support::{config, entry};
use vecwal::catalog::Catalog;
use vecwal::log::{Log, LogError};
use vecwal::ship::{ShipConfig, Shipper};
use vecwal::store::{FsStore, ObjectInfo, PutOutcome, Store, StoreError};

/// A local store that can be switched off, as an outage of the object store.
struct Switchable {
    inner: FsStore,
    down: AtomicBool,
}

impl Switchable {
    fn check(&self, op: &'static str, key: &str) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable {
                store: self.inner.url().into(),
                op,
                key: key.into(),
                detail: "connection refused (test outage)".into(),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl Store for Switchable {
    fn url(&self) -> &str {
        self.inner.url()
    }
    async fn put_new(&self, key: &str, data: Vec<u8>) -> Result<PutOutcome, StoreError> {
        self.check("put", key)?;
        self.inner.put_new(key, data).await
    }
    async fn put(&self, key: &str, data: Vec<u8>) -> Result<(), StoreError> {
        self.check("put", key)?;
        self.inner.put(key, data).await
    }
    async fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        self.check("get", key)?;
        self.inner.get(key).await
    }
    async fn head(&self, key: &str) -> Result<Option<u64>, StoreError> {
        self.check("head", key)?;
        self.inner.head(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        self.check("list", prefix)?;
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.check("delete", key)?;
        self.inner.delete(key).await
    }
    async fn top_level(&self) -> Result<Vec<String>, StoreError> {
        self.check("list", "")?;
        self.inner.top_level().await
    }
}

fn fast() -> ShipConfig {
    ShipConfig {
        interval: Duration::from_millis(200),
        min_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        keyring: None,
    }
}

async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_reach_every_destination_before_the_local_copy_goes() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut cfg = config();
    cfg.segment_max_bytes = 32 << 10;
    let (log, _) = Log::open(&dir.path().join("data"), cfg).unwrap();
    let log = Arc::new(log);
    let stores: Vec<Arc<dyn Store>> = vec![
        Arc::new(FsStore::new(a.path()).unwrap()),
        Arc::new(FsStore::new(b.path()).unwrap()),
    ];
    let shipper = Shipper::start(log.clone(), stores.clone(), fast());
    for i in 0..200 {
        log.append(entry(0, i)).await.unwrap();
    }
    let sealed = log.roll().await.unwrap();
    bounded("shipping", shipper.wait_shipped(sealed)).await;
    // The local spool holds only the open segment now.
    bounded("local removal", async {
        while !log.sealed_segments().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    for store in &stores {
        let cat = Catalog::load(&**store, "test").await.unwrap();
        assert!(cat.segments.len() > 3, "{}", cat.segments.len());
        assert!(cat.gaps().is_empty());
        let w = cat.windows();
        assert_eq!(w.len(), 1);
        assert_eq!((w[0].base_lsn, w[0].latest_lsn), (0, 200));
        assert_eq!(
            cat.identity.as_ref().unwrap().stream_id,
            format!("{:016x}", log.meta().stream_id)
        );
        let hb: vecwal::ship::Heartbeat =
            serde_json::from_slice(&store.get("test/heartbeat.json").await.unwrap()).unwrap();
        assert!(hb.shipped_lsn <= 200);
    }
    shipper.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_fills_the_spool_refuses_writes_and_drains_afterwards() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut cfg = config();
    cfg.segment_max_bytes = 16 << 10;
    cfg.spool_max_bytes = 256 << 10;
    let (log, _) = Log::open(&dir.path().join("data"), cfg).unwrap();
    let log = Arc::new(log);
    let broken = Arc::new(Switchable {
        inner: FsStore::new(a.path()).unwrap(),
        down: AtomicBool::new(true),
    });
    let healthy: Arc<dyn Store> = Arc::new(FsStore::new(b.path()).unwrap());
    let shipper = Shipper::start(
        log.clone(),
        vec![broken.clone() as Arc<dyn Store>, healthy.clone()],
        fast(),
    );

    // Write until the spool refuses: the outage holds every segment locally.
    let mut written = 0u64;
    let refusal = loop {
        match log.check_admission() {
            Ok(()) => {
                log.append(entry(1, written)).await.unwrap();
                written += 1;
            }
            Err(e) => break e,
        }
        assert!(written < 10_000, "the spool never filled");
    };
    assert!(matches!(refusal, LogError::SpoolFull { .. }), "{refusal}");
    assert!(
        refusal.to_string().contains("new writes are refused"),
        "{refusal}"
    );
    assert!(refusal.is_recoverable());
    // The healthy destination kept going on its own.
    let sealed = log.roll().await.unwrap();
    assert_eq!(sealed, written);
    bounded("the healthy destination", async {
        while shipper.status()[1].shipped_lsn < sealed {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let status = shipper.status();
    assert_eq!(status[0].shipped_lsn, 0);
    assert!(status[0]
        .last_error
        .as_deref()
        .unwrap()
        .contains("test outage"));
    assert!(
        !log.sealed_segments().unwrap().is_empty(),
        "kept for the broken destination"
    );

    // The outage ends: the backlog drains without help, and writes are admitted again.
    broken.down.store(false, Ordering::SeqCst);
    bounded("the backlog to drain", shipper.wait_shipped(sealed)).await;
    bounded("the spool to empty", async {
        while log.check_admission().is_err() || !log.sealed_segments().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    for store in [broken.clone() as Arc<dyn Store>, healthy] {
        let cat = Catalog::load(&*store, "test").await.unwrap();
        assert!(cat.gaps().is_empty());
        assert_eq!(cat.windows()[0].latest_lsn, written, "{}", store.url());
    }
    shipper.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_holding_another_stream_of_the_same_name_is_never_written() {
    let store_dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(FsStore::new(store_dir.path()).unwrap());
    // Another data directory, same stream name, different random id.
    let other = tempfile::tempdir().unwrap();
    let (log, _) = Log::open(other.path(), config()).unwrap();
    let log = Arc::new(log);
    log.append(entry(0, 0)).await.unwrap();
    let first = Shipper::start(log.clone(), vec![store.clone()], fast());
    let sealed = log.roll().await.unwrap();
    bounded("first stream shipped", first.wait_shipped(sealed)).await;
    first.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let (log2, _) = Log::open(dir.path(), config()).unwrap();
    let log2 = Arc::new(log2);
    log2.append(entry(0, 0)).await.unwrap();
    let second = Shipper::start(log2.clone(), vec![store.clone()], fast());
    log2.roll().await.unwrap();
    bounded("the conflict to stop the destination", async {
        while !second.status()[0].stopped {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let err = second.status()[0].last_error.clone().unwrap();
    assert!(
        err.contains("two different streams were given the same name"),
        "{err}"
    );
    assert_eq!(
        log2.sealed_segments().unwrap().len(),
        1,
        "kept locally, not lost"
    );
    let cat = Catalog::load(&*store, "test").await.unwrap();
    assert_eq!(
        cat.segments.len(),
        1,
        "the first stream's history is untouched"
    );
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_a_one_second_interval_writes_ship_by_themselves_and_quiet_streams_upload_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(FsStore::new(store_dir.path()).unwrap());
    // The ship interval drives both the age roll and the shipper's rounds.
    let interval = Duration::from_secs(1);
    let mut cfg = config();
    cfg.segment_max_age = interval;
    let (log, _) = Log::open(dir.path(), cfg).unwrap();
    let log = Arc::new(log);
    let ship = ShipConfig {
        interval,
        ..Default::default()
    };
    let shipper = Shipper::start(log.clone(), vec![store.clone()], ship);

    // One write, and no roll asked for: it reaches the store by itself.
    let a = log.append(entry(0, 0)).await.unwrap();
    bounded("the write to ship by itself", shipper.wait_shipped(a.lsn)).await;

    // Quiet: let the shipper run several rounds (its heartbeats are the signal).
    let heartbeat = || async {
        let b = store.get("test/heartbeat.json").await.unwrap();
        serde_json::from_slice::<vecwal::ship::Heartbeat>(&b)
            .unwrap()
            .written_us
    };
    let mut seen = vec![heartbeat().await];
    bounded("three more shipper rounds", async {
        while seen.len() < 4 {
            let t = heartbeat().await;
            if t != *seen.last().unwrap() {
                seen.push(t);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let cat = Catalog::load(&*store, "test").await.unwrap();
    assert_eq!(
        cat.segments.len(),
        1,
        "a quiet stream uploaded segments: {:?}",
        cat.segments
    );
    let hb: vecwal::ship::Heartbeat =
        serde_json::from_slice(&store.get("test/heartbeat.json").await.unwrap()).unwrap();
    assert_eq!((hb.appended_lsn, hb.shipped_lsn), (1, 1));
    assert_eq!(
        hb.shipped_through_us,
        hb.written_us - 1,
        "caught up: no exposure"
    );
    shipper.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wait_policy_holds_writes_until_shipping_makes_room() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = tempfile::tempdir().unwrap();
    let mut cfg = config();
    cfg.segment_max_bytes = 16 << 10;
    cfg.spool_max_bytes = 64 << 10;
    cfg.spool_full = vecwal::log::SpoolFullPolicy::Wait(Duration::from_secs(60));
    let (log, _) = Log::open(dir.path(), cfg.clone()).unwrap();
    let log = Arc::new(log);
    let store = Arc::new(Switchable {
        inner: FsStore::new(store_dir.path()).unwrap(),
        down: AtomicBool::new(true),
    });
    let shipper = Shipper::start(log.clone(), vec![store.clone() as Arc<dyn Store>], fast());
    fill_spool(&log, 3).await;
    // Full: a write now waits instead of failing...
    let waiting = {
        let log = log.clone();
        tokio::spawn(async move { log.admit().await })
    };
    tokio::task::yield_now().await;
    assert!(
        !waiting.is_finished(),
        "admitted although the spool is full"
    );
    // ...and goes through once the store is back and shipping makes room.
    store.down.store(false, Ordering::SeqCst);
    bounded("the waiting write to be admitted", waiting)
        .await
        .unwrap()
        .unwrap();
    shipper.stop().await;

    // With a short limit and the store down for good, the wait ends in the clear refusal.
    let dir2 = tempfile::tempdir().unwrap();
    cfg.spool_full = vecwal::log::SpoolFullPolicy::Wait(Duration::from_millis(200));
    let (log2, _) = Log::open(dir2.path(), cfg).unwrap();
    fill_spool(&log2, 4).await;
    let err = bounded("the wait to time out", log2.admit())
        .await
        .unwrap_err();
    assert!(matches!(err, LogError::SpoolFull { .. }), "{err}");
}

/// Appends until the spool is full, and still full once every rolled segment is sealed
/// (sealed segments are smaller than the open ones they replace).
async fn fill_spool(log: &Log, writer: u64) {
    let mut n = 0;
    loop {
        while log.check_admission().is_ok() {
            log.append(entry(writer, n)).await.unwrap();
            n += 1;
        }
        log.roll().await.unwrap();
        if log.check_admission().is_err() {
            return;
        }
    }
}
