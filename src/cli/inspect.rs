//! `vecwal inspect`: the records of a segment file, a data directory, or a store.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use vecwal_format::Record;

use super::store_args::{resolve_stream, CryptArgs, StoreArgs, StreamArg};
use super::summary::summarize;
use crate::log::reader::{resolve, RecordReader, Start};
use crate::time::{format_us, parse_time};

/// Show the records of a segment file, a data directory or a store.
///
/// PATH is a segment file (`*.wal` open, `*.seg` sealed) or a data directory, whose
/// segments are read in LSN order. With --store instead, the records that were shipped
/// (a data directory keeps only what is not shipped yet): the place to look for the right
/// restore time during an incident. Payloads are summarized (binary values such as vectors
/// show as their size); they are never dumped raw.
///
/// Examples:
///   vecwal inspect /var/lib/vecwal                   # every record
///   vecwal inspect /var/lib/vecwal --at -15m         # the last 15 minutes
///   vecwal inspect seg.seg --from-lsn 1000 --limit 20
///   vecwal inspect /var/lib/vecwal --json | jq .     # JSON lines
///   vecwal inspect --store s3://backups/vecwal --stream qdrant --collection docs \
///       --from 2026-11-21T09:00:00Z --to 2026-11-21T10:00:00Z
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// A segment file or a data directory.
    #[arg(required_unless_present = "stores", conflicts_with = "stores")]
    path: Option<PathBuf>,
    #[command(flatten)]
    store: Option<StoreArgs>,
    #[command(flatten)]
    stream: StreamArg,
    #[command(flatten)]
    crypt: CryptArgs,
    /// Follow this timeline of the stream instead of the newest (`vecwal ls` lists them): a
    /// stream branches when a restored database takes writes again.
    #[arg(long, requires = "stores", value_name = "N")]
    timeline: Option<u32>,
    /// Print one JSON object per record instead of a table.
    #[arg(long)]
    json: bool,
    /// Start at the first record with this LSN or later.
    #[arg(long, value_name = "LSN", conflicts_with_all = ["at", "from"])]
    from_lsn: Option<u64>,
    /// Start at the first record at or after this time: RFC 3339 (2026-11-21T09:59:00Z) or
    /// relative to now (-15m, -2h).
    #[arg(
        long,
        value_name = "TIME",
        allow_hyphen_values = true,
        conflicts_with = "from"
    )]
    at: Option<String>,
    /// The same as --at, the start of a window that --to ends.
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    from: Option<String>,
    /// Stop after the last record at or before this time.
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    to: Option<String>,
    /// Only the records of this namespace: a Qdrant collection, a Redis database number.
    #[arg(long, value_name = "NAME", alias = "namespace")]
    collection: Option<String>,
    /// Print at most this many records.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
}

/// Which records are shown.
struct Filter {
    from_lsn: u64,
    from_us: i64,
    to_us: i64,
    collection: Option<String>,
}

impl Filter {
    fn wants(&self, r: &Record) -> bool {
        r.lsn >= self.from_lsn
            && (self.from_us..=self.to_us).contains(&r.timestamp_us)
            && self.collection.as_deref().is_none_or(|c| r.namespace == c)
    }
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let now = crate::log::now_us();
    let time = |flag: &str, t: &Option<String>| -> anyhow::Result<Option<i64>> {
        t.as_deref()
            .map(|t| parse_time(t, now).map_err(|e| anyhow::anyhow!("{flag}: {e}")))
            .transpose()
    };
    let from_us = time("--at", &a.at)?.or(time("--from", &a.from)?);
    let filter = Filter {
        from_lsn: a.from_lsn.unwrap_or(0),
        from_us: from_us.unwrap_or(i64::MIN),
        to_us: time("--to", &a.to)?.unwrap_or(i64::MAX),
        collection: a.collection.clone(),
    };
    anyhow::ensure!(filter.from_us <= filter.to_us, "the start is after --to");
    let mut out = Printer::new(a.json)?;
    let limit = a.limit.unwrap_or(usize::MAX);
    if let Some(store) = &a.store {
        return super::rt()?.block_on(from_store(&a, store, &filter, limit, &mut out));
    }
    let path = a.path.as_ref().expect("clap requires PATH without --store");
    let start = match (a.from_lsn, from_us) {
        (Some(l), _) => Start::Lsn(l),
        (None, Some(t)) => Start::Time(t),
        (None, None) => Start::Beginning,
    };
    let files = resolve(path).with_context(|| format!("cannot read {}", path.display()))?;
    let records = RecordReader::new(files, start)
        .filter(|r| r.as_ref().map_or(true, |r| filter.wants(r)))
        .take(limit);
    for r in records {
        let r = r.context("reading stopped at damaged data")?;
        if r.timestamp_us > filter.to_us {
            break;
        }
        if !out.record(&r)? {
            return Ok(ExitCode::SUCCESS);
        }
    }
    out.finish()
}

async fn from_store(
    a: &Args,
    store: &StoreArgs,
    filter: &Filter,
    limit: usize,
    out: &mut Printer,
) -> anyhow::Result<ExitCode> {
    let keyring = a.crypt.keyring()?.map(Arc::new);
    let store = store.open_all().await?.remove(0);
    let stream = resolve_stream(store.as_ref(), a.stream.stream.as_deref()).await?;
    let from = filter.from_us.max(0);
    let to = filter
        .to_us
        .min(crate::log::now_us().saturating_add(86_400_000_000));
    let plan = crate::restore::window_plan(store.as_ref(), &stream, from, to, a.timeline).await?;
    let mut rx = crate::restore::records(store, &plan, keyring);
    let mut shown = 0;
    while let Some(batch) = rx.recv().await {
        for r in batch? {
            if shown == limit {
                return out.finish();
            }
            if !filter.wants(&r) {
                continue;
            }
            shown += 1;
            if !out.record(&r)? {
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
    out.finish()
}

/// Rows or JSON lines on stdout; a closed pipe (`| head`) ends the listing quietly.
struct Printer {
    json: bool,
    out: std::io::BufWriter<std::io::StdoutLock<'static>>,
}

impl Printer {
    fn new(json: bool) -> anyhow::Result<Printer> {
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        if !json {
            writeln!(
                out,
                "{:>12}  {:<27}  {:<13}  {:<10}  OPERATION",
                "LSN", "TIME (UTC)", "KIND", "NAMESPACE"
            )?;
        }
        Ok(Printer { json, out })
    }

    /// Prints `r`; false once the reader has gone.
    fn record(&mut self, r: &Record) -> anyhow::Result<bool> {
        let summary = summarize(r);
        let result = if self.json {
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
            writeln!(self.out, "{line}")
        } else {
            writeln!(
                self.out,
                "{:>12}  {:<27}  {:<13}  {:<10}  {summary}",
                r.lsn,
                format_us(r.timestamp_us),
                r.kind.name(),
                r.namespace
            )
        };
        match result {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
            r => r.map(|_| true).map_err(Into::into),
        }
    }

    fn finish(&mut self) -> anyhow::Result<ExitCode> {
        match self.out.flush() {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
            r => r.map(|_| ExitCode::SUCCESS).map_err(Into::into),
        }
    }
}
