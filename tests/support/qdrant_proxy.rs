//! A vecwal Qdrant proxy in front of a real Qdrant, in this process, with a local-dir store;
//! reading back what it logged; the Python of the services venv.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use vecwal::capture::qdrant::service::{QdrantProxyOptions, RunningQdrantProxy};
use vecwal::log::{Log, LogConfig};
use vecwal::restore::{self, Target};
use vecwal::ship::ShipConfig;
use vecwal::store::{FsStore, Store};
use vecwal_format::Operation;

use super::qdrant::Qdrant;

pub struct Proxied {
    pub rt: tokio::runtime::Runtime,
    pub proxy: Option<RunningQdrantProxy>,
    pub store: Arc<dyn Store>,
    pub dir: tempfile::TempDir,
}

impl Proxied {
    pub fn start(q: &Qdrant) -> Proxied {
        Self::start_with_key(q, None)
    }

    pub fn start_with_key(q: &Qdrant, api_key: Option<&str>) -> Proxied {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(FsStore::new(dir.path().join("store")).unwrap());
        // Segments roll at the ship interval, as `--ship-interval 1s` sets both.
        let mut cfg = LogConfig::new("qdrant");
        cfg.segment_max_age = Duration::from_secs(1);
        let (log, _) = Log::open(&dir.path().join("data"), cfg).unwrap();
        let opts = QdrantProxyOptions {
            listen_http: "127.0.0.1:0".into(),
            upstream_http: format!("http://{}", q.http_addr()).parse().unwrap(),
            grpc: Some((
                "127.0.0.1:0".into(),
                format!("http://127.0.0.1:{}", q.grpc_port).parse().unwrap(),
            )),
            stores: vec![store.clone()],
            keyring: None,
            api_key: api_key.map(str::to_string),
            snapshot_interval: Duration::ZERO,
            ship: ShipConfig {
                interval: Duration::from_secs(1),
                ..Default::default()
            },
        };
        let proxy = rt
            .block_on(RunningQdrantProxy::start(Arc::new(log), opts))
            .unwrap();
        Proxied {
            rt,
            proxy: Some(proxy),
            store,
            dir,
        }
    }

    pub fn addr(&self) -> String {
        self.proxy.as_ref().unwrap().http_addr.to_string()
    }

    pub fn stop(&mut self) {
        if let Some(p) = self.proxy.take() {
            self.rt.block_on(p.shutdown(Duration::from_secs(30)));
        }
    }

    /// How many gRPC requests were logged.
    pub fn logged_grpc(&self) -> usize {
        self.rt.block_on(async {
            let plan = restore::plan(self.store.as_ref(), "qdrant", Target::Latest, None, true)
                .await
                .unwrap();
            let mut rx = restore::records(self.store.clone(), &plan, None);
            let mut n = 0;
            while let Some(b) = rx.recv().await {
                n += b
                    .unwrap()
                    .iter()
                    .filter(|r| r.kind == vecwal_format::Kind::QdrantGrpc)
                    .count();
            }
            n
        })
    }

    /// (collection, method, path, body) of every logged request.
    pub fn logged(&self) -> Vec<(String, String, String, serde_json::Value)> {
        self.rt.block_on(async {
            let plan = restore::plan(self.store.as_ref(), "qdrant", Target::Latest, None, true)
                .await
                .unwrap();
            let mut rx = restore::records(self.store.clone(), &plan, None);
            let mut out = Vec::new();
            while let Some(b) = rx.recv().await {
                for r in b.unwrap() {
                    if let Operation::QdrantRest {
                        method, path, body, ..
                    } = Operation::decode(r.kind, &r.payload).unwrap()
                    {
                        let body = serde_json::from_slice(&body).unwrap_or_default();
                        out.push((r.namespace, method, path, body));
                    }
                }
            }
            out
        })
    }
}

/// The services venv's Python (scripts/services.sh installs qdrant-client into it).
pub fn python() -> std::path::PathBuf {
    std::env::var_os("VECWAL_PYTHON")
        .map(Into::into)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".services/venv/bin/python")
        })
}
