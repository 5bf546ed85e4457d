//! The heartbeat a shipper writes to each store after every round: what `vecwal status`
//! reads to tell the current RPO exposure without access to the capturing machine.

use serde::{Deserialize, Serialize};

use super::{update, Inner};
use crate::catalog::keys;
use crate::log::now_us;
use crate::store::{Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// When the shipper wrote this (UTC microseconds).
    pub written_us: i64,
    /// Last record the log had appended then.
    pub appended_lsn: u64,
    pub appended_time_us: i64,
    /// Last LSN confirmed in this store.
    pub shipped_lsn: u64,
    /// Every record with a timestamp at or before this is in this store: just before the
    /// heartbeat's time if nothing was waiting, else the time of the last record shipped.
    pub shipped_through_us: i64,
    pub spool_bytes: u64,
    pub spool_limit: u64,
}

impl Heartbeat {
    /// The heartbeat of `stream` in `store`; `None` when no shipper wrote one (or it is not
    /// one of ours).
    pub async fn read(store: &dyn Store, stream: &str) -> Result<Option<Heartbeat>, StoreError> {
        match store
            .get(&format!("{stream}/{}", keys::HEARTBEAT_FILE))
            .await
        {
            Ok(b) => Ok(serde_json::from_slice(&b).ok()),
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

pub(super) async fn write(inner: &Inner, i: usize, store: &dyn Store) -> Result<(), StoreError> {
    // The clock first: every record appended before it is counted in appended_lsn below,
    // so "caught up" really covers every record stamped before written_us.
    let written_us = now_us();
    let (appended_lsn, appended_time_us) = inner.log.last_appended();
    let (shipped_lsn, shipped_time) = {
        let s = inner.status.lock().unwrap_or_else(|p| p.into_inner());
        (s[i].shipped_lsn, s[i].shipped_time_us)
    };
    let hb = Heartbeat {
        written_us,
        appended_lsn,
        appended_time_us,
        shipped_lsn,
        shipped_through_us: if shipped_lsn >= appended_lsn {
            written_us - 1
        } else {
            shipped_time
        },
        spool_bytes: inner.log.spool_bytes(),
        spool_limit: inner.log.spool_limit(),
    };
    let key = format!("{}/{}", inner.log.meta().name, keys::HEARTBEAT_FILE);
    store
        .put(
            &key,
            serde_json::to_vec_pretty(&hb).expect("heartbeat serializes"),
        )
        .await?;
    update(inner, i, |_| {});
    Ok(())
}
