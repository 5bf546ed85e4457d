//! The `vecwal` command line: one file per subcommand. Errors become `anyhow` here, at the
//! edge; the library below returns typed errors.

mod capture_args;
pub mod config;
mod drill;
mod drill_qdrant;
mod inspect;
mod ls;
mod proxy;
mod prune;
mod replay;
mod restore;
mod restore_qdrant;
mod ship;
mod snapshot;
mod status;
mod store_args;
mod summary;
mod tap;
mod timeline;
mod verify;

use clap::{Parser, Subcommand};

/// vecwal: a write-ahead-log shipper for point-in-time recovery of Qdrant and Redis.
///
/// vecwal keeps every acknowledged write of your vector database in a local, segmented,
/// checksummed log, ships sealed segments to an object store, and restores the database
/// as it was at any second.
#[derive(Debug, Parser)]
#[command(
    name = "vecwal",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// How vecwal logs to stderr: `text` for people, `json` (one object per line) for log
    /// collectors. VECWAL_LOG sets the level (info; debug, warn, …).
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Inspect(inspect::Args),
    Verify(verify::Args),
    Ls(ls::Args),
    Status(status::Args),
    Prune(prune::Args),
    Ship(ship::Args),
    Proxy(proxy::Args),
    Tap(tap::Args),
    Snapshot(snapshot::Args),
    Restore(restore::Args),
    Replay(replay::Args),
    Drill(drill::Args),
}

/// The runtime of the commands that do network or store I/O.
fn rt() -> anyhow::Result<tokio::runtime::Runtime> {
    rt_with(2)
}

fn rt_with(workers: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
}

/// Runs the parsed command; returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    match cli.command {
        Command::Inspect(a) => inspect::run(a),
        Command::Verify(a) => rt()?.block_on(verify::run(a)),
        Command::Ls(a) => rt()?.block_on(ls::run(a)),
        Command::Status(a) => rt()?.block_on(status::run(a)),
        Command::Prune(a) => rt()?.block_on(prune::run(a)),
        Command::Ship(a) => rt()?.block_on(ship::run(a)),
        Command::Proxy(a) => rt_with(a.threads())?.block_on(proxy::run(a)),
        Command::Tap(a) => rt()?.block_on(tap::run(a)),
        Command::Snapshot(a) => rt()?.block_on(snapshot::run(a)),
        Command::Restore(a) => rt()?.block_on(restore::run(a)),
        Command::Replay(a) => rt()?.block_on(replay::run(a)),
        Command::Drill(a) => rt()?.block_on(drill::run(a)),
    }
}
