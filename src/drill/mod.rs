//! Drills: a restore into a scratch target, checked and timed, its report kept in the store
//! (promise 10: a backup is what a tested restore gives back).
//!
//! - this file: the report (verdict, RTO by phase, recovery window, checks), and where
//!   reports live in a store, so `vecwal status --max-drill-age` can page on stale drills;
//! - [`redis`]: key digests and exact vector searches of a Redis;
//! - [`qdrant`]: point digests and exact searches of a Qdrant collection, and a scratch
//!   Qdrant.

pub mod qdrant;
pub mod redis;

use serde::{Deserialize, Serialize};

use crate::catalog::{keys, Catalog};
use crate::restore::Phases;
use crate::store::{Store, StoreError};
use crate::time::format_us;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    /// Could not decide (the source moved during the drill): reported, not a failure.
    Inconclusive,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub status: Status,
    pub detail: String,
}

/// The recovery time, split by phase, in seconds.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Rto {
    pub plan_s: f64,
    pub snapshot_download_s: f64,
    pub snapshot_load_s: f64,
    /// Includes the segment downloads the replay waited for (they overlap).
    pub replay_s: f64,
    pub total_s: f64,
}

impl Rto {
    pub fn new(plan: std::time::Duration, p: Phases, total: std::time::Duration) -> Rto {
        Rto {
            plan_s: plan.as_secs_f64(),
            snapshot_download_s: p.snapshot_download.as_secs_f64(),
            snapshot_load_s: p.snapshot_load.as_secs_f64(),
            replay_s: p.replay.as_secs_f64(),
            total_s: total.as_secs_f64(),
        }
    }
}

/// From when to when the store can restore (the oldest base to the last shipped record).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Window {
    pub earliest: Option<String>,
    pub latest: Option<String>,
    pub latest_lsn: u64,
}

impl Window {
    pub fn of(cat: &Catalog, namespace: Option<&str>) -> Window {
        let earliest = cat
            .snapshots
            .iter()
            .filter(|s| namespace.is_none_or(|n| s.namespace == n) && cat.snapshot_present(s))
            .map(|s| s.time_us)
            .min()
            .or_else(|| cat.segments.first().map(|s| s.range.first_ts));
        let last = cat.last_segment();
        Window {
            earliest: earliest.map(format_us),
            latest: last.map(|s| format_us(s.range.last_ts)),
            latest_lsn: last.map_or(0, |s| s.range.last_lsn),
        }
    }
}

/// What a drill did and found; written as JSON with `--report` and kept in the store.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// `redis` or `qdrant`.
    pub database: String,
    pub store: String,
    pub stream: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collection: Option<String>,
    pub started: String,
    pub started_us: i64,
    /// `PASS` or `FAIL`.
    pub verdict: String,
    /// The first failure, in one line (empty on a pass).
    pub reason: String,
    pub restored_lsn: Option<u64>,
    pub restored_time: Option<String>,
    pub base_lsn: Option<u64>,
    pub records_applied: u64,
    pub rto: Rto,
    pub window: Window,
    pub checks: Vec<Check>,
    /// LSN of the base snapshot `--promote` stored from this drill.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_lsn: Option<u64>,
}

impl Report {
    pub fn new(database: &str, store: &str, stream: &str, collection: Option<&str>) -> Report {
        let now = crate::log::now_us();
        Report {
            database: database.into(),
            store: store.into(),
            stream: stream.into(),
            collection: collection.map(str::to_string),
            started: format_us(now),
            started_us: now,
            verdict: "FAIL".into(),
            reason: String::new(),
            restored_lsn: None,
            restored_time: None,
            base_lsn: None,
            records_applied: 0,
            rto: Rto::default(),
            window: Window::default(),
            checks: Vec::new(),
            promoted_lsn: None,
        }
    }

    pub fn check(&mut self, name: &str, status: Status, detail: impl Into<String>) {
        self.checks.push(Check {
            name: name.into(),
            status,
            detail: detail.into(),
        });
    }

    /// Settles the verdict: a failed check, or `fatal` (what stopped the drill), fails it.
    pub fn settle(&mut self, fatal: Option<String>) {
        if let Some(f) = fatal {
            self.check("restore", Status::Fail, f);
        }
        match self.checks.iter().find(|c| c.status == Status::Fail) {
            Some(c) => {
                self.verdict = "FAIL".into();
                self.reason = format!("{}: {}", c.name, c.detail);
            }
            None => {
                self.verdict = "PASS".into();
                self.reason.clear();
            }
        }
    }

    /// What the restore did: where it got, how long each phase took, and the check that
    /// every planned record was accounted for (`accounted`: applied, or, for a collection,
    /// skipped as another collection's or a marker).
    pub fn restored(
        &mut self,
        plan: &crate::restore::Plan,
        rto: Rto,
        (applied, accounted): (u64, u64),
        (final_lsn, final_time_us): (u64, i64),
    ) {
        self.rto = rto;
        self.restored_lsn = Some(final_lsn);
        self.restored_time = Some(format_us(final_time_us));
        self.records_applied = applied;
        let ok = accounted == plan.record_count() && final_lsn == plan.target_lsn;
        self.check(
            "records",
            if ok { Status::Pass } else { Status::Fail },
            format!(
                "{accounted} of {} planned records applied, through LSN {final_lsn} of {}",
                plan.record_count(),
                plan.target_lsn
            ),
        );
    }

    pub fn passed(&self) -> bool {
        self.verdict == "PASS"
    }

    /// The report for people: verdict, RTO by phase, window, each check.
    pub fn human(&self) -> String {
        let mut s = format!(
            "drill {} of {} (stream {}{}): {}\n",
            self.database,
            self.store,
            self.stream,
            self.collection
                .as_ref()
                .map_or(String::new(), |c| format!(", collection {c:?}")),
            self.verdict
        );
        if let (Some(l), Some(t)) = (self.restored_lsn, &self.restored_time) {
            s += &format!(
                "  restored to LSN {l} at {t} from {}, {} records applied\n",
                self.base_lsn
                    .map_or("an empty start".into(), |b| format!("the base at LSN {b}")),
                self.records_applied
            );
        }
        let r = &self.rto;
        s += &format!(
            "  RTO {:.2}s: plan {:.2}s, snapshot download {:.2}s, snapshot load {:.2}s, replay {:.2}s\n",
            r.total_s, r.plan_s, r.snapshot_download_s, r.snapshot_load_s, r.replay_s
        );
        s += &format!(
            "  recovery window: {} .. {} (LSN {})\n",
            self.window.earliest.as_deref().unwrap_or("-"),
            self.window.latest.as_deref().unwrap_or("-"),
            self.window.latest_lsn
        );
        for c in &self.checks {
            let tag = match c.status {
                Status::Pass => "ok  ",
                Status::Fail => "FAIL",
                Status::Inconclusive => "??  ",
            };
            s += &format!("  {tag} {}: {}\n", c.name, c.detail);
        }
        if let Some(l) = self.promoted_lsn {
            s += &format!("  promoted: a new base snapshot at LSN {l}\n");
        }
        s
    }
}

/// Where a stream's drill reports live: `<stream>/drills/<started_us>.json`.
pub fn report_key(stream: &str, started_us: i64) -> String {
    format!(
        "{stream}/{}{:020}.json",
        keys::DRILLS_DIR,
        started_us.max(0)
    )
}

/// Keeps `r` in the store beside the stream it tested.
pub async fn record(store: &dyn Store, r: &Report) -> Result<(), StoreError> {
    let json = serde_json::to_vec_pretty(r).expect("a report serializes");
    store.put(&report_key(&r.stream, r.started_us), json).await
}

/// The newest passing drill of `stream` (of `collection`, when given), if any.
pub async fn last_pass(
    store: &dyn Store,
    stream: &str,
    collection: Option<&str>,
) -> Result<Option<Report>, StoreError> {
    let mut found = store
        .list(&format!("{stream}/{}", keys::DRILLS_DIR))
        .await?;
    found.sort_by(|a, b| b.key.cmp(&a.key));
    for o in found {
        let Ok(r) = serde_json::from_slice::<Report>(&store.get(&o.key).await?) else {
            continue; // not a report of ours
        };
        if r.passed() && collection.is_none_or(|c| r.collection.as_deref() == Some(c)) {
            return Ok(Some(r));
        }
    }
    Ok(None)
}

/// Waits (at most `timeout`) for a heartbeat written after `after_us` that says the store
/// holds every record the capture had logged: the store has caught up with the source as
/// it was at `after_us`. Returns that heartbeat, or `None` on timeout.
pub async fn caught_up(
    store: &dyn Store,
    stream: &str,
    after_us: i64,
    timeout: std::time::Duration,
) -> Result<Option<crate::ship::Heartbeat>, StoreError> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(h) = crate::ship::Heartbeat::read(store, stream).await? {
            if h.written_us >= after_us && h.shipped_lsn >= h.appended_lsn {
                return Ok(Some(h));
            }
        }
        if std::time::Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

/// The verdict of comparing a restore with its source: differences fail the drill only
/// when the source is known to have stood still since the restored point.
pub fn compare_status(differences: usize, source_moved: Option<bool>) -> Status {
    match (differences, source_moved) {
        (0, _) => Status::Pass,
        (_, Some(false)) => Status::Fail,
        _ => Status::Inconclusive,
    }
}

/// Whether two nearest-neighbour answers agree: the same similarities in order, and the
/// same ids above the last similarity. Ids tied at the last place may differ: which of
/// equals makes the cut depends on storage order, which a restore may change.
pub fn same_neighbours(a: &[(String, f64)], b: &[(String, f64)]) -> bool {
    let close = |x: f64, y: f64| (x - y).abs() <= 1e-6 * x.abs().max(y.abs()).max(1.0);
    if a.len() != b.len() || a.iter().zip(b).any(|(x, y)| !close(x.1, y.1)) {
        return false;
    }
    let Some(cut) = a.last().map(|x| x.1) else {
        return true;
    };
    let above = |v: &[(String, f64)]| {
        let mut ids: Vec<String> = v
            .iter()
            .filter(|x| !close(x.1, cut))
            .map(|x| x.0.clone())
            .collect();
        ids.sort();
        ids
    };
    above(a) == above(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(v: &[(&str, f64)]) -> Vec<(String, f64)> {
        v.iter().map(|(i, s)| (i.to_string(), *s)).collect()
    }

    #[test]
    fn neighbours_tied_at_the_cut_may_differ_and_nothing_else() {
        let a = n(&[("1", 0.9), ("2", 0.5), ("3", 0.5)]);
        assert!(same_neighbours(
            &a,
            &n(&[("1", 0.9), ("3", 0.5), ("4", 0.5)])
        ));
        assert!(!same_neighbours(
            &a,
            &n(&[("5", 0.9), ("3", 0.5), ("2", 0.5)])
        ));
        assert!(!same_neighbours(
            &a,
            &n(&[("1", 0.9), ("2", 0.5), ("3", 0.4)])
        ));
        assert!(!same_neighbours(&a, &n(&[("1", 0.9), ("2", 0.5)])));
    }

    #[test]
    fn differences_fail_a_drill_only_when_the_source_stood_still() {
        assert_eq!(compare_status(0, None), Status::Pass);
        assert_eq!(compare_status(0, Some(true)), Status::Pass);
        assert_eq!(compare_status(2, Some(false)), Status::Fail);
        assert_eq!(compare_status(2, Some(true)), Status::Inconclusive);
        assert_eq!(compare_status(2, None), Status::Inconclusive);
    }

    #[test]
    fn the_first_failed_check_or_the_fatal_error_decides_the_verdict() {
        let mut r = Report::new("redis", "s", "redis", None);
        r.check("a", Status::Pass, "fine");
        r.check("b", Status::Inconclusive, "moved");
        r.settle(None);
        assert!(r.passed());
        r.check("c", Status::Fail, "3 differ");
        r.settle(None);
        assert_eq!(
            (r.verdict.as_str(), r.reason.as_str()),
            ("FAIL", "c: 3 differ")
        );
        let mut r = Report::new("redis", "s", "redis", None);
        r.settle(Some("gap before LSN 9".into()));
        assert_eq!(r.reason, "restore: gap before LSN 9");
    }
}
