//! Decode errors. Every variant names where in the input the fault is, so a caller can
//! report "object X, offset Y" without re-deriving it.

/// Why bytes could not be decoded as vecwal format.
///
/// None of these is recoverable by retrying the same bytes: they describe the input.
/// A caller decides whether the fault is a torn tail (only legal at the end of an open
/// segment) or corruption.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// The first bytes are not the vecwal magic: not a segment at all.
    #[error("bad magic at offset {offset}: not a vecwal segment (found {found:02x?})")]
    BadMagic { offset: u64, found: Vec<u8> },

    /// A format version this reader does not understand. Readers must refuse, not guess.
    #[error("unsupported format version {found} at offset {offset} (this reader understands version {supported})")]
    UnsupportedVersion {
        offset: u64,
        found: u16,
        supported: u16,
    },

    /// Incompatible feature bits this reader does not know.
    #[error("unsupported feature flags {flags:#010x} at offset {offset}")]
    UnsupportedFeatures { offset: u64, flags: u32 },

    /// A stored checksum does not match the bytes it covers.
    #[error("checksum mismatch in {what} at offset {offset}: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum {
        what: String,
        offset: u64,
        stored: u32,
        computed: u32,
    },

    /// The input ends before a structure does.
    #[error("truncated {what} at offset {offset}: need {need} bytes, {have} available")]
    Truncated {
        what: String,
        offset: u64,
        need: u64,
        have: u64,
    },

    /// Structurally wrong: a length, count, kind or ordering rule is violated.
    #[error("malformed {what} at offset {offset}: {detail}")]
    Malformed {
        what: String,
        offset: u64,
        detail: String,
    },
}

impl FormatError {
    /// Offset in the decoded input at which the fault was found.
    pub fn offset(&self) -> u64 {
        match self {
            FormatError::BadMagic { offset, .. }
            | FormatError::UnsupportedVersion { offset, .. }
            | FormatError::UnsupportedFeatures { offset, .. }
            | FormatError::Checksum { offset, .. }
            | FormatError::Truncated { offset, .. }
            | FormatError::Malformed { offset, .. } => *offset,
        }
    }

    pub(crate) fn malformed(
        what: impl Into<String>,
        offset: u64,
        detail: impl Into<String>,
    ) -> Self {
        FormatError::Malformed {
            what: what.into(),
            offset,
            detail: detail.into(),
        }
    }
}

pub type Result<T, E = FormatError> = std::result::Result<T, E>;

/// Why a segment could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The sink failed; whether a retry can help depends on the sink.
    #[error("write failed: {0}")]
    Io(#[from] std::io::Error),
    /// The input breaks a format rule (limits, ordering); retrying cannot help.
    #[error(transparent)]
    Format(#[from] FormatError),
}
