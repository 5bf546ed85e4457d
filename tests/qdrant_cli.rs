//! `vecwal proxy qdrant`, `snapshot qdrant` and `restore qdrant` as an operator runs them,
//! on a real Qdrant: a snapshot on demand, writes after it, a stop that ships, a dry run,
//! a refusal to overwrite, and a restore next to the live collection that equals it.

#[path = "support/qdrant.rs"]
mod qdrant;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use qdrant::{http, Qdrant};

fn vecwal() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vecwal"))
}

fn run(cmd: &mut Command) -> (bool, String) {
    let o = cmd.output().unwrap();
    let text =
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    (o.status.success(), text)
}

fn scroll(addr: &str, c: &str) -> String {
    let (s, b) = http(
        addr,
        "POST",
        &format!("/collections/{c}/points/scroll"),
        Some(r#"{"limit":100,"with_payload":true,"with_vector":true}"#),
        &[],
    );
    assert_eq!(s, 200, "{b}");
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    v["result"]["points"].to_string()
}

#[test]
fn snapshot_then_restore_next_to_the_live_collection() {
    let Some(q) = Qdrant::start(None) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let mut proxy = vecwal()
        .args([
            "proxy",
            "qdrant",
            "--listen-http",
            "127.0.0.1:0",
            "--listen-grpc",
            "none",
        ])
        .arg("--upstream-http")
        .arg(format!("http://{}", q.http_addr()))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
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
    let addr = line
        .split("listening on ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("{line:?}"))
        .to_string();
    let put = |path: &str, body: &str| {
        let (s, b) = http(&addr, "PUT", path, Some(body), &[]);
        assert_eq!(s, 200, "{b}");
    };
    put(
        "/collections/docs",
        r#"{"vectors":{"size":2,"distance":"Dot"}}"#,
    );
    put(
        "/collections/docs/points?wait=true",
        r#"{"points":[{"id":1,"vector":[1,0],"payload":{"a":1}},{"id":2,"vector":[0,1]}]}"#,
    );
    let (ok, text) = run(vecwal()
        .args(["snapshot", "qdrant", "--collection", "docs", "--proxy"])
        .arg(format!("http://{addr}")));
    assert!(ok && text.contains("snapshot of docs at LSN 2"), "{text}");
    put(
        "/collections/docs/points?wait=true",
        r#"{"points":[{"id":3,"vector":[1,1],"payload":{"b":2}}]}"#,
    );
    Command::new("kill")
        .args(["-TERM", &proxy.id().to_string()])
        .status()
        .unwrap();
    assert!(proxy.wait().unwrap().success());

    let restore = |extra: &[&str]| {
        run(vecwal()
            .args(["restore", "qdrant", "--collection", "docs", "--store"])
            .arg(&store)
            .arg("--target")
            .arg(format!("http://{}", q.http_addr()))
            .args(extra))
    };
    let (ok, text) = restore(&["--as", "copy", "--dry-run"]);
    assert!(
        ok && text.contains("dry run") && text.contains("LSN 2"),
        "{text}"
    );
    let (ok, text) = restore(&[]);
    assert!(
        !ok && text.contains("exists") && text.contains("--as"),
        "{text}"
    );
    let (ok, text) = restore(&["--as", "copy"]);
    assert!(ok && text.contains("1 records applied"), "{text}");
    assert_eq!(
        scroll(&q.http_addr(), "copy"),
        scroll(&q.http_addr(), "docs")
    );

    // Forensic replay of the whole history into a staging Qdrant.
    let replay = |target: &str, extra: &[&str]| {
        run(vecwal()
            .args(["replay", "--stream", "qdrant", "--from", "-1h", "--store"])
            .arg(&store)
            .args(["--target", target])
            .args(extra))
    };
    let (ok, text) = replay("http://127.0.0.1:1", &["--collection", "docs", "--dry-run"]);
    assert!(ok, "{text}");
    let lines: Vec<&str> = text.lines().filter(|l| l.contains(" docs ")).collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].contains("PUT /collections/docs ("), "{text}");
    assert!(
        lines[2].contains("PUT /collections/docs/points?wait=true"),
        "{text}"
    );
    let (ok, text) = replay("http://127.0.0.1:1", &["--db", "0"]);
    assert!(!ok && text.contains("--collection"), "{text}");
    let staging = Qdrant::start(None).unwrap();
    let (ok, text) = replay(&format!("http://{}", staging.http_addr()), &[]);
    assert!(ok && text.contains("replayed 3 records"), "{text}");
    assert_eq!(
        scroll(&staging.http_addr(), "docs"),
        scroll(&q.http_addr(), "docs")
    );
}
