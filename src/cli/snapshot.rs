//! `vecwal snapshot redis`: ask a running proxy or tap for an aligned base snapshot now.

use std::process::ExitCode;

use crate::protocol::redis_client::RedisTarget;
use crate::protocol::resp_value::Value;

/// Take a base snapshot now.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    target: Kind,
}

#[derive(Debug, clap::Subcommand)]
enum Kind {
    Redis(RedisArgs),
    Qdrant(QdrantArgs),
}

/// Ask a running `vecwal proxy qdrant` for an aligned snapshot of a collection now.
///
/// The proxy holds writes to that collection while Qdrant makes the snapshot, then stores
/// it tagged with the exact LSN it contains. The same as `POST /vecwal/snapshot?collection=C`
/// to the proxy's REST port.
///
/// Example:
///   vecwal snapshot qdrant --proxy http://127.0.0.1:6343 --collection docs
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
struct QdrantArgs {
    /// The proxy's REST address.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:6343")]
    proxy: String,
    #[arg(long, value_name = "NAME")]
    collection: String,
    /// Read the api-key Qdrant wants from this environment variable.
    #[arg(long, value_name = "VAR")]
    api_key_env: Option<String>,
}

async fn run_qdrant(a: QdrantArgs) -> anyhow::Result<ExitCode> {
    use http_body_util::BodyExt;
    let base: http::Uri = a
        .proxy
        .parse()
        .map_err(|e| anyhow::anyhow!("--proxy: {e}"))?;
    let uri = crate::protocol::http::join(
        &base,
        &format!(
            "/vecwal/snapshot?collection={}",
            crate::protocol::http::percent(&a.collection)
        ),
    )
    .map_err(|e| anyhow::anyhow!("--proxy: {e}"))?;
    let mut req = http::Request::post(uri).header(http::header::CONTENT_LENGTH, 0);
    if let Some(v) = &a.api_key_env {
        req = req.header(
            "api-key",
            std::env::var(v).map_err(|_| anyhow::anyhow!("environment variable {v} is not set"))?,
        );
    }
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let resp = client
        .request(req.body(http_body_util::Empty::new())?)
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the proxy at {}: {e}", a.proxy))?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if !status.is_success() {
        anyhow::bail!(
            "{}",
            v["status"]["error"].as_str().map_or_else(
                || String::from_utf8_lossy(&body).into_owned(),
                str::to_string
            )
        );
    }
    println!(
        "snapshot of {} at LSN {} ({} bytes)",
        a.collection, v["result"]["lsn"], v["result"]["size"]
    );
    Ok(ExitCode::SUCCESS)
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
    let a = match a.target {
        Kind::Redis(a) => a,
        Kind::Qdrant(q) => return run_qdrant(q).await,
    };
    let t = RedisTarget::parse(&a.proxy).map_err(|e| anyhow::anyhow!("--proxy: {e}"))?;
    let mut c = t.connect().await?;
    c.set_timeout(std::time::Duration::from_secs(3600));
    match c.call(&[b"VECWAL.SNAPSHOT".to_vec()]).await? {
        Value::Error(e) => anyhow::bail!("{}", String::from_utf8_lossy(&e)),
        v => println!("{}", v.text()),
    }
    Ok(ExitCode::SUCCESS)
}
