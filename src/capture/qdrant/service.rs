//! A running Qdrant proxy: the log, the shipper and the REST listener. What `vecwal proxy
//! qdrant` runs, and what tests start.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use tokio::task::JoinHandle;

use super::proxy::{bind, Proxy, SnapshotStores};
use crate::capture::redis::gate::Gate;
use crate::log::Log;
use crate::ship::{ShipConfig, Shipper};
use crate::store::{Keyring, Store};

pub struct QdrantProxyOptions {
    pub listen_http: String,
    /// Qdrant's REST address, `http://host:port`.
    pub upstream_http: Uri,
    /// Where gRPC clients connect, and Qdrant's gRPC address; `None`: REST only.
    pub grpc: Option<(String, Uri)>,
    pub stores: Vec<Arc<dyn Store>>,
    pub keyring: Option<Arc<Keyring>>,
    pub ship: ShipConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum QdrantProxyError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
}

pub struct RunningQdrantProxy {
    pub http_addr: SocketAddr,
    pub grpc_addr: Option<SocketAddr>,
    pub log: Arc<Log>,
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
        let shipper = Shipper::start(log.clone(), opts.stores.clone(), opts.ship.clone());
        // One proxy for both ports: REST and gRPC writes to a collection share one order.
        let proxy = Proxy::new(
            log.clone(),
            Gate::new(),
            opts.upstream_http,
            opts.grpc.map(|(_, up)| up),
            SnapshotStores {
                stores: opts.stores.clone(),
                keyring: opts.keyring.clone(),
            },
        );
        let mut tasks = Vec::new();
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
            http_addr,
            grpc_addr,
            log,
            shipper,
            tasks,
        })
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
