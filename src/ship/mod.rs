//! Shipping sealed segments to one or more stores.
//!
//! One task per destination, each with its own cursor (the last LSN it confirmed): a slow
//! or broken destination does not hold up the others. A local segment is removed only once
//! every destination has confirmed it (promise 8); until then it stays in the spool, which
//! the log bounds. Uploads are idempotent (`put_new`: the same bytes already there count),
//! retried with exponential backoff, and verified by the store before they count.

mod heartbeat;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use vecwal_format::SealedSegment;

use crate::catalog::keys::{self, SegmentKey};
use crate::catalog::StreamIdentity;
use crate::log::Log;
use crate::store::{Keyring, Store, StoreError};
pub use heartbeat::Heartbeat;

#[derive(Debug, Clone)]
pub struct ShipConfig {
    /// How often each destination looks for work and writes its heartbeat, at the
    /// latest; a newly sealed segment is shipped at once.
    pub interval: Duration,
    /// First retry delay after a failed upload; doubles up to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// Client-side encryption of every segment object (SPEC.md §11).
    pub keyring: Option<Arc<Keyring>>,
}

impl Default for ShipConfig {
    fn default() -> Self {
        ShipConfig {
            interval: Duration::from_secs(60),
            min_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            keyring: None,
        }
    }
}

/// How far one destination has come, shared with [`Shipper::status`].
#[derive(Debug, Clone, Default)]
pub struct DestinationStatus {
    pub url: String,
    /// Last LSN confirmed in this store (0: none yet).
    pub shipped_lsn: u64,
    /// Timestamp of that record.
    pub shipped_time_us: i64,
    pub segments_shipped: u64,
    pub bytes_shipped: u64,
    /// The error of the last failed attempt, cleared by the next success.
    pub last_error: Option<String>,
    /// Failed rounds since start (each retried).
    pub upload_errors: u64,
    /// A destination stopped for good (another stream's objects at our names).
    pub stopped: bool,
}

struct Inner {
    log: Arc<Log>,
    cfg: ShipConfig,
    status: Mutex<Vec<DestinationStatus>>,
    /// Tells every task to finish.
    stop: watch::Sender<bool>,
    /// For each local sealed segment (by first LSN), the destinations that confirmed it,
    /// as a bit mask. A segment's local copy goes when every bit is set.
    confirmed: tokio::sync::Mutex<std::collections::BTreeMap<u64, u64>>,
    destinations: usize,
}

pub struct Shipper {
    inner: Arc<Inner>,
    tasks: Vec<JoinHandle<()>>,
}

impl Shipper {
    /// Starts one shipping task per store.
    ///
    /// Panics with more than 64 stores (the CLI refuses that many first).
    pub fn start(log: Arc<Log>, stores: Vec<Arc<dyn Store>>, cfg: ShipConfig) -> Shipper {
        assert!(stores.len() <= 64, "at most 64 destinations");
        let status = stores
            .iter()
            .map(|s| DestinationStatus {
                url: s.url().to_string(),
                ..Default::default()
            })
            .collect();
        let (stop, _) = watch::channel(false);
        let inner = Arc::new(Inner {
            log,
            cfg,
            status: Mutex::new(status),
            stop,
            confirmed: tokio::sync::Mutex::new(Default::default()),
            destinations: stores.len(),
        });
        // Weak: the metrics must not keep a stopped shipper (and its log) alive.
        let view = Arc::downgrade(&inner);
        crate::metrics::global().set_ship(move || {
            view.upgrade().map_or_else(Vec::new, |i| {
                i.status.lock().unwrap_or_else(|p| p.into_inner()).clone()
            })
        });
        let tasks = stores
            .into_iter()
            .enumerate()
            .map(|(i, store)| tokio::spawn(run_destination(inner.clone(), i, store)))
            .collect();
        Shipper { inner, tasks }
    }

    pub fn status(&self) -> Vec<DestinationStatus> {
        self.inner
            .status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Resolves once every destination has confirmed `lsn` (or has stopped for good).
    pub async fn wait_shipped(&self, lsn: u64) {
        loop {
            let done = self
                .status()
                .iter()
                .all(|d| d.shipped_lsn >= lsn || d.stopped);
            if done {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the tasks after their current upload.
    pub async fn stop(self) {
        let _ = self.inner.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

fn update(inner: &Inner, i: usize, f: impl FnOnce(&mut DestinationStatus)) {
    f(&mut inner.status.lock().unwrap_or_else(|p| p.into_inner())[i]);
}

async fn run_destination(inner: Arc<Inner>, i: usize, store: Arc<dyn Store>) {
    let mut stop = inner.stop.subscribe();
    let mut backoff = inner.cfg.min_backoff;
    let mut identity_ok = false;
    loop {
        let result = async {
            if !identity_ok {
                claim_stream(&*store, &inner.log).await?;
                // Start the status where the store is (a restart): for display only,
                // confirmation stays per segment.
                let cat = crate::catalog::Catalog::load(&*store, &inner.log.meta().name).await?;
                if let Some(last) = cat.last_segment() {
                    let (lsn, ts) = (last.range.last_lsn, last.range.last_ts);
                    update(&inner, i, |d| {
                        d.shipped_lsn = d.shipped_lsn.max(lsn);
                        d.shipped_time_us = d.shipped_time_us.max(ts);
                    });
                }
                identity_ok = true;
            }
            ship_pending(&inner, i, &*store).await?;
            heartbeat::write(&inner, i, &*store).await
        }
        .await;
        let succeeded = result.is_ok();
        let wait = match result {
            Ok(()) => {
                backoff = inner.cfg.min_backoff;
                update(&inner, i, |d| d.last_error = None);
                inner.cfg.interval
            }
            Err(e) if !e.is_recoverable() && !matches!(e, StoreError::Unavailable { .. }) => {
                let fatal = matches!(e, StoreError::Conflict { .. });
                tracing::error!(store = store.url(), error = %e, "shipping failed");
                update(&inner, i, |d| {
                    d.last_error = Some(e.to_string());
                    d.upload_errors += 1;
                    d.stopped = fatal;
                });
                if fatal {
                    return; // another stream's objects at our names: never overwrite
                }
                backoff = (backoff * 2).min(inner.cfg.max_backoff);
                backoff
            }
            Err(e) => {
                tracing::warn!(store = store.url(), error = %e, retry_in = ?backoff, "shipping will retry");
                update(&inner, i, |d| {
                    d.last_error = Some(e.to_string());
                    d.upload_errors += 1;
                });
                let w = backoff;
                backoff = (backoff * 2).min(inner.cfg.max_backoff);
                w
            }
        };
        let next = inner.status.lock().unwrap_or_else(|p| p.into_inner())[i].shipped_lsn + 1;
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(wait) => {}
            // A new sealed segment: ship it now, unless we are backing off.
            r = inner.log.wait_sealed(next), if succeeded => {
                if r.is_err() {
                    // The log closed or failed: ship what is left, then rest.
                    tokio::time::sleep(wait).await;
                }
            }
        }
        if *stop.borrow() {
            return;
        }
    }
}

/// Writes the stream's identity on first use, or checks that the store's is ours.
async fn claim_stream(store: &dyn Store, log: &Log) -> Result<(), StoreError> {
    let meta = log.meta();
    let ours = StreamIdentity {
        name: meta.name.clone(),
        stream_id: format!("{:016x}", meta.stream_id),
    };
    let key = format!("{}/{}", meta.name, keys::STREAM_FILE);
    let bytes = serde_json::to_vec_pretty(&ours).expect("identity serializes");
    match store.put_new(&key, bytes).await {
        Ok(_) => claim_timeline(store, log).await,
        Err(StoreError::Conflict { .. }) => {
            let theirs: Option<StreamIdentity> =
                serde_json::from_slice(&store.get(&key).await?).ok();
            Err(StoreError::Conflict {
                store: store.url().to_string(),
                key,
                detail: format!(
                    "the store holds stream {:?} with id {}, this data directory is id {}: two different streams \
                     were given the same name",
                    meta.name,
                    theirs.map(|t| t.stream_id).unwrap_or_else(|| "<unreadable>".into()),
                    ours.stream_id
                ),
            })
        }
        Err(e) => Err(e),
    }
}

/// A timeline after the first is described in every store its segments go to: the history
/// object its capture wrote when it began is written again (the same bytes count as done),
/// so a store added later, or down at the time, can follow its path too.
async fn claim_timeline(store: &dyn Store, log: &Log) -> Result<(), StoreError> {
    let meta = log.meta();
    let Some(b) = &meta.branch else {
        return Ok(());
    };
    let h = crate::catalog::timeline::TimelineHistory {
        timeline: meta.timeline,
        parent: b.parent,
        branch_lsn: b.lsn,
        branch_time_us: b.time_us,
        created: b.created.clone(),
    };
    let key = crate::catalog::timeline::history_key(&meta.name, meta.timeline);
    let bytes = serde_json::to_vec_pretty(&h).expect("history serializes");
    match store.put_new(&key, bytes).await {
        Ok(_) => Ok(()),
        Err(StoreError::Conflict { store, key, .. }) => Err(StoreError::Conflict {
            store,
            key,
            detail: format!(
                "the store holds another history for timeline {} of stream {:?}: two captures \
                 began the same timeline",
                meta.timeline, meta.name
            ),
        }),
        Err(e) => Err(e),
    }
}

/// Uploads every local sealed segment this destination has not confirmed, in LSN order.
///
/// Confirmation is per segment, never inferred from a cursor: a store missing one
/// segment in the middle must get it, not let its local copy go.
async fn ship_pending(inner: &Inner, i: usize, store: &dyn Store) -> Result<(), StoreError> {
    let segments = inner.log.sealed_segments().map_err(|e| local(store, e))?;
    let stream = inner.log.meta().name.clone();
    let bit = 1u64 << i;
    for (name, path) in segments {
        let Some(last) = name.last_lsn else { continue };
        let done = inner
            .confirmed
            .lock()
            .await
            .get(&name.first_lsn)
            .is_some_and(|m| m & bit != 0);
        if done {
            continue;
        }
        let read = path.clone();
        let data = crate::fsutil::blocking(move || std::fs::read(read))
            .await
            .map_err(|e| local(store, e))?;
        // The name in the store carries the time range, read from the segment's trailer.
        let seg = SealedSegment::open(&data[..]).map_err(|e| local(store, e))?;
        let key = SegmentKey {
            timeline: name.timeline,
            first_lsn: seg.trailer.first_lsn,
            last_lsn: seg.trailer.last_lsn,
            first_ts: seg.trailer.first_ts,
            last_ts: seg.trailer.last_ts,
            encrypted: inner.cfg.keyring.is_some(),
        };
        let last_ts = seg.trailer.last_ts;
        let size = data.len() as u64;
        let object = key.key(&stream);
        match &inner.cfg.keyring {
            None => {
                store.put_new(&object, data).await?;
            }
            Some(k) => match store
                .put_new(&object, encrypt(k, &object, &data).await)
                .await
            {
                Ok(_) => {}
                // Sealed under another key (before a rotation): the same segment if it
                // decrypts to the same bytes.
                Err(conflict @ StoreError::Conflict { .. }) => {
                    let existing = store.get(&object).await?;
                    if k.decrypt(&object, &existing).ok().as_deref() != Some(&data[..]) {
                        return Err(conflict);
                    }
                }
                Err(e) => return Err(e),
            },
        }
        tracing::debug!(store = store.url(), lsn = last, "segment shipped");
        update(inner, i, |d| {
            if last > d.shipped_lsn {
                d.shipped_lsn = last;
                d.shipped_time_us = last_ts;
            }
            d.segments_shipped += 1;
            d.bytes_shipped += size;
        });
        confirm(inner, i, name.first_lsn, &path)
            .await
            .map_err(|e| local(store, e))?;
    }
    Ok(())
}

/// Records that destination `i` holds the segment; removes the local copy once every
/// destination does.
async fn confirm(
    inner: &Inner,
    i: usize,
    first_lsn: u64,
    path: &std::path::Path,
) -> Result<(), crate::log::LogError> {
    let all = if inner.destinations == 64 {
        u64::MAX
    } else {
        (1u64 << inner.destinations) - 1
    };
    let mut confirmed = inner.confirmed.lock().await;
    let mask = confirmed.entry(first_lsn).or_insert(0);
    *mask |= 1 << i;
    if *mask == all {
        confirmed.remove(&first_lsn);
        inner.log.remove_shipped(path)?;
    }
    Ok(())
}

/// A local failure reported through the destination's status.
fn local(store: &dyn Store, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable {
        store: store.url().to_string(),
        op: "read local segment for",
        key: String::new(),
        detail: e.to_string(),
    }
}

/// `data` encrypted for `object`, off the async workers (segments are up to 64 MiB).
async fn encrypt(k: &Arc<Keyring>, object: &str, data: &[u8]) -> Vec<u8> {
    let (k, object, data) = (k.clone(), object.to_string(), data.to_vec());
    crate::fsutil::blocking(move || k.encrypt(&object, &data)).await
}
