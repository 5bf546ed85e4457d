//! `vecwal verify`: check every checksum and LSN continuity.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::log::reader::resolve;
use crate::log::verify::{verify_files, Fault};
use crate::time::format_us;

/// Check every checksum and LSN continuity of a segment file or a data directory.
///
/// Reads every byte: headers, each compressed block and each record, footer indexes and
/// trailers, and checks that LSNs run on without a gap from file to file. Prints a summary
/// and exits 0 when everything is sound; otherwise names the first fault (file, offset,
/// last good LSN) and exits 1.
///
/// A torn tail at the end of the newest open segment (what a crash mid-append leaves, and
/// what the next start truncates) is reported but is not a fault.
///
/// Examples:
///   vecwal verify /var/lib/vecwal
///   vecwal verify /var/lib/vecwal/sealed/0000000001-…-….seg --json
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// A segment file or a data directory.
    path: PathBuf,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let files = resolve(&a.path).with_context(|| format!("cannot read {}", a.path.display()))?;
    let report = verify_files(&files);
    if a.json {
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
