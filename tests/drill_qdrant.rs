//! `vecwal drill qdrant` on a real Qdrant: a sound store passes against the source (every
//! point, exact searches), a drill promotes its restore to a base that then restores
//! exactly, and a flipped byte or a base snapshot Qdrant refuses fails the drill by name.

#[path = "support/files.rs"]
mod files;
#[path = "support/qdrant.rs"]
mod qdrant;
#[path = "support/qdrant_proxy.rs"]
mod qdrant_proxy;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use files::{copy_dir, files_under};
use qdrant::{http, Qdrant};
use qdrant_proxy::Proxied;
use serde_json::{json, Value};

fn call(addr: &str, method: &str, path: &str, body: Value) {
    let (s, b) = http(addr, method, path, Some(&body.to_string()), &[]);
    assert_eq!(s, 200, "{method} {path}: {b}");
}

fn upsert(addr: &str, ids: std::ops::Range<u64>, round: u64) {
    let points: Vec<Value> = ids
        .map(|i| {
            let f = (i + 1) as f64;
            json!({"id": i, "vector": [f, (i % 7) as f64, round as f64 + 1.0, 1.0 / f],
                   "payload": {"round": round, "tag": format!("t{}", i % 3)}})
        })
        .collect();
    call(
        addr,
        "PUT",
        "/collections/c/points?wait=true",
        json!({ "points": points }),
    );
}

/// Waits until the proxy's shipper says the store holds everything it logged.
fn shipped(p: &Proxied) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let started = vecwal::log::now_us();
    loop {
        let hb =
            p.rt.block_on(vecwal::ship::Heartbeat::read(p.store.as_ref(), "qdrant"))
                .unwrap();
        if hb.is_some_and(|h| h.written_us > started && h.shipped_lsn >= h.appended_lsn) {
            return;
        }
        assert!(Instant::now() < deadline, "not shipped within 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn drill(store: &Path, extra: &[&str]) -> (Option<i32>, Value, String) {
    let report = tempfile::NamedTempFile::new().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vecwal"))
        .args(["drill", "qdrant", "--collection", "c", "--store"])
        .arg(store)
        .arg("--qdrant")
        .arg(qdrant::binary().unwrap())
        .arg("--report")
        .arg(report.path())
        .args(extra)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let report = serde_json::from_slice(&std::fs::read(report.path()).unwrap()).unwrap_or_default();
    (out.status.code(), report, text)
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} check in {report:#}"))
}

#[test]
fn a_qdrant_drill_passes_against_the_source_promotes_and_fails_on_damage() {
    let Some(q) = Qdrant::start(None) else { return };
    let p = Proxied::start(&q);
    let a = p.addr();
    call(
        &a,
        "PUT",
        "/collections/c",
        json!({"vectors": {"size": 4, "distance": "Cosine"}}),
    );
    upsert(&a, 0..50, 0);
    let (s, b) = http(&a, "POST", "/vecwal/snapshot?collection=c", None, &[]);
    assert_eq!(s, 200, "{b}");
    upsert(&a, 30..80, 1);
    call(
        &a,
        "POST",
        "/collections/c/points/delete?wait=true",
        json!({"points": [3, 4, 5]}),
    );
    shipped(&p);
    let store = p.dir.path().join("store");
    let source = format!("http://{}", q.http_addr());

    let (code, report, text) = drill(&store, &["--source", &source]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(report["verdict"], "PASS", "{report:#}");
    assert_eq!(report["collection"], "c");
    assert_eq!(
        check(&report, "points")["detail"],
        "77 points: equal",
        "{report:#}"
    );
    assert_eq!(check(&report, "searches")["status"], "pass", "{report:#}");
    assert!(
        report["rto"]["snapshot_load_s"].as_f64().unwrap() > 0.0,
        "{report:#}"
    );
    let latest = report["restored_lsn"].as_u64().unwrap();

    let work = tempfile::tempdir().unwrap();
    let (flipped, unloadable) = (work.path().join("flipped"), work.path().join("unloadable"));
    copy_dir(&store, &flipped);
    copy_dir(&store, &unloadable);

    let (code, report, text) = drill(&store, &["--promote"]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(report["promoted_lsn"].as_u64(), Some(latest), "{report:#}");
    assert_eq!(check(&report, "searches")["status"], "pass", "{report:#}");
    let (code, report, text) = drill(&store, &["--source", &source]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(report["base_lsn"].as_u64(), Some(latest), "{report:#}");
    assert_eq!(
        check(&report, "points")["detail"],
        "77 points: equal",
        "{report:#}"
    );
    drop(p);

    let last = files_under(&flipped, ".seg").pop().unwrap();
    let mut bytes = std::fs::read(&last).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&last, bytes).unwrap();
    let (code, report, text) = drill(&flipped, &[]);
    assert_eq!(code, Some(1), "{text}");
    let name = last.file_name().unwrap().to_string_lossy().to_string();
    assert!(
        report["reason"].as_str().unwrap().contains(&name),
        "{report:#}"
    );

    // The base cut short, its manifest rewritten to match: Qdrant refuses to recover it.
    let snap = files_under(&unloadable, ".qdrant-snapshot").pop().unwrap();
    let data = std::fs::read(&snap).unwrap();
    let cut = data[..data.len() / 2].to_vec();
    std::fs::write(&snap, &cut).unwrap();
    let manifest = snap.with_extension("json");
    let mut m: Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    m["size"] = cut.len().into();
    m["sha256"] = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&cut)).into();
    std::fs::write(&manifest, serde_json::to_vec(&m).unwrap()).unwrap();
    let (code, report, text) = drill(&unloadable, &[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        report["reason"]
            .as_str()
            .unwrap()
            .contains("uploading the base snapshot failed"),
        "{report:#}"
    );
}
