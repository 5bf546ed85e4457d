//! A new user's first restore, as the field found it: `vecwal proxy qdrant` in front of an
//! empty Qdrant, a collection created and written through the REST and gRPC ports, then
//! `vecwal restore qdrant` with only `--store --collection --at --target`. It used to need
//! `--from-empty` (the collection had no base) and `--target-grpc`.

#[path = "support/qdrant.rs"]
mod qdrant;
#[path = "support/qdrant_proxy.rs"]
mod qdrant_proxy;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use qdrant::{http, Qdrant};

fn scroll(addr: &str, c: &str) -> serde_json::Value {
    let (s, b) = http(
        addr,
        "POST",
        &format!("/collections/{c}/points/scroll"),
        Some(r#"{"limit":100,"with_payload":true,"with_vector":true}"#),
        &[],
    );
    assert_eq!(s, 200, "{b}");
    serde_json::from_str::<serde_json::Value>(&b).unwrap()["result"]["points"].clone()
}

#[test]
fn a_collection_created_through_the_proxy_restores_with_no_extra_flags() {
    let Some(q) = Qdrant::start(None) else { return };
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let mut proxy = Command::new(env!("CARGO_BIN_EXE_vecwal"))
        .args([
            "proxy",
            "qdrant",
            "--listen-http",
            "127.0.0.1:0",
            "--listen-grpc",
            "127.0.0.1:0",
        ])
        .arg("--upstream-http")
        .arg(format!("http://{}", q.http_addr()))
        .arg("--upstream-grpc")
        .arg(format!("http://127.0.0.1:{}", q.grpc_port))
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
    // "listening on A (REST), B (gRPC); …"
    let addrs: Vec<&str> = line
        .split_whitespace()
        .filter(|w| w.starts_with("127.0.0.1:"))
        .collect();
    assert_eq!(addrs.len(), 2, "{line}");
    let (rest, grpc) = (
        addrs[0].trim_end_matches(','),
        addrs[1].trim_end_matches(','),
    );
    let put = |path: &str, body: &str| {
        let (s, b) = http(rest, "PUT", path, Some(body), &[]);
        assert_eq!(s, 200, "{b}");
    };
    put(
        "/collections/docs",
        r#"{"vectors":{"size":2,"distance":"Dot"}}"#,
    );
    put(
        "/collections/docs/points?wait=true",
        r#"{"points":[{"id":1,"vector":[1,0],"payload":{"via":"rest"}}]}"#,
    );
    let grpc_port = grpc.rsplit(':').next().unwrap();
    let rest_port = rest.rsplit(':').next().unwrap();
    let script = format!(
        "from qdrant_client import QdrantClient, models\n\
         c = QdrantClient(host='127.0.0.1', port={rest_port}, grpc_port={grpc_port}, prefer_grpc=True, timeout=30)\n\
         c.upsert('docs', [models.PointStruct(id=i, vector=[0.5, i / 10], payload={{'via': 'grpc'}}) for i in (2, 3)], wait=True)\n"
    );
    let out = Command::new(qdrant_proxy::python())
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = scroll(&q.http_addr(), "docs");
    assert_eq!(want.as_array().unwrap().len(), 3);
    let at = vecwal::time::format_us(vecwal::log::now_us());
    put(
        "/collections/docs/points?wait=true",
        r#"{"points":[{"id":9,"vector":[1,1]}]}"#,
    );
    Command::new("kill")
        .args(["-TERM", &proxy.id().to_string()])
        .status()
        .unwrap();
    assert!(proxy.wait().unwrap().success());

    // A fresh Qdrant with its ports as Qdrant has them by default: gRPC = REST + 1.
    let target = Qdrant::start_adjacent().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vecwal"))
        .args([
            "restore",
            "qdrant",
            "--collection",
            "docs",
            "--at",
            &at,
            "--store",
        ])
        .arg(&store)
        .arg("--target")
        .arg(format!("http://{}", target.http_addr()))
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!(
            "gRPC writes go to http://127.0.0.1:{}",
            target.grpc_port
        )),
        "{text}"
    );
    assert_eq!(scroll(&target.http_addr(), "docs"), want);
}
