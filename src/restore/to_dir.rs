//! `restore redis --to-dir`: an RDB file a redis-server can start from, without touching
//! any running Redis.
//!
//! vecwal has no RDB writer of its own (module data, such as vector sets and index
//! definitions, is opaque to anything but the module). So it starts a scratch redis-server
//! on loopback with the same modules, restores into it the usual way, has it `SAVE`, and
//! stops it: the file is Redis's own, written by the modules themselves.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::RestoreError;
use crate::protocol::redis_client::RedisTarget;

/// How to run the scratch server.
#[derive(Debug, Clone)]
pub struct ScratchServer {
    /// The redis-server binary: the same version as (or newer than) the one that will load
    /// the file.
    pub binary: PathBuf,
    /// Modules to load (`--loadmodule`), as the original server loads them.
    pub modules: Vec<PathBuf>,
}

/// A redis-server started for one restore; killed when dropped.
pub struct Scratch {
    child: Child,
    pub target: RedisTarget,
    dir: PathBuf,
    file: String,
}

fn err(detail: String) -> RestoreError {
    RestoreError::Apply(detail)
}

impl Scratch {
    /// Starts the server with `dir` as its working directory. Refuses when `dir/file` exists
    /// and `force` is not set.
    pub fn start(
        how: &ScratchServer,
        dir: &Path,
        file: &str,
        force: bool,
    ) -> Result<Scratch, RestoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| err(format!("cannot create {}: {e}", dir.display())))?;
        let out = dir.join(file);
        if out.exists() && !force {
            return Err(err(format!(
                "{} exists; refusing to replace it without --force",
                out.display()
            )));
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| err(format!("no free loopback port: {e}")))?
            .port();
        let mut cmd = Command::new(&how.binary);
        cmd.args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .arg("--dir")
            .arg(dir)
            // Never write the output file before the restore is complete, and never read
            // one that is there: the scratch server starts empty.
            .args(["--dbfilename", &format!("{file}.vecwal-scratch")])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ])
            .args(["--logfile", ""])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for m in &how.modules {
            cmd.arg("--loadmodule").arg(m);
        }
        let child = cmd.spawn().map_err(|e| {
            err(format!(
                "cannot start {} (--redis-server): {e}",
                how.binary.display()
            ))
        })?;
        let mut s = Scratch {
            child,
            target: RedisTarget {
                addr: format!("127.0.0.1:{port}"),
                ..Default::default()
            },
            dir: dir.to_path_buf(),
            file: file.to_string(),
        };
        s.wait_ready()?;
        Ok(s)
    }

    fn wait_ready(&mut self) -> Result<(), RestoreError> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let mut text = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut text);
                }
                return Err(err(format!(
                    "the scratch redis-server exited ({status}): {}",
                    text.trim()
                )));
            }
            if std::net::TcpStream::connect(&self.target.addr).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(err("the scratch redis-server did not start in 30 s".into()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Has the server write its dataset, then moves the file into place; returns its path.
    pub async fn save(mut self) -> Result<PathBuf, RestoreError> {
        let mut c = self
            .target
            .connect()
            .await
            .map_err(|e| err(format!("scratch server: {e}")))?;
        c.set_timeout(Duration::from_secs(3600));
        c.ok(&["SAVE"])
            .await
            .map_err(|e| err(format!("SAVE on the scratch server: {e}")))?;
        drop(c);
        let _ = self.child.kill();
        let _ = self.child.wait();
        let written = self.dir.join(format!("{}.vecwal-scratch", self.file));
        let out = self.dir.join(&self.file);
        std::fs::rename(&written, &out)
            .map_err(|e| err(format!("cannot move the RDB to {}: {e}", out.display())))?;
        crate::fsutil::sync_dir(&self.dir)
            .map_err(|e| err(format!("fsync {}: {e}", self.dir.display())))?;
        Ok(out)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(self.dir.join(format!("{}.vecwal-scratch", self.file)));
    }
}
