//! What a drill reads from a Qdrant collection (a digest of every point, exact searches),
//! and a scratch Qdrant to restore into.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::protocol::http::percent;
use crate::restore::qdrant::target::Target;
use crate::restore::qdrant::QdrantTarget;
use crate::restore::RestoreError;

fn err(m: impl Into<String>) -> RestoreError {
    RestoreError::Apply(m.into())
}

/// A REST call whose answer must be 200 with a JSON body; its `result`.
pub async fn call(t: &Target, method: &str, pq: &str, body: Value) -> Result<Value, RestoreError> {
    let body = if body.is_null() {
        Bytes::new()
    } else {
        Bytes::from(body.to_string())
    };
    let ct = if body.is_empty() {
        ""
    } else {
        "application/json"
    };
    let (status, answer) = t.rest(method, pq, ct, body).await?;
    let v: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
    if status != 200 {
        let why = v["status"]["error"].as_str().map_or_else(
            || String::from_utf8_lossy(&answer).into_owned(),
            str::to_string,
        );
        return Err(err(format!("{method} {pq}: {status} {why}")));
    }
    Ok(v["result"].clone())
}

/// Every point of a collection: its id (as JSON text) and a digest of its vectors and
/// payload. JSON objects serialize with sorted keys here, so equal points digest alike.
pub async fn points(
    t: &Target,
    collection: &str,
) -> Result<BTreeMap<String, [u8; 32]>, RestoreError> {
    let path = format!("/collections/{}/points/scroll", percent(collection));
    let mut out = BTreeMap::new();
    let mut offset = Value::Null;
    loop {
        let mut q = json!({"limit": 1000, "with_payload": true, "with_vector": true});
        if !offset.is_null() {
            q["offset"] = offset;
        }
        let r = call(t, "POST", &path, q).await?;
        for p in r["points"].as_array().into_iter().flatten() {
            let mut h = Sha256::new();
            h.update(p["vector"].to_string());
            h.update(b"\0");
            h.update(p["payload"].to_string());
            out.insert(p["id"].to_string(), h.finalize().into());
        }
        offset = r["next_page_offset"].clone();
        if offset.is_null() {
            return Ok(out);
        }
    }
}

/// A few points' vectors to search near: the first `n` by id, each with the name of the
/// vector (`None` for the unnamed one). Sparse and multi-vectors are left out.
pub async fn samples(
    t: &Target,
    collection: &str,
    n: usize,
) -> Result<Vec<(Option<String>, Vec<f64>)>, RestoreError> {
    let path = format!("/collections/{}/points/scroll", percent(collection));
    let r = call(
        t,
        "POST",
        &path,
        json!({"limit": n, "with_payload": false, "with_vector": true}),
    )
    .await?;
    let dense =
        |v: &Value| -> Option<Vec<f64>> { v.as_array()?.iter().map(Value::as_f64).collect() };
    let mut out = Vec::new();
    for p in r["points"].as_array().into_iter().flatten() {
        let v = &p["vector"];
        if let Some(d) = dense(v) {
            out.push((None, d));
        } else if let Some((name, d)) = v
            .as_object()
            .and_then(|m| m.iter().find_map(|(k, x)| Some((k.clone(), dense(x)?))))
        {
            out.push((Some(name), d));
        }
    }
    Ok(out)
}

/// The 10 nearest points to `vector` (ids as JSON text, scores), by an exact search (not
/// the index) when `exact`, else by the index.
pub async fn nearest(
    t: &Target,
    collection: &str,
    using: Option<&str>,
    vector: &[f64],
    exact: bool,
) -> Result<Vec<(String, f64)>, RestoreError> {
    let mut q = json!({"query": vector, "limit": 10, "params": {"exact": exact}});
    if let Some(u) = using {
        q["using"] = json!(u);
    }
    let path = format!("/collections/{}/points/query", percent(collection));
    let r = call(t, "POST", &path, q).await?;
    Ok(r["points"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| (p["id"].to_string(), p["score"].as_f64().unwrap_or(f64::NAN)))
        .collect())
}

/// A Qdrant started for one drill on loopback ports, with its storage in a directory of
/// its own; killed, and the directory removed, when dropped.
pub struct Scratch {
    child: Child,
    dir: PathBuf,
    pub target: QdrantTarget,
}

fn free_port() -> Result<u16, RestoreError> {
    Ok(TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| err(format!("no free loopback port: {e}")))?
        .port())
}

impl Scratch {
    pub async fn start(binary: &Path) -> Result<Scratch, RestoreError> {
        let dir = std::env::temp_dir().join(format!(
            "vecwal-drill-qdrant-{}-{}",
            std::process::id(),
            crate::log::now_us()
        ));
        std::fs::create_dir_all(&dir)
            .map_err(|e| err(format!("cannot create {}: {e}", dir.display())))?;
        let (http, grpc) = (free_port()?, free_port()?);
        let log = std::fs::File::create(dir.join("qdrant.log"))
            .map_err(|e| err(format!("cannot create the scratch Qdrant's log: {e}")))?;
        let child = Command::new(binary)
            .current_dir(&dir)
            .env("QDRANT__SERVICE__HOST", "127.0.0.1")
            .env("QDRANT__SERVICE__HTTP_PORT", http.to_string())
            .env("QDRANT__SERVICE__GRPC_PORT", grpc.to_string())
            .env("QDRANT__STORAGE__STORAGE_PATH", dir.join("storage"))
            .env("QDRANT__STORAGE__SNAPSHOTS_PATH", dir.join("snapshots"))
            .env("QDRANT__TELEMETRY_DISABLED", "true")
            .arg("--disable-telemetry")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| err(format!("cannot start {} (--qdrant): {e}", binary.display())))?;
        let uri = |p: u16| -> http::Uri {
            format!("http://127.0.0.1:{p}")
                .parse()
                .expect("a loopback URI parses")
        };
        let mut s = Scratch {
            child,
            dir,
            target: QdrantTarget {
                rest: uri(http),
                grpc: Some(uri(grpc)),
                api_key: None,
            },
        };
        s.wait_ready().await?;
        Ok(s)
    }

    async fn wait_ready(&mut self) -> Result<(), RestoreError> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let t = Target::new(&self.target);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = std::fs::read_to_string(self.dir.join("qdrant.log")).unwrap_or_default();
                return Err(err(format!(
                    "the scratch Qdrant exited ({status}): {}",
                    log.trim()
                )));
            }
            if let Ok((200, _)) = t.rest("GET", "/readyz", "", Bytes::new()).await {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(err("the scratch Qdrant was not ready in 60 s"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A snapshot of `collection` made by `t` and downloaded: for `--promote`.
pub async fn snapshot(t: &Target, collection: &str) -> Result<Vec<u8>, RestoreError> {
    let coll = format!("/collections/{}/snapshots", percent(collection));
    let made = call(t, "POST", &format!("{coll}?wait=true"), Value::Null).await?;
    let name = made["name"]
        .as_str()
        .ok_or_else(|| err("Qdrant made a snapshot but did not name it"))?;
    let (status, data) = t
        .rest(
            "GET",
            &format!("{coll}/{}", percent(name)),
            "",
            Bytes::new(),
        )
        .await?;
    if status != 200 {
        return Err(err(format!("downloading snapshot {name}: {status}")));
    }
    Ok(data.to_vec())
}
