//! `vecwal verify`: check every checksum and LSN continuity.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::store_args::{resolve_stream, CryptArgs, StoreArgs};
use crate::catalog::verify::verify_store;
use crate::log::reader::resolve;
use crate::log::verify::{verify_files, Fault};
use crate::time::format_us;

/// Check every checksum and LSN continuity: local files, or what a store holds.
///
/// PATH (a segment file or a data directory): reads every byte, headers, each compressed
/// block and each record, footer indexes and trailers, and checks that LSNs run on without
/// a gap from file to file. A torn tail at the end of the newest open segment (what a
/// crash mid-append leaves, and what the next start truncates) is reported, not a fault.
///
/// --store URL: downloads every segment and snapshot not verified by an earlier run
/// (progress is kept in the store, in <stream>/verified.json; --all starts over), checks
/// each completely, that object names match their contents, LSN continuity across
/// segments, and snapshot SHA-256s.
///
/// Prints a summary and exits 0 when everything is sound; otherwise names each fault
/// (file or object, offset, LSN) and exits 1.
///
/// Examples:
///   vecwal verify /var/lib/vecwal
///   vecwal verify /var/lib/vecwal/sealed/0000000001-…-….seg --json
///   vecwal verify --store s3://backups/vecwal
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// A segment file or a data directory.
    #[arg(required_unless_present = "stores", conflicts_with = "stores")]
    path: Option<PathBuf>,
    #[command(flatten)]
    store: OptStoreArgs,
    /// With --store: the stream [default: the only stream in the store].
    #[arg(long, requires = "stores")]
    stream: Option<String>,
    /// With --store: verify everything again, not only what earlier runs did not.
    #[arg(long, requires = "stores")]
    all: bool,
    #[command(flatten)]
    crypt: CryptArgs,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// The store options, optional here (verify also takes a local PATH).
#[derive(Debug, Clone, clap::Args)]
pub struct OptStoreArgs {
    /// A store to verify (s3://bucket/prefix, file:///path or a path); repeatable.
    #[arg(long = "store", value_name = "URL")]
    stores: Vec<String>,
    /// Endpoint of an S3-compatible service (also AWS_ENDPOINT_URL).
    #[arg(long, value_name = "URL")]
    s3_endpoint: Option<String>,
    /// Region when the AWS configuration names none [default: us-east-1].
    #[arg(long, value_name = "REGION")]
    s3_region: Option<String>,
}

pub async fn run(a: Args) -> anyhow::Result<ExitCode> {
    match &a.path {
        Some(path) => run_local(path, a.json),
        None => run_store(a).await,
    }
}

async fn run_store(a: Args) -> anyhow::Result<ExitCode> {
    let args = StoreArgs {
        stores: a.store.stores.clone(),
        s3_endpoint: a.store.s3_endpoint.clone(),
        s3_region: a.store.s3_region.clone(),
        s3_sse: None,
        s3_sse_kms_key_id: None,
    };
    let keyring = a.crypt.keyring()?;
    let mut sound = true;
    let mut reports = Vec::new();
    for store in args.open_all().await? {
        let stream = resolve_stream(&*store, a.stream.as_deref()).await?;
        let r = verify_store(&*store, &stream, a.all, keyring.as_ref()).await?;
        sound &= r.faults.is_empty();
        if !a.json {
            println!(
                "{} stream {stream}: {} segments ({} records) and {} snapshots checked, {} bytes downloaded; {} segments verified earlier",
                store.url(),
                r.segments_checked,
                r.records_checked,
                r.snapshots_checked,
                r.bytes_downloaded,
                r.segments_already_verified
            );
            for f in &r.faults {
                let at = f
                    .offset
                    .map(|o| format!(" at offset {o}"))
                    .unwrap_or_default();
                let lsn = f.lsn.map(|l| format!(" (LSN {l})")).unwrap_or_default();
                println!("FAULT: {}{at}{lsn}: {}", f.key, f.message);
            }
            if r.faults.is_empty() {
                println!("sound");
            }
        }
        reports.push(serde_json::json!({"store": store.url(), "stream": stream, "report": r}));
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    }
    Ok(if sound {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn run_local(path: &std::path::Path, json: bool) -> anyhow::Result<ExitCode> {
    let files = resolve(path).with_context(|| format!("cannot read {}", path.display()))?;
    let report = verify_files(&files);
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for f in &report.files {
            let range = match f.last_lsn {
                Some(l) => format!("LSN {}..={l}", f.first_lsn),
                None => format!("empty, next LSN {}", f.first_lsn),
            };
            let time = match (f.first_ts_us, f.last_ts_us) {
                (Some(a), Some(b)) => format!("  {} → {}", format_us(a), format_us(b)),
                _ => String::new(),
            };
            println!(
                "ok  {:<6}  {}  {range}  {} records  {} bytes{time}",
                f.kind,
                f.path.display(),
                f.records,
                f.bytes
            );
        }
        if let Some(t) = &report.torn_tail {
            println!("note: {}", describe(t));
            println!(
                "      (a crash mid-append leaves this; the next start of the log truncates it)"
            );
        }
        match &report.fault {
            None => println!(
                "sound: {} files, {} records, every checksum and LSN checked",
                report.files.len(),
                report.records
            ),
            Some(f) => println!("FAULT: {}", describe(f)),
        }
    }
    Ok(if report.is_sound() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn describe(f: &Fault) -> String {
    let after = match f.after_lsn {
        Some(l) => format!(", after LSN {l}"),
        None => String::new(),
    };
    format!(
        "{} at offset {}{after}: {}",
        f.path.display(),
        f.offset,
        f.message
    )
}
