//! The behaviour every store backend must have. Each backend's test file runs `run` on a
//! fresh, empty store.

use std::sync::Arc;

use vecwal::store::{PutOutcome, Store, StoreError};

pub async fn run(store: Arc<dyn Store>) {
    create_is_atomic_idempotent_and_never_overwrites(&*store).await;
    missing_objects_and_deletes(&*store).await;
    list_is_sorted_filtered_and_complete(&*store).await;
    large_objects_round_trip(&*store).await;
    bad_keys_are_refused(&*store).await;
    assert_eq!(store.top_level().await.unwrap(), vec!["suite".to_string()]);
}

async fn create_is_atomic_idempotent_and_never_overwrites(s: &dyn Store) {
    let key = "suite/create/a.seg";
    assert_eq!(
        s.put_new(key, b"first".to_vec()).await.unwrap(),
        PutOutcome::Created
    );
    assert_eq!(s.get(key).await.unwrap(), b"first");
    assert_eq!(s.head(key).await.unwrap(), Some(5));
    // The same bytes again: an upload that was not confirmed the first time.
    assert_eq!(
        s.put_new(key, b"first".to_vec()).await.unwrap(),
        PutOutcome::AlreadyPresent
    );
    // Different bytes: refused, and the object is unchanged.
    let err = s.put_new(key, b"other".to_vec()).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("a different object already exists at suite/create/a.seg"),
        "{err}"
    );
    assert!(!err.is_recoverable());
    assert_eq!(s.get(key).await.unwrap(), b"first");
    // Same length, different bytes: still a conflict.
    let err = s.put_new(key, b"fir5t".to_vec()).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    // put replaces (state objects only).
    s.put("suite/create/state.json", b"{\"v\":1}".to_vec())
        .await
        .unwrap();
    s.put("suite/create/state.json", b"{\"v\":2}".to_vec())
        .await
        .unwrap();
    assert_eq!(
        s.get("suite/create/state.json").await.unwrap(),
        b"{\"v\":2}"
    );
}

async fn missing_objects_and_deletes(s: &dyn Store) {
    let err = s.get("suite/missing/x").await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
    assert_eq!(s.head("suite/missing/x").await.unwrap(), None);
    s.delete("suite/missing/x").await.unwrap();
    s.put_new("suite/missing/y", vec![1, 2, 3]).await.unwrap();
    s.delete("suite/missing/y").await.unwrap();
    assert_eq!(s.head("suite/missing/y").await.unwrap(), None);
    // A deleted name can be created again.
    assert_eq!(
        s.put_new("suite/missing/y", vec![4]).await.unwrap(),
        PutOutcome::Created
    );
}

async fn list_is_sorted_filtered_and_complete(s: &dyn Store) {
    // More than one page of S3 ListObjectsV2 (1000 keys).
    let n = 1005;
    let mut expected = Vec::new();
    for i in (0..n).rev() {
        let key = format!("suite/list/wal/0000000001/{i:05}.seg");
        s.put_new(&key, vec![0; i % 7]).await.unwrap();
        expected.push((key, (i % 7) as u64));
    }
    s.put_new("suite/list/snapshots/1.json", b"{}".to_vec())
        .await
        .unwrap();
    s.put_new("suite/listing-elsewhere/x", b"x".to_vec())
        .await
        .unwrap();
    expected.sort();
    let got: Vec<(String, u64)> = s
        .list("suite/list/wal/")
        .await
        .unwrap()
        .into_iter()
        .map(|o| (o.key, o.size))
        .collect();
    assert_eq!(got, expected);
    let all = s.list("suite/list").await.unwrap();
    assert_eq!(all.len(), n + 2, "a prefix need not end at a /");
    assert!(s.list("suite/nothing-here/").await.unwrap().is_empty());
}

async fn large_objects_round_trip(s: &dyn Store) {
    let data: Vec<u8> = (0..(8u32 << 20))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    s.put_new("suite/large/seg", data.clone()).await.unwrap();
    assert_eq!(
        s.head("suite/large/seg").await.unwrap(),
        Some(data.len() as u64)
    );
    assert!(s.get("suite/large/seg").await.unwrap() == data);
}

async fn bad_keys_are_refused(s: &dyn Store) {
    for key in ["", "../escape", "a//b", "/abs", "a/./b", "a/"] {
        assert!(
            s.put_new(key, vec![1]).await.is_err(),
            "key {key:?} accepted"
        );
    }
}
