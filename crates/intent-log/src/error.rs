//! The one error type of the intent log, with corruption kept apart from I/O failure.

use std::path::PathBuf;

/// Everything that can go wrong in the log.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system call failed. `op` names what the log was doing.
    #[error("I/O error while {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The bytes on disk are not what the log wrote: a checksum, a header, an LSN or a
    /// segment sequence does not verify. Never a torn tail (that is cut and reported).
    #[error("corruption in {file} at offset {offset}: {reason}")]
    Corruption {
        file: PathBuf,
        offset: u64,
        reason: String,
    },

    /// An earlier write or fsync failed; the log refuses every append until it is reopened
    /// and recovered from disk (G7: fsync errors are never retried).
    #[error("the log is poisoned and refuses appends (reopen to recover): {cause}")]
    Poisoned { cause: String },

    /// Another process (or another `Log` in this process) holds the directory's lock file.
    #[error("the log directory {dir} is locked by another process")]
    Locked { dir: PathBuf },

    /// One record is larger than `record_bytes_max`.
    #[error("record of {bytes} bytes exceeds record_bytes_max = {limit}")]
    RecordTooLarge { bytes: usize, limit: usize },

    /// One append call carries more bytes than fit in one batch.
    #[error("append of {bytes} bytes exceeds batch_bytes_max = {limit}")]
    BatchTooLarge { bytes: usize, limit: usize },

    /// An append carried no record, or a record kind of 0 (reserved: an all-zero header
    /// must never decode as a record).
    #[error("invalid append: {0}")]
    InvalidAppend(&'static str),

    /// The options do not make sense together.
    #[error("invalid options: {0}")]
    InvalidOptions(String),

    /// `read_from` asked for an LSN that truncation has already deleted.
    #[error("LSN {requested} was truncated; the oldest kept is {first_available}")]
    Truncated {
        requested: u64,
        first_available: u64,
    },

    /// A record body did not decode as the type asked for.
    #[error("record body does not decode: {0}")]
    Decode(String),

    /// A checkpoint or truncation request that would break the checkpoint protocol
    /// (covering records that are not durable, or deleting records no checkpoint covers).
    #[error("invalid checkpoint: {0}")]
    InvalidCheckpoint(String),

    /// The log was closed.
    #[error("the log is closed")]
    Closed,
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corruption(
        file: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> Error {
        Error::Corruption {
            file: file.into(),
            offset,
            reason: reason.into(),
        }
    }

    /// True for errors that mean the bytes on disk are damaged.
    pub fn is_corruption(&self) -> bool {
        matches!(self, Error::Corruption { .. })
    }
}

/// The result type of this crate.
pub type Result<T> = std::result::Result<T, Error>;
