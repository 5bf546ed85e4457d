//! `vecwal proxy redis` as a process, as an operator runs it: started, its listening
//! address read from its first line, its output kept, stopped by signal.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::os;
use super::redis::Redis;

pub const PASSWORD: &str = "pw-7f3a9c-never-log-me";

/// The proxy's command line: every test's listener, upstream, data directory and store.
pub fn command(upstream: &Redis, data: &Path, store: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vecwal"));
    cmd.args(["proxy", "redis", "--listen", "127.0.0.1:0"])
        .args(args)
        .arg("--upstream")
        .arg(format!("redis://{}", upstream.addr()))
        .arg("--data-dir")
        .arg(data)
        .arg("--store")
        .arg(store)
        .env("VECWAL_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

pub struct ProxyProcess {
    pub child: Child,
    pub addr: String,
    stderr: Arc<Mutex<Vec<u8>>>,
    stdout: Arc<Mutex<Vec<u8>>>,
}

impl ProxyProcess {
    /// Starts the proxy and waits for its "listening on" line.
    pub fn start(upstream: &Redis, dir: &Path, password: bool) -> ProxyProcess {
        // Shipping every second (not the default 60 s): the tests read the store.
        Self::start_with(upstream, dir, password, &["--ship-interval", "1s"], &[])
    }

    pub fn start_with(
        upstream: &Redis,
        dir: &Path,
        password: bool,
        args: &[&str],
        envs: &[(&str, &std::ffi::OsStr)],
    ) -> ProxyProcess {
        let mut cmd = command(upstream, &dir.join("data"), &dir.join("store"), args);
        cmd.envs(envs.iter().copied());
        if password {
            cmd.args(["--upstream-password-env", "VW_TEST_PW"])
                .env("VW_TEST_PW", PASSWORD);
        }
        Self::spawn(cmd)
    }

    /// A proxy with its data directory and store where the caller says.
    pub fn start_at(upstream: &Redis, data: &Path, store: &Path, args: &[&str]) -> ProxyProcess {
        Self::spawn(command(upstream, data, store, args))
    }

    fn spawn(mut cmd: Command) -> ProxyProcess {
        let mut child = cmd.spawn().unwrap();
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut err = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut b = [0u8; 4096];
            while let Ok(n) = err.read(&mut b) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&b[..n]);
            }
        });
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let addr = line
            .split("listening on ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_else(|| {
                panic!(
                    "no listening line: {line:?}; stderr: {}",
                    String::from_utf8_lossy(&stderr.lock().unwrap())
                )
            })
            .to_string();
        let stdout = Arc::new(Mutex::new(line.into_bytes()));
        let sink = stdout.clone();
        std::thread::spawn(move || {
            let mut rest = Vec::new();
            let _ = out.read_to_end(&mut rest);
            sink.lock().unwrap().extend_from_slice(&rest);
        });
        ProxyProcess {
            child,
            addr,
            stderr,
            stdout,
        }
    }

    pub fn terminate(&mut self) {
        os::kill(self.child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.child.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "the proxy did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn output(&self) -> Vec<u8> {
        let mut o = self.stdout.lock().unwrap().clone();
        o.extend_from_slice(&self.stderr.lock().unwrap());
        o
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
