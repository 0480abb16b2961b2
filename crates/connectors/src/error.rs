//! The crate's one error type: everything that is rejected locally, before a request exists.
//!
//! Remote failures are not errors of this crate: they are classified into an
//! [`crate::Outcome`]. This enum covers what the engine must reject before the intent is
//! logged (unknown operation, bad parameters, bad key) and configuration mistakes.

/// Result with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// A local rejection. Never contains an API key.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The connector has no operation of that name.
    #[error("connector {connector} has no operation {operation:?}")]
    UnknownOperation {
        /// The connector's name.
        connector: String,
        /// The operation asked for (as given, cut to a readable length).
        operation: String,
    },
    /// A parameter is missing, of the wrong type, or out of range.
    #[error("operation {operation}: parameter {field:?} {reason}")]
    InvalidParams {
        /// The operation being validated.
        operation: String,
        /// The JSON field at fault.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A money amount that is not a positive decimal string within limits.
    #[error("invalid amount {value:?}: {reason}")]
    InvalidAmount {
        /// The text as given (cut to a readable length).
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An idempotency key that the providers would refuse.
    #[error("invalid idempotency key: {reason}")]
    InvalidIdempotencyKey {
        /// Why (empty, too long, characters not allowed in a header).
        reason: String,
    },
    /// A configuration value that cannot work (bad base URL, unreadable environment variable).
    #[error("invalid configuration: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
    /// The HTTP client could not be built (TLS backend initialisation and the like).
    #[error("cannot build the HTTP client: {reason}")]
    HttpClient {
        /// The client library's explanation.
        reason: String,
    },
}

/// Longest piece of caller- or server-supplied text copied into an error or a log line.
pub const ECHOED_TEXT_CHARS_MAX: usize = 80;

/// Cuts `text` to [`ECHOED_TEXT_CHARS_MAX`] characters so errors and logs stay readable.
pub(crate) fn echo(text: &str) -> String {
    if text.chars().count() <= ECHOED_TEXT_CHARS_MAX {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(ECHOED_TEXT_CHARS_MAX).collect();
    cut.push('…');
    cut
}
