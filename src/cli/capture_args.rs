//! Options every long-running capture command shares: where the log lives, how it syncs,
//! where it ships and how often.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use super::store_args::{CryptArgs, StoreArgs};
use crate::log::{FsyncPolicy, Log, LogConfig, RecoveryMode, SpoolFullPolicy};
use crate::ship::ShipConfig;
use crate::store::{Keyring, Store};

#[derive(Debug, clap::Args)]
pub struct CaptureArgs {
    /// Read settings from this TOML file: each is a flag without its dashes
    /// (`data-dir = "/var/lib/vecwal"`, `store = ["s3://b/p"]`, `fsync = "everysec"`). An
    /// environment variable VECWAL_<FLAG> (VECWAL_DATA_DIR, VECWAL_STORE=a,b) overrides
    /// the file; a flag on the command line overrides both.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics: records and bytes logged, fsync
    /// latency, spool bytes, per destination the ship lag (RPO exposure), shipped LSN and
    /// upload errors, proxy request latency.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
    /// The local data directory for the log (created if missing; one capture per directory).
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Name of the stream in the store (letters, digits, '-', '_', '.'); default: the
    /// database kind, `redis` or `qdrant`.
    #[arg(long)]
    pub stream: Option<String>,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub crypt: CryptArgs,
    /// When a write counts as logged: `always` fsyncs before the client's ack (group commit),
    /// `everysec` fsyncs once a second, `no` leaves it to the OS.
    #[arg(long, value_enum, default_value = "always")]
    pub fsync: FsyncPolicy,
    /// How often the open segment is sealed and shipped, at the latest (the RPO bound).
    #[arg(long, value_name = "DURATION", default_value = "1m", value_parser = crate::time::parse_duration)]
    pub ship_interval: Duration,
    /// Most bytes of unshipped log kept locally; past it new writes are refused (fail
    /// closed) or held, see --spool-full-wait.
    #[arg(long, value_name = "BYTES", default_value_t = 4 << 30)]
    pub spool_max_bytes: u64,
    /// With a full spool, hold new writes up to this long for shipping to make room
    /// instead of refusing them at once.
    #[arg(long, value_name = "DURATION", value_parser = crate::time::parse_duration)]
    pub spool_full_wait: Option<Duration>,
    /// How to start on a damaged log: `strict` truncates only a torn tail (a crash
    /// mid-write) and refuses to start when whole records follow damage;
    /// `truncate-after-damage` cuts at the damage anyway and says which records it dropped.
    #[arg(long, value_enum, value_name = "MODE", default_value = "strict")]
    pub recovery: RecoveryMode,
    /// Begin a new timeline of the stream that continues its history after record LSN of
    /// timeline TIMELINE: for a capture in front of a database restored from the stream
    /// (`vecwal restore` prints the value), or one whose data directory was lost (the last
    /// record in the store). Takes an empty data directory; later starts with the same value
    /// carry on. Restores then follow the newest timeline unless told `--timeline`.
    #[arg(long, value_name = "TIMELINE:LSN", value_parser = parse_branch)]
    pub branch_from: Option<(u32, u64)>,
}

fn parse_branch(s: &str) -> Result<(u32, u64), String> {
    let bad = || format!("{s:?} is not TIMELINE:LSN (for example 1:18231)");
    let (t, l) = s.split_once(':').ok_or_else(bad)?;
    let t: u32 = t.parse().map_err(|_| bad())?;
    let l: u64 = l.parse().map_err(|_| bad())?;
    if t == 0 {
        return Err("timelines are numbered from 1".into());
    }
    Ok((t, l))
}

/// What a capture command runs with.
pub struct Opened {
    pub log: Arc<Log>,
    pub stores: Vec<Arc<dyn Store>>,
    pub keyring: Option<Arc<Keyring>>,
    pub ship: ShipConfig,
}

impl CaptureArgs {
    /// Opens the log (stream `default_stream` unless --stream names one) and the stores.
    pub async fn open(&self, default_stream: &str) -> anyhow::Result<Opened> {
        if self.ship_interval < Duration::from_secs(1) {
            anyhow::bail!("--ship-interval must be at least 1s");
        }
        let keyring = self.crypt.keyring()?.map(Arc::new);
        let stores = self.store.open_all().await?;
        let stream = self.stream.as_deref().unwrap_or(default_stream);
        super::timeline::prepare(
            &self.data_dir,
            &stores,
            stream,
            self.branch_from,
            keyring.as_deref(),
        )
        .await?;
        let mut cfg = LogConfig::new(stream);
        cfg.fsync = self.fsync;
        cfg.segment_max_age = self.ship_interval;
        cfg.spool_max_bytes = self.spool_max_bytes;
        if let Some(d) = self.spool_full_wait {
            cfg.spool_full = SpoolFullPolicy::Wait(d);
        }
        cfg.recovery = self.recovery;
        let (log, report) = Log::open(&self.data_dir, cfg)?;
        tracing::info!(?report, "log opened");
        warn_dropped(&report);
        let log = Arc::new(log);
        crate::metrics::global().set_log(&log);
        if let Some(addr) = &self.metrics {
            let bound = crate::metrics::serve(addr)
                .await
                .with_context(|| format!("--metrics: cannot listen on {addr}"))?;
            eprintln!("metrics at http://{bound}/metrics");
        }
        let ship = ShipConfig {
            interval: self.ship_interval,
            keyring: keyring.clone(),
            ..ShipConfig::default()
        };
        Ok(Opened {
            log,
            stores,
            keyring,
            ship,
        })
    }
}

/// Says loudly which records `--recovery truncate-after-damage` dropped, if any.
pub fn warn_dropped(report: &crate::log::RecoveryReport) {
    if let (Some((file, offset, bytes)), Some((first, last, n))) =
        (&report.truncated, report.dropped_records)
    {
        eprintln!(
            "vecwal: WARNING: --recovery truncate-after-damage dropped {n} whole records \
             (LSN {first} to {last}) with {bytes} bytes after damage at offset {offset} of {}",
            file.display()
        );
    }
}

/// Waits for SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("signal handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
