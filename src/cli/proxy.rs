//! `vecwal proxy redis`: capture writes by standing between the application and Redis.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use super::capture_args::{shutdown_signal, CaptureArgs};
use crate::capture::redis::client::RedisTarget;
use crate::capture::redis::service::{ProxyOptions, RunningProxy};

/// Run a capture proxy in front of a database.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    target: Target,
}

#[derive(Debug, clap::Subcommand)]
enum Target {
    Redis(RedisArgs),
}

/// A RESP proxy in front of Redis that logs every write Redis accepted.
///
/// Point the application at --listen instead of Redis. Reads, pub/sub, blocking commands
/// and pipelines pass through; every write Redis accepted is logged, in the deterministic
/// form Redis replicates it, before its reply reaches the client. At start the proxy takes
/// a base snapshot (an RDB aligned to the log), then one every --snapshot-interval, and
/// on demand (`vecwal snapshot redis`, or the command VECWAL.SNAPSHOT sent to the proxy).
///
/// Clients log in through the proxy as they would to Redis (AUTH/HELLO pass through and
/// are never logged). The proxy's own connections (command table, snapshots) use the
/// credentials of --upstream, or the password in --upstream-password-env.
///
/// Examples:
///   vecwal proxy redis --upstream redis://127.0.0.1:6379 --data-dir /var/lib/vecwal \
///       --store s3://backups/vecwal
///   REDIS_PW=... vecwal proxy redis --listen 0.0.0.0:6380 --upstream redis://10.0.0.5 \
///       --upstream-password-env REDIS_PW --data-dir ./vw --store ./backups --fsync everysec
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
struct RedisArgs {
    /// Where clients connect.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:6380")]
    listen: String,
    /// The Redis to forward to: redis://[user:password@]host:port.
    #[arg(long, value_name = "URL")]
    upstream: String,
    /// Read the upstream password from this environment variable (keeps it out of `ps`).
    #[arg(long, value_name = "VAR")]
    upstream_password_env: Option<String>,
    /// How often to take an aligned base snapshot (0: only at start and on demand).
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = crate::time::parse_duration)]
    snapshot_interval: Duration,
    #[command(flatten)]
    capture: CaptureArgs,
}

pub async fn run(a: Args) -> anyhow::Result<ExitCode> {
    let Target::Redis(a) = a.target;
    let mut upstream =
        RedisTarget::parse(&a.upstream).map_err(|e| anyhow::anyhow!("--upstream: {e}"))?;
    if let Some(var) = &a.upstream_password_env {
        upstream.password = Some(
            std::env::var(var).with_context(|| format!("environment variable {var} is not set"))?,
        );
    }
    let opened = a.capture.open().await?;
    let proxy = RunningProxy::start(
        opened.log.clone(),
        ProxyOptions {
            listen: a.listen.clone(),
            upstream,
            stores: opened.stores,
            keyring: opened.keyring,
            ship: opened.ship,
            snapshot_interval: a.snapshot_interval,
        },
    )
    .await?;
    // One line on stdout when ready: scripts and supervisors wait for it.
    println!(
        "vecwal proxy: listening on {} (base snapshot at LSN {})",
        proxy.addr, proxy.start_snapshot.lsn
    );
    shutdown_signal().await;
    eprintln!("vecwal proxy: shutting down; sealing and shipping the open segment");
    proxy.shutdown(Duration::from_secs(30)).await;
    Ok(ExitCode::SUCCESS)
}
