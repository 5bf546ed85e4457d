//! Differential restore through the proxy, on real Redis 8.2 with RediSearch and RedisJSON:
//! concurrent clients write hashes with vectors, JSON, vector sets, expirations,
//! transactions and random forms to overlapping keys; the database's whole state is
//! recorded at several moments; each moment is restored into another Redis and compared
//! key by key, and a KNN query on the restored index returns the same documents
//! (promises 1–7).

#[path = "support/proxy.rs"]
mod proxy;
#[path = "support/redis.rs"]
mod redis;

use rand::{Rng, SeedableRng};
use vecwal::capture::redis::client::RedisTarget;
use vecwal::restore::{self, Target};

use proxy::{assert_same, bytes_cmd, dump, line, words, Proxied};
use redis::{Conn, Redis};

fn vec4(rng: &mut impl Rng) -> Vec<f32> {
    (0..4).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

fn blob(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// One random write through `c`.
fn random_write(c: &mut Conn, rng: &mut impl Rng) {
    let i = rng.random_range(0..12);
    let r: u32 = rng.random();
    let s = |v: &str| v.as_bytes().to_vec();
    let doc = format!("doc:{i}");
    match rng.random_range(0..13) {
        0 | 1 => {
            bytes_cmd(
                c,
                &[
                    s("HSET"),
                    s(&doc),
                    s("emb"),
                    blob(&vec4(rng)),
                    s("tag"),
                    s(&format!("t{}", r % 3)),
                ],
            );
        }
        2 => {
            words(c, &["DEL", &doc]);
        }
        3 => {
            words(
                c,
                &[
                    "JSON.SET",
                    &format!("j:{i}"),
                    "$",
                    &format!("{{\"n\":{},\"tags\":[\"a\",\"b\"]}}", r % 100),
                ],
            );
        }
        4 => {
            words(c, &["JSON.NUMINCRBY", &format!("j:{i}"), "$.n", "1"]); // fails if missing
        }
        5 => {
            let v = vec4(rng);
            let mut argv: Vec<String> =
                vec!["VADD".into(), "vs".into(), "VALUES".into(), "4".into()];
            argv.extend(v.iter().map(|x| x.to_string()));
            argv.push(format!("e{i}"));
            if r.is_multiple_of(2) {
                argv.extend(["SETATTR".into(), format!("{{\"r\":{}}}", r % 10)]);
            }
            words(c, &argv.iter().map(String::as_str).collect::<Vec<_>>());
        }
        6 => {
            words(c, &["VREM", "vs", &format!("e{i}")]);
        }
        7 => {
            words(c, &["SET", &format!("s:{i}"), &r.to_string(), "EX", "3600"]);
        }
        8 => {
            words(c, &["EXPIRE", &doc, "7200"]);
        }
        9 => {
            words(c, &["INCRBYFLOAT", "cnt", "0.25"]);
        }
        10 => {
            let set = format!("set:{}", i % 3);
            words(
                c,
                &[
                    "SADD",
                    &set,
                    &format!("m{}", r % 8),
                    &format!("n{}", r % 5),
                    "x",
                    "y",
                ],
            );
            words(c, &["SPOP", &set]); // random: logged as the SREM of what it popped
        }
        11 => {
            words(c, &["MULTI"]);
            bytes_cmd(
                c,
                &[
                    s("HSET"),
                    s(&doc),
                    s("emb"),
                    blob(&vec4(rng)),
                    s("tag"),
                    s("tx"),
                ],
            );
            words(c, &["INCR", &format!("c:{i}")]);
            words(c, &["SELECT", "1"]);
            words(c, &["LPUSH", "l1", &r.to_string()]);
            words(c, &["SELECT", "0"]);
            words(c, &["EXEC"]);
        }
        _ => {
            words(c, &["LPUSH", "l", &r.to_string()]);
            words(c, &["RPOP", "l"]);
        }
    }
}

/// Ids of the 5 nearest documents to a fixed query vector.
fn knn(c: &mut Conn) -> Vec<String> {
    let q = blob(&[0.1, -0.2, 0.3, 0.05]);
    let s = |v: &str| v.as_bytes().to_vec();
    let r = bytes_cmd(
        c,
        &[
            s("FT.SEARCH"),
            s("idx"),
            s("*=>[KNN 5 @emb $q AS score]"),
            s("PARAMS"),
            s("2"),
            s("q"),
            q,
            s("SORTBY"),
            s("score"),
            s("RETURN"),
            s("1"),
            s("score"),
            s("DIALECT"),
            s("2"),
        ],
    );
    let items = r
        .items()
        .unwrap_or_else(|| panic!("FT.SEARCH failed: {r:?}"));
    items[1..].iter().step_by(2).map(|v| v.text()).collect()
}

struct Moment {
    time_us: i64,
    state: std::collections::BTreeMap<(u32, String), proxy::KeyState>,
    knn: Vec<String>,
}

#[test]
fn restoring_to_any_recorded_moment_gives_that_moment_exactly() {
    let original = Redis::start(&[]);
    // Data from before capture began: the base snapshot at start must hold it.
    let mut direct = original.conn();
    line(
        &mut direct,
        "FT.CREATE idx ON HASH PREFIX 1 doc: SCHEMA \
         emb VECTOR FLAT 6 TYPE FLOAT32 DIM 4 DISTANCE_METRIC L2 tag TAG",
    );
    bytes_cmd(
        &mut direct,
        &[
            b"HSET".to_vec(),
            b"doc:100".to_vec(),
            b"emb".to_vec(),
            blob(&[0.1, -0.2, 0.3, 0.0]),
        ],
    );
    let mut p = Proxied::start(&original, None);
    let mut moments = Vec::new();
    let record = |moments: &mut Vec<Moment>, c: &mut Conn| {
        let state = dump(c, 2);
        let knn = knn(c);
        moments.push(Moment {
            time_us: vecwal::log::now_us(),
            state,
            knn,
        });
    };
    let mut watcher = p.conn();
    record(&mut moments, &mut watcher);
    for phase in 0..4u64 {
        // Three clients on overlapping keys, at once.
        let addr = p.addr();
        let workers: Vec<_> = (0..3u64)
            .map(|t| {
                let addr = addr.clone();
                std::thread::spawn(move || {
                    let mut c = Conn::connect(&addr);
                    let mut rng = rand::rngs::StdRng::seed_from_u64(phase * 10 + t);
                    for _ in 0..120 {
                        random_write(&mut c, &mut rng);
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        if phase == 1 {
            // An on-demand snapshot mid-history: later moments restore from it.
            let r = words(&mut watcher, &["VECWAL.SNAPSHOT"]);
            assert!(r.text().starts_with("snapshot at LSN"), "{r:?}");
        }
        record(&mut moments, &mut watcher);
    }
    p.stop();

    let target = Redis::start(&[]);
    let t = RedisTarget {
        addr: target.addr(),
        ..Default::default()
    };
    let mut used_snapshots = std::collections::BTreeSet::new();
    for (i, m) in moments.iter().enumerate() {
        let (plan, summary) = p.rt.block_on(async {
            let plan = restore::plan(
                p.store.as_ref(),
                "redis",
                Target::Time(m.time_us),
                None,
                false,
            )
            .await
            .unwrap();
            let s = restore::redis::restore(p.store.clone(), &plan, None, &t, i > 0, &|_| {})
                .await
                .unwrap();
            (plan, s)
        });
        used_snapshots.insert(plan.base_lsn());
        assert_eq!(summary.final_lsn, plan.target_lsn);
        let mut c = target.conn();
        let restored = dump(&mut c, 2);
        assert_same(&restored, &m.state, &format!("moment {i}"));
        assert_eq!(knn(&mut c), m.knn, "moment {i}: KNN on the restored index");
        assert_eq!(
            words(&mut c, &["ROLE"]).items().unwrap()[0].text(),
            "master",
            "detached"
        );
    }
    assert!(
        used_snapshots.len() >= 2,
        "both the start and the mid-run snapshot were used: {used_snapshots:?}"
    );
    assert!(
        moments.last().unwrap().state.len() > 20,
        "the workload wrote a real keyspace"
    );
}
