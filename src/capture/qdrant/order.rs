//! Ordering of conflicting Qdrant writes (promise 3), at the grain of points.
//!
//! A write holds a claim from before it is forwarded until its record has an LSN. Claims
//! nest: everything (alias changes) > one collection (writes by filter, collection and index
//! changes, the snapshot barrier) > points of one collection by id. Writes to different
//! points, or to different collections, hold disjoint claims and go to Qdrant concurrently;
//! a write by filter waits for every write to its collection in flight, and holds new ones.
//!
//! Each collection has its own [`Gate`]: its exclusive claim is the
//! collection, its keys are point ids. A collection's gate lives while a claim holds it.
//!
//! Snapshots need less: a snapshot of a collection must not hold a write that could not be
//! replayed over it (the restore replays every record after the snapshot's LSN, and a write
//! made while Qdrant makes the snapshot may or may not be in it). Unconditional upserts and
//! deletes by id replay to the same point whether or not the snapshot already has them, so
//! they never wait for a snapshot; every other write holds the collection's *barrier*
//! shared, and a snapshot being made holds it exclusively ([`Order::barrier`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};

use super::gate::{Gate, Pass};
use crate::protocol::qdrant::rest::Touches;

#[derive(Default)]
pub struct Order {
    /// Collection and point claims hold it shared; alias changes exclusively.
    all: Arc<RwLock<()>>,
    collections: Mutex<HashMap<String, Arc<Gate>>>,
    /// Per collection: held shared by writes that cannot be replayed over a snapshot that
    /// already holds them, exclusively by a snapshot being made.
    barriers: Mutex<HashMap<String, Arc<RwLock<()>>>>,
}

/// A write's claim; dropping it lets conflicting writes go ahead.
pub struct Claim {
    order: Arc<Order>,
    pass: Option<Pass>,
    gate: Option<(String, Arc<Gate>)>,
    _barrier: Option<OwnedRwLockReadGuard<()>>,
    _shared: Option<OwnedRwLockReadGuard<()>>,
    _exclusive: Option<OwnedRwLockWriteGuard<()>>,
}

impl Order {
    pub fn new() -> Arc<Order> {
        Arc::new(Order::default())
    }

    /// Claims what `touches` names for write `id` (unique per write), waiting while a
    /// conflicting write is in flight. A write that is not `replayable` (see the module
    /// comment) also waits while a snapshot of its collection is being made.
    pub async fn claim(self: &Arc<Order>, id: u64, touches: Touches, replayable: bool) -> Claim {
        let mut claim = Claim {
            order: self.clone(),
            pass: None,
            gate: None,
            _barrier: None,
            _shared: None,
            _exclusive: None,
        };
        let Some(c) = touches.collection() else {
            claim._exclusive = Some(self.all.clone().write_owned().await);
            return claim;
        };
        if !replayable {
            claim._barrier = Some(self.barrier_lock(c).read_owned().await);
        }
        claim._shared = Some(self.all.clone().read_owned().await);
        let gate = self.lock().entry(c.to_string()).or_default().clone();
        // Held in the claim before waiting: a claim dropped while it waits still lets
        // the gate go.
        claim.gate = Some((c.to_string(), gate.clone()));
        claim.pass = Some(match touches {
            Touches::Points(_, ids) => gate.keys(id, ids).await,
            _ => gate.exclusive(id).await,
        });
        claim
    }

    /// Holds writes to `collection` that could not be replayed over a snapshot, once those
    /// in flight are logged: what a snapshot of it holds while Qdrant makes it.
    pub async fn barrier(&self, collection: &str) -> OwnedRwLockWriteGuard<()> {
        self.barrier_lock(collection).write_owned().await
    }

    fn barrier_lock(&self, collection: &str) -> Arc<RwLock<()>> {
        let mut map = self.barriers.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(collection.to_string()).or_default().clone()
    }

    /// How many collections have a gate (claims in flight or waiting), for tests.
    pub fn collections_held(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Gate>>> {
        self.collections.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.pass.take();
        if let Some((name, gate)) = self.gate.take() {
            let mut map = self.order.lock();
            drop(gate);
            // Every claim on a gate holds an `Arc` of it, cloned under this lock: one
            // left means only the map has it, and nobody can be waiting on it.
            if map.get(&name).is_some_and(|g| Arc::strong_count(g) == 1) {
                map.remove(&name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;

    fn pts(c: &str, ids: &[u8]) -> Touches {
        Touches::Points(c.into(), ids.iter().map(|&i| vec![i]).collect())
    }

    fn coll(c: &str) -> Touches {
        Touches::Collection(c.into())
    }

    /// Polls once: `Some` when the claim was granted without waiting.
    fn now<F: Future>(f: F) -> Option<F::Output> {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut f = std::pin::pin!(f);
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        }
    }

    #[tokio::test]
    async fn writes_to_other_points_go_concurrently_and_conflicts_wait() {
        let o = Order::new();
        let a = now(o.claim(1, pts("c", &[1, 2]), false)).expect("free");
        let _b = now(o.claim(2, pts("c", &[3]), false)).expect("other points: not held");
        let _d = now(o.claim(3, pts("d", &[1]), false)).expect("other collection: not held");
        assert!(
            now(o.claim(4, pts("c", &[2, 9]), false)).is_none(),
            "point 2 is held"
        );
        assert!(
            now(o.claim(5, coll("c"), false)).is_none(),
            "a filter waits"
        );
        assert!(
            now(o.claim(6, Touches::All, false)).is_none(),
            "aliases wait"
        );
        drop(a);
        let _e = now(o.claim(7, pts("c", &[2]), false)).expect("point 2 released");
    }

    #[tokio::test]
    async fn a_collection_claim_holds_its_points_and_nothing_else() {
        let o = Order::new();
        let f = now(o.claim(1, coll("c"), false)).expect("free");
        assert!(now(o.claim(2, pts("c", &[1]), false)).is_none());
        let _other = now(o.claim(3, pts("d", &[1]), false)).expect("another collection");
        drop(f);
        let _p = now(o.claim(4, pts("c", &[1]), false)).expect("released");
    }

    #[tokio::test]
    async fn waiting_claims_are_woken_in_turn() {
        let o = Order::new();
        let first = o.claim(1, pts("c", &[1]), false).await;
        let waiter = tokio::spawn({
            let o = o.clone();
            async move {
                let _c = o.claim(2, coll("c"), false).await;
            }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(first);
        tokio::time::timeout(std::time::Duration::from_secs(10), waiter)
            .await
            .expect("woken")
            .unwrap();
    }

    #[tokio::test]
    async fn a_snapshot_holds_only_writes_that_could_not_be_replayed_over_it() {
        let o = Order::new();
        let payload = now(o.claim(1, pts("c", &[1]), false)).expect("free");
        let mut snapshot = std::pin::pin!(o.barrier("c"));
        assert!(
            now(snapshot.as_mut()).is_none(),
            "waits for the write in flight"
        );
        drop(payload);
        let barrier = snapshot.await;
        let _upsert = now(o.claim(2, pts("c", &[2]), true)).expect("an upsert goes");
        assert!(
            now(o.claim(3, pts("c", &[3]), false)).is_none(),
            "a payload change waits"
        );
        assert!(
            now(o.claim(4, coll("c"), false)).is_none(),
            "a filter waits"
        );
        let _other = now(o.claim(5, pts("d", &[1]), false)).expect("another collection");
        drop(barrier);
        let _later = now(o.claim(6, pts("c", &[3]), false)).expect("after the snapshot");
    }

    #[tokio::test]
    async fn gates_of_collections_nobody_holds_are_freed() {
        let o = Order::new();
        for i in 0..100u64 {
            let _c = o.claim(i, pts(&format!("c{i}"), &[1]), false).await;
        }
        // A claim dropped while it waits frees its gate too.
        let held = o.claim(200, coll("x"), false).await;
        assert!(now(o.claim(201, coll("x"), false)).is_none());
        drop(held);
        assert_eq!(o.collections_held(), 0);
    }
}
