//! Ordering of conflicting writes across client connections (promise 3).
//!
//! Qdrant applies two requests that arrive at about the same time in an order the proxy
//! cannot see. So a write to a key (a point id) another connection has in flight waits
//! until that write is logged: from forwarding to logging, a key belongs to one
//! connection. Writes whose keys are unknown (by filter, collection changes) take the
//! whole collection, and so does the snapshot barrier (promise 5).
//!
//! Holding a key only until the write's record has its LSN (not until it is durable)
//! keeps conflicting writes at one upstream round trip apart, not one fsync.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};

#[derive(Default)]
pub struct Gate {
    /// Keyed writes hold it shared; keyless writes and the snapshot barrier exclusively.
    global: Arc<RwLock<()>>,
    keys: Mutex<HashMap<Vec<u8>, Holder>>,
}

struct Holder {
    conn: u64,
    count: usize,
    released: Arc<Notify>,
}

/// A write's claim on what it touches; dropping it (once the write is logged, or known
/// not to need logging) lets conflicting writes of other connections go ahead.
pub struct Pass {
    gate: Arc<Gate>,
    conn: u64,
    keys: Vec<Vec<u8>>,
    _shared: Option<OwnedRwLockReadGuard<()>>,
    _exclusive: Option<OwnedRwLockWriteGuard<()>>,
}

impl Gate {
    pub fn new() -> Arc<Gate> {
        Arc::new(Gate::default())
    }

    /// Claims `keys` for connection `conn`, waiting while another connection has a write
    /// to any of them in flight. Keys are claimed in sorted order, so two connections
    /// claiming overlapping sets cannot wait on each other.
    pub async fn keys(self: &Arc<Gate>, conn: u64, keys: Vec<Vec<u8>>) -> Pass {
        let shared = self.global.clone().read_owned().await;
        self.claim(conn, keys, Some(shared)).await
    }

    /// Claims `keys` without taking part in exclusive claims: for a blocking pop already
    /// answered, which must not wait behind an exclusive claim queued after it on its own
    /// connection.
    pub async fn keys_only(self: &Arc<Gate>, conn: u64, keys: Vec<Vec<u8>>) -> Pass {
        self.claim(conn, keys, None).await
    }

    async fn claim(
        self: &Arc<Gate>,
        conn: u64,
        mut keys: Vec<Vec<u8>>,
        shared: Option<OwnedRwLockReadGuard<()>>,
    ) -> Pass {
        keys.sort();
        keys.dedup();
        // The pass grows key by key: if this future is dropped while waiting, the keys
        // already claimed are released with it.
        let mut pass = Pass {
            gate: self.clone(),
            conn,
            keys: Vec::with_capacity(keys.len()),
            _shared: shared,
            _exclusive: None,
        };
        for k in keys {
            loop {
                let released = {
                    let mut map = self.lock();
                    match map.get_mut(&k) {
                        None => {
                            map.insert(
                                k.clone(),
                                Holder {
                                    conn,
                                    count: 1,
                                    released: Arc::new(Notify::new()),
                                },
                            );
                            break;
                        }
                        Some(h) if h.conn == conn => {
                            h.count += 1;
                            break;
                        }
                        Some(h) => h.released.clone(),
                    }
                };
                // `notify_waiters` wakes only registered waiters: register, then re-check
                // that the same holder (the same `Notify`) still has the key. A new holder
                // has a new `Notify`; waiting on the old one would never end.
                let wait = released.notified();
                tokio::pin!(wait);
                wait.as_mut().enable();
                let same_holder = self
                    .lock()
                    .get(&k)
                    .is_some_and(|h| h.conn != conn && Arc::ptr_eq(&h.released, &released));
                if same_holder {
                    wait.await;
                }
            }
            pass.keys.push(k);
        }
        pass
    }

    /// [`Gate::keys`] without waiting: `None` when it would have to wait.
    pub fn try_keys(self: &Arc<Gate>, conn: u64, mut keys: Vec<Vec<u8>>) -> Option<Pass> {
        let shared = self.global.clone().try_read_owned().ok()?;
        keys.sort();
        keys.dedup();
        let mut map = self.lock();
        if keys
            .iter()
            .any(|k| map.get(k).is_some_and(|h| h.conn != conn))
        {
            return None;
        }
        for k in &keys {
            map.entry(k.clone())
                .and_modify(|h| h.count += 1)
                .or_insert_with(|| Holder {
                    conn,
                    count: 1,
                    released: Arc::new(Notify::new()),
                });
        }
        drop(map);
        Some(Pass {
            gate: self.clone(),
            conn,
            keys,
            _shared: Some(shared),
            _exclusive: None,
        })
    }

    /// Claims the whole keyspace: waits until no write is in flight, and holds new ones.
    pub async fn exclusive(self: &Arc<Gate>, conn: u64) -> Pass {
        let guard = self.global.clone().write_owned().await;
        Pass {
            gate: self.clone(),
            conn,
            keys: Vec::new(),
            _shared: None,
            _exclusive: Some(guard),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, Holder>> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        let mut map = self.gate.lock();
        for k in &self.keys {
            if let Some(h) = map.get_mut(k) {
                debug_assert_eq!(h.conn, self.conn);
                h.count -= 1;
                if h.count == 0 {
                    let h = map.remove(k).expect("present");
                    h.released.notify_waiters();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Lets every spawned task run until it blocks (the test runtime is single-threaded).
    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    fn k(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    #[tokio::test]
    async fn a_key_in_flight_on_one_connection_holds_other_connections() {
        let g = Gate::new();
        let a1 = g.keys(1, vec![k("x")]).await;
        let _a2 = g.keys(1, vec![k("x"), k("y")]).await; // same connection: no wait
        let other = tokio::spawn({
            let g = g.clone();
            async move { g.keys(2, vec![k("y"), k("z")]).await }
        });
        let unrelated = g.keys(3, vec![k("z2")]).await;
        drop(unrelated);
        settle().await;
        assert!(!other.is_finished(), "y is still held by connection 1");
        drop(a1);
        drop(_a2);
        let got = tokio::time::timeout(Duration::from_secs(5), other).await;
        assert!(got.is_ok(), "released keys let the waiter through");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn many_connections_on_one_key_all_get_through() {
        // A waiter that registered on a holder which then left, while a new holder came,
        // must not wait on the old holder forever.
        let g = Gate::new();
        let tasks: Vec<_> = (0..8u64)
            .map(|conn| {
                let g = g.clone();
                tokio::spawn(async move {
                    for i in 0..3000 {
                        let p = if i % 2 == 0 {
                            g.keys(conn, vec![k("hot")]).await
                        } else {
                            match g.try_keys(conn, vec![k("hot")]) {
                                Some(p) => p,
                                None => g.keys(conn, vec![k("hot")]).await,
                            }
                        };
                        tokio::task::yield_now().await;
                        drop(p);
                    }
                })
            })
            .collect();
        let all = async {
            for t in tasks {
                t.await.unwrap();
            }
        };
        tokio::time::timeout(Duration::from_secs(60), all)
            .await
            .expect("every claim on a contended key completes");
    }

    #[tokio::test]
    async fn exclusive_waits_for_writes_in_flight_and_holds_new_ones() {
        let g = Gate::new();
        let a = g.keys(1, vec![k("x")]).await;
        let ex = tokio::spawn({
            let g = g.clone();
            async move { g.exclusive(2).await }
        });
        settle().await;
        assert!(!ex.is_finished());
        drop(a);
        let pass = tokio::time::timeout(Duration::from_secs(5), ex)
            .await
            .unwrap()
            .unwrap();
        let later = tokio::spawn({
            let g = g.clone();
            async move { g.keys(3, vec![k("q")]).await }
        });
        settle().await;
        assert!(!later.is_finished());
        drop(pass);
        assert!(tokio::time::timeout(Duration::from_secs(5), later)
            .await
            .is_ok());
    }
}
