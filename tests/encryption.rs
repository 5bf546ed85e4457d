//! Client-side encryption end to end on a local store: objects hold no plaintext and
//! cannot be read without the key; a wrong key is a clear error naming key ids; a
//! rotation keeps old objects readable with the old key.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use support::{config, text, vecwal};
use vecwal::catalog::Catalog;
use vecwal::log::{Entry, Log};
use vecwal::ship::{ShipConfig, Shipper};
use vecwal::store::{FsStore, Keyring, Store};
use vecwal_format::{Operation, SealedSegment};

const MARKER: &[u8] = b"confidential-title-7a1f";

fn key_file(dir: &Path, name: &str, byte: u8) -> (String, Keyring) {
    let path = dir.join(name);
    std::fs::write(&path, format!("{}\n", hex::encode([byte; 32]))).unwrap();
    let key = Keyring::key_from_file(&path).unwrap();
    (
        path.to_str().unwrap().to_string(),
        Keyring::new(vec![key]).unwrap(),
    )
}

/// Appends `n` records carrying MARKER and ships them with `keyring`.
async fn ship(data: &Path, store: Arc<dyn Store>, keyring: Keyring, from: u64, n: u64) {
    let mut cfg = config();
    cfg.segment_max_bytes = 16 << 10;
    let (log, _) = Log::open(data, cfg).unwrap();
    let log = Arc::new(log);
    let ship = ShipConfig {
        interval: Duration::from_millis(100),
        keyring: Some(Arc::new(keyring)),
        ..Default::default()
    };
    let shipper = Shipper::start(log.clone(), vec![store], ship);
    for i in from..from + n {
        let op = Operation::RedisCommand {
            argv: vec![
                b"HSET".to_vec(),
                format!("doc:{i}").into_bytes(),
                b"title".to_vec(),
                MARKER.to_vec(),
            ],
        };
        log.append(Entry::new("0", &op).unwrap()).await.unwrap();
    }
    let last = log.roll().await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), shipper.wait_shipped(last))
        .await
        .unwrap();
    shipper.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_objects_hide_the_data_and_need_the_right_key() {
    let keys = tempfile::tempdir().unwrap();
    let (key_a, ring_a) = key_file(keys.path(), "a.key", 0xa1);
    let (key_b, _) = key_file(keys.path(), "b.key", 0xb2);
    let data = tempfile::tempdir().unwrap();
    let store_dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(FsStore::new(store_dir.path()).unwrap());
    ship(data.path(), store.clone(), ring_a.clone(), 0, 200).await;

    let cat = Catalog::load(&*store, "test").await.unwrap();
    assert!(cat.segments.len() >= 2);
    for seg in &cat.segments {
        assert!(seg.key.ends_with(".seg.enc"), "{}", seg.key);
        let bytes = store.get(&seg.key).await.unwrap();
        assert!(
            SealedSegment::open(&bytes[..]).is_err(),
            "readable without the key: {}",
            seg.key
        );
        assert!(
            !bytes.windows(MARKER.len()).any(|w| w == MARKER),
            "plaintext in {}",
            seg.key
        );
        // Moved to another name, an object no longer opens.
        let other = &cat.segments[0].key;
        if other != &seg.key {
            assert!(ring_a.decrypt(other, &bytes).is_err());
        }
        assert!(ring_a.decrypt(&seg.key, &bytes).is_ok());
    }

    let s = store_dir.path().to_str().unwrap();
    let o = vecwal(&["verify", "--store", s]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("encrypted: give its key"), "{}", text(&o));

    let o = vecwal(&[
        "verify",
        "--store",
        s,
        "--all",
        "--encryption-key-file",
        &key_b,
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let id_a = ring_a.current_id();
    assert!(
        text(&o).contains(&format!(
            "encrypted with key id {id_a}, but the keys given have ids ["
        )),
        "{}",
        text(&o)
    );

    let o = vecwal(&[
        "verify",
        "--store",
        s,
        "--all",
        "--encryption-key-file",
        &key_a,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("(200 records)"), "{}", text(&o));
    // Key material never shows up in output.
    assert!(!text(&o).contains(&hex::encode([0xa1u8; 32])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_key_rotation_both_keys_are_needed_and_enough() {
    let keys = tempfile::tempdir().unwrap();
    let (key_a, ring_a) = key_file(keys.path(), "a.key", 0x11);
    let (key_b, ring_b) = key_file(keys.path(), "b.key", 0x22);
    let data = tempfile::tempdir().unwrap();
    let store_dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(FsStore::new(store_dir.path()).unwrap());
    ship(data.path(), store.clone(), ring_a.clone(), 0, 60).await;
    // Rotate: B encrypts from now on, A stays to read what it encrypted.
    let ring_ba = ring_b.with_older(&ring_a);
    ship(data.path(), store.clone(), ring_ba, 60, 60).await;

    let s = store_dir.path().to_str().unwrap();
    let o = vecwal(&[
        "verify",
        "--store",
        s,
        "--encryption-key-file",
        &key_b,
        "--encryption-key-file",
        &key_a,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("(120 records)"), "{}", text(&o));
    let o = vecwal(&[
        "verify",
        "--store",
        s,
        "--all",
        "--encryption-key-file",
        &key_b,
    ]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "old objects need the old key: {}",
        text(&o)
    );
    assert!(text(&o).contains(&ring_a.current_id()), "{}", text(&o));
}

#[test]
fn key_sources_accept_hex_base64_raw_and_refuse_anything_else_without_echoing_it() {
    let dir = tempfile::tempdir().unwrap();
    let hex_path = dir.path().join("hex");
    std::fs::write(&hex_path, hex::encode([5u8; 32])).unwrap();
    let b64_path = dir.path().join("b64");
    use base64::Engine as _;
    std::fs::write(
        &b64_path,
        base64::engine::general_purpose::STANDARD.encode([5u8; 32]),
    )
    .unwrap();
    let raw_path = dir.path().join("raw");
    std::fs::write(&raw_path, [5u8; 32]).unwrap();
    let ids: Vec<String> = [&hex_path, &b64_path, &raw_path]
        .iter()
        .map(|p| {
            Keyring::new(vec![Keyring::key_from_file(p).unwrap()])
                .unwrap()
                .current_id()
        })
        .collect();
    assert!(ids.iter().all(|i| i == &ids[0]), "{ids:?}");

    let bad = dir.path().join("bad");
    std::fs::write(&bad, "hunter2-not-a-key").unwrap();
    let err = Keyring::key_from_file(&bad).unwrap_err();
    assert!(err.contains("does not hold a 256-bit key"), "{err}");
    assert!(
        !err.contains("hunter2"),
        "the file's content was echoed: {err}"
    );
    let err = Keyring::key_from_env("VECWAL_TEST_UNSET_KEY_VAR").unwrap_err();
    assert!(err.contains("is not set"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reshipping_after_a_restart_or_a_rotation_recognizes_what_is_already_stored() {
    let keys = tempfile::tempdir().unwrap();
    let (_, ring_a) = key_file(keys.path(), "a.key", 0x31);
    let (_, ring_b) = key_file(keys.path(), "b.key", 0x32);
    let data = tempfile::tempdir().unwrap();
    let store_dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(FsStore::new(store_dir.path()).unwrap());
    let mut cfg = config();
    cfg.segment_max_bytes = 16 << 10;
    let (log, _) = Log::open(data.path(), cfg).unwrap();
    let log = Arc::new(log);
    for i in 0..100 {
        let op = Operation::RedisCommand {
            argv: vec![
                b"SET".to_vec(),
                format!("k{i}").into_bytes(),
                MARKER.to_vec(),
            ],
        };
        log.append(Entry::new("0", &op).unwrap()).await.unwrap();
    }
    let last = log.roll().await.unwrap();
    let fast = |ring: &Keyring| ShipConfig {
        interval: Duration::from_millis(100),
        min_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        keyring: Some(Arc::new(ring.clone())),
    };
    // A second destination that never answers keeps every local copy, as after an outage.
    let nowhere: Arc<dyn Store> = Arc::new(FsStore::new(store_dir.path().join("x")).unwrap());
    let blocked = Arc::new(BlockedStore(nowhere));
    // Each round is a new shipper (a restart): it knows nothing of earlier confirmations and
    // uploads every local segment again: under key A, under A again, then after a rotation
    // to B (with A kept to read the old objects).
    for ring in [ring_a.clone(), ring_a.clone(), ring_b.with_older(&ring_a)] {
        let shipper = Shipper::start(
            log.clone(),
            vec![store.clone(), blocked.clone() as Arc<dyn Store>],
            fast(&ring),
        );
        tokio::time::timeout(Duration::from_secs(60), async {
            while (shipper.status()[0].shipped_lsn < last
                || shipper.status()[0].segments_shipped == 0)
                && !shipper.status()[0].stopped
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap();
        let s = &shipper.status()[0];
        assert!(!s.stopped, "the destination stopped: {:?}", s.last_error);
        assert!(s.last_error.is_none(), "{:?}", s.last_error);
        shipper.stop().await;
        assert!(
            !log.sealed_segments().unwrap().is_empty(),
            "kept for the blocked destination"
        );
    }
}

/// A destination that is always unreachable.
struct BlockedStore(Arc<dyn Store>);

#[async_trait::async_trait]
impl Store for BlockedStore {
    fn url(&self) -> &str {
        "blocked://"
    }
    async fn put_new(
        &self,
        key: &str,
        _: Vec<u8>,
    ) -> Result<vecwal::store::PutOutcome, vecwal::store::StoreError> {
        Err(down(key))
    }
    async fn put(&self, key: &str, _: Vec<u8>) -> Result<(), vecwal::store::StoreError> {
        Err(down(key))
    }
    async fn get(&self, key: &str) -> Result<Vec<u8>, vecwal::store::StoreError> {
        Err(down(key))
    }
    async fn head(&self, key: &str) -> Result<Option<u64>, vecwal::store::StoreError> {
        Err(down(key))
    }
    async fn list(
        &self,
        key: &str,
    ) -> Result<Vec<vecwal::store::ObjectInfo>, vecwal::store::StoreError> {
        Err(down(key))
    }
    async fn delete(&self, key: &str) -> Result<(), vecwal::store::StoreError> {
        Err(down(key))
    }
    async fn top_level(&self) -> Result<Vec<String>, vecwal::store::StoreError> {
        let _ = &self.0;
        Err(down(""))
    }
}

fn down(key: &str) -> vecwal::store::StoreError {
    vecwal::store::StoreError::Unavailable {
        store: "blocked://".into(),
        op: "any",
        key: key.into(),
        detail: "connection refused".into(),
    }
}
