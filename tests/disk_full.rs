//! The data directory fills up under a `vecwal proxy redis` at its default settings: no
//! write is acknowledged that is not logged, new writes are refused with a clear error
//! before they reach Redis, reads go on, and once there is room again writes are accepted
//! without a restart and every acknowledged write restores. The full disk is a real one: a
//! small tmpfs (mounting it needs root, as the services script does).

#[path = "support/redis.rs"]
mod redis;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use redis::{Conn, Redis};
use vecwal::protocol::resp::encode_command;

/// A tmpfs mounted for the test; unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mounting a {size} tmpfs (needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(at.to_path_buf())
    }

    fn resize(&self, size: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// One command on a connection; `None` when the connection failed or timed out (a write
/// the proxy could not log is held, then its connection closed, never acknowledged).
fn call(c: &mut Conn, argv: &[&str]) -> Option<String> {
    let argv: Vec<Vec<u8>> = argv.iter().map(|a| a.as_bytes().to_vec()).collect();
    let r = c.try_pipeline(&encode_command(&argv), 1)?;
    Some(String::from_utf8_lossy(&r[0]).into_owned())
}

#[test]
fn a_full_data_dir_refuses_writes_clearly_and_loses_no_acknowledged_one() {
    let server = Redis::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let disk = Tmpfs::mount(&data, "512k");
    let store = dir.path().join("store");
    let mut proxy = Command::new(env!("CARGO_BIN_EXE_vecwal"))
        .args(["proxy", "redis", "--listen", "127.0.0.1:0", "--upstream"])
        .arg(server.addr())
        .arg("--data-dir")
        .arg(&data)
        .arg("--store")
        .arg(&store)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(proxy.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.split_whitespace().nth(4).unwrap().to_string();

    // Writes of 1 KiB until one is not acknowledged: the disk is full.
    let value = "x".repeat(1024);
    let mut c = Conn::connect(&addr);
    let mut acked = Vec::new();
    for i in 0..5000 {
        match call(&mut c, &["SET", &format!("k{i}"), &value]) {
            Some(r) if r == "+OK\r\n" => acked.push(i),
            _ => break,
        }
    }
    assert!(acked.len() < 5000, "512 KiB never filled");

    // New writes are refused, with the reason, and never reach Redis.
    let deadline = Instant::now() + Duration::from_secs(60);
    let refused = loop {
        let key = format!("probe{}", vecwal::log::now_us());
        let r = call(&mut Conn::connect(&addr), &["SET", &key, "1"]);
        if let Some(r) = r.filter(|r| r.starts_with("-ERR")) {
            assert!(r.to_lowercase().contains("no space left on"), "{r}");
            break key;
        }
        assert!(Instant::now() < deadline, "writes were never refused");
    };
    assert_eq!(
        call(&mut server.conn(), &["EXISTS", &refused]).unwrap(),
        ":0\r\n"
    );
    let first = format!("${}\r\n{value}\r\n", value.len());
    assert_eq!(call(&mut Conn::connect(&addr), &["GET", "k0"]), Some(first));

    // Room again: writes are accepted without a restart.
    disk.resize("64m");
    let deadline = Instant::now() + Duration::from_secs(60);
    while call(&mut Conn::connect(&addr), &["SET", "after", "1"]).as_deref() != Some("+OK\r\n") {
        assert!(
            Instant::now() < deadline,
            "writes were not accepted again within 60 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Stopped (the open segment sealed and shipped), then restored: every acknowledged
    // write is there, the refused one is not.
    Command::new("kill")
        .args(["-TERM", &proxy.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = proxy.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the proxy did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    let target = Redis::start(&[]);
    let out = Command::new(env!("CARGO_BIN_EXE_vecwal"))
        .args(["restore", "redis", "--store"])
        .arg(&store)
        .arg("--target")
        .arg(format!("redis://{}", target.addr()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut t = target.conn();
    for i in &acked {
        let got = call(&mut t, &["STRLEN", &format!("k{i}")]).unwrap();
        assert_eq!(got, ":1024\r\n", "acknowledged write k{i} restored");
    }
    assert_eq!(call(&mut t, &["GET", "after"]).unwrap(), "$1\r\n1\r\n");
    assert_eq!(call(&mut t, &["EXISTS", &refused]).unwrap(), ":0\r\n");
}
