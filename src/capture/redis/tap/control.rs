//! The tap's control port: RESP, so `vecwal snapshot redis` (or any Redis client) asks a
//! tap for a snapshot the same way it asks a proxy. It answers `PING` and
//! `VECWAL.SNAPSHOT`, and refuses everything else by name: it is not a Redis.

use std::future::Future;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::catalog::SnapshotManifest;
use crate::protocol::resp::parse_command;

/// Longest request accepted; the commands here are a few bytes.
const MAX_REQUEST: usize = 64 << 10;

pub async fn serve<F, Fut>(listener: TcpListener, snapshot: F)
where
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<SnapshotManifest, String>> + Send,
{
    // Sessions live in this set: when the tap stops (this task is aborted) they end with
    // it, and none keeps the log (and its directory lock) alive.
    let mut sessions = tokio::task::JoinSet::new();
    loop {
        while sessions.try_join_next().is_some() {}
        let (conn, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "control port: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let f = snapshot.clone();
        sessions.spawn(async move {
            if let Err(e) = session(conn, f).await {
                tracing::debug!(error = %e, "control connection ended");
            }
        });
    }
}

async fn session<F, Fut>(mut conn: TcpStream, snapshot: F) -> std::io::Result<()>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<SnapshotManifest, String>>,
{
    let mut buf = Vec::new();
    loop {
        let (argv, n) = match parse_command(&buf) {
            Ok(Some(c)) => c,
            Ok(None) if buf.len() < MAX_REQUEST => {
                if conn.read_buf(&mut buf).await? == 0 {
                    return Ok(());
                }
                continue;
            }
            Ok(None) => return reply(&mut conn, "-ERR request too long").await,
            Err(e) => return reply(&mut conn, &format!("-ERR protocol error: {e}")).await,
        };
        buf.drain(..n);
        let name = argv
            .first()
            .map(|n| n.to_ascii_uppercase())
            .unwrap_or_default();
        let answer = match name.as_slice() {
            b"PING" => "+PONG".to_string(),
            b"VECWAL.SNAPSHOT" => match snapshot().await {
                Ok(m) => format!("+snapshot at LSN {} ({} bytes)", m.lsn, m.size),
                Err(e) => format!("-ERR {}", e.replace(['\r', '\n'], " ")),
            },
            _ => format!(
                "-ERR unknown command '{}': this is a vecwal tap's control port; it answers \
                 VECWAL.SNAPSHOT and PING",
                String::from_utf8_lossy(&name)
                    .chars()
                    .take(64)
                    .collect::<String>()
            ),
        };
        reply(&mut conn, &answer).await?;
    }
}

async fn reply(conn: &mut TcpStream, line: &str) -> std::io::Result<()> {
    conn.write_all(format!("{line}\r\n").as_bytes()).await
}
