//! `vecwal proxy redis`: capture writes by standing between the application and Redis.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use super::capture_args::{shutdown_signal, CaptureArgs};
use crate::capture::qdrant::service::{QdrantProxyOptions, RunningQdrantProxy};
use crate::capture::redis::service::{ProxyOptions, RunningProxy};
use crate::capture::redis::tap::Started;
use crate::protocol::redis_client::RedisTarget;

/// Run a capture proxy in front of a database.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    target: Target,
}

#[derive(Debug, clap::Subcommand)]
enum Target {
    Redis(RedisArgs),
    Qdrant(QdrantArgs),
}

/// An HTTP proxy in front of Qdrant's REST API that logs every mutation Qdrant applied.
///
/// Point the application's REST client at --listen-http instead of Qdrant. Every request
/// passes through (HTTP/1.1 and HTTP/2, streaming bodies, the api-key header untouched);
/// points, vectors, payload, batch, field-index, collection and alias changes that Qdrant
/// answered with success are logged (method, path, body; never headers) before the answer
/// reaches the client. Writes to one collection are logged in the order Qdrant applied them.
///
/// At start the proxy snapshots every collection Qdrant has (an aligned base for each; it
/// serves clients meanwhile), then every --snapshot-interval, and on demand (`vecwal
/// snapshot qdrant`). While Qdrant makes a collection's snapshot, unconditional upserts and
/// deletes by id go on; other writes to that collection wait for it.
///
/// gRPC clients connect to --listen-grpc; their calls go to --upstream-grpc the same way
/// (HTTP/2 with trailers), and mutations are logged as the protobuf message they sent.
///
/// Example:
///   vecwal proxy qdrant --listen-http 127.0.0.1:6343 --upstream-http http://127.0.0.1:6333 \
///       --listen-grpc 127.0.0.1:6344 --upstream-grpc http://127.0.0.1:6334 \
///       --data-dir /var/lib/vecwal-qdrant --store s3://backups/vecwal
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
struct QdrantArgs {
    /// Where REST clients connect.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:6343")]
    listen_http: String,
    /// Qdrant's REST API.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:6333")]
    upstream_http: String,
    /// Where gRPC clients connect ("none": no gRPC port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:6344")]
    listen_grpc: String,
    /// Qdrant's gRPC API.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:6334")]
    upstream_grpc: String,
    /// Read the api-key of the proxy's own requests (snapshots) from this environment
    /// variable. Clients send their own.
    #[arg(long, value_name = "VAR")]
    upstream_api_key_env: Option<String>,
    /// How often to snapshot every collection (0: only at start and on demand).
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = crate::time::parse_duration)]
    snapshot_interval: Duration,
    #[command(flatten)]
    capture: CaptureArgs,
}

/// A RESP proxy in front of Redis: no reply to a write reaches a client before the write
/// is in the log.
///
/// Point the application at --listen instead of Redis. Every byte passes through as it is:
/// reads, pub/sub, blocking commands, scripts, transactions, pipelines, RESP3. The log is
/// Redis's own replication stream, taken by a replica link inside the proxy: every effect
/// Redis applied, in its order, in the deterministic form Redis replicates (scripts as
/// their effects, relative TTLs as absolute times on Redis's clock, expiries and evictions
/// as deletes). A reply that answers a command that may have written is held until the
/// log covers Redis's replication stream past it. A VADD that updates an element, which
/// Redis 8.2 does not replicate, is sent as a script that does (see docs/redis.md).
///
/// At start the replica link's full sync becomes a base snapshot (with Redis's default
/// diskless sync that takes repl-diskless-sync-delay, 5 s); then one every
/// --snapshot-interval, and on demand (`vecwal snapshot redis`, or the command
/// VECWAL.SNAPSHOT sent to the proxy). Restarted on the same --data-dir, the proxy
/// continues the log with a partial resync.
///
/// Clients without session state share --shared-connections upstream connections, as
/// with twemproxy: cheaper for Redis and the proxy. A client's first command that needs a
/// connection of its own (AUTH, HELLO, SELECT, MULTI, WATCH, blocking pops, SUBSCRIBE,
/// CLIENT, admin commands) moves it, once its earlier replies are in, to a dedicated one.
///
/// Clients log in through the proxy as they would to Redis (AUTH/HELLO pass through). The
/// proxy's own connections use the credentials of --upstream, or the password in
/// --upstream-password-env; that user needs only
///   ACL SETUSER vecwal on >PASSWORD -@all +psync +replconf +ping +info +command
///
/// Examples:
///   vecwal proxy redis --upstream redis://127.0.0.1:6379 --data-dir /var/lib/vecwal \
///       --store s3://backups/vecwal
///   REDIS_PW=... vecwal proxy redis --listen 0.0.0.0:6380 --upstream redis://10.0.0.5 \
///       --upstream-password-env REDIS_PW --data-dir ./vw --store ./backups --fsync everysec
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
struct RedisArgs {
    /// Where clients connect.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:6380")]
    listen: String,
    /// The Redis to forward to: redis://[user:password@]host:port.
    #[arg(long, value_name = "URL")]
    upstream: String,
    /// Read the upstream password from this environment variable (keeps it out of `ps`).
    #[arg(long, value_name = "VAR")]
    upstream_password_env: Option<String>,
    /// How often to take an aligned base snapshot (0: only at start and on demand).
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = crate::time::parse_duration)]
    snapshot_interval: Duration,
    /// Upstream connections shared by clients without session state (0: every client
    /// gets its own, as Redis would see it without the proxy).
    #[arg(long, value_name = "N", default_value_t = 1)]
    shared_connections: usize,
    /// Threads serving client and upstream connections. One, as in Redis's own event loop
    /// and twemproxy's: with two, hand-offs between them cost 17% more CPU per request at
    /// pipeline 1 on a busy machine (docs/benchmarks.md). The log's writer, segment
    /// sealing and snapshot hashing run on threads of their own either way.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: u16,
    #[command(flatten)]
    capture: CaptureArgs,
}

impl Args {
    /// Worker threads of the runtime the command runs on.
    pub fn threads(&self) -> usize {
        match &self.target {
            Target::Redis(a) => a.threads.into(),
            // Parsing JSON and protobuf bodies is per-request work worth a second core.
            Target::Qdrant(_) => 2,
        }
    }
}

pub async fn run(a: Args) -> anyhow::Result<ExitCode> {
    let a = match a.target {
        Target::Redis(a) => a,
        Target::Qdrant(q) => return run_qdrant(q).await,
    };
    let mut upstream =
        RedisTarget::parse(&a.upstream).map_err(|e| anyhow::anyhow!("--upstream: {e}"))?;
    if let Some(var) = &a.upstream_password_env {
        upstream.password = Some(
            std::env::var(var).with_context(|| format!("environment variable {var} is not set"))?,
        );
    }
    let opened = a.capture.open("redis").await?;
    let proxy = RunningProxy::start(
        opened.log.clone(),
        ProxyOptions {
            listen: a.listen.clone(),
            upstream,
            data_dir: a.capture.data_dir.clone(),
            stores: opened.stores,
            keyring: opened.keyring,
            ship: opened.ship,
            snapshot_interval: a.snapshot_interval,
            shared_connections: a.shared_connections,
        },
    )
    .await?;
    let how = match &proxy.started {
        Started::FullSync { lsn, bytes, why } if why.is_empty() || *lsn == 0 => {
            format!("base snapshot at LSN {lsn}, {bytes} bytes")
        }
        Started::FullSync { lsn, bytes, why } => {
            format!("full resync ({why}): base snapshot at LSN {lsn}, {bytes} bytes")
        }
        Started::Resumed { offset, .. } => {
            format!("continuing the log: partial resync from offset {offset}")
        }
    };
    // One line on stdout when ready: scripts and supervisors wait for it.
    println!("vecwal proxy: listening on {} ({how})", proxy.addr);
    shutdown_signal().await;
    eprintln!("vecwal proxy: shutting down; sealing and shipping the open segment");
    proxy.shutdown(Duration::from_secs(30)).await;
    Ok(ExitCode::SUCCESS)
}

async fn run_qdrant(a: QdrantArgs) -> anyhow::Result<ExitCode> {
    let upstream = http_uri("--upstream-http", &a.upstream_http)?;
    let grpc = match a.listen_grpc.as_str() {
        "none" => None,
        l => Some((
            l.to_string(),
            http_uri("--upstream-grpc", &a.upstream_grpc)?,
        )),
    };
    let opened = a.capture.open("qdrant").await?;
    let proxy = RunningQdrantProxy::start(
        opened.log.clone(),
        QdrantProxyOptions {
            listen_http: a.listen_http.clone(),
            upstream_http: upstream,
            grpc,
            stores: opened.stores,
            keyring: opened.keyring,
            ship: opened.ship,
            api_key: match &a.upstream_api_key_env {
                Some(v) => Some(
                    std::env::var(v)
                        .with_context(|| format!("environment variable {v} is not set"))?,
                ),
                None => None,
            },
            snapshot_interval: a.snapshot_interval,
        },
    )
    .await?;
    let grpc = proxy
        .grpc_addr
        .map(|a| format!(", {a} (gRPC)"))
        .unwrap_or_default();
    println!(
        "vecwal proxy: listening on {} (REST){grpc}; base snapshots of {} collection(s) under way",
        proxy.http_addr, proxy.start_snapshots
    );
    shutdown_signal().await;
    eprintln!("vecwal proxy: shutting down; sealing and shipping the open segment");
    proxy.shutdown(Duration::from_secs(30)).await;
    Ok(ExitCode::SUCCESS)
}

/// An `http://host:port` flag value, or an error naming the flag.
pub fn http_uri(flag: &str, s: &str) -> anyhow::Result<http::Uri> {
    let u: http::Uri = s.parse().map_err(|e| anyhow::anyhow!("{flag}: {e}"))?;
    if u.scheme_str() != Some("http") || u.authority().is_none() {
        anyhow::bail!("{flag}: expected http://host:port, got {s}");
    }
    Ok(u)
}
