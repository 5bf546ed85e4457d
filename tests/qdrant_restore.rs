//! Restoring Qdrant collections from what the proxy logged, on a real Qdrant: a
//! differential restore over random REST writes (some conditional, some unwaited) and a
//! gRPC phase from the official client, with a snapshot taken while clients write; and a
//! collection that existed before the proxy, restored from its start snapshot.

#[path = "support/qdrant.rs"]
mod qdrant;
#[path = "support/qdrant_proxy.rs"]
mod qdrant_proxy;

use std::time::Duration;

use qdrant::{http, Qdrant};
use qdrant_proxy::{python, Proxied};
use vecwal::restore::{self, Target};

/// Plans and restores `collection` of the proxy's stream to `goal` into `q` as `name`.
fn restore_as(
    p: &Proxied,
    q: &Qdrant,
    collection: &str,
    name: &str,
    goal: Target,
    allow_empty_base: bool,
) -> restore::Plan {
    let target = vecwal::restore::qdrant::QdrantTarget {
        rest: format!("http://{}", q.http_addr()).parse().unwrap(),
        grpc: Some(format!("http://127.0.0.1:{}", q.grpc_port).parse().unwrap()),
        api_key: None,
    };
    p.rt.block_on(async {
        let plan = restore::plan_for(
            p.store.as_ref(),
            "qdrant",
            collection,
            goal,
            None,
            allow_empty_base,
        )
        .await
        .unwrap();
        vecwal::restore::qdrant::restore(
            p.store.clone(),
            &plan,
            None,
            &target,
            collection,
            name,
            false,
            &|_| {},
        )
        .await
        .unwrap();
        plan
    })
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

/// Hits of one search: id → score (rounded to 1e-4).
type Hits = std::collections::BTreeMap<u64, i64>;

/// A sample of searches, each with a limit above the collection's size so it returns every
/// match, ranked: dense (with and without filters) and sparse. With each, the score a point
/// should get, or `None` when it should not match, computed from the point itself.
#[allow(clippy::type_complexity)]
const SEARCHES: [(&str, fn(&serde_json::Value) -> Option<f64>); 4] = [
    (
        r#"{"query":[0.5,-0.2,0.9,0.1],"using":"dense","limit":100}"#,
        |p| dense(p, [0.5, -0.2, 0.9, 0.1]),
    ),
    (
        r#"{"query":[-0.7,0.3,0.1,0.6],"using":"dense","limit":100,
            "filter":{"must":[{"key":"city","match":{"value":"Rome"}}]}}"#,
        |p| (p["payload"]["city"] == "Rome").then(|| dense(p, [-0.7, 0.3, 0.1, 0.6]))?,
    ),
    (
        r#"{"query":[0.1,0.1,0.1,0.1],"using":"dense","limit":100,
            "filter":{"must":[{"key":"n","range":{"lt":50}}]}}"#,
        |p| (p["payload"]["n"].as_f64()? < 50.0).then(|| dense(p, [0.1; 4]))?,
    ),
    (
        r#"{"query":{"indices":[3,10,17],"values":[1.0,0.5,0.25]},"using":"sparse","limit":100}"#,
        |p| {
            let s = &p["vector"]["sparse"];
            let (idx, val) = (s["indices"].as_array()?, s["values"].as_array()?);
            let q = |i: u64| {
                [(3, 1.0), (10, 0.5), (17, 0.25)]
                    .iter()
                    .find(|q| q.0 == i)
                    .map(|q| q.1)
            };
            let hits: Vec<f64> = idx
                .iter()
                .zip(val)
                .filter_map(|(i, v)| Some(q(i.as_u64()?)? * v.as_f64()?))
                .collect();
            (!hits.is_empty()).then(|| hits.iter().sum())
        },
    ),
];

fn dense(p: &serde_json::Value, q: [f64; 4]) -> Option<f64> {
    let v = p["vector"]["dense"].as_array()?;
    Some(v.iter().zip(q).map(|(x, q)| x.as_f64().unwrap() * q).sum())
}

/// Runs [`SEARCHES`] over `collection`.
fn searches(addr: &str, collection: &str) -> Vec<Hits> {
    SEARCHES
        .iter()
        .map(|(q, _)| {
            let (s, b) = http(
                addr,
                "POST",
                &format!("/collections/{collection}/points/query"),
                Some(q),
                &[],
            );
            assert_eq!(s, 200, "{q}: {b}");
            let v: serde_json::Value = serde_json::from_str(&b).unwrap();
            v["result"]["points"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    let score = (p["score"].as_f64().unwrap() * 1e4).round() as i64;
                    (p["id"].as_u64().unwrap(), score)
                })
                .collect()
        })
        .collect()
}

/// Whether `hits` of search `i` are exactly what the `points` themselves call for.
fn consistent(
    i: usize,
    hits: &Hits,
    points: &std::collections::BTreeMap<u64, serde_json::Value>,
) -> bool {
    let want: std::collections::BTreeMap<u64, f64> = points
        .iter()
        .filter_map(|(id, p)| Some((*id, SEARCHES[i].1(p)?)))
        .collect();
    want.len() == hits.len()
        && want.iter().all(|(id, s)| {
            hits.get(id)
                .is_some_and(|h| (*h as f64 / 1e4 - s).abs() < 1e-3)
        })
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
    let (m, path, body) = match rng.random_range(0..10) {
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
            // their effect depends on the state they meet (issue 5's update_filter); a
            // quarter only insert, or only update (update_mode).
            let mut cond = String::new();
            if rng.random_range(0..3) == 0 {
                cond += r#","update_filter":{"must":[{"key":"n","range":{"lt":50}}]}"#;
            }
            if rng.random_range(0..4) == 0 {
                let mode = ["insert_only", "update_only"][rng.random_range(0..2)];
                cond += &format!(r#","update_mode":"{mode}""#);
            }
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
        7 => ("POST", "/collections/docs/points/payload/clear", format!(r#"{{"points":[{id}]}}"#)),
        8 => (
            "PUT",
            "/collections/docs/points/vectors",
            format!(r#"{{"points":[{{"id":{id},"vector":{{"dense":[{}]}}}}]}}"#, vec4(rng)),
        ),
        // The dense vector: Qdrant 1.18 keeps a deleted sparse vector's postings and
        // revives them when the point gets a new one (docs/qdrant.md), so the original's
        // sparse searches would depend on history the points do not show.
        _ => (
            "POST",
            "/collections/docs/points/vectors/delete",
            format!(r#"{{"points":[{id}],"vector":["dense"]}}"#),
        ),
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
    let (http_port, grpc_port) = {
        let proxy = p.proxy.as_ref().unwrap();
        (proxy.http_addr.port(), proxy.grpc_addr.unwrap().port())
    };
    let mut snapshot_lsn = 0;
    for phase in 0..4u64 {
        let before = log.last_lsn();
        // From phase 2 on, the official client writes over gRPC at the same time as the
        // REST writers, on the same points.
        let grpc_writer = (phase >= 2).then(|| {
            std::thread::spawn(move || {
                std::process::Command::new(python())
                    .arg(concat!(
                        env!("CARGO_MANIFEST_DIR"),
                        "/tests/qdrant_client_workload.py"
                    ))
                    .env("PROXY_HTTP_PORT", http_port.to_string())
                    .env("PROXY_GRPC_PORT", grpc_port.to_string())
                    .env("MODE", "grpc-random")
                    .env("COLLECTION", "docs")
                    .env("SEED", phase.to_string())
                    .env("COUNT", "80")
                    .output()
                    .unwrap()
            })
        });
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
        if let Some(g) = grpc_writer {
            let out = g.join().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let state = settle(&q.http_addr());
        let found = searches(&q.http_addr(), "docs");
        moments.push((vecwal::log::now_us(), state, found));
    }
    p.stop();
    assert!(moments.last().unwrap().1.len() > 10, "a real collection");
    let grpc_records = p.logged_grpc();
    assert!(grpc_records > 100, "the gRPC writer wrote: {grpc_records}");

    let mut bases = std::collections::BTreeSet::new();
    for (i, (t, want, found)) in moments.iter().enumerate() {
        let name = format!("restored{i}");
        let plan = restore_as(&p, &q, "docs", &name, Target::Time(*t), true);
        bases.insert(plan.base_lsn());
        let got = points(&q.http_addr(), &name);
        assert_eq!(&got, want, "moment {i} (base LSN {})", plan.base_lsn());
        // Every search of the restored collection finds exactly what its points call
        // for, and what the original found at that moment.
        for (k, hits) in searches(&q.http_addr(), &name).iter().enumerate() {
            assert!(
                consistent(k, hits, &got),
                "moment {i}, search {k}: {hits:?} is not what the points call for"
            );
            assert_eq!(hits, &found[k], "moment {i}, search {k}");
        }
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
    // No empty start allowed: the base must be the snapshot taken at start.
    let plan = restore_as(&p, &q, "old", "copy", Target::Latest, false);
    assert_eq!(plan.base_lsn(), 0);
    assert_eq!(points(&direct, "copy"), points(&direct, "old"));
    assert_eq!(points(&direct, "copy").len(), 2);
}
