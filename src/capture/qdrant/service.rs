//! A running Qdrant proxy: the log, the shipper and the REST listener. What `vecwal proxy
//! qdrant` runs, and what tests start.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use tokio::task::JoinHandle;

use super::order::Order;
use super::proxy::{bind, Proxy, SnapshotStores};
use super::snapshot::{start_all, take_all};
use crate::log::Log;
use crate::ship::{ShipConfig, Shipper};
use crate::store::{Keyring, Store};
use http::HeaderValue;

pub struct QdrantProxyOptions {
    pub listen_http: String,
    /// Qdrant's REST address, `http://host:port`.
    pub upstream_http: Uri,
    /// Where gRPC clients connect, and Qdrant's gRPC address; `None`: REST only.
    pub grpc: Option<(String, Uri)>,
    pub stores: Vec<Arc<dyn Store>>,
    pub keyring: Option<Arc<Keyring>>,
    pub ship: ShipConfig,
    /// The api-key of the proxy's own requests (snapshots at start and on schedule).
    pub api_key: Option<String>,
    /// Zero: only at start and on demand.
    pub snapshot_interval: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum QdrantProxyError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("the snapshots at start failed: {0}")]
    StartSnapshot(String),
    #[error("the api-key is not a valid header value")]
    ApiKey,
    #[error("reading Qdrant's aliases failed: {0}")]
    Aliases(String),
}

pub struct RunningQdrantProxy {
    proxy: Arc<Proxy>,
    pub http_addr: SocketAddr,
    pub grpc_addr: Option<SocketAddr>,
    pub log: Arc<Log>,
    /// Collections snapshotted at start (in the background, see [`start_all`]).
    pub start_snapshots: usize,
    start_task: Option<JoinHandle<()>>,
    shipper: Shipper,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningQdrantProxy {
    pub async fn start(
        log: Arc<Log>,
        opts: QdrantProxyOptions,
    ) -> Result<RunningQdrantProxy, QdrantProxyError> {
        let (listener, http_addr) =
            bind(&opts.listen_http)
                .await
                .map_err(|source| QdrantProxyError::Listen {
                    addr: opts.listen_http.clone(),
                    source,
                })?;
        let grpc = match &opts.grpc {
            Some((listen, _)) => {
                Some(
                    bind(listen)
                        .await
                        .map_err(|source| QdrantProxyError::Listen {
                            addr: listen.clone(),
                            source,
                        })?,
                )
            }
            None => None,
        };
        let key = match &opts.api_key {
            Some(k) => Some(HeaderValue::from_str(k).map_err(|_| QdrantProxyError::ApiKey)?),
            None => None,
        };
        let shipper = Shipper::start(log.clone(), opts.stores.clone(), opts.ship.clone());
        // One proxy for both ports: REST and gRPC writes to a collection share one order.
        let proxy = Proxy::new(
            log.clone(),
            Order::new(),
            opts.upstream_http,
            opts.grpc.map(|(_, up)| up),
            SnapshotStores {
                stores: opts.stores.clone(),
                keyring: opts.keyring.clone(),
            },
            key.clone(),
        );

        // Every collection gets a base, begun before the first client is served.
        let (start_snapshots, start_task) = start_all(&proxy, key.clone())
            .await
            .map_err(QdrantProxyError::StartSnapshot)?;
        proxy
            .aliases
            .refresh(&proxy, key.as_ref())
            .await
            .map_err(QdrantProxyError::Aliases)?;
        let mut tasks = Vec::new();
        // Alias changes made on Qdrant directly are seen within a second.
        let (p, k) = (proxy.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if let Err(e) = p.aliases.refresh(&p, k.as_ref()).await {
                    tracing::debug!(error = %e, "reading the aliases failed");
                }
            }
        }));
        if !opts.snapshot_interval.is_zero() {
            let (every, p, key) = (opts.snapshot_interval, proxy.clone(), key.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    match take_all(&p, key.as_ref()).await {
                        Ok(n) => tracing::info!(collections = n, "scheduled snapshots stored"),
                        Err(e) => tracing::error!(error = %e, "scheduled snapshots failed"),
                    }
                }
            }));
        }
        let mut grpc_addr = None;
        let listeners = std::iter::once((listener, "REST")).chain(grpc.map(|(l, a)| {
            grpc_addr = Some(a);
            (l, "gRPC")
        }));
        for (l, what) in listeners {
            let p = proxy.clone();
            tasks.push(tokio::spawn(async move {
                if let Err(e) = p.serve(l).await {
                    tracing::error!(error = %e, "the {what} proxy stopped accepting clients");
                }
            }));
        }
        Ok(RunningQdrantProxy {
            proxy,
            http_addr,
            grpc_addr,
            start_snapshots,
            start_task: Some(start_task),
            log,
            shipper,
            tasks,
        })
    }

    /// How many times the proxy has read Qdrant's aliases (at start, after changes, every
    /// second): a caller that changed aliases on Qdrant directly waits for two more.
    pub fn alias_reads(&self) -> u64 {
        self.proxy.aliases.reads()
    }

    /// Stops accepting clients, seals the open segment and ships it (up to `ship_wait`).
    pub async fn shutdown(mut self, ship_wait: Duration) {
        for t in &self.tasks {
            t.abort();
        }
        // A start snapshot still being made is finished: its collection has no other base.
        if let Some(t) = self.start_task.take() {
            if tokio::time::timeout(ship_wait, t).await.is_err() {
                tracing::warn!("a start snapshot did not finish within {ship_wait:?}");
            }
        }
        if let Ok(last) = self.log.roll().await {
            let _ = tokio::time::timeout(ship_wait, self.shipper.wait_shipped(last)).await;
        }
        self.shipper.stop().await;
    }
}
