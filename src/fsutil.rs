//! Durable directory operations shared by the local log and the local-directory store.

use std::fs::File;
use std::io;
use std::path::Path;

/// fsyncs a directory so that entries created, renamed or removed in it are durable.
pub fn sync_dir(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

/// Creates `path` and any missing parents, and makes each new directory durable by
/// fsyncing the directory that holds it: a new directory's entry is data too, and a power
/// cut could otherwise lose it with everything written inside.
pub fn create_dir_durable(path: &Path) -> io::Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut p = path;
    while !p.exists() {
        missing.push(p);
        match p.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => p = parent,
            _ => break,
        }
    }
    std::fs::create_dir_all(path)?;
    for dir in missing.iter().rev() {
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent)?;
        }
    }
    Ok(())
}

/// Runs disk- or CPU-heavy work (hashing, encrypting or writing hundreds of megabytes) on
/// tokio's blocking threads: on an async worker it would stall every client connection the
/// process serves for as long as it takes.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("blocking task ended without a result: {e}"),
    }
}
