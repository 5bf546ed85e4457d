//! `vecwal status`: shipping progress and RPO exposure per destination, for people and
//! for monitoring (non-zero exit when something needs attention).

use std::process::ExitCode;
use std::time::Duration;

use serde::Serialize;

use super::store_args::{resolve_stream, StoreArgs, StreamArg};
use crate::catalog::Catalog;
use crate::log::now_us;
use crate::ship::Heartbeat;
use crate::time::{format_us, parse_duration};

/// Show shipping status and the current RPO exposure per destination.
///
/// For each store: the last LSN and time shipped, the lag (how much recent history
/// would be lost if the capturing machine vanished now), the local spool the shipper
/// reported, the last snapshot, any gap, and the last passing drill. Exits 1 when a lag
/// exceeds --max-lag, a gap exists, a store has no heartbeat from a shipper, or (with
/// --max-drill-age) no drill passed recently enough; so cron and monitoring can alert.
///
/// Examples:
///   vecwal status --store s3://backups/vecwal
///   vecwal status --store s3://a/vecwal --store /mnt/backup --max-lag 5m
///   vecwal status --store s3://backups/vecwal --json
///   vecwal status --store s3://backups/vecwal --max-drill-age 35d
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    stream: StreamArg,
    /// Lag above which the status is a failure.
    #[arg(long, value_name = "DURATION", default_value = "90s", value_parser = parse_duration)]
    max_lag: Duration,
    /// Fail when the last passing `vecwal drill` of the stream is older than this (or there
    /// is none).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    max_drill_age: Option<Duration>,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Destination {
    store: String,
    stream: String,
    shipped_lsn: u64,
    shipped_time: Option<String>,
    lag_seconds: Option<f64>,
    heartbeat: Option<Heartbeat>,
    heartbeat_age_seconds: Option<f64>,
    last_snapshot_lsn: Option<u64>,
    gaps: usize,
    last_drill_pass: Option<String>,
    last_drill_age_seconds: Option<f64>,
    problems: Vec<String>,
}

pub async fn run(a: Args) -> anyhow::Result<ExitCode> {
    let now = now_us();
    let mut all = Vec::new();
    for store in a.store.open_all().await? {
        let stream = resolve_stream(&*store, a.stream.stream.as_deref()).await?;
        let cat = Catalog::load(&*store, &stream).await?;
        let heartbeat = Heartbeat::read(&*store, &stream).await?;
        let last = cat.last_segment();
        let mut problems = Vec::new();
        let lag = heartbeat
            .as_ref()
            .map(|h| (now - h.shipped_through_us).max(0) as f64 / 1e6);
        match lag {
            None => problems.push("no heartbeat: no shipper has written to this store".to_string()),
            Some(l) if l > a.max_lag.as_secs_f64() => problems.push(format!(
                "lag {l:.1}s exceeds --max-lag {:.0}s",
                a.max_lag.as_secs_f64()
            )),
            _ => {}
        }
        let drill = crate::drill::last_pass(&*store, &stream, None).await?;
        let drill_age = drill
            .as_ref()
            .map(|d| (now - d.started_us).max(0) as f64 / 1e6);
        if let Some(max) = a.max_drill_age {
            match drill_age {
                None => problems.push("no drill has passed (vecwal drill)".to_string()),
                Some(age) if age > max.as_secs_f64() => problems.push(format!(
                    "the last passing drill is {} old, more than --max-drill-age ({})",
                    age_text(age),
                    age_text(max.as_secs_f64())
                )),
                _ => {}
            }
        }
        let gaps = cat.gaps();
        if !gaps.is_empty() {
            problems.push(format!("{} gap(s) in the shipped history", gaps.len()));
        }
        all.push(Destination {
            store: store.url().to_string(),
            stream,
            shipped_lsn: last.map(|s| s.range.last_lsn).unwrap_or(0),
            shipped_time: last.map(|s| format_us(s.range.last_ts)),
            lag_seconds: lag,
            heartbeat_age_seconds: heartbeat
                .as_ref()
                .map(|h| (now - h.written_us).max(0) as f64 / 1e6),
            heartbeat,
            last_snapshot_lsn: cat.snapshots.last().map(|s| s.lsn),
            gaps: gaps.len(),
            last_drill_pass: drill.map(|d| format_us(d.started_us)),
            last_drill_age_seconds: drill_age,
            problems,
        });
    }
    let ok = all.iter().all(|d| d.problems.is_empty());
    if a.json {
        println!("{}", serde_json::to_string_pretty(&all)?);
    } else {
        for d in &all {
            println!(
                "{}  {}",
                if d.problems.is_empty() {
                    "OK  "
                } else {
                    "FAIL"
                },
                d.store
            );
            println!(
                "      stream {}: shipped through LSN {} ({})",
                d.stream,
                d.shipped_lsn,
                d.shipped_time.as_deref().unwrap_or("nothing yet")
            );
            if let (Some(l), Some(h)) = (d.lag_seconds, &d.heartbeat) {
                println!(
                    "      lag {l:.1}s   appended through LSN {}   spool {} of {} bytes   heartbeat {:.1}s ago",
                    h.appended_lsn,
                    h.spool_bytes,
                    h.spool_limit,
                    d.heartbeat_age_seconds.unwrap_or(0.0)
                );
            }
            match d.last_snapshot_lsn {
                Some(l) => println!("      last snapshot at LSN {l}"),
                None => println!("      no snapshot yet"),
            }
            match &d.last_drill_pass {
                Some(t) => println!("      last passing drill {t}"),
                None => println!("      no passing drill"),
            }
            for p in &d.problems {
                println!("      problem: {p}");
            }
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// An age for people: days past a day, else hours, minutes, seconds.
fn age_text(secs: f64) -> String {
    if secs >= 86_400.0 {
        format!("{:.1} days", secs / 86_400.0)
    } else {
        humantime::format_duration(Duration::from_secs(secs as u64)).to_string()
    }
}
