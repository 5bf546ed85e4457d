//! Operating a capture: `vecwal proxy redis --config FILE` starts with no other flag, an
//! environment variable overrides the file, and `/metrics` shows Prometheus text with the
//! lag per destination, records logged, spool bytes and upload errors, on a real Redis.

#[path = "support/redis.rs"]
mod redis;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use redis::{Conn, Redis};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET /metrics`: each sample line as name{labels} → value.
fn scrape(addr: &str) -> BTreeMap<String, f64> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let body = text.split_once("\r\n\r\n").unwrap().1;
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_config_file_alone_starts_the_proxy_and_metrics_show_lag_per_destination() {
    let server = Redis::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let (from_file, from_env) = (free_port(), free_port());
    // A second destination, broken once the proxy runs: its uploads fail, its lag grows.
    let broken = dir.path().join("broken");
    let config = dir.path().join("vecwal.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\nupstream = \"{}\"\ndata-dir = \"{}\"\n\
             store = [\"{}\", \"{}\"]\n\
             # One second: the test waits for a segment to ship.\nship_interval = \"1s\"\n\
             metrics = \"127.0.0.1:{from_file}\"\n",
            server.addr(),
            dir.path().join("data").display(),
            store.display(),
            broken.display()
        ),
    )
    .unwrap();
    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_vecwal"))
            .args(["proxy", "redis", "--config"])
            .arg(&config)
            .env("VECWAL_METRICS", format!("127.0.0.1:{from_env}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split_whitespace()
        .nth(4)
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    // The directory becomes a file: every write to that store fails from now on.
    // (Renamed, not removed: the shipper may be writing into it.)
    let mut gone = 0;
    while std::fs::write(&broken, b"not a directory").is_err() {
        gone += 1;
        assert!(gone < 100, "cannot replace {}", broken.display());
        std::fs::rename(&broken, dir.path().join(format!("gone{gone}"))).unwrap();
    }
    let mut c = Conn::connect(&addr);
    for i in 0..10 {
        c.ok(&["SET", &format!("k{i}"), "v"]);
    }

    let metrics = format!("127.0.0.1:{from_env}");
    assert!(
        TcpStream::connect(format!("127.0.0.1:{from_file}")).is_err(),
        "VECWAL_METRICS overrides the file"
    );
    let fs = format!("{{destination=\"file://{}\"}}", store.display());
    let bad = format!("{{destination=\"file://{}\"}}", broken.display());
    let deadline = Instant::now() + Duration::from_secs(60);
    let m = loop {
        let m = scrape(&metrics);
        let done = m.get(&format!("vecwal_ship_lag_seconds{fs}")) == Some(&0.0)
            && m.get(&format!("vecwal_ship_upload_errors_total{bad}")) >= Some(&1.0)
            && m.get(&format!("vecwal_ship_lag_seconds{bad}")) > Some(&0.0);
        if done {
            break m;
        }
        assert!(Instant::now() < deadline, "metrics never settled: {m:#?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(m["vecwal_records_logged_total"] >= 10.0, "{m:#?}");
    assert!(
        m["vecwal_spool_bytes"] > 0.0,
        "the dead destination holds the spool: {m:#?}"
    );
    assert_eq!(m[&format!("vecwal_ship_up{bad}")], 0.0);
    assert_eq!(m[&format!("vecwal_ship_up{fs}")], 1.0);
    assert!(m[&format!("vecwal_ship_shipped_lsn{fs}")] >= 10.0, "{m:#?}");
    assert!(m["vecwal_fsync_seconds_count"] >= 1.0, "{m:#?}");
    assert!(m["vecwal_proxy_write_wait_seconds_count"] >= 1.0, "{m:#?}");
}

#[test]
fn a_config_file_with_a_mistake_is_refused_with_the_settings_it_could_have_used() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("vecwal.toml");
    std::fs::write(&config, "datadir = \"/var/lib/vecwal\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vecwal"))
        .args(["proxy", "redis", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("unknown setting \"datadir\""), "{err}");
    assert!(err.contains("data-dir"), "{err}");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vecwal"))
        .args(["--log-format", "json", "proxy", "redis", "--upstream"])
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--store")
        .arg(dir.path().join("store"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let logged: Vec<serde_json::Value> = err
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    assert!(!logged.is_empty(), "{err}");
    assert_eq!(logged[0]["level"], "INFO", "{err}");
    assert_eq!(logged[0]["fields"]["message"], "log opened", "{err}");
    assert!(
        err.contains("cannot connect to Redis"),
        "the failure itself: {err}"
    );
}
