//! The Qdrant REST proxy against a real Qdrant: what Qdrant applied is logged exactly
//! (method, path, body), reads and failed requests are not, the api-key never reaches the
//! data dir or the store, writes to one collection from many clients are logged in the
//! order Qdrant applied them, and the official Python client works through it unchanged
//! over REST and gRPC.

#[path = "support/os.rs"]
mod os;
#[path = "support/qdrant.rs"]
mod qdrant;
#[path = "support/qdrant_proxy.rs"]
mod qdrant_proxy;

use qdrant::{http, Qdrant};
use qdrant_proxy::{python, Proxied};
use vecwal::restore::{self, Target};
use vecwal_format::Operation;

const KEY: &str = "qd-key-8e1f7a-never-log-me";

#[test]
fn logs_exactly_what_qdrant_applied_and_never_the_api_key() {
    let Some(q) = Qdrant::start(Some(KEY)) else {
        return;
    };
    let mut p = Proxied::start_with_key(&q, Some(KEY));
    let a = p.addr();
    let key = [("api-key", KEY)];
    let call = |m: &str, path: &str, body: Option<&str>| http(&a, m, path, body, &key);

    let (s, b) = call(
        "PUT",
        "/collections/docs",
        Some(r#"{"vectors":{"size":4,"distance":"Cosine"}}"#),
    );
    assert_eq!(s, 200, "{b}");
    let upsert = r#"{"points":[{"id":1,"vector":[0.1,0.2,0.3,0.4],"payload":{"city":"Oslo"}},{"id":2,"vector":[0.4,0.3,0.2,0.1],"payload":{"city":"Rome"}},{"id":3,"vector":[0.5,0.5,0.5,0.5]}]}"#;
    let (s, b) = call("PUT", "/collections/docs/points?wait=true", Some(upsert));
    assert_eq!(s, 200, "{b}");
    // Reads pass through, by GET and by POST.
    let (s, b) = call(
        "POST",
        "/collections/docs/points/scroll",
        Some(r#"{"limit":10}"#),
    );
    assert_eq!(s, 200, "{b}");
    assert!(b.contains("Oslo"), "{b}");
    let (s, _) = call("GET", "/collections/docs", None);
    assert_eq!(s, 200);
    // Rejected: wrong dimension, missing collection, no api-key. None is logged.
    let (s, b) = call(
        "PUT",
        "/collections/docs/points?wait=true",
        Some(r#"{"points":[{"id":9,"vector":[0.1,0.2]}]}"#),
    );
    assert_eq!(s, 400, "{b}");
    let (s, _) = call("PUT", "/collections/nope/points?wait=true", Some(upsert));
    assert_eq!(s, 404);
    let (s, _) = http(&a, "PUT", "/collections/docs/points", Some(upsert), &[]);
    assert_eq!(
        s, 401,
        "the api-key is checked by Qdrant, through the proxy"
    );
    // More mutations, one acknowledged without waiting.
    let (s, b) = call(
        "POST",
        "/collections/docs/points/payload?wait=true",
        Some(r#"{"payload":{"seen":true},"points":[1,3]}"#),
    );
    assert_eq!(s, 200, "{b}");
    let (s, b) = call(
        "POST",
        "/collections/docs/points/delete?wait=false",
        Some(r#"{"filter":{"must":[{"key":"city","match":{"value":"Rome"}}]}}"#),
    );
    assert_eq!(s, 200, "{b}");
    assert!(b.contains("acknowledged") || b.contains("completed"), "{b}");
    p.stop();

    let got: Vec<(String, String, String)> = p
        .logged()
        .into_iter()
        .map(|(ns, m, path, _)| (ns, m, path))
        .collect();
    let want: Vec<(String, String, String)> = [
        ("PUT", "/collections/docs"),
        ("PUT", "/collections/docs/points?wait=true"),
        ("POST", "/collections/docs/points/payload?wait=true"),
        ("POST", "/collections/docs/points/delete?wait=false"),
    ]
    .iter()
    .map(|(m, path)| ("docs".to_string(), m.to_string(), path.to_string()))
    .collect();
    assert_eq!(got, want);
    let bodies = p.logged();
    assert_eq!(
        bodies[1].3,
        serde_json::from_str::<serde_json::Value>(upsert).unwrap()
    );
    let hits = os::files_containing(p.dir.path(), KEY.as_bytes());
    assert!(hits.is_empty(), "the api-key is in {hits:?}");
}

#[test]
fn conflicting_writes_are_logged_in_the_order_qdrant_applied_them() {
    let Some(q) = Qdrant::start(None) else {
        return;
    };
    let mut p = Proxied::start(&q);
    let a = p.addr();
    let (s, _) = http(
        &a,
        "PUT",
        "/collections/c",
        Some(r#"{"vectors":{"size":2,"distance":"Dot"}}"#),
        &[],
    );
    assert_eq!(s, 200);
    // Eight clients write ten points; every value is unique. One write in eight selects its
    // points by filter, which conflicts with every write to the collection; the others name
    // one point. Qdrant numbers its operations in the order it applies them
    // (`operation_id`).
    let workers: Vec<_> = (0..8)
        .map(|t| {
            let a = a.clone();
            std::thread::spawn(move || {
                let mut ids = Vec::new();
                for i in 0..40 {
                    let v = format!("{t}-{i}");
                    let (path, body) = if (i + t) % 8 == 0 {
                        let filter = format!(r#"{{"must":[{{"has_id":[{},{}]}}]}}"#, i % 10, t);
                        let body = format!(r#"{{"payload":{{"v":"{v}"}},"filter":{filter}}}"#);
                        ("/collections/c/points/payload?wait=true", body)
                    } else {
                        let id = (i + t) % 10;
                        let body = format!(
                            r#"{{"points":[{{"id":{id},"vector":[1.0,0.5],"payload":{{"v":"{v}"}}}}]}}"#
                        );
                        ("/collections/c/points?wait=true", body)
                    };
                    let method = if body.contains("filter") { "POST" } else { "PUT" };
                    let (s, b) = http(&a, method, path, Some(&body), &[]);
                    assert_eq!(s, 200, "{b}");
                    let r: serde_json::Value = serde_json::from_str(&b).unwrap();
                    ids.push((v, r["result"]["operation_id"].as_u64().unwrap()));
                }
                ids
            })
        })
        .collect();
    let mut op_id = std::collections::HashMap::new();
    for w in workers {
        op_id.extend(w.join().unwrap());
    }
    let (_, b) = http(
        &a,
        "POST",
        "/collections/c/points/scroll",
        Some(r#"{"limit":100,"with_payload":true}"#),
        &[],
    );
    let held: serde_json::Value = serde_json::from_str(&b).unwrap();
    let held: std::collections::BTreeMap<u64, String> = held["result"]["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["id"].as_u64().unwrap(),
                p["payload"]["v"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    p.stop();
    let logged = p.logged();
    assert_eq!(logged.len(), 321);
    // In log order: (operation_id, the point it names or None for a filter).
    let mut applied = Vec::new();
    let mut last = std::collections::BTreeMap::new();
    for (_, _, _, body) in &logged[1..] {
        let v = body["payload"]["v"].as_str().unwrap_or_default();
        let pt = &body["points"][0];
        let v = pt["payload"]["v"].as_str().unwrap_or(v).to_string();
        let point = pt["id"].as_u64();
        match point {
            Some(id) => last.insert(id, v.clone()),
            // The filter names ids: the write is the last for those that exist.
            None => {
                for id in body["filter"]["must"][0]["has_id"].as_array().unwrap() {
                    last.entry(id.as_u64().unwrap())
                        .and_modify(|old| *old = v.clone());
                }
                None
            }
        };
        applied.push((op_id[&v], point));
    }
    assert_eq!(
        last, held,
        "the last write logged per point is what Qdrant holds"
    );
    let mut conflicting_pairs = 0;
    for (i, (a_op, a_pt)) in applied.iter().enumerate() {
        for (b_op, b_pt) in &applied[i + 1..] {
            let conflict = a_pt.is_none() || b_pt.is_none() || a_pt == b_pt;
            if conflict {
                conflicting_pairs += 1;
                assert!(
                    a_op < b_op,
                    "conflicting writes logged in another order than Qdrant applied them: \
                     {a_op} ({a_pt:?}) before {b_op} ({b_pt:?})"
                );
            }
        }
    }
    assert!(conflicting_pairs > 10_000, "{conflicting_pairs}");
}

#[test]
fn the_official_python_client_works_unchanged_over_rest_and_grpc() {
    let Some(q) = Qdrant::start(None) else {
        return;
    };
    let mut p = Proxied::start(&q);
    let proxy = p.proxy.as_ref().unwrap();
    let (http_port, grpc_port) = (proxy.http_addr.port(), proxy.grpc_addr.unwrap().port());
    let out = std::process::Command::new(python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/qdrant_client_workload.py"
        ))
        .env("PROXY_HTTP_PORT", http_port.to_string())
        .env("PROXY_GRPC_PORT", grpc_port.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Ten points of group "a" are left; two of them were marked seen (1 and 3, and 11).
    assert_eq!(read["count"], 10, "{read}");
    assert_eq!(read["seen"], 3, "{read}");
    assert_eq!(read["hits"].as_array().unwrap().len(), 3, "{read}");
    p.stop();
    let logged: Vec<(String, String)> = p.rt.block_on(async {
        let plan = restore::plan(p.store.as_ref(), "qdrant", Target::Latest, None, true)
            .await
            .unwrap();
        let mut rx = restore::records(p.store.clone(), &plan, None);
        let mut out = Vec::new();
        while let Some(b) = rx.recv().await {
            for r in b.unwrap() {
                match Operation::decode(r.kind, &r.payload).unwrap() {
                    Operation::QdrantRest { method, path, .. } => out.push((
                        r.namespace,
                        format!("{method} {}", path.split('?').next().unwrap()),
                    )),
                    Operation::QdrantGrpc { path, .. } => out.push((r.namespace, path)),
                    _ => {}
                }
            }
        }
        out
    });
    let want: Vec<(String, String)> = [
        "PUT /collections/py",
        "PUT /collections/py/points",
        "/qdrant.Points/Upsert",
        "/qdrant.Points/SetPayload",
        "/qdrant.Points/Delete",
        "PUT /collections/py/index",
    ]
    .iter()
    .map(|w| ("py".to_string(), w.to_string()))
    .collect();
    assert_eq!(logged, want, "every write, from both protocols; no read");
}
