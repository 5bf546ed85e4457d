//! `vecwal snapshot redis`: ask a running proxy or tap for an aligned base snapshot now.

use std::process::ExitCode;

use crate::capture::redis::client::RedisTarget;
use crate::capture::resp_value::Value;

/// Take a base snapshot now.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    target: Kind,
}

#[derive(Debug, clap::Subcommand)]
enum Kind {
    Redis(RedisArgs),
}

/// Ask a running `vecwal proxy redis` or `vecwal tap redis` for an aligned snapshot now.
///
/// The proxy holds writes for the moment Redis forks; the tap ties the fork's replication
/// offset to the LSN its log had reached there. Either stores the RDB tagged with the exact
/// LSN it contains and answers once it is stored. The same as sending VECWAL.SNAPSHOT to
/// the proxy, or to the tap's control port, with any Redis client.
///
/// Examples:
///   vecwal snapshot redis --proxy 127.0.0.1:6380
///   vecwal snapshot redis --tap 127.0.0.1:6390
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
struct RedisArgs {
    /// The proxy's listen address (with credentials if the upstream wants them:
    /// redis://user:password@host:port), or a tap's --control address.
    #[arg(
        long,
        visible_alias = "tap",
        value_name = "ADDR",
        default_value = "127.0.0.1:6380"
    )]
    proxy: String,
}

pub async fn run(a: Args) -> anyhow::Result<ExitCode> {
    let Kind::Redis(a) = a.target;
    let t = RedisTarget::parse(&a.proxy).map_err(|e| anyhow::anyhow!("--proxy: {e}"))?;
    let mut c = t.connect().await?;
    c.set_timeout(std::time::Duration::from_secs(3600));
    match c.call(&[b"VECWAL.SNAPSHOT".to_vec()]).await? {
        Value::Error(e) => anyhow::bail!("{}", String::from_utf8_lossy(&e)),
        v => println!("{}", v.text()),
    }
    Ok(ExitCode::SUCCESS)
}
