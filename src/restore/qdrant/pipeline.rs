//! Records applied several at a time where order allows.
//!
//! Each call waits for Qdrant to apply its write (`wait=true`), so one record at a time
//! costs a round trip and an apply each, with Qdrant idle in between. The pipeline keeps
//! up to [`DEPTH`] records in flight, and sends a record only once every earlier record it
//! conflicts with has been applied: the same rule ([`Touches::conflicts`]) by which the
//! proxy let them reach Qdrant concurrently in the first place. Writes to other points
//! commute, so the restored collection is the one sequential replay would give.

use std::sync::Arc;

use tokio::task::JoinSet;
use vecwal_format::Operation;

use super::target::{apply, apply_err, decode, Applied, Target};
use crate::protocol::qdrant::rest::Touches;
use crate::protocol::qdrant::{grpc, rest};
use crate::restore::RestoreError;
use vecwal_format::Record;

/// Records in flight at most.
pub(super) const DEPTH: usize = 16;

type Outcome = Result<Applied, RestoreError>;

pub(super) struct Pipeline {
    target: Arc<Target>,
    tasks: JoinSet<Outcome>,
    /// Every record in flight: its task and what it touches.
    in_flight: Vec<(tokio::task::Id, Touches)>,
}

impl Pipeline {
    pub(super) fn new(target: Arc<Target>) -> Pipeline {
        Pipeline {
            target,
            tasks: JoinSet::new(),
            in_flight: Vec::with_capacity(DEPTH),
        }
    }

    /// Sends record `r`, renamed `from` → `to`, once it may go; `done` gets the outcome of
    /// every record that finishes meanwhile, and an error it returns stops the pipeline.
    pub(super) async fn send(
        &mut self,
        r: &Record,
        to: &str,
        done: &mut impl FnMut(Outcome) -> Result<(), RestoreError>,
    ) -> Result<(), RestoreError> {
        let op = decode(r)?;
        let touches = touches(&op, &r.namespace);
        while self.in_flight.len() >= DEPTH
            || self.in_flight.iter().any(|(_, t)| t.conflicts(&touches))
        {
            self.wait_one(done).await?;
        }
        let (t, lsn, to) = (self.target.clone(), r.lsn, to.to_string());
        let task = self
            .tasks
            .spawn(async move { apply(&t, lsn, op, &to).await });
        self.in_flight.push((task.id(), touches));
        Ok(())
    }

    /// Waits for every record in flight.
    pub(super) async fn finish(
        &mut self,
        done: &mut impl FnMut(Outcome) -> Result<(), RestoreError>,
    ) -> Result<(), RestoreError> {
        while !self.in_flight.is_empty() {
            self.wait_one(done).await?;
        }
        Ok(())
    }

    async fn wait_one(
        &mut self,
        done: &mut impl FnMut(Outcome) -> Result<(), RestoreError>,
    ) -> Result<(), RestoreError> {
        let outcome = match self.tasks.join_next_with_id().await {
            Some(Ok((id, outcome))) => {
                self.in_flight.retain(|(t, _)| *t != id);
                outcome
            }
            Some(Err(e)) => {
                self.in_flight.retain(|(t, _)| *t != e.id());
                Err(apply_err(format!("a replay task failed: {e}")))
            }
            None => {
                self.in_flight.clear();
                return Ok(());
            }
        };
        done(outcome)
    }
}

/// What a logged operation touches, as the proxy judged it: in the collection the record
/// is logged under (the request may name it by an alias); anything unreadable is ordered
/// against everything.
fn touches(op: &Operation, namespace: &str) -> Touches {
    let t = match op {
        Operation::QdrantRest {
            method, path, body, ..
        } => {
            let path = path.split_once('?').map_or(path.as_str(), |(p, _)| p);
            rest::classify(method, path).map_or(Touches::All, |m| {
                let keys = crate::protocol::qdrant::points::read_rest(m.what, body).keys;
                m.touches.narrow(&keys)
            })
        }
        Operation::QdrantGrpc { path, message } => {
            grpc::classify(path, message).map_or(Touches::All, |m| m.touches)
        }
        _ => Touches::All,
    };
    t.resolve(|_| namespace.to_string())
}
