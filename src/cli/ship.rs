//! `vecwal ship`: ship what a data directory holds, then exit.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use super::store_args::{CryptArgs, StoreArgs};
use crate::log::{Log, LogConfig, RecoveryMode};
use crate::ship::{ShipConfig, Shipper};

/// Seal and ship everything in a data directory, then exit.
///
/// For a data directory no capture process is using (after a crash, or before moving a
/// machine): seals the open segment, uploads every sealed segment to every store, and
/// removes local copies once all stores confirmed them. Capture processes ship by
/// themselves; they hold the directory's lock, so this refuses to run beside one.
///
/// Examples:
///   vecwal ship --data-dir /var/lib/vecwal --store s3://backups/vecwal
///   vecwal ship --data-dir /var/lib/vecwal --store s3://a/x --store /mnt/backup
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The data directory.
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    crypt: CryptArgs,
    /// Give up after this long without finishing.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = crate::time::parse_duration)]
    timeout: Duration,
    /// How to open a damaged log: `strict` truncates only a torn tail; `truncate-after-damage`
    /// cuts at the damage even when whole records follow, and says which it dropped.
    #[arg(long, value_enum, value_name = "MODE", default_value = "strict")]
    recovery: RecoveryMode,
}

pub async fn run(a: Args) -> anyhow::Result<ExitCode> {
    let meta = crate::log::layout::read_meta(&a.data_dir)?.with_context(|| {
        format!(
            "{} is not a vecwal data directory (no stream.json)",
            a.data_dir.display()
        )
    })?;
    let keyring = a.crypt.keyring()?.map(Arc::new);
    let stores = a.store.open_all().await?;
    let mut cfg = LogConfig::new(meta.name.clone());
    cfg.recovery = a.recovery;
    let (log, report) = Log::open(&a.data_dir, cfg)?;
    super::capture_args::warn_dropped(&report);
    let log = Arc::new(log);
    let cfg = ShipConfig {
        keyring,
        ..ShipConfig::default()
    };
    let shipper = Shipper::start(log.clone(), stores, cfg);
    // The whole job, sealing included, is bounded by --timeout.
    let done = tokio::time::timeout(a.timeout, async {
        let last = log.roll().await?;
        shipper.wait_shipped(last).await;
        while !log.sealed_segments()?.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::Ok(())
    })
    .await;
    let status = shipper.status();
    shipper.stop().await;
    for d in &status {
        println!(
            "{}: {} segments, {} bytes shipped; through LSN {}{}",
            d.url,
            d.segments_shipped,
            d.bytes_shipped,
            d.shipped_lsn,
            d.last_error
                .as_ref()
                .map(|e| format!(" (last error: {e})"))
                .unwrap_or_default()
        );
    }
    match done {
        Ok(r) => r.map(|_| ExitCode::SUCCESS),
        Err(_) => anyhow::bail!(
            "not everything was shipped within {:?}; local segments are kept",
            a.timeout
        ),
    }
}
