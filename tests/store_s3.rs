//! The store suite on a real S3-compatible service (SeaweedFS), plus what only S3 has:
//! refused credentials, unreachable endpoints.

#[path = "support/seaweed.rs"]
mod seaweed;
#[path = "support/store_suite.rs"]
mod store_suite;

use vecwal::store::{S3Store, Sse, Store, StoreError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_store_passes_the_store_suite_on_seaweedfs() {
    let server = seaweed::Seaweed::start();
    store_suite::run(server.store("suite-root").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_refused_and_never_echoed() {
    let server = seaweed::Seaweed::start();
    let mut opts = server.options();
    let secret = "not-the-secret-abcdef";
    opts.static_credentials = Some((seaweed::ACCESS_KEY.into(), secret.into()));
    let store = S3Store::new(seaweed::BUCKET, "x", &opts).await.unwrap();
    let err = store.put_new("k", b"v".to_vec()).await.unwrap_err();
    assert!(matches!(err, StoreError::Refused { .. }), "{err}");
    assert!(!err.is_recoverable());
    let text = format!("{err} {err:?}");
    assert!(
        !text.contains(secret),
        "the secret leaked into an error: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_endpoint_is_a_recoverable_error() {
    let mut server = seaweed::Seaweed::start();
    let store = server.store("x").await;
    store.put_new("a", b"1".to_vec()).await.unwrap();
    server.stop();
    let err = store.put_new("b", b"2".to_vec()).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err}");
    assert!(err.is_recoverable());
    server.restart();
    assert_eq!(
        store.get("a").await.unwrap(),
        b"1",
        "data survives the restart"
    );
    store.put_new("b", b"2".to_vec()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_encryption_requests_are_sent_and_objects_verified() {
    let server = seaweed::Seaweed::start();
    let mut opts = server.options();
    opts.sse = Some(Sse::S3);
    let store = S3Store::new(seaweed::BUCKET, "sse", &opts).await.unwrap();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    store.put_new("a.seg", data.clone()).await.unwrap();
    assert_eq!(store.get("a.seg").await.unwrap(), data);
    // Idempotent and conflict-checked under SSE too.
    store.put_new("a.seg", data.clone()).await.unwrap();
    let err = store.put_new("a.seg", vec![1; 100_000]).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    // The service really stored it encrypted: the volume files do not hold the plaintext
    // run (without SSE they would).
    assert!(
        !server.data_contains(&data[1000..1251]),
        "plaintext found in the volume files"
    );
}
