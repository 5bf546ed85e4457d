//! The random workload of the differential restore tests: hashes with vectors under a
//! RediSearch index, JSON, vector sets, expirations, random forms (SPOP, INCRBYFLOAT) and
//! transactions across two databases, on overlapping keys.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use rand::{Rng, SeedableRng};
use vecwal::protocol::redis_client::RedisTarget;
use vecwal::restore::{self, Target};
use vecwal::store::Store;

use super::proxy::{assert_same, bytes_cmd, dump, line, words, KeyState};
use super::redis::{Conn, Redis};

/// The index and one document, written before capture begins: the first base snapshot
/// must hold them.
pub fn prepare(c: &mut Conn) {
    line(
        c,
        "FT.CREATE idx ON HASH PREFIX 1 doc: SCHEMA \
         emb VECTOR FLAT 6 TYPE FLOAT32 DIM 4 DISTANCE_METRIC L2 tag TAG",
    );
    bytes_cmd(
        c,
        &[
            b"HSET".to_vec(),
            b"doc:100".to_vec(),
            b"emb".to_vec(),
            blob(&[0.1, -0.2, 0.3, 0.0]),
        ],
    );
}

/// Three clients on overlapping keys at once, 120 writes each, seeded by `phase`.
pub fn run_clients(addr: &str, phase: u64, vector_updates: bool) {
    let workers: Vec<_> = (0..3u64)
        .map(|t| {
            let addr = addr.to_string();
            std::thread::spawn(move || {
                let mut c = Conn::connect(&addr);
                let mut rng = rand::rngs::StdRng::seed_from_u64(phase * 10 + t);
                for _ in 0..120 {
                    random_write(&mut c, &mut rng, vector_updates);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
}

/// The database's whole state at a moment, and the answer of a KNN query.
pub struct Moment {
    pub time_us: i64,
    pub state: BTreeMap<(u32, String), KeyState>,
    pub knn: Vec<String>,
}

impl Moment {
    pub fn record(c: &mut Conn) -> Moment {
        let state = dump(c, 2);
        let knn = knn(c);
        Moment {
            time_us: vecwal::log::now_us(),
            state,
            knn,
        }
    }
}

/// Restores stream "redis" of `store` to each moment's time in a fresh Redis and compares
/// the whole keyspace and the KNN answer; returns the LSNs of the base snapshots used.
pub fn verify_moments(
    rt: &tokio::runtime::Runtime,
    store: &Arc<dyn Store>,
    moments: &[Moment],
) -> BTreeSet<u64> {
    let target = Redis::start(&[]);
    let t = RedisTarget {
        addr: target.addr(),
        ..Default::default()
    };
    let mut used_snapshots = BTreeSet::new();
    for (i, m) in moments.iter().enumerate() {
        let (plan, summary) = rt.block_on(async {
            let plan = restore::plan(
                store.as_ref(),
                "redis",
                Target::Time(m.time_us),
                None,
                false,
            )
            .await
            .unwrap();
            let s = restore::redis::restore(store.clone(), &plan, None, &t, i > 0, &|_| {})
                .await
                .unwrap();
            (plan, s)
        });
        used_snapshots.insert(plan.base_lsn());
        assert_eq!(summary.final_lsn, plan.target_lsn);
        let mut c = target.conn();
        let restored = dump(&mut c, 2);
        let what = format!(
            "moment {i} (at {}: base {:?}, records to LSN {})",
            m.time_us,
            plan.base.as_ref().map(|b| (b.lsn, b.time_us)),
            plan.target_lsn
        );
        assert_same(&restored, &m.state, &what);
        assert_eq!(knn(&mut c), m.knn, "moment {i}: KNN on the restored index");
        assert_eq!(
            words(&mut c, &["ROLE"]).items().unwrap()[0].text(),
            "master",
            "detached"
        );
    }
    assert!(
        moments.last().unwrap().state.len() > 20,
        "the workload wrote a real keyspace"
    );
    used_snapshots
}

pub fn vec4(rng: &mut impl Rng) -> Vec<f32> {
    (0..4).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

pub fn blob(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// One random write through `c`. Without `vector_updates`, vector-set elements are
/// replaced (VREM then VADD in one transaction) rather than updated in place.
pub fn random_write(c: &mut Conn, rng: &mut impl Rng, vector_updates: bool) {
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
            if !vector_updates {
                // Redis 8.2 does not replicate a VADD that updates an element
                // (docs/redis.md): through the tap, replace it instead.
                words(c, &["MULTI"]);
                words(c, &["VREM", "vs", &format!("e{i}")]);
            }
            words(c, &argv.iter().map(String::as_str).collect::<Vec<_>>());
            if !vector_updates {
                words(c, &["EXEC"]);
            }
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
pub fn knn(c: &mut Conn) -> Vec<String> {
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
