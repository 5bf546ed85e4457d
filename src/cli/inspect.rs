//! `vecwal inspect`: the records of a segment file or a data directory.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::summary::summarize;
use crate::log::reader::{resolve, RecordReader, Start};
use crate::time::{format_us, parse_time};

/// Show the records of a segment file or a data directory.
///
/// PATH is a segment file (`*.wal` open, `*.seg` sealed) or a data directory, whose
/// segments are read in LSN order. Payloads are summarized (binary values such as vectors
/// show as their size); they are never dumped raw.
///
/// Examples:
///   vecwal inspect /var/lib/vecwal                   # every record
///   vecwal inspect /var/lib/vecwal --at -15m         # the last 15 minutes
///   vecwal inspect seg.seg --from-lsn 1000 --limit 20
///   vecwal inspect /var/lib/vecwal --json | jq .     # JSON lines
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// A segment file or a data directory.
    path: PathBuf,
    /// Print one JSON object per record instead of a table.
    #[arg(long)]
    json: bool,
    /// Start at the first record with this LSN or later.
    #[arg(long, value_name = "LSN", conflicts_with = "at")]
    from_lsn: Option<u64>,
    /// Start at the first record at or after this time: RFC 3339 (2026-11-21T09:59:00Z) or
    /// relative to now (-15m, -2h).
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    at: Option<String>,
    /// Print at most this many records.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let start = match (&a.from_lsn, &a.at) {
        (Some(l), _) => Start::Lsn(*l),
        (None, Some(t)) => {
            Start::Time(parse_time(t, crate::log::now_us()).map_err(anyhow::Error::msg)?)
        }
        (None, None) => Start::Beginning,
    };
    let files = resolve(&a.path).with_context(|| format!("cannot read {}", a.path.display()))?;
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    if !a.json {
        writeln!(
            out,
            "{:>12}  {:<27}  {:<13}  {:<10}  OPERATION",
            "LSN", "TIME (UTC)", "KIND", "NAMESPACE"
        )?;
    }
    for r in RecordReader::new(files, start).take(a.limit.unwrap_or(usize::MAX)) {
        let r = r.context("reading stopped at damaged data")?;
        let summary = summarize(&r);
        let result = if a.json {
            let line = serde_json::json!({
                "lsn": r.lsn,
                "time": format_us(r.timestamp_us),
                "timestamp_us": r.timestamp_us,
                "stream_id": format!("{:016x}", r.stream_id),
                "timeline": r.timeline,
                "kind": r.kind.name(),
                "namespace": r.namespace,
                "payload_bytes": r.payload.len(),
                "summary": summary,
            });
            writeln!(out, "{line}")
        } else {
            writeln!(
                out,
                "{:>12}  {:<27}  {:<13}  {:<10}  {summary}",
                r.lsn,
                format_us(r.timestamp_us),
                r.kind.name(),
                r.namespace
            )
        };
        // A closed pipe (`| head`) ends the listing quietly.
        if matches!(&result, Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe) {
            return Ok(ExitCode::SUCCESS);
        }
        result?;
    }
    match out.flush() {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        r => r.map(|_| ExitCode::SUCCESS).map_err(Into::into),
    }
}
