//! A running Redis proxy: a tap on the upstream (the log, the shipper, aligned snapshots at
//! start, on a schedule and on demand), the offset probe, and the listener. What
//! `vecwal proxy redis` runs, and what tests start.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::probe::Prober;
use super::proxy::ProxyCore;
use super::tap::{RunningTap, Started, TapError, TapOptions};
use crate::log::Log;
use crate::protocol::redis_client::{ClientError, RedisTarget};
use crate::protocol::redis_commands::CommandTable;
use crate::ship::ShipConfig;
use crate::store::{Keyring, Store};

pub struct ProxyOptions {
    pub listen: String,
    pub upstream: RedisTarget,
    /// The log's data directory, where the tap keeps its replication position.
    pub data_dir: PathBuf,
    pub stores: Vec<Arc<dyn Store>>,
    pub keyring: Option<Arc<Keyring>>,
    pub ship: ShipConfig,
    /// Zero: only at start and on demand.
    pub snapshot_interval: Duration,
    /// Upstream connections shared by clients without session state; zero: none shared.
    pub shared_connections: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("reading the upstream's command table: {0}")]
    Commands(ClientError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("following the upstream's replication stream: {0}")]
    Tap(#[from] TapError),
}

pub struct RunningProxy {
    pub addr: SocketAddr,
    pub log: Arc<Log>,
    /// How the log's replication link began: a full sync (a new base snapshot) or a
    /// partial resync continuing the log.
    pub started: Started,
    tap: RunningTap,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningProxy {
    /// Starts the proxy: reads the upstream's command table, binds, follows the upstream's
    /// replication stream (a full sync gives the base snapshot, so the stream is restorable
    /// from its first record), then serves.
    pub async fn start(log: Arc<Log>, opts: ProxyOptions) -> Result<RunningProxy, ProxyError> {
        let mut admin = opts
            .upstream
            .connect()
            .await
            .map_err(ProxyError::Commands)?;
        let table = CommandTable::load(&mut admin)
            .await
            .map_err(ProxyError::Commands)?;
        drop(admin);
        let listener =
            TcpListener::bind(&opts.listen)
                .await
                .map_err(|source| ProxyError::Listen {
                    addr: opts.listen.clone(),
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| ProxyError::Listen {
            addr: opts.listen.clone(),
            source,
        })?;
        let tap = RunningTap::start(
            log.clone(),
            TapOptions {
                source: opts.upstream.clone(),
                data_dir: opts.data_dir,
                stores: opts.stores,
                keyring: opts.keyring,
                ship: opts.ship,
                snapshot_interval: opts.snapshot_interval,
                // Snapshots are asked of the proxy's own port (VECWAL.SNAPSHOT).
                control: None,
            },
        )
        .await?;
        let (prober, probe_task) = Prober::start(opts.upstream.clone());
        let core = ProxyCore::new(
            log.clone(),
            table,
            opts.upstream.addr.clone(),
            tap.handle(),
            prober,
            opts.shared_connections,
        );
        let serve = tokio::spawn(async move {
            if let Err(e) = core.serve(listener).await {
                tracing::error!(error = %e, "the proxy stopped accepting clients");
            }
        });
        Ok(RunningProxy {
            addr,
            log,
            started: tap.started.clone(),
            tap,
            tasks: vec![serve, probe_task],
        })
    }

    /// Takes an aligned snapshot now.
    pub async fn snapshot(&self) -> Result<String, String> {
        self.tap
            .snapshot()
            .await
            .map(|m| format!("snapshot at LSN {} ({} bytes)", m.lsn, m.size))
            .map_err(|e| e.to_string())
    }

    /// The replication id and offset the log covers.
    pub fn committed(&self) -> tokio::sync::watch::Receiver<(String, u64)> {
        self.tap.committed()
    }

    /// Stops accepting clients, seals the open segment and ships it (up to `ship_wait`).
    pub async fn shutdown(self, ship_wait: Duration) {
        for t in &self.tasks {
            t.abort();
        }
        self.tap.shutdown(ship_wait).await;
    }
}
