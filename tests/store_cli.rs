//! `ls`, `status`, `verify --store` and `prune` against a local-directory store holding a
//! shipped stream, as an operator runs them.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use support::{config, entry, text, vecwal};
use vecwal::catalog::keys::SegmentKey;
use vecwal::catalog::{Catalog, SnapshotManifest};
use vecwal::log::Log;
use vecwal::ship::{ShipConfig, Shipper};
use vecwal::snapshot::{put_snapshot, SnapshotPoint};
use vecwal::store::{FsStore, Store};

/// A stream of 300 records shipped in several segments to a local store.
async fn shipped(store_dir: &Path) -> Arc<dyn Store> {
    let data = tempfile::tempdir().unwrap();
    let mut cfg = config();
    cfg.segment_max_bytes = 64 << 10;
    let (log, _) = Log::open(data.path(), cfg).unwrap();
    let log = Arc::new(log);
    let store: Arc<dyn Store> = Arc::new(FsStore::new(store_dir).unwrap());
    let cfg = ShipConfig {
        interval: Duration::from_millis(100),
        ..Default::default()
    };
    let shipper = Shipper::start(log.clone(), vec![store.clone()], cfg);
    for i in 0..300 {
        log.append(entry(2, i)).await.unwrap();
    }
    let last = log.roll().await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), shipper.wait_shipped(last))
        .await
        .unwrap();
    shipper.stop().await;
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_finds_a_flipped_byte_names_the_object_and_remembers_progress() {
    let dir = tempfile::tempdir().unwrap();
    let store = shipped(dir.path()).await;
    let s = dir.path().to_str().unwrap();
    let o = vecwal(&["verify", "--store", s]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("300 records"), "{}", text(&o));
    // A second run downloads nothing new.
    let o = vecwal(&["verify", "--store", s]);
    assert!(text(&o).contains("0 bytes downloaded"), "{}", text(&o));

    // One flipped byte in the last segment (not verified yet after --all resets).
    let cat = Catalog::load(&*store, "test").await.unwrap();
    let victim = &cat.segments[1];
    let path = dir.path().join(&victim.key);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x10;
    std::fs::write(&path, bytes).unwrap();
    let o = vecwal(&["verify", "--store", s]);
    assert!(
        o.status.success(),
        "already verified objects are not downloaded again: {}",
        text(&o)
    );
    let o = vecwal(&["verify", "--store", s, "--all"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains(&format!("FAULT: {}", victim.key)), "{out}");
    assert!(out.contains("checksum mismatch"), "{out}");
    assert!(
        out.contains(&format!("(LSN {})", victim.range.first_lsn)),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_segment_is_a_gap_in_ls_status_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let store = shipped(dir.path()).await;
    let s = dir.path().to_str().unwrap();
    let o = vecwal(&["ls", "--store", s]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("(LSN 300)   timeline 1, from stream start"),
        "{}",
        text(&o)
    );

    let cat = Catalog::load(&*store, "test").await.unwrap();
    assert!(cat.segments.len() >= 3);
    let missing = &cat.segments[1];
    store.delete(&missing.key).await.unwrap();
    let o = vecwal(&["ls", "--store", s]);
    let gap = format!(
        "GAP: timeline 1 has no records {}..={}",
        missing.range.first_lsn, missing.range.last_lsn
    );
    assert!(text(&o).contains(&gap), "{}", text(&o));
    let o = vecwal(&["status", "--store", s]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("gap(s) in the shipped history"),
        "{}",
        text(&o)
    );
    let o = vecwal(&["verify", "--store", s]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("LSN gap"), "{}", text(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_fails_when_the_lag_exceeds_the_limit_or_no_shipper_reported() {
    let dir = tempfile::tempdir().unwrap();
    shipped(dir.path()).await;
    let s = dir.path().to_str().unwrap();
    let o = vecwal(&["status", "--store", s, "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[0]["shipped_lsn"], 300);
    assert_eq!(v[0]["heartbeat"]["appended_lsn"], 300);
    // No shipper writes heartbeats any more: the exposure grows past a small limit.
    let o = vecwal(&["status", "--store", s, "--max-lag", "1ms"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("exceeds --max-lag"), "{}", text(&o));

    let empty = tempfile::tempdir().unwrap();
    std::fs::create_dir(empty.path().join("s")).unwrap();
    let o = vecwal(&["status", "--store", empty.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("no heartbeat"), "{}", text(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_keeps_the_base_snapshot_and_everything_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = shipped(dir.path()).await;
    let s = dir.path().to_str().unwrap();
    let cat = Catalog::load(&*store, "test").await.unwrap();
    let n = cat.segments.len();
    assert!(n >= 4);
    let (_, b, _) = two_snapshots(&*store, &cat).await;

    // A window reaching back before every snapshot: nothing may go.
    let o = vecwal(&["prune", "--store", s, "--retain", "30d"]);
    assert!(text(&o).contains("nothing can be deleted"), "{}", text(&o));

    let o = vecwal(&["prune", "--store", s, "--retain", "0s", "--dry-run"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("base: snapshot at LSN {}", b.last_lsn)),
        "{}",
        text(&o)
    );
    assert_eq!(
        Catalog::load(&*store, "test").await.unwrap().segments.len(),
        n,
        "dry run deletes nothing"
    );

    let o = vecwal(&["prune", "--store", s, "--retain", "0s"]);
    assert!(o.status.success(), "{}", text(&o));
    let after = Catalog::load(&*store, "test").await.unwrap();
    assert_eq!(
        after.segments.len(),
        n - 3,
        "segments 0..=2 end at or before the base"
    );
    assert_eq!(after.segments[0].range.first_lsn, b.last_lsn + 1);
    assert_eq!(after.snapshots.len(), 1);
    assert_eq!(after.snapshots[0].lsn, b.last_lsn);
    assert!(after.unrecognized.is_empty(), "{:?}", after.unrecognized);
    let w = after.windows();
    assert_eq!(
        (w.len(), w[0].base_lsn, w[0].latest_lsn),
        (1, b.last_lsn, 300)
    );
    let o = vecwal(&["verify", "--store", s, "--all"]);
    assert!(
        o.status.success(),
        "the pruned store is sound: {}",
        text(&o)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_never_takes_a_snapshot_whose_data_is_missing_as_its_base() {
    let dir = tempfile::tempdir().unwrap();
    let store = shipped(dir.path()).await;
    let s = dir.path().to_str().unwrap();
    let cat = Catalog::load(&*store, "test").await.unwrap();
    let (a, _, newer) = two_snapshots(&*store, &cat).await;
    // The newer snapshot's data is gone (lost, or its upload was cut short).
    store.delete(&newer.data_key).await.unwrap();
    let o = vecwal(&["prune", "--store", s, "--retain", "0s"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("base: snapshot at LSN {}", a.last_lsn)),
        "{}",
        text(&o)
    );
    let after = Catalog::load(&*store, "test").await.unwrap();
    assert_eq!(
        after.segments[0].range.first_lsn,
        a.last_lsn + 1,
        "everything after the usable base is kept"
    );
    assert_eq!(after.windows()[0].latest_lsn, 300);
}

/// Snapshots aligned to the ends of segments 0 and 2: their ranges, and the newer manifest.
async fn two_snapshots(
    store: &dyn Store,
    cat: &Catalog,
) -> (SegmentKey, SegmentKey, SnapshotManifest) {
    let (a, b) = (cat.segments[0].range, cat.segments[2].range);
    let at = |lsn, time_us| SnapshotPoint {
        timeline: 1,
        lsn,
        time_us,
        format: "rdb",
        namespace: "",
    };
    put_snapshot(
        store,
        "test",
        at(a.last_lsn, a.last_ts),
        b"snap-a".to_vec(),
        None,
    )
    .await
    .unwrap();
    let newer = put_snapshot(
        store,
        "test",
        at(b.last_lsn, b.last_ts),
        b"snap-b".to_vec(),
        None,
    )
    .await
    .unwrap();
    (a, b, newer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ship_command_seals_and_ships_everything_and_refuses_a_live_directory() {
    let data = tempfile::tempdir().unwrap();
    let store_dir = tempfile::tempdir().unwrap();
    let key = data.path().join("key");
    std::fs::write(&key, hex::encode([9u8; 32])).unwrap();
    let mut cfg = config();
    cfg.segment_max_bytes = 64 << 10;
    let (log, _) = Log::open(data.path().join("d").as_path(), cfg.clone()).unwrap();
    for i in 0..150 {
        log.append(entry(5, i)).await.unwrap();
    }
    // While a process has the directory open, ship refuses.
    let (d, s, k) = (
        data.path().join("d"),
        store_dir.path().to_str().unwrap().to_string(),
        key.to_str().unwrap().to_string(),
    );
    let args = [
        "ship",
        "--data-dir",
        d.to_str().unwrap(),
        "--store",
        &s,
        "--encryption-key-file",
        &k,
    ];
    let o = vecwal(&args);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("in use by another vecwal process"),
        "{}",
        text(&o)
    );
    log.close().unwrap();

    let o = vecwal(&args);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("through LSN 150"), "{}", text(&o));
    let store = FsStore::new(store_dir.path()).unwrap();
    let cat = Catalog::load(&store, "test").await.unwrap();
    assert!(cat.segments.iter().all(|s| s.range.encrypted));
    assert_eq!(cat.windows()[0].latest_lsn, 150);
    assert_eq!(
        std::fs::read_dir(d.join("sealed")).unwrap().count(),
        0,
        "local copies removed"
    );
    let o = vecwal(&["verify", "--store", &s, "--encryption-key-file", &k]);
    assert!(o.status.success(), "{}", text(&o));
    // Again, with nothing left to ship: it finishes at once (this once hung, waiting for
    // records sealed and shipped before the restart).
    let o = vecwal(&[&args[..], &["--timeout", "60s"]].concat());
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("0 segments"), "{}", text(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_stops_at_an_lsn_that_two_segments_hold() {
    // Two writers on one stream (a copied data directory): their segments overlap, and
    // which history is right cannot be told. The restore must say so, not pick one.
    let dir = tempfile::tempdir().unwrap();
    let store = shipped(&dir.path().join("store")).await;
    let second = tempfile::tempdir().unwrap();
    let first = Catalog::load(&*store, "test").await.unwrap();
    let meta = serde_json::json!({
        "name": "test",
        "stream_id": first.identity.unwrap().stream_id,
        "timeline": 1,
        "created": "2026-01-01T00:00:00Z",
    });
    std::fs::write(second.path().join("stream.json"), meta.to_string()).unwrap();
    let (log, _) = Log::open(second.path(), config()).unwrap();
    let log = Arc::new(log);
    for i in 0..50 {
        log.append(entry(9, i)).await.unwrap();
    }
    let last = log.roll().await.unwrap();
    let shipper = Shipper::start(log.clone(), vec![store.clone()], ShipConfig::default());
    tokio::time::timeout(Duration::from_secs(60), shipper.wait_shipped(last))
        .await
        .unwrap();
    shipper.stop().await;

    let plan = vecwal::restore::plan(&*store, "test", vecwal::restore::Target::Latest, None, true)
        .await
        .unwrap();
    let mut rx = vecwal::restore::records(store.clone(), &plan, None);
    let mut err = None;
    while let Some(b) = rx.recv().await {
        if let Err(e) = b {
            err = Some(e.to_string());
        }
    }
    let err = err.expect("the overlap is reported");
    assert!(err.contains("also in an earlier segment"), "{err}");
    assert!(err.contains("LSN Some(1)"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_reads_the_records_of_a_store_by_lsn_time_and_namespace() {
    let dir = tempfile::tempdir().unwrap();
    shipped(dir.path()).await;
    let s = dir.path().to_str().unwrap();
    let o = vecwal(&["inspect", "--store", s, "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 300, "every shipped record");
    let lsns: Vec<u64> = lines.iter().map(|l| l["lsn"].as_u64().unwrap()).collect();
    assert_eq!(lsns, (1..=300).collect::<Vec<_>>());
    // A window by time, as an operator looks for the moment to restore to.
    let t = |i: usize| lines[i]["time"].as_str().unwrap().to_string();
    let o = vecwal(&[
        "inspect",
        "--store",
        s,
        "--json",
        "--from",
        &t(99),
        "--to",
        &t(149),
    ]);
    let window: Vec<u64> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["lsn"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(window.first(), Some(&lsns[99]), "{}", text(&o));
    assert!(
        window.iter().all(|&l| l >= lsns[99]) && window.len() >= 51,
        "{window:?}"
    );
    let o = vecwal(&["inspect", "--store", s, "--from-lsn", "290", "--limit", "3"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).lines().count(),
        4,
        "{}",
        text(&o)
    );
    let o = vecwal(&["inspect", "--store", s, "--collection", "elsewhere"]);
    assert!(o.status.success());
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).lines().count(),
        1,
        "only the header"
    );
}
