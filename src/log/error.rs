//! Errors of the local log. Each variant says whether retrying can help
//! ([`LogError::is_recoverable`]).

use std::path::PathBuf;
use std::sync::Arc;

use vecwal_format::FormatError;

#[derive(Debug, Clone, thiserror::Error)]
pub enum LogError {
    /// Another process holds the data directory. Recoverable: once it exits.
    #[error("data directory {dir} is in use by another vecwal process (lock file {dir}/LOCK)")]
    Locked { dir: PathBuf },

    /// An operating-system call failed. A failed write or fsync poisons the log (the page
    /// cache can no longer be trusted); restarting runs recovery.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: Arc<std::io::Error>,
    },

    /// Bytes on disk are damaged outside the one place a torn write can be (the tail of
    /// the newest open segment). Not recoverable by retrying: the file needs attention.
    #[error("corruption in {file} at offset {offset}: {cause}")]
    Corruption {
        file: PathBuf,
        offset: u64,
        cause: FormatError,
    },

    /// Local segments do not follow each other: records between them are missing.
    #[error("LSN gap in {dir}: {before} ends at LSN {before_last}, the next file {after} starts at LSN {after_first}")]
    Gap {
        dir: PathBuf,
        before: String,
        before_last: u64,
        after: String,
        after_first: u64,
    },

    /// The data directory belongs to another stream than the one asked for.
    #[error("data directory {dir} holds stream {found:?}, not {wanted:?}")]
    StreamMismatch {
        dir: PathBuf,
        found: String,
        wanted: String,
    },

    /// The directory's layout or metadata is not what vecwal writes.
    #[error("{path}: {detail}")]
    Layout { path: PathBuf, detail: String },

    /// A record breaks a format limit; nothing was appended.
    #[error("record rejected: {0}")]
    InvalidRecord(FormatError),

    /// The log stopped accepting writes after an earlier failure (the cause is included).
    #[error("the log accepts no more writes after an earlier failure: {0}")]
    Failed(Arc<LogError>),

    /// The local spool of unshipped segments is full: the object store has not taken
    /// segments for a while. New writes are refused until shipping catches up. Recoverable.
    #[error("local spool is full ({used} of {limit} bytes of segments not yet shipped): new writes are refused until the object store takes segments again (see `vecwal status`)")]
    SpoolFull { used: u64, limit: u64 },

    /// The capture in front of the log cannot log for now (its data directory is full,
    /// say); new writes are refused until it can. Recoverable.
    #[error("cannot log writes for now ({0}); writes are refused until it can")]
    CaptureDown(String),

    /// The log was closed.
    #[error("the log is closed")]
    Closed,
}

impl LogError {
    /// Whether the same operation may succeed later without anyone repairing files.
    pub fn is_recoverable(&self) -> bool {
        match self {
            LogError::Locked { .. } | LogError::SpoolFull { .. } | LogError::CaptureDown(_) => true,
            LogError::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::Interrupted
                    | std::io::ErrorKind::WouldBlock
                    | std::io::ErrorKind::TimedOut
            ),
            LogError::Failed(cause) => cause.is_recoverable(),
            LogError::Corruption { .. }
            | LogError::Gap { .. }
            | LogError::StreamMismatch { .. }
            | LogError::Layout { .. }
            | LogError::InvalidRecord(_)
            | LogError::Closed => false,
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LogError::Io {
            op,
            path: path.into(),
            source: Arc::new(source),
        }
    }

    pub(crate) fn corruption(file: impl Into<PathBuf>, cause: FormatError) -> Self {
        LogError::Corruption {
            file: file.into(),
            offset: cause.offset(),
            cause,
        }
    }
}

pub type Result<T, E = LogError> = std::result::Result<T, E>;
