//! `vecwal tap redis`: capture writes by following Redis's replication stream.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use super::capture_args::{shutdown_signal, CaptureArgs};
use crate::capture::redis::tap::{RunningTap, Started, TapOptions};
use crate::protocol::redis_client::RedisTarget;

/// Follow a database's replication stream and log every write (no application change).
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    target: Target,
}

#[derive(Debug, clap::Subcommand)]
enum Target {
    Redis(RedisArgs),
}

/// Follow a Redis master as a replica and log its write stream.
///
/// vecwal connects to --source the way a replica does (REPLCONF, PSYNC). The full-sync RDB
/// becomes a base snapshot aligned to the log; every command the master replicates after
/// it becomes a record, in the deterministic form Redis replicates it. The tap saves the
/// replication position with each batch it logs, so after a restart or a dropped link it
/// continues where the log ends (partial resync). If the master can only offer a full
/// resync, the tap takes it as a new base snapshot and says so.
///
/// The tap acknowledges to the master only what is durable in its log: `WAIT 1 0` on the
/// master returns once a write is logged.
///
/// Known limit: Redis 8.2 does not replicate a VADD that updates an existing vector-set
/// element, so the tap cannot log it; through the proxy (`vecwal proxy redis`) such VADDs
/// are sent as a script that Redis does replicate.
///
/// On-demand snapshots: `vecwal snapshot redis --tap ADDR` (the --control address).
///
/// Examples:
///   vecwal tap redis --source redis://127.0.0.1:6379 --data-dir /var/lib/vecwal-tap \
///       --store s3://backups/vecwal
///   REDIS_PW=... vecwal tap redis --source redis://10.0.0.5 --source-password-env REDIS_PW \
///       --data-dir ./vw --store ./backups
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
struct RedisArgs {
    /// The master to follow: redis://[user:password@]host:port.
    #[arg(long, value_name = "URL")]
    source: String,
    /// Read the master's password from this environment variable (keeps it out of `ps`).
    #[arg(long, value_name = "VAR")]
    source_password_env: Option<String>,
    /// Where `vecwal snapshot redis --tap` reaches this tap ("none": no control port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:6390")]
    control: String,
    /// How often to take an aligned base snapshot (0: only at full syncs and on demand).
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = crate::time::parse_duration)]
    snapshot_interval: Duration,
    #[command(flatten)]
    capture: CaptureArgs,
}

pub async fn run(a: Args) -> anyhow::Result<ExitCode> {
    let Target::Redis(a) = a.target;
    let mut source = RedisTarget::parse(&a.source).map_err(|e| anyhow::anyhow!("--source: {e}"))?;
    if let Some(var) = &a.source_password_env {
        source.password = Some(
            std::env::var(var).with_context(|| format!("environment variable {var} is not set"))?,
        );
    }
    if source.db != 0 {
        anyhow::bail!("--source: the tap follows every database; leave the /db out of the URL");
    }
    let opened = a.capture.open("redis").await?;
    let tap = RunningTap::start(
        opened.log.clone(),
        TapOptions {
            source,
            data_dir: a.capture.data_dir.clone(),
            stores: opened.stores,
            keyring: opened.keyring,
            ship: opened.ship,
            snapshot_interval: a.snapshot_interval,
            control: (a.control != "none").then(|| a.control.clone()),
        },
    )
    .await?;
    let how = match &tap.started {
        Started::FullSync { lsn, bytes, why } if why.is_empty() || *lsn == 0 => {
            format!("full sync: base snapshot at LSN {lsn}, {bytes} bytes")
        }
        Started::FullSync { lsn, bytes, why } => {
            format!("full sync ({why}): base snapshot at LSN {lsn}, {bytes} bytes")
        }
        Started::Resumed { offset, .. } => format!("partial resync from offset {offset}"),
    };
    let control = tap
        .control_addr
        .map(|a| format!("; control on {a}"))
        .unwrap_or_default();
    // One line on stdout when ready: scripts and supervisors wait for it.
    println!(
        "vecwal tap: following {} ({how}){control}",
        a.source_display()
    );
    shutdown_signal().await;
    eprintln!("vecwal tap: shutting down; sealing and shipping the open segment");
    tap.shutdown(Duration::from_secs(30)).await;
    Ok(ExitCode::SUCCESS)
}

impl RedisArgs {
    /// The source without credentials (promise 9).
    fn source_display(&self) -> String {
        match RedisTarget::parse(&self.source) {
            Ok(t) => format!("redis://{}", t.addr),
            Err(_) => "the source".into(),
        }
    }
}
