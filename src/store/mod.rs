//! Where sealed segments and snapshots go: one trait, two backends (a local directory and
//! S3 or any S3-compatible service), one shared test suite (`tests/store_suite.rs`).
//!
//! Keys are `/`-separated, relative to the store's root (the directory, or the bucket and
//! prefix of the URL), and never contain `..` or empty components.

pub mod crypt;
mod fs;
mod s3;

use std::sync::Arc;

use async_trait::async_trait;

pub use crypt::Keyring;
pub use fs::FsStore;
pub use s3::{S3Options, S3Store, Sse};

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// No object at that key.
    #[error("{store}: no object {key}")]
    NotFound { store: String, key: String },
    /// A different object already exists where a new one was to be created. Objects are
    /// never overwritten: two histories must not mix. Not recoverable by retrying.
    #[error("{store}: a different object already exists at {key}: {detail}")]
    Conflict {
        store: String,
        key: String,
        detail: String,
    },
    /// The store could not be reached or answered with a server error. Retrying may help.
    #[error("{store}: {op} {key} failed (will retry): {detail}")]
    Unavailable {
        store: String,
        op: &'static str,
        key: String,
        detail: String,
    },
    /// The store refused (credentials, permissions, bad request). Retrying will not help.
    #[error("{store}: {op} {key} refused: {detail}")]
    Refused {
        store: String,
        op: &'static str,
        key: String,
        detail: String,
    },
    /// An uploaded object does not match what was sent.
    #[error("{store}: {key} failed verification after upload: {detail}")]
    Verification {
        store: String,
        key: String,
        detail: String,
    },
    /// A store URL or option is invalid.
    #[error("{0}")]
    Config(String),
}

impl StoreError {
    pub fn is_recoverable(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable { .. } | StoreError::Verification { .. }
        )
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What `put_new` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    Created,
    /// The same bytes were already there (an earlier upload that was not confirmed).
    AlreadyPresent,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Where this store is, for messages: never contains credentials.
    fn url(&self) -> &str;

    /// Creates `key` with `data` unless it exists. The same bytes already there count as
    /// success; different bytes are a [`StoreError::Conflict`]. On success the object is
    /// verified (size and checksum) and durable in the store.
    async fn put_new(&self, key: &str, data: Vec<u8>) -> Result<PutOutcome>;

    /// Writes `key`, replacing what is there. Only for small state objects (heartbeat,
    /// verification progress), never for segments or snapshots.
    async fn put(&self, key: &str, data: Vec<u8>) -> Result<()>;

    async fn get(&self, key: &str) -> Result<Vec<u8>>;

    /// Size of `key`, or `None` if absent.
    async fn head(&self, key: &str) -> Result<Option<u64>>;

    /// Every object whose key starts with `prefix`, sorted by key.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>>;

    /// Removes `key`; an absent key is not an error.
    async fn delete(&self, key: &str) -> Result<()>;

    /// Names of the immediate "directories" at the top of the store (the first key
    /// component of every key), sorted: the streams a store holds.
    async fn top_level(&self) -> Result<Vec<String>>;
}

/// Options that apply to S3 stores; ignored by local ones.
#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    pub s3: S3Options,
}

/// Opens a store from a URL: `s3://bucket/prefix`, `file:///path`, or a plain path.
pub async fn open(url: &str, opts: &StoreOptions) -> Result<Arc<dyn Store>> {
    if let Some(rest) = url.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(StoreError::Config(format!(
                "store URL {url:?} names no bucket (s3://bucket/prefix)"
            )));
        }
        return Ok(Arc::new(S3Store::new(bucket, prefix, &opts.s3).await?));
    }
    let path = url.strip_prefix("file://").unwrap_or(url);
    if path.is_empty() || url.contains("://") && !url.starts_with("file://") {
        return Err(StoreError::Config(format!(
            "store URL {url:?} is not understood: use s3://bucket/prefix, file:///path or a path"
        )));
    }
    Ok(Arc::new(FsStore::new(path)?))
}

/// Checks a key: relative, `/`-separated, no empty, `.` or `..` components.
pub fn check_key(key: &str) -> Result<()> {
    if key.is_empty()
        || key
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(StoreError::Config(format!("invalid object key {key:?}")));
    }
    Ok(())
}
