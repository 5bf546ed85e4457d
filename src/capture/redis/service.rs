//! A running Redis proxy: the log, the shipper, the listener, aligned snapshots at start,
//! on a schedule and on demand. What `vecwal proxy redis` runs, and what tests start.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::gate::Gate;
use super::proxy::{ProxyCore, SnapshotFn};
use super::snapshot::{self, SnapshotError};
use crate::catalog::SnapshotManifest;
use crate::log::Log;
use crate::protocol::redis_client::{ClientError, RedisTarget};
use crate::protocol::redis_commands::CommandTable;
use crate::ship::{ShipConfig, Shipper};
use crate::store::{Keyring, Store};

pub struct ProxyOptions {
    pub listen: String,
    pub upstream: RedisTarget,
    pub stores: Vec<Arc<dyn Store>>,
    pub keyring: Option<Arc<Keyring>>,
    pub ship: ShipConfig,
    /// Zero: only at start and on demand.
    pub snapshot_interval: Duration,
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
    #[error("the base snapshot at start failed: {0}")]
    StartSnapshot(SnapshotError),
}

pub struct RunningProxy {
    pub addr: SocketAddr,
    pub log: Arc<Log>,
    pub start_snapshot: SnapshotManifest,
    snapshot: SnapshotFn,
    shipper: Shipper,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningProxy {
    /// Starts the proxy: reads the upstream's command table, binds, takes the base
    /// snapshot (so the stream is restorable from its first record), then serves.
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
        let shipper = Shipper::start(log.clone(), opts.stores.clone(), opts.ship.clone());
        let gate = Gate::new();
        let snapshot: SnapshotFn = {
            let (up, gate, log) = (opts.upstream.clone(), gate.clone(), log.clone());
            let (stores, keyring) = (opts.stores.clone(), opts.keyring.clone());
            Arc::new(move || {
                let (up, gate, log) = (up.clone(), gate.clone(), log.clone());
                let (stores, keyring) = (stores.clone(), keyring.clone());
                Box::pin(async move {
                    snapshot::take(&up, &gate, &log, &stores, keyring.as_deref())
                        .await
                        .map(|m| format!("snapshot at LSN {} ({} bytes)", m.lsn, m.size))
                        .map_err(|e| e.to_string())
                })
            })
        };
        let start_snapshot = snapshot::take(
            &opts.upstream,
            &gate,
            &log,
            &opts.stores,
            opts.keyring.as_deref(),
        )
        .await
        .map_err(ProxyError::StartSnapshot)?;
        let core = ProxyCore::new(
            log.clone(),
            table,
            gate,
            opts.upstream.addr.clone(),
            Some(snapshot.clone()),
        );
        let mut tasks = vec![tokio::spawn(async move {
            if let Err(e) = core.serve(listener).await {
                tracing::error!(error = %e, "the proxy stopped accepting clients");
            }
        })];
        if !opts.snapshot_interval.is_zero() {
            let (every, f) = (opts.snapshot_interval, snapshot.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    match f().await {
                        Ok(s) => tracing::info!("scheduled {s}"),
                        Err(e) => tracing::error!(error = %e, "scheduled snapshot failed"),
                    }
                }
            }));
        }
        Ok(RunningProxy {
            addr,
            log,
            start_snapshot,
            snapshot,
            shipper,
            tasks,
        })
    }

    /// Takes an aligned snapshot now.
    pub async fn snapshot(&self) -> Result<String, String> {
        (self.snapshot)().await
    }

    /// Stops accepting clients, seals the open segment and ships it (up to `ship_wait`).
    pub async fn shutdown(self, ship_wait: Duration) {
        for t in &self.tasks {
            t.abort();
        }
        if let Ok(last) = self.log.roll().await {
            let _ = tokio::time::timeout(ship_wait, self.shipper.wait_shipped(last)).await;
        }
        self.shipper.stop().await;
    }
}
