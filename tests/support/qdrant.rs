//! A real Qdrant for tests: no package registry ships the server, so it is found through
//! `QDRANT_BIN`, where scripts/services.sh unpacks the one `../shared/qdrant` carries, or
//! `PATH`. When it is absent the
//! Qdrant tests say so on one loud line and return: `scripts/test.sh` prints the same line
//! so a skipped run is never mistaken for a passed one.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const SKIP_LINE: &str =
    "SKIPPED: Qdrant tests: no qdrant binary (set QDRANT_BIN or put qdrant on PATH; see docs/qdrant.md)";

/// The server binary, if this machine has one: `QDRANT_BIN`, else where
/// scripts/services.sh unpacks it (so a plain `cargo nextest run` after it runs the Qdrant
/// tests too), else `PATH`.
pub fn binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("QDRANT_BIN") {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    let installed = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/.services/qdrant/qdrant"
    ));
    if installed.is_file() {
        return Some(installed);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join("qdrant"))
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Qdrant {
    child: Child,
    pub http_port: u16,
    pub grpc_port: u16,
    dir: tempfile::TempDir,
}

impl Qdrant {
    /// Starts a server with scratch storage on loopback ports, or `None` (after the skip
    /// line) when there is no binary.
    pub fn start(api_key: Option<&str>) -> Option<Qdrant> {
        let env: Vec<(&str, &str)> = api_key
            .map(|k| ("QDRANT__SERVICE__API_KEY", k))
            .into_iter()
            .collect();
        Self::start_on(&env, (free_port(), free_port()))
    }

    /// A server with an api-key and a read-only api-key.
    pub fn start_with_keys(api_key: &str, read_only: &str) -> Option<Qdrant> {
        let env = [
            ("QDRANT__SERVICE__API_KEY", api_key),
            ("QDRANT__SERVICE__READ_ONLY_API_KEY", read_only),
        ];
        Self::start_on(&env, (free_port(), free_port()))
    }

    /// [`Qdrant::start`] with its gRPC port right after its REST port, as Qdrant's own
    /// defaults have them (6333, 6334).
    pub fn start_adjacent() -> Option<Qdrant> {
        let ports = loop {
            let p = free_port();
            if p < u16::MAX && TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
                break (p, p + 1);
            }
        };
        Self::start_on(&[], ports)
    }

    /// Starts a server with these more environment variables (Qdrant's configuration).
    fn start_on(env: &[(&str, &str)], (http_port, grpc_port): (u16, u16)) -> Option<Qdrant> {
        let Some(bin) = binary() else {
            eprintln!("{SKIP_LINE}");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(bin);
        cmd.current_dir(dir.path())
            .env("QDRANT__SERVICE__HOST", "127.0.0.1")
            .env("QDRANT__SERVICE__HTTP_PORT", http_port.to_string())
            .env("QDRANT__SERVICE__GRPC_PORT", grpc_port.to_string())
            .env("QDRANT__STORAGE__STORAGE_PATH", dir.path().join("storage"))
            .env(
                "QDRANT__STORAGE__SNAPSHOTS_PATH",
                dir.path().join("snapshots"),
            )
            .env("QDRANT__TELEMETRY_DISABLED", "true")
            .env("QDRANT__LOG_LEVEL", "WARN")
            .arg("--disable-telemetry")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("qdrant.log")).unwrap());
        cmd.envs(env.iter().copied());
        let child = cmd.spawn().unwrap();
        let mut q = Qdrant {
            child,
            http_port,
            grpc_port,
            dir,
        };
        q.wait_ready();
        Some(q)
    }

    pub fn http_addr(&self) -> String {
        format!("127.0.0.1:{}", self.http_port)
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let log =
                    std::fs::read_to_string(self.dir.path().join("qdrant.log")).unwrap_or_default();
                panic!("qdrant exited ({status}):\n{log}");
            }
            if let Ok(s) = TcpStream::connect(self.http_addr()) {
                drop(s);
                let (status, _) = http(&self.http_addr(), "GET", "/readyz", None, &[]);
                if status == 200 {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "qdrant not ready after 60 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Qdrant {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request on a fresh connection: the status and the body as text.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let body = body.unwrap_or("");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    (
        status,
        if chunked {
            dechunk(rest)
        } else {
            rest.to_string()
        },
    )
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}
