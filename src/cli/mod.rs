//! The `vecwal` command line: one file per subcommand. Errors become `anyhow` here, at the
//! edge; the library below returns typed errors.

mod inspect;
mod summary;
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
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Inspect(inspect::Args),
    Verify(verify::Args),
}

/// Runs the parsed command; returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    match cli.command {
        Command::Inspect(a) => inspect::run(a),
        Command::Verify(a) => verify::run(a),
    }
}
