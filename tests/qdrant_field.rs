//! What Qdrant's own API tests and a new user's first restore found, on a real Qdrant:
//! named vectors created and deleted, a recovery from a snapshot, a collection deleted,
//! dropped and created again, endpoints vecwal refuses. Each case is restored and compared
//! with what Qdrant held.

#[path = "support/os.rs"]
mod os;
#[path = "support/qdrant.rs"]
mod qdrant;
#[path = "support/qdrant_proxy.rs"]
mod qdrant_proxy;

use std::io::{Read, Write};
use std::net::TcpStream;

use qdrant::{http, Qdrant};
use qdrant_proxy::Proxied;
use serde_json::{json, Value};
use vecwal::restore::{self, Target};

fn ok(addr: &str, method: &str, path: &str, body: Value) -> Value {
    let (s, b) = http(addr, method, path, Some(&body.to_string()), &[]);
    assert_eq!(s, 200, "{method} {path}: {b}");
    serde_json::from_str(&b).unwrap()
}

/// A collection as a restore must bring it back: its vector parameters and every point.
fn state(addr: &str, c: &str) -> Value {
    let (s, b) = http(addr, "GET", &format!("/collections/{c}"), None, &[]);
    if s == 404 {
        return Value::Null;
    }
    let info: Value = serde_json::from_str(&b).unwrap();
    let params = &info["result"]["config"]["params"];
    let points = ok(
        addr,
        "POST",
        &format!("/collections/{c}/points/scroll"),
        json!({"limit": 10000, "with_payload": true, "with_vector": true}),
    );
    json!({
        "vectors": params["vectors"],
        "sparse_vectors": params["sparse_vectors"],
        "points": points["result"]["points"],
    })
}

/// Restores `c` as it was at `at` into `target` as `name`.
fn restore_at(p: &Proxied, target: &Qdrant, c: &str, name: &str, at: i64) -> Result<(), String> {
    let t = vecwal::restore::qdrant::QdrantTarget {
        rest: format!("http://{}", target.http_addr()).parse().unwrap(),
        grpc: Some(
            format!("http://127.0.0.1:{}", target.grpc_port)
                .parse()
                .unwrap(),
        ),
        api_key: None,
    };
    p.rt.block_on(async {
        let plan = restore::plan_for(p.store.as_ref(), "qdrant", c, Target::Time(at), None, false)
            .await
            .map_err(|e| e.to_string())?;
        restore::qdrant::restore(p.store.clone(), &plan, None, &t, c, name, false, &|_| {})
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
}

fn upsert(addr: &str, c: &str, points: Value) {
    ok(
        addr,
        "PUT",
        &format!("/collections/{c}/points?wait=true"),
        json!({ "points": points }),
    );
}

#[test]
fn named_vectors_created_and_deleted_restore_exactly() {
    let Some(q) = Qdrant::start(None) else { return };
    let mut p = Proxied::start(&q);
    let a = p.addr();
    ok(
        &a,
        "PUT",
        "/collections/nv",
        json!({"vectors": {"a": {"size": 2, "distance": "Dot"}}}),
    );
    upsert(
        &a,
        "nv",
        json!([{"id": 1, "vector": {"a": [1.0, 0.0]}, "payload": {"k": 1}}]),
    );
    ok(
        &a,
        "PUT",
        "/collections/nv/vectors/b?wait=true",
        json!({"dense": {"size": 3, "distance": "Cosine"}}),
    );
    upsert(
        &a,
        "nv",
        json!([{"id": 2, "vector": {"a": [0.0, 1.0], "b": [0.6, 0.8, 0.0]}}]),
    );
    ok(
        &a,
        "DELETE",
        "/collections/nv/vectors/a?wait=true",
        json!({}),
    );
    upsert(
        &a,
        "nv",
        json!([{"id": 3, "vector": {"b": [0.0, 0.0, 1.0]}}]),
    );
    let want = state(&q.http_addr(), "nv");
    let at = vecwal::log::now_us();
    p.stop();
    let target = Qdrant::start(None).unwrap();
    restore_at(&p, &target, "nv", "nv", at).unwrap();
    assert_eq!(state(&target.http_addr(), "nv"), want);
}

/// A multipart upload of `snapshot` to `path` (field `snapshot`, as Qdrant expects).
fn upload(addr: &str, path: &str, snapshot: &[u8]) -> (u16, String) {
    let mut body = b"--b0undary\r\nContent-Disposition: form-data; name=\"snapshot\"; filename=\"s.snapshot\"\r\nContent-Type: application/octet-stream\r\n\r\n".to_vec();
    body.extend_from_slice(snapshot);
    body.extend_from_slice(b"\r\n--b0undary--\r\n");
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: multipart/form-data; boundary=b0undary\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(&body).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, out)
}

/// The bytes of a snapshot of `c`, made and downloaded from Qdrant directly.
fn snapshot_bytes(q: &Qdrant, c: &str) -> Vec<u8> {
    let made = ok(
        &q.http_addr(),
        "POST",
        &format!("/collections/{c}/snapshots?wait=true"),
        json!({}),
    );
    let name = made["result"]["name"].as_str().unwrap();
    let mut s = TcpStream::connect(q.http_addr()).unwrap();
    write!(
        s,
        "GET /collections/{c}/snapshots/{name} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let at = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&raw[..at]).to_ascii_lowercase();
    assert!(
        head.contains(" 200 ") && !head.contains("chunked"),
        "{head}"
    );
    raw[at..].to_vec()
}

#[test]
fn a_recovery_from_a_snapshot_becomes_a_new_base() {
    let Some(q) = Qdrant::start(None) else { return };
    let mut p = Proxied::start(&q);
    let a = p.addr();
    ok(
        &a,
        "PUT",
        "/collections/rc",
        json!({"vectors": {"size": 2, "distance": "Dot"}}),
    );
    upsert(
        &a,
        "rc",
        json!([{"id": 1, "vector": [1.0, 0.0]}, {"id": 2, "vector": [0.0, 1.0]}]),
    );
    let old = snapshot_bytes(&q, "rc");
    upsert(&a, "rc", json!([{"id": 3, "vector": [1.0, 1.0]}]));
    let before = (state(&q.http_addr(), "rc"), vecwal::log::now_us());
    // Back to the snapshot's two points, through the proxy: not replayable, so a new base.
    let (s, b) = upload(
        &a,
        "/collections/rc/snapshots/upload?priority=snapshot",
        &old,
    );
    assert_eq!(s, 200, "{b}");
    upsert(&a, "rc", json!([{"id": 4, "vector": [0.5, 0.5]}]));
    let after = (state(&q.http_addr(), "rc"), vecwal::log::now_us());
    assert_ne!(before.0, after.0);
    let (s, b) = upload(&a, "/collections/rc/snapshots/upload?wait=false", &old);
    assert_eq!(s, 400, "an unwaited recovery is refused: {b}");
    p.stop();
    let target = Qdrant::start(None).unwrap();
    for (i, (want, at)) in [before, after].into_iter().enumerate() {
        let name = format!("rc{i}");
        restore_at(&p, &target, "rc", &name, at).unwrap();
        assert_eq!(state(&target.http_addr(), &name), want, "moment {i}");
    }
}

#[test]
fn every_life_of_a_collection_dropped_and_created_again_restores() {
    let Some(q) = Qdrant::start(None) else { return };
    let mut p = Proxied::start(&q);
    let a = p.addr();
    let mut lives = Vec::new();
    for life in 1..=3u64 {
        let size = life + 1;
        ok(
            &a,
            "PUT",
            "/collections/lc",
            json!({"vectors": {"size": size, "distance": "Dot"}}),
        );
        let v: Vec<f64> = (0..size).map(|i| i as f64).collect();
        upsert(
            &a,
            "lc",
            json!([{"id": life, "vector": v, "payload": {"life": life}}]),
        );
        lives.push((state(&q.http_addr(), "lc"), vecwal::log::now_us()));
        if life < 3 {
            ok(&a, "DELETE", "/collections/lc", json!({}));
        }
    }
    ok(&a, "DELETE", "/collections/lc", json!({}));
    let gone = vecwal::log::now_us();
    p.stop();
    let target = Qdrant::start(None).unwrap();
    for (i, (want, at)) in lives.into_iter().enumerate() {
        let name = format!("lc{i}");
        restore_at(&p, &target, "lc", &name, at).unwrap();
        assert_eq!(state(&target.http_addr(), &name), want, "life {}", i + 1);
    }
    let e = restore_at(&p, &target, "lc", "lc_gone", gone).unwrap_err();
    assert!(e.contains("did not exist at that time"), "{e}");
}

#[test]
fn refused_and_unknown_writes_never_reach_qdrant() {
    let Some(q) = Qdrant::start(None) else { return };
    let mut p = Proxied::start(&q);
    let a = p.addr();
    ok(
        &a,
        "PUT",
        "/collections/rf",
        json!({"vectors": {"size": 2, "distance": "Dot"}}),
    );
    let (s, b) = http(
        &a,
        "POST",
        "/collections/rf/truncate_unapplied_wal",
        Some("{}"),
        &[],
    );
    assert_eq!(s, 400, "{b}");
    assert!(b.contains("refused"), "{b}");
    let (s, b) = http(
        &a,
        "POST",
        "/collections/rf/points/frobnicate",
        Some("{}"),
        &[],
    );
    assert_eq!(s, 501, "{b}");
    assert!(b.contains("not an endpoint vecwal knows"), "{b}");
    // A path Qdrant's router reads as the upsert route is logged as one.
    let (s, b) = http(
        &a,
        "PUT",
        "/collections/rf//%70oints?wait=true",
        Some(r#"{"points":[{"id":1,"vector":[1.0,0.0]}]}"#),
        &[],
    );
    assert_eq!(s, 200, "{b}");
    p.stop();
    let logged = p.logged();
    assert!(
        logged
            .iter()
            .any(|(c, m, path, _)| c == "rf" && m == "PUT" && path.contains("%70oints")),
        "{logged:?}"
    );
}

#[test]
fn writes_through_an_alias_restore_under_the_collection_they_reached() {
    let Some(q) = Qdrant::start(None) else { return };
    let mut p = Proxied::start(&q);
    let a = p.addr();
    for c in ["docs_v1", "docs_v2", "docs_v3"] {
        ok(
            &a,
            "PUT",
            &format!("/collections/{c}"),
            json!({"vectors": {"size": 2, "distance": "Dot"}}),
        );
    }
    let swap = |to: &str| json!({"actions": [{"create_alias": {"collection_name": to, "alias_name": "live"}}]});
    ok(&a, "POST", "/collections/aliases", swap("docs_v1"));
    // Writers through the alias while it is swapped to docs_v2 under them (blue/green).
    let writers: Vec<_> = (0..3u64)
        .map(|w| {
            let a = a.clone();
            std::thread::spawn(move || {
                for i in 0..40u64 {
                    let id = w * 1000 + i;
                    upsert(
                        &a,
                        "live",
                        json!([{"id": id, "vector": [1.0, id as f64], "payload": {"w": w}}]),
                    );
                }
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(50)); // let the writers start
    ok(&a, "POST", "/collections/aliases", swap("docs_v2"));
    for w in writers {
        w.join().unwrap();
    }
    // A swap made on Qdrant directly is followed too, once the proxy has read the aliases
    // again (it does every second).
    let q_addr = q.http_addr();
    ok(&q_addr, "POST", "/collections/aliases", swap("docs_v3"));
    let reads = p.proxy.as_ref().unwrap().alias_reads();
    while p.proxy.as_ref().unwrap().alias_reads() < reads + 2 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    upsert(&a, "live", json!([{"id": 7, "vector": [0.5, 0.5]}]));
    let want: Vec<Value> = ["docs_v1", "docs_v2", "docs_v3"]
        .iter()
        .map(|c| state(&q_addr, c))
        .collect();
    assert!(
        want.iter()
            .all(|s| !s["points"].as_array().unwrap().is_empty()),
        "{want:?}"
    );
    let at = vecwal::log::now_us();
    p.stop();
    let logged = p.logged();
    assert!(
        logged.iter().all(|(c, ..)| c != "live"),
        "logged under the alias"
    );
    let target = Qdrant::start(None).unwrap();
    for (c, want) in ["docs_v1", "docs_v2", "docs_v3"].into_iter().zip(want) {
        restore_at(&p, &target, c, c, at).unwrap();
        assert_eq!(state(&target.http_addr(), c), want, "{c}");
    }
}

#[test]
fn a_read_only_key_reads_through_the_proxy_and_its_refused_writes_are_not_logged() {
    const ADMIN: &str = "adm1n-k3y-4-tests";
    const READ: &str = "r3ad-only-k3y";
    let Some(q) = Qdrant::start_with_keys(ADMIN, READ) else {
        return;
    };
    // A collection before the proxy: its start snapshot needs the proxy's own key.
    let admin = [("api-key", ADMIN)];
    let (s, b) = http(
        &q.http_addr(),
        "PUT",
        "/collections/k",
        Some(r#"{"vectors":{"size":2,"distance":"Dot"}}"#),
        &admin,
    );
    assert_eq!(s, 200, "{b}");
    let mut p = Proxied::start_with_key(&q, Some(ADMIN));
    let a = p.addr();
    let upsert = r#"{"points":[{"id":1,"vector":[1.0,0.0]}]}"#;
    let reader = [("api-key", READ)];
    let (s, b) = http(
        &a,
        "PUT",
        "/collections/k/points?wait=true",
        Some(upsert),
        &reader,
    );
    assert_eq!(s, 403, "a read-only key cannot write: {b}");
    let (s, b) = http(
        &a,
        "POST",
        "/collections/k/points/scroll",
        Some("{}"),
        &reader,
    );
    assert_eq!(s, 200, "{b}");
    let (s, b) = http(
        &a,
        "PUT",
        "/collections/k/points?wait=true",
        Some(upsert),
        &admin,
    );
    assert_eq!(s, 200, "{b}");
    p.stop();
    let logged = p.logged();
    assert_eq!(logged.len(), 1, "only the accepted write: {logged:?}");
    for key in [ADMIN, READ] {
        let found = os::files_containing(p.dir.path(), key.as_bytes());
        assert!(found.is_empty(), "a key in {found:?}");
    }
}
