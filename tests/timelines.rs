//! Timelines after a restore, on real Redis, through the CLI as an operator runs it: a
//! database restored from a stream and captured again begins timeline 2 of the same stream
//! (`--branch-from`, which the restore prints); a new data directory without it is refused
//! rather than mixing histories; `ls` shows the branch; restores follow the newest timeline
//! unless `--timeline` picks another, and each branch restores exactly, at its latest and
//! at a time in the middle.

#[path = "support/cli_proxy.rs"]
mod cli_proxy;
#[path = "support/os.rs"]
mod os;
#[path = "support/proxy.rs"]
mod proxy;
#[path = "support/redis.rs"]
mod redis;

use std::path::Path;
use std::process::Command;

use cli_proxy::ProxyProcess;
use proxy::{dump, words};
use redis::Redis;
use vecwal::time::format_us;

fn vecwal(args: &[&str], store: &Path) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vecwal"))
        .args(args)
        .arg("--store")
        .arg(store)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code(), text)
}

/// Restores into a new Redis; its keyspace.
fn restored(store: &Path, extra: &[&str]) -> (Keyspace, String) {
    let target = Redis::start(&[]);
    let url = format!("redis://{}", target.addr());
    let mut args = vec!["restore", "redis", "--target", &url];
    args.extend_from_slice(extra);
    let (code, text) = vecwal(&args, store);
    assert_eq!(code, Some(0), "restore {extra:?}: {text}");
    (dump(&mut target.conn(), 1), text)
}

type Keyspace = std::collections::BTreeMap<(u32, String), proxy::KeyState>;

fn set(p: &ProxyProcess, k: &str, v: &str) {
    let mut c = redis::Conn::connect(&p.addr);
    words(&mut c, &["SET", k, v]);
}

#[test]
fn a_restored_database_continues_the_stream_as_a_new_timeline_and_each_branch_restores() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    // Shipping every second (not the default minute): the test reads the store after each
    // phase and a proxy stopped by SIGTERM ships what it has anyway.
    let ship = ["--ship-interval", "1s"];

    // Timeline 1: five good writes, then the incident.
    let a = Redis::start(&[]);
    let mut p1 = ProxyProcess::start_at(&a, &dir.path().join("data1"), &store, &ship);
    for i in 1..=5 {
        set(&p1, &format!("k{i}"), "one");
    }
    let good = vecwal::log::now_us();
    set(&p1, "k1", "bad");
    words(&mut redis::Conn::connect(&p1.addr), &["DEL", "k2"]);
    set(&p1, "incident", "1");
    p1.terminate();
    let incident_state = dump(&mut a.conn(), 1);

    // Restore to before the incident into B; the restore says how to capture B.
    let b = Redis::start(&[]);
    let b_url = format!("redis://{}", b.addr());
    let good_at = format_us(good);
    let (code, text) = vecwal(
        &["restore", "redis", "--at", &good_at, "--target", &b_url],
        &store,
    );
    assert_eq!(code, Some(0), "{text}");
    let branch = text
        .split("--branch-from ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("the restore did not print --branch-from: {text}"))
        .to_string();
    let (tl, lsn) = branch.split_once(':').unwrap();
    assert_eq!(tl, "1", "{text}");
    let branch_lsn: u64 = lsn.parse().unwrap();
    let restored_state = dump(&mut b.conn(), 1);
    assert_eq!(restored_state.len(), 5, "{restored_state:?}");

    // A new data directory on the stream without --branch-from would mix two histories.
    let data2 = dir.path().join("data2");
    let mut refused = cli_proxy::command(&b, &data2, &store, &ship)
        .output()
        .unwrap();
    refused.stdout.extend_from_slice(&refused.stderr);
    let why = String::from_utf8_lossy(&refused.stdout);
    assert!(!refused.status.success(), "{why}");
    assert!(why.contains("already holds stream \"redis\""), "{why}");
    assert!(why.contains("--branch-from"), "{why}");
    assert!(!data2.join("stream.json").exists(), "nothing was begun");

    // Timeline 2: B captured with the value the restore printed.
    let args = ["--ship-interval", "1s", "--branch-from", &branch];
    let mut p2 = ProxyProcess::start_at(&b, &data2, &store, &args);
    set(&p2, "k3", "two");
    set(&p2, "after", "1");
    let mid = vecwal::log::now_us();
    set(&p2, "k4", "two-late");
    p2.terminate();
    let out = String::from_utf8_lossy(&p2.output()).to_string();
    assert!(
        out.contains("began timeline 2 of stream \"redis\""),
        "{out}"
    );
    // A restart with the same flags carries on in timeline 2.
    let mut p2 = ProxyProcess::start_at(&b, &data2, &store, &args);
    set(&p2, "k6", "two");
    p2.terminate();
    let b_state = dump(&mut b.conn(), 1);

    // `ls` shows the branch and a window per timeline.
    let (code, text) = vecwal(&["ls"], &store);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains(&format!(
            "timeline 2: branched from timeline 1 after LSN {branch_lsn}"
        )),
        "{text}"
    );
    assert!(text.contains("restores follow timeline 2"), "{text}");
    let (_, json) = vecwal(&["ls", "--json"], &store);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let tls: Vec<u64> = v["windows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["timeline"].as_u64().unwrap())
        .collect();
    assert_eq!(tls, [1, 2], "{json}");

    // The newest timeline by default: B as it is now.
    let (state, text) = restored(&store, &[]);
    assert!(text.contains("stream redis (timeline 2)"), "{text}");
    assert!(
        text.contains(&format!(
            "history:  timeline 1 through LSN {branch_lsn}, then timeline 2"
        )),
        "{text}"
    );
    assert_eq!(state, b_state);
    // Timeline 1 on request: A with the incident.
    let (state, _) = restored(&store, &["--timeline", "1"]);
    assert_eq!(state, incident_state);
    // A time in the middle of timeline 2: its first writes, not the later ones.
    let mid_at = format_us(mid);
    let (state, _) = restored(&store, &["--at", &mid_at]);
    let mut want = restored_state.clone();
    for k in ["k3", "after"] {
        want.insert((0, k.into()), b_state[&(0, k.into())].clone());
    }
    assert_eq!(state, want);
    // The same time on timeline 1 is after all of it: the incident again.
    let (state, _) = restored(&store, &["--at", &mid_at, "--timeline", "1"]);
    assert_eq!(state, incident_state);
    // Before the branch, both timelines share their history.
    let (state, _) = restored(&store, &["--at", &good_at]);
    assert_eq!(state, restored_state);
    let (code, text) = vecwal(
        &["restore", "redis", "--timeline", "3", "--to-dir", "x"],
        &store,
    );
    assert_ne!(code, Some(0));
    assert!(text.contains("has no timeline 3; it has 1, 2"), "{text}");

    // Without timeline 2's own base (its upload cut short, say), a restore of timeline 2
    // starts from timeline 1's and reads timeline 1 only up to the branch point, then 2.
    let tl2_snapshots = store.join("redis/snapshots/0000000002");
    std::fs::remove_dir_all(&tl2_snapshots).unwrap();
    let (state, text) = restored(&store, &[]);
    assert!(
        text.contains("base:     snapshot redis/snapshots/0000000001/"),
        "{text}"
    );
    assert_eq!(state, b_state);

    // The store as a whole verifies.
    let (code, text) = vecwal(&["verify"], &store);
    assert_eq!(code, Some(0), "{text}");
}
