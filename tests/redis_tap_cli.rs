//! `vecwal tap redis` as an operator runs it, killed with -9 again and again while clients
//! write non-idempotent commands (INCR, RPUSH) to the master: every restart continues
//! from the saved position (or, if the kill cut a write in half, takes a new base), and
//! the restored database equals the master exactly: no write lost, none applied twice.

#[path = "support/os.rs"]
mod os;
#[path = "support/redis.rs"]
mod redis;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use os::{files_containing, kill};
use redis::{Conn, Redis};

fn vecwal() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vecwal"))
}

/// Starts the tap and returns it with its "following" line.
fn start_tap(master: &Redis, dir: &Path) -> (Child, String) {
    start_tap_with(master, dir, &mut vecwal(), &[], Stdio::null())
}

/// [`start_tap`] with more arguments after `tap redis`.
fn start_tap_with(
    master: &Redis,
    dir: &Path,
    cmd: &mut Command,
    extra: &[&str],
    stderr: Stdio,
) -> (Child, String) {
    let mut child = cmd
        .args(["tap", "redis", "--control", "none", "--ship-interval", "1s"])
        .args(extra)
        .arg("--source")
        .arg(format!("redis://{}", master.addr()))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--store")
        .arg(dir.join("store"))
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("vecwal tap: following"), "{line:?}");
    (child, line)
}

fn info_field(c: &mut Conn, field: &str) -> String {
    let raw = c.cmd(&["INFO", "replication"]);
    let text = String::from_utf8_lossy(&raw).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

/// Waits until the tap has acknowledged (logged) everything the master replicated so far.
fn caught_up(admin: &mut Conn) {
    let want: u64 = info_field(admin, "master_repl_offset").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked(admin) < want {
        assert!(Instant::now() < deadline, "the tap did not catch up");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The offset the tap acknowledged (what it has logged), as the master sees it.
fn acked(c: &mut Conn) -> u64 {
    info_field(c, "slave0")
        .split(',')
        .find_map(|kv| kv.strip_prefix("offset="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_tap_killed_again_and_again_restores_to_exactly_the_master() {
    let master = Redis::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|t| {
            let (addr, stop) = (master.addr(), stop.clone());
            std::thread::spawn(move || {
                let mut c = Conn::connect(&addr);
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    c.cmd(&["INCR", &format!("counter:{t}")]);
                    c.cmd(&["RPUSH", &format!("list:{t}"), &i.to_string()]);
                    c.cmd(&["HINCRBY", "h", &format!("f{}", i % 7), "1"]);
                    i += 1;
                }
            })
        })
        .collect();
    let mut admin = master.conn();
    let mut starts = Vec::new();
    for _round in 0..5 {
        let (mut tap, line) = start_tap(&master, dir.path());
        starts.push(line);
        // Let it log a while: until the master has seen it acknowledge 20 KiB more.
        let from = acked(&mut admin);
        let deadline = Instant::now() + Duration::from_secs(60);
        while acked(&mut admin) < from + 20_000 {
            assert!(Instant::now() < deadline, "the tap made no progress");
            std::thread::sleep(Duration::from_millis(5));
        }
        kill(tap.id(), "KILL");
        tap.wait().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    // A last run catches up with everything, then stops cleanly (seals and ships).
    let (mut tap, line) = start_tap(&master, dir.path());
    starts.push(line);
    caught_up(&mut admin);
    kill(tap.id(), "TERM");
    assert!(tap.wait().unwrap().success());
    // The position file names where the log stands before each batch and where the batch
    // takes it, so a kill anywhere around an append leaves one that matches: every restart
    // continues, unless the kill cut a batch's write in the middle (then a new base).
    let resumed = starts[1..]
        .iter()
        .filter(|l| l.contains("partial resync"))
        .count();
    let cut = starts[1..]
        .iter()
        .filter(|l| l.contains("that a crash cut short"))
        .count();
    assert!(
        resumed >= 1 && resumed + cut == starts.len() - 1,
        "restarts continue from the saved position: {starts:#?}"
    );

    let target = Redis::start(&[]);
    let out = vecwal()
        .args(["restore", "redis", "--store"])
        .arg(dir.path().join("store"))
        .arg("--target")
        .arg(format!("redis://{}", target.addr()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut restored = target.conn();
    let mut n = 0;
    for t in 0..2 {
        let counter = format!("counter:{t}");
        let list = format!("list:{t}");
        let want = admin.cmd(&["GET", &counter]);
        assert_eq!(restored.cmd(&["GET", &counter]), want, "{counter}");
        let want = admin.cmd(&["LRANGE", &list, "0", "-1"]);
        assert_eq!(restored.cmd(&["LRANGE", &list, "0", "-1"]), want, "{list}");
        n += String::from_utf8_lossy(&admin.cmd(&["LLEN", &list]))
            .trim_start_matches(':')
            .trim()
            .parse::<u64>()
            .unwrap();
    }
    assert_eq!(
        restored.cmd(&["HGETALL", "h"]),
        admin.cmd(&["HGETALL", "h"])
    );
    assert!(n > 1000, "the clients wrote through all rounds: {n}");
}

#[test]
fn the_masters_password_never_reaches_the_data_dir_the_store_or_the_output() {
    const PASSWORD: &str = "tap-pw-41c9e2-never-log-me";
    let master = Redis::start(&["--requirepass", PASSWORD]);
    let dir = tempfile::tempdir().unwrap();
    let mut admin = master.conn();
    admin.ok(&["AUTH", PASSWORD]);
    admin.ok(&["SET", "before", "1"]);
    let mut cmd = vecwal();
    cmd.env("VW_TAP_PW", PASSWORD).env("VECWAL_LOG", "debug");
    let logs = tempfile::tempdir().unwrap();
    let stderr = std::fs::File::create(logs.path().join("stderr")).unwrap();
    let (tap, line) = start_tap_with(
        &master,
        dir.path(),
        &mut cmd,
        &["--source-password-env", "VW_TAP_PW"],
        stderr.into(),
    );
    assert!(!line.contains(PASSWORD), "{line}");
    admin.ok(&["SET", "after", "2"]);
    caught_up(&mut admin);
    kill(tap.id(), "TERM");
    let out = tap.wait_with_output().unwrap();
    assert!(out.status.success());
    let hits = files_containing(dir.path(), PASSWORD.as_bytes());
    assert!(hits.is_empty(), "the password is in {hits:?}");
    let log = std::fs::read_to_string(logs.path().join("stderr")).unwrap();
    assert!(
        log.contains("DEBUG") || log.contains("INFO"),
        "logs were written: {log}"
    );
    assert!(!log.contains(PASSWORD), "the password is in the logs");
    assert!(!String::from_utf8_lossy(&out.stdout).contains(PASSWORD));
    assert!(
        !files_containing(dir.path(), b"after").is_empty(),
        "the write was logged"
    );
}
