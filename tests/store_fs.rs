//! The store suite on the local-directory backend.

#[path = "support/store_suite.rs"]
mod store_suite;

use std::sync::Arc;

use vecwal::store::{FsStore, Store};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_directory_store_passes_the_store_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(FsStore::new(dir.path()).unwrap());
    store_suite::run(store.clone()).await;
    // No temp file is left behind by creations, refused ones included.
    let leftovers: Vec<_> = walk(dir.path())
        .into_iter()
        .filter(|name| name.starts_with('.'))
        .collect();
    assert!(
        leftovers.is_empty(),
        "{} temp files left, e.g. {:?}",
        leftovers.len(),
        leftovers.first()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_urls_are_parsed_or_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let s = vecwal::store::open(&url, &Default::default())
        .await
        .unwrap();
    assert_eq!(s.url(), url);
    let s = vecwal::store::open(dir.path().to_str().unwrap(), &Default::default())
        .await
        .unwrap();
    assert_eq!(s.url(), url);
    let err = vecwal::store::open("gs://bucket/x", &Default::default())
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("use s3://bucket/prefix"), "{err}");
    let err = vecwal::store::open("s3:///x", &Default::default())
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("names no bucket"), "{err}");
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    out
}
