//! A real SeaweedFS S3 server for tests: started on free loopback ports with a scratch
//! data directory, stopped by PID (SIGKILL: its clean shutdown waits 15 s; nothing
//! written is lost), restartable on the same ports and data for outage tests.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vecwal::store::{S3Options, S3Store, Store};

pub const ACCESS_KEY: &str = "vecwaltestkey";
pub const SECRET_KEY: &str = "vecwal-test-secret-0123456789";
pub const BUCKET: &str = "vecwal-test";

pub struct Seaweed {
    child: Option<Child>,
    weed: PathBuf,
    dir: tempfile::TempDir,
    /// master, volume, filer, s3; gRPC listens on each + 10000.
    ports: [u16; 4],
}

fn weed_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("WEED_BIN") {
        return PathBuf::from(p);
    }
    let local = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".services/venv/bin/weed");
    if local.exists() {
        return local;
    }
    panic!("SeaweedFS is not installed: run scripts/services.sh (scripts/test.sh does), or set WEED_BIN");
}

/// Four ports free on loopback, each with port + 10000 free too (SeaweedFS's gRPC).
fn free_ports() -> [u16; 4] {
    let mut out = Vec::new();
    let mut held = Vec::new();
    while out.len() < 4 {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let p = l.local_addr().unwrap().port();
        if p < 55_535 && !out.contains(&p) {
            if let Ok(g) = TcpListener::bind(("127.0.0.1", p + 10_000)) {
                out.push(p);
                held.push(g);
            }
        }
        held.push(l);
    }
    [out[0], out[1], out[2], out[3]]
}

impl Seaweed {
    pub fn start() -> Seaweed {
        let mut s = Seaweed {
            child: None,
            weed: weed_bin(),
            dir: tempfile::tempdir().unwrap(),
            ports: free_ports(),
        };
        let config = serde_json::json!({"identities": [{
            "name": "vecwal-test",
            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]
        }]});
        std::fs::write(s.dir.path().join("s3.json"), config.to_string()).unwrap();
        std::fs::create_dir(s.dir.path().join("data")).unwrap();
        s.launch();
        s
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports[3])
    }

    fn launch(&mut self) {
        let [master, volume, filer, s3] = self.ports;
        let d = self.dir.path();
        let log = std::fs::File::create(d.join("weed.log")).unwrap();
        let child = Command::new(&self.weed)
            .arg("-logtostderr=true")
            .arg("server")
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-dir={}", d.join("data").display()))
            .arg(format!("-master.port={master}"))
            .args([
                "-master.volumeSizeLimitMB=64",
                "-master.telemetry=false",
                "-master.electionTimeout=1s",
            ])
            .arg(format!("-volume.port={volume}"))
            .args(["-volume.max=100", "-volume.preStopSeconds=0"])
            .args(["-filer", &format!("-filer.port={filer}")])
            .args(["-s3", &format!("-s3.port={s3}")])
            .arg(format!("-s3.config={}", d.join("s3.json").display()))
            .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
            // One volume per bucket instead of seven, so buckets do not run out of volumes.
            .env("WEED_MASTER_VOLUME_GROWTH_COPY_1", "1")
            // The server's key-encryption key, so SSE-S3 (AES256) requests work.
            .env("WEED_S3_SSE_KEK", "5eed".repeat(16))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        self.wait_ready();
    }

    /// Waits, bounded, until the S3 port answers HTTP and the master lists the volume
    /// server: after a restart the S3 port answers before volumes are registered, and
    /// reads fail with 500 until they are.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let [master, volume, _, s3] = self.ports;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("weed exited early ({status}); log:\n{}", self.log_tail());
            }
            let s3_up = http_get(s3, "/").is_some_and(|r| r.starts_with("HTTP/1."));
            let volume_known =
                http_get(master, "/dir/status").is_some_and(|r| r.contains(&format!(":{volume}")));
            if s3_up && volume_known {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "SeaweedFS not ready after 60 s; log:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("weed.log")).unwrap_or_default();
        log.lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Whether any file under the server's data directory contains `needle`.
    pub fn data_contains(&self, needle: &[u8]) -> bool {
        fn walk(dir: &std::path::Path, needle: &[u8]) -> bool {
            std::fs::read_dir(dir).unwrap().any(|e| {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(&p, needle)
                } else {
                    std::fs::read(&p)
                        .map(|b| b.windows(needle.len()).any(|w| w == needle))
                        .unwrap_or(false)
                }
            })
        }
        walk(&self.dir.path().join("data"), needle)
    }

    /// Kills the server (an outage); its data stays for `restart`.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same ports and data.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    pub fn options(&self) -> S3Options {
        S3Options {
            endpoint: Some(self.endpoint()),
            region: None,
            sse: None,
            static_credentials: Some((ACCESS_KEY.into(), SECRET_KEY.into())),
        }
    }

    pub async fn store(&self, prefix: &str) -> Arc<dyn Store> {
        Arc::new(S3Store::new(BUCKET, prefix, &self.options()).await.unwrap())
    }

    /// Environment for a `vecwal` child process to reach this server through the AWS chain.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }
}

/// A plain HTTP/1.0 GET on loopback; the whole response, or `None`.
fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

impl Drop for Seaweed {
    fn drop(&mut self) {
        self.stop();
    }
}
