//! Store options shared by every command that talks to a store.

use std::sync::Arc;

use anyhow::{bail, Context};

use crate::store::{self, S3Options, Sse, Store, StoreOptions};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SseArg {
    /// SSE-S3: objects encrypted by the service with its own keys (AES256).
    Aes256,
    /// SSE-KMS: objects encrypted with a KMS key (--s3-sse-kms-key-id, or the bucket's default).
    Kms,
}

#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// Where segments and snapshots are: s3://bucket/prefix, file:///path, or a path.
    /// Repeat for several destinations.
    #[arg(long = "store", value_name = "URL", required = true)]
    pub stores: Vec<String>,
    /// Endpoint of an S3-compatible service (e.g. http://127.0.0.1:8333). The standard
    /// AWS_ENDPOINT_URL variable works too. Credentials and region come from the standard
    /// AWS environment and config files.
    #[arg(long, value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// Region to use when the AWS configuration names none [default: us-east-1].
    #[arg(long, value_name = "REGION")]
    pub s3_region: Option<String>,
    /// Server-side encryption for objects written to S3.
    #[arg(long, value_enum, value_name = "MODE")]
    pub s3_sse: Option<SseArg>,
    /// KMS key for --s3-sse kms.
    #[arg(long, value_name = "KEY_ID", requires = "s3_sse")]
    pub s3_sse_kms_key_id: Option<String>,
}

impl StoreArgs {
    fn options(&self) -> anyhow::Result<StoreOptions> {
        let sse = match (self.s3_sse, &self.s3_sse_kms_key_id) {
            (None, _) => None,
            (Some(SseArg::Aes256), Some(_)) => bail!("--s3-sse-kms-key-id goes with --s3-sse kms"),
            (Some(SseArg::Aes256), None) => Some(Sse::S3),
            (Some(SseArg::Kms), key) => Some(Sse::Kms {
                key_id: key.clone(),
            }),
        };
        Ok(StoreOptions {
            s3: S3Options {
                endpoint: self.s3_endpoint.clone(),
                region: self.s3_region.clone(),
                sse,
                static_credentials: None,
            },
        })
    }

    pub async fn open_all(&self) -> anyhow::Result<Vec<Arc<dyn Store>>> {
        if self.stores.len() > 64 {
            bail!("at most 64 stores");
        }
        let opts = self.options()?;
        let mut out = Vec::new();
        for url in &self.stores {
            out.push(
                store::open(url, &opts)
                    .await
                    .with_context(|| format!("cannot open store {url}"))?,
            );
        }
        Ok(out)
    }
}

/// The stream to work on: the one named, or the only one in the store.
pub async fn resolve_stream(store: &dyn Store, named: Option<&str>) -> anyhow::Result<String> {
    if let Some(s) = named {
        return Ok(s.to_string());
    }
    let streams = store.top_level().await?;
    match streams.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("{} holds no stream yet", store.url()),
        many => bail!(
            "{} holds several streams ({}); choose one with --stream",
            store.url(),
            many.join(", ")
        ),
    }
}

/// Client-side encryption keys, for commands that write or read log data in a store.
#[derive(Debug, Clone, clap::Args)]
pub struct CryptArgs {
    /// Encrypt objects in the store with this key (a file of 64 hex digits, base64 of 32
    /// bytes, or 32 raw bytes). Repeat after a rotation: the first key encrypts new
    /// objects, every key given can decrypt.
    #[arg(long = "encryption-key-file", value_name = "PATH")]
    pub key_files: Vec<std::path::PathBuf>,
    /// Read an encryption key (hex or base64) from this environment variable; it comes
    /// before any --encryption-key-file.
    #[arg(long = "encryption-key-env", value_name = "VAR")]
    pub key_env: Option<String>,
}

impl CryptArgs {
    pub fn keyring(&self) -> anyhow::Result<Option<crate::store::Keyring>> {
        let mut keys = Vec::new();
        if let Some(var) = &self.key_env {
            keys.push(crate::store::Keyring::key_from_env(var).map_err(anyhow::Error::msg)?);
        }
        for f in &self.key_files {
            keys.push(crate::store::Keyring::key_from_file(f).map_err(anyhow::Error::msg)?);
        }
        Ok(crate::store::Keyring::new(keys))
    }
}

/// Which stream of a store to work on.
#[derive(Debug, Clone, clap::Args)]
pub struct StreamArg {
    /// The stream [default: the only stream in the store].
    #[arg(long)]
    pub stream: Option<String>,
}
