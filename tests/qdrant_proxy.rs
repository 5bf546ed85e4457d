//! The Qdrant REST proxy against a real Qdrant: what Qdrant applied is logged exactly
//! (method, path, body), reads and failed requests are not, the api-key never reaches the
//! data dir or the store, and writes to one collection from many clients are logged in the
//! order Qdrant applied them.

#[path = "support/os.rs"]
mod os;
#[path = "support/qdrant.rs"]
mod qdrant;

use std::sync::Arc;
use std::time::Duration;

use qdrant::{http, Qdrant};
use vecwal::capture::qdrant::service::{QdrantProxyOptions, RunningQdrantProxy};
use vecwal::log::{Log, LogConfig};
use vecwal::restore::{self, Target};
use vecwal::ship::ShipConfig;
use vecwal::store::{FsStore, Store};
use vecwal_format::Operation;

const KEY: &str = "qd-key-8e1f7a-never-log-me";

struct Proxied {
    rt: tokio::runtime::Runtime,
    proxy: Option<RunningQdrantProxy>,
    store: Arc<dyn Store>,
    dir: tempfile::TempDir,
}

impl Proxied {
    fn start(q: &Qdrant) -> Proxied {
        Self::start_with_key(q, None)
    }

    fn start_with_key(q: &Qdrant, api_key: Option<&str>) -> Proxied {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(FsStore::new(dir.path().join("store")).unwrap());
        let (log, _) = Log::open(&dir.path().join("data"), LogConfig::new("qdrant")).unwrap();
        let opts = QdrantProxyOptions {
            listen_http: "127.0.0.1:0".into(),
            upstream_http: format!("http://{}", q.http_addr()).parse().unwrap(),
            grpc: Some((
                "127.0.0.1:0".into(),
                format!("http://127.0.0.1:{}", q.grpc_port).parse().unwrap(),
            )),
            stores: vec![store.clone()],
            keyring: None,
            api_key: api_key.map(str::to_string),
            snapshot_interval: Duration::ZERO,
            ship: ShipConfig {
                interval: Duration::from_secs(1),
                ..Default::default()
            },
        };
        let proxy = rt
            .block_on(RunningQdrantProxy::start(Arc::new(log), opts))
            .unwrap();
        Proxied {
            rt,
            proxy: Some(proxy),
            store,
            dir,
        }
    }

    fn addr(&self) -> String {
        self.proxy.as_ref().unwrap().http_addr.to_string()
    }

    fn stop(&mut self) {
        if let Some(p) = self.proxy.take() {
            self.rt.block_on(p.shutdown(Duration::from_secs(30)));
        }
    }

    /// (collection, method, path, body) of every logged request.
    fn logged(&self) -> Vec<(String, String, String, serde_json::Value)> {
        self.rt.block_on(async {
            let plan = restore::plan(self.store.as_ref(), "qdrant", Target::Latest, None, true)
                .await
                .unwrap();
            let mut rx = restore::records(self.store.clone(), &plan, None);
            let mut out = Vec::new();
            while let Some(b) = rx.recv().await {
                for r in b.unwrap() {
                    if let Operation::QdrantRest {
                        method, path, body, ..
                    } = Operation::decode(r.kind, &r.payload).unwrap()
                    {
                        let body = serde_json::from_slice(&body).unwrap_or_default();
                        out.push((r.namespace, method, path, body));
                    }
                }
            }
            out
        })
    }
}

/// The services venv's Python (scripts/services.sh installs qdrant-client into it).
fn python() -> std::path::PathBuf {
    std::env::var_os("VECWAL_PYTHON")
        .map(Into::into)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".services/venv/bin/python")
        })
}

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
fn concurrent_writes_to_a_collection_are_logged_in_the_order_qdrant_applied_them() {
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
    // Eight clients overwrite the payloads of ten points; each value is unique. Qdrant
    // numbers its operations in the order it applies them (`operation_id`): in the log's
    // order those numbers must only grow.
    let workers: Vec<_> = (0..8)
        .map(|t| {
            let a = a.clone();
            std::thread::spawn(move || {
                let mut ids = Vec::new();
                for i in 0..40 {
                    let body = format!(
                        r#"{{"points":[{{"id":{},"vector":[1.0,0.5],"payload":{{"v":"{t}-{i}"}}}}]}}"#,
                        (i + t) % 10
                    );
                    let (s, b) = http(&a, "PUT", "/collections/c/points?wait=true", Some(&body), &[]);
                    assert_eq!(s, 200, "{b}");
                    let r: serde_json::Value = serde_json::from_str(&b).unwrap();
                    ids.push((format!("{t}-{i}"), r["result"]["operation_id"].as_u64().unwrap()));
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
    let mut last = std::collections::BTreeMap::new();
    let mut applied = Vec::new();
    for (_, _, _, body) in &logged[1..] {
        let pt = &body["points"][0];
        let v = pt["payload"]["v"].as_str().unwrap().to_string();
        applied.push(op_id[&v]);
        last.insert(pt["id"].as_u64().unwrap(), v);
    }
    assert_eq!(
        last, held,
        "the last write logged per point is what Qdrant holds"
    );
    let out_of_order = applied.windows(2).filter(|w| w[0] > w[1]).count();
    assert_eq!(
        out_of_order, 0,
        "the log's order is Qdrant's order: {applied:?}"
    );
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

/// Every point of `collection` with its vectors and payload, by id.
fn points(addr: &str, collection: &str) -> std::collections::BTreeMap<u64, serde_json::Value> {
    let (s, b) = http(
        addr,
        "POST",
        &format!("/collections/{collection}/points/scroll"),
        Some(r#"{"limit":10000,"with_payload":true,"with_vector":true}"#),
        &[],
    );
    assert_eq!(s, 200, "{b}");
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    v["result"]["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_u64().unwrap(), p.clone()))
        .collect()
}

/// One random REST write to collection `docs`.
fn random_write(addr: &str, rng: &mut impl rand::Rng) {
    let id = rng.random_range(0..40u64);
    let vec4 = |rng: &mut dyn rand::RngCore| {
        (0..4)
            .map(|_| format!("{:.3}", (rng.next_u32() % 2000) as f64 / 1000.0 - 1.0))
            .collect::<Vec<_>>()
            .join(",")
    };
    let (m, path, body) = match rng.random_range(0..8) {
        0..=2 => {
            let pts: Vec<String> = (0..3)
                .map(|k| {
                    format!(
                        r#"{{"id":{},"vector":{{"dense":[{}],"sparse":{{"indices":[{},{}],"values":[0.5,0.25]}}}},"payload":{{"n":{},"city":"{}"}}}}"#,
                        (id + k) % 40,
                        vec4(rng),
                        id,
                        id + 7,
                        rng.random_range(0..100),
                        ["Oslo", "Rome", "Lima"][rng.random_range(0..3)]
                    )
                })
                .collect();
            // A third are conditional: they update only points whose n is below 50, so
            // their effect depends on the state they meet (issue 5's update_filter).
            let cond = if rng.random_range(0..3) == 0 {
                r#","update_filter":{"must":[{"key":"n","range":{"lt":50}}]}"#
            } else {
                ""
            };
            ("PUT", "/collections/docs/points", format!(r#"{{"points":[{}]{cond}}}"#, pts.join(",")))
        }
        3 => ("POST", "/collections/docs/points/delete", format!(r#"{{"points":[{id}]}}"#)),
        4 => (
            "POST",
            "/collections/docs/points/delete",
            r#"{"filter":{"must":[{"key":"city","match":{"value":"Lima"}},{"key":"n","range":{"gt":80}}]}}"#.to_string(),
        ),
        5 => (
            "POST",
            "/collections/docs/points/payload",
            format!(r#"{{"payload":{{"tag":{}}},"filter":{{"must":[{{"key":"city","match":{{"value":"Rome"}}}}]}}}}"#, rng.random_range(0..9)),
        ),
        6 => (
            "PUT",
            "/collections/docs/points/payload",
            format!(r#"{{"payload":{{"city":"Oslo","n":{}}},"points":[{id}]}}"#, rng.random_range(0..100)),
        ),
        _ => ("POST", "/collections/docs/points/payload/clear", format!(r#"{{"points":[{id}]}}"#)),
    };
    let wait = if rng.random_range(0..4) == 0 {
        "false"
    } else {
        "true"
    };
    let (s, b) = http(addr, m, &format!("{path}?wait={wait}"), Some(&body), &[]);
    // A payload change of a missing point fails (404): part of the workload, not logged.
    assert!(
        s == 200 || s == 404 && b.contains("No point"),
        "{m} {path} {body}: {s} {b}"
    );
}

#[test]
fn restoring_a_collection_to_any_recorded_moment_gives_that_moment_exactly() {
    use rand::SeedableRng;
    let Some(q) = Qdrant::start(None) else {
        return;
    };
    let mut p = Proxied::start(&q);
    let a = p.addr();
    let (s, b) = http(
        &a,
        "PUT",
        "/collections/docs",
        Some(r#"{"vectors":{"dense":{"size":4,"distance":"Dot"}},"sparse_vectors":{"sparse":{}}}"#),
        &[],
    );
    assert_eq!(s, 200, "{b}");
    let mut moments = Vec::new();
    // Waits until writes acknowledged without waiting are applied: a count that settles.
    let settle = |addr: &str| {
        http(
            addr,
            "POST",
            "/collections/docs/points/count",
            Some(r#"{"exact":true}"#),
            &[],
        );
        let mut last = points(addr, "docs");
        for _ in 0..100 {
            std::thread::sleep(Duration::from_millis(20));
            let now = points(addr, "docs");
            if now == last {
                return now;
            }
            last = now;
        }
        last
    };
    let log = p.proxy.as_ref().unwrap().log.clone();
    let mut snapshot_lsn = 0;
    for phase in 0..4u64 {
        let before = log.last_lsn();
        let workers: Vec<_> = (0..3u64)
            .map(|t| {
                let a = a.clone();
                std::thread::spawn(move || {
                    let mut rng = rand::rngs::StdRng::seed_from_u64(phase * 10 + t);
                    for _ in 0..60 {
                        random_write(&a, &mut rng);
                    }
                })
            })
            .collect();
        if phase == 1 {
            // A snapshot while the writers write (once they have written some): later
            // moments restore from it.
            while log.last_lsn() < before + 20 {
                std::thread::yield_now();
            }
            let (s, b) = http(&a, "POST", "/vecwal/snapshot?collection=docs", None, &[]);
            assert_eq!(s, 200, "{b}");
            let v: serde_json::Value = serde_json::from_str(&b).unwrap();
            snapshot_lsn = v["result"]["lsn"].as_u64().unwrap();
        }
        for w in workers {
            w.join().unwrap();
        }
        if phase == 2 {
            // Writes over gRPC from the official client.
            let proxy = p.proxy.as_ref().unwrap();
            let out = std::process::Command::new(python())
                .arg(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/tests/qdrant_client_workload.py"
                ))
                .env("PROXY_HTTP_PORT", proxy.http_addr.port().to_string())
                .env(
                    "PROXY_GRPC_PORT",
                    proxy.grpc_addr.unwrap().port().to_string(),
                )
                .env("MODE", "grpc-phase")
                .env("COLLECTION", "docs")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let state = settle(&q.http_addr());
        moments.push((vecwal::log::now_us(), state));
    }
    p.stop();
    assert!(moments.last().unwrap().1.len() > 10, "a real collection");

    let target = vecwal::restore::qdrant::QdrantTarget {
        rest: format!("http://{}", q.http_addr()).parse().unwrap(),
        grpc: Some(format!("http://127.0.0.1:{}", q.grpc_port).parse().unwrap()),
        api_key: None,
    };
    let mut bases = std::collections::BTreeSet::new();
    for (i, (t, want)) in moments.iter().enumerate() {
        let name = format!("restored{i}");
        let plan = p.rt.block_on(async {
            let plan = restore::plan_for(
                p.store.as_ref(),
                "qdrant",
                "docs",
                Target::Time(*t),
                None,
                true,
            )
            .await
            .unwrap();
            vecwal::restore::qdrant::restore(
                p.store.clone(),
                &plan,
                None,
                &target,
                "docs",
                &name,
                false,
                &|_| {},
            )
            .await
            .unwrap();
            plan
        });
        bases.insert(plan.base_lsn());
        let got = points(&q.http_addr(), &name);
        assert_eq!(&got, want, "moment {i} (base LSN {})", plan.base_lsn());
    }
    assert_eq!(
        bases.into_iter().collect::<Vec<_>>(),
        [0, snapshot_lsn],
        "restored from the empty start and from the snapshot taken mid-phase"
    );
}

#[test]
fn a_collection_that_existed_before_the_proxy_is_restorable_from_its_start_snapshot() {
    let Some(q) = Qdrant::start(None) else {
        return;
    };
    let direct = q.http_addr();
    let put = |addr: &str, path: &str, body: &str| {
        let (s, b) = http(addr, "PUT", path, Some(body), &[]);
        assert_eq!(s, 200, "{b}");
    };
    put(
        &direct,
        "/collections/old",
        r#"{"vectors":{"size":2,"distance":"Dot"}}"#,
    );
    put(
        &direct,
        "/collections/old/points?wait=true",
        r#"{"points":[{"id":1,"vector":[1,2],"payload":{"before":true}}]}"#,
    );
    let mut p = Proxied::start(&q);
    assert_eq!(p.proxy.as_ref().unwrap().start_snapshots, 1);
    put(
        &p.addr(),
        "/collections/old/points?wait=true",
        r#"{"points":[{"id":2,"vector":[3,4],"payload":{"after":true}}]}"#,
    );
    p.stop();
    let target = vecwal::restore::qdrant::QdrantTarget {
        rest: format!("http://{direct}").parse().unwrap(),
        grpc: None,
        api_key: None,
    };
    let plan = p.rt.block_on(async {
        // No empty start allowed: the base must be the snapshot taken at start.
        let plan = restore::plan_for(
            p.store.as_ref(),
            "qdrant",
            "old",
            Target::Latest,
            None,
            false,
        )
        .await
        .unwrap();
        vecwal::restore::qdrant::restore(
            p.store.clone(),
            &plan,
            None,
            &target,
            "old",
            "copy",
            false,
            &|_| {},
        )
        .await
        .unwrap();
        plan
    });
    assert_eq!(plan.base_lsn(), 0);
    assert_eq!(points(&direct, "copy"), points(&direct, "old"));
    assert_eq!(points(&direct, "copy").len(), 2);
}
