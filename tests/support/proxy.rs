//! A vecwal Redis proxy in front of a real Redis, in this process, with a local-dir store;
//! plus reading back what it logged and a canonical dump of a Redis keyspace.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use vecwal::capture::redis::service::{ProxyOptions, RunningProxy};
use vecwal::log::{Log, LogConfig};
use vecwal::protocol::redis_client::RedisTarget;
use vecwal::protocol::resp_value::{decode, Value};
use vecwal::restore::{self, Target};
use vecwal::ship::ShipConfig;
use vecwal::store::{FsStore, Store};
use vecwal_format::{Operation, Record};

use super::redis::{Conn, Redis};

pub struct Proxied {
    pub rt: tokio::runtime::Runtime,
    pub proxy: Option<RunningProxy>,
    pub store: Arc<dyn Store>,
    pub dir: tempfile::TempDir,
}

impl Proxied {
    /// A proxy for `upstream` (its password, if any, in `password`).
    pub fn start(upstream: &Redis, password: Option<&str>) -> Proxied {
        Self::start_with(upstream, password, |_| {})
    }

    /// A proxy whose own connections log in to `upstream` as `user`.
    pub fn start_user(upstream: &Redis, user: &str, password: &str) -> Proxied {
        Self::start_as(upstream, Some(user), Some(password), 1, |_| {})
    }

    /// [`Proxied::start`] with the log's configuration adjusted.
    pub fn start_with(
        upstream: &Redis,
        password: Option<&str>,
        tweak: impl FnOnce(&mut LogConfig),
    ) -> Proxied {
        Self::start_as(upstream, None, password, 1, tweak)
    }

    /// A proxy that gives every client an upstream connection of its own
    /// (`--shared-connections 0`).
    pub fn start_unshared(upstream: &Redis) -> Proxied {
        Self::start_as(upstream, None, None, 0, |_| {})
    }

    fn start_as(
        upstream: &Redis,
        username: Option<&str>,
        password: Option<&str>,
        shared_connections: usize,
        tweak: impl FnOnce(&mut LogConfig),
    ) -> Proxied {
        // VECWAL_LOG=debug shows the proxy's log in a failing test's output.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_env("VECWAL_LOG"))
            .with_test_writer()
            .try_init();
        // Two workers where `vecwal proxy redis` defaults to one (`--threads`): the
        // proxies of these tests cover tasks moving between threads; the CLI tests and
        // the conformance runs cover the default.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(FsStore::new(dir.path().join("store")).unwrap());
        let mut cfg = LogConfig::new("redis");
        cfg.segment_max_age = Duration::from_secs(1);
        tweak(&mut cfg);
        let (log, _) = Log::open(&dir.path().join("data"), cfg).unwrap();
        let opts = ProxyOptions {
            listen: "127.0.0.1:0".into(),
            upstream: RedisTarget {
                addr: upstream.addr(),
                username: username.map(str::to_string),
                password: password.map(str::to_string),
                ..Default::default()
            },
            data_dir: dir.path().join("data"),
            stores: vec![store.clone()],
            keyring: None,
            ship: ShipConfig {
                interval: Duration::from_secs(1),
                ..Default::default()
            },
            snapshot_interval: Duration::ZERO,
            shared_connections,
        };
        let proxy = rt
            .block_on(RunningProxy::start(Arc::new(log), opts))
            .unwrap();
        Proxied {
            rt,
            proxy: Some(proxy),
            store,
            dir,
        }
    }

    pub fn addr(&self) -> String {
        self.proxy.as_ref().unwrap().addr.to_string()
    }

    pub fn conn(&self) -> Conn {
        Conn::connect(&self.addr())
    }

    /// Stops the proxy, shipping everything it logged.
    pub fn stop(&mut self) {
        if let Some(p) = self.proxy.take() {
            self.rt.block_on(p.shutdown(Duration::from_secs(30)));
        }
    }

    /// Every record in the store after the base snapshot at LSN 0, decoded.
    pub fn logged(&self) -> Vec<(Record, Operation)> {
        self.rt.block_on(async {
            let plan = restore::plan(self.store.as_ref(), "redis", Target::Latest, None, false)
                .await
                .unwrap();
            let mut rx = restore::records(self.store.clone(), &plan, None);
            let mut out = Vec::new();
            while let Some(b) = rx.recv().await {
                for r in b.unwrap() {
                    let op = Operation::decode(r.kind, &r.payload).unwrap();
                    out.push((r, op));
                }
            }
            out
        })
    }

    /// The LSN of the shipped record that sets `key`, once it is in the store (at most 30 s).
    pub fn shipped_lsn(&self, key: &str) -> u64 {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let found = self.logged().into_iter().find_map(|(r, op)| match op {
                Operation::RedisCommand { argv }
                    if argv.get(1).is_some_and(|k| k == key.as_bytes()) =>
                {
                    Some(r.lsn)
                }
                _ => None,
            });
            if let Some(lsn) = found {
                return lsn;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the write of {key} was not shipped within 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Restores the store to `at` into `target` (which must be empty).
    pub fn restore_into(&self, target: &Redis, at: Target) -> restore::redis::Summary {
        let t = RedisTarget {
            addr: target.addr(),
            ..Default::default()
        };
        self.rt.block_on(async {
            let plan = restore::plan(self.store.as_ref(), "redis", at, None, false)
                .await
                .unwrap();
            restore::redis::restore(self.store.clone(), &plan, None, &t, false, &|_| {})
                .await
                .unwrap()
        })
    }

    /// The Redis commands logged, as (database, words), markers left out.
    pub fn logged_commands(&self) -> Vec<(String, Vec<Vec<String>>)> {
        let s = |a: &Vec<u8>| String::from_utf8_lossy(a).into_owned();
        self.logged()
            .into_iter()
            .filter_map(|(r, op)| match op {
                Operation::RedisCommand { argv } => {
                    Some((r.namespace, vec![argv.iter().map(s).collect()]))
                }
                Operation::RedisMulti { commands } => Some((
                    r.namespace,
                    commands.iter().map(|c| c.iter().map(s).collect()).collect(),
                )),
                _ => None,
            })
            .collect()
    }
}

impl Drop for Proxied {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn words(c: &mut Conn, argv: &[&str]) -> Value {
    let raw = c.cmd(argv);
    decode(&raw).unwrap().unwrap().0
}

/// A command written as one line of space-separated words.
pub fn line(c: &mut Conn, text: &str) -> Value {
    words(c, &text.split_whitespace().collect::<Vec<_>>())
}

pub fn bytes_cmd(c: &mut Conn, argv: &[Vec<u8>]) -> Value {
    let raw = c.cmd_bytes(argv);
    decode(&raw).unwrap().unwrap().0
}

/// What a key holds, in a form equal for equal contents whatever the encoding.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyState {
    pub kind: String,
    pub content: Vec<String>,
    /// Absolute expiry in ms, -1 without one.
    pub expire_at_ms: i64,
}

/// The whole keyspace of databases 0..`dbs`.
pub fn dump(c: &mut Conn, dbs: u32) -> BTreeMap<(u32, String), KeyState> {
    let mut out = BTreeMap::new();
    for db in 0..dbs {
        words(c, &["SELECT", &db.to_string()]);
        let keys = words(c, &["KEYS", "*"]);
        for k in keys.items().unwrap() {
            let key = k.text();
            let kind = words(c, &["TYPE", &key]).text();
            let strs = |v: Value| -> Vec<String> {
                v.items()
                    .map_or_else(|| vec![v.text()], |i| i.iter().map(Value::text).collect())
            };
            let mut content = match kind.as_str() {
                "string" => strs(words(c, &["GET", &key])),
                "hash" => {
                    let mut v = pairs(strs(words(c, &["HGETALL", &key])));
                    // Field expiries (HEXPIRE, HSETEX): absolute, as Redis replicates them.
                    let fields: Vec<String> = v
                        .iter()
                        .map(|p| p.split('=').next().unwrap().to_string())
                        .collect();
                    let mut argv = vec!["HPEXPIRETIME", &key, "FIELDS"];
                    let n = fields.len().to_string();
                    argv.push(&n);
                    argv.extend(fields.iter().map(String::as_str));
                    let ttls = strs(words(c, &argv));
                    if ttls.iter().any(|t| t != "-1") {
                        v.push(format!("field expiries {ttls:?}"));
                    }
                    v
                }
                "stream" => {
                    let mut v = flat(&words(c, &["XRANGE", &key, "-", "+"]));
                    v.extend(flat(&words(c, &["XINFO", "GROUPS", &key])));
                    v
                }
                "list" => strs(words(c, &["LRANGE", &key, "0", "-1"])),
                "set" => sorted(strs(words(c, &["SMEMBERS", &key]))),
                "zset" => strs(words(c, &["ZRANGE", &key, "0", "-1", "WITHSCORES"])),
                "ReJSON-RL" => strs(words(c, &["JSON.GET", &key, "$"])),
                "vectorset" => {
                    let n = words(c, &["VCARD", &key]).int().unwrap();
                    let members = sorted(strs(words(c, &["VRANDMEMBER", &key, &n.to_string()])));
                    let mut v = vec![format!("dim={}", words(c, &["VDIM", &key]).text())];
                    for m in members {
                        let emb = strs(words(c, &["VEMB", &key, &m]));
                        let attr = words(c, &["VGETATTR", &key, &m]).text();
                        v.push(format!("{m}={emb:?} attr={attr}"));
                    }
                    v
                }
                other => vec![format!("unexpected type {other}")],
            };
            content.shrink_to_fit();
            let expire_at_ms = words(c, &["PEXPIRETIME", &key]).int().unwrap();
            out.insert(
                (db, key),
                KeyState {
                    kind,
                    content,
                    expire_at_ms,
                },
            );
        }
    }
    words(c, &["SELECT", "0"]);
    out
}

/// Every leaf of a nested reply, in order.
pub fn flat(v: &Value) -> Vec<String> {
    match v.items() {
        Some(items) => items.iter().flat_map(flat).collect(),
        None => vec![v.text()],
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn pairs(v: Vec<String>) -> Vec<String> {
    let mut p: Vec<String> = v.chunks(2).map(|c| c.join("=")).collect();
    p.sort();
    p
}

/// Compares two dumps exactly, expiries included: they are Redis's own absolute times,
/// replicated as they are.
pub fn assert_same(
    got: &BTreeMap<(u32, String), KeyState>,
    want: &BTreeMap<(u32, String), KeyState>,
    what: &str,
) {
    let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    assert!(
        extra.is_empty() && missing.is_empty(),
        "{what}: different keys: {} extra {extra:?}, {} missing {missing:?}",
        extra.len(),
        missing.len()
    );
    for (k, w) in want {
        assert_eq!(&got[k], w, "{what}: key {k:?}");
    }
}
