//! The simulator's error type: what can go wrong starting a server or loading a fault plan.

use std::path::PathBuf;

/// Everything the simulator library can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Binding or inspecting the listening socket failed.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address that was asked for.
        address: std::net::SocketAddr,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// Reading a fault plan file failed.
    #[error("cannot read fault plan {path}: {source}")]
    ReadFaultPlan {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The fault plan text is not valid TOML or JSON of the expected shape.
    #[error("cannot parse fault plan: {0}")]
    ParseFaultPlan(String),
    /// The fault plan parsed but breaks a rule (probability outside 0..=1, a limit exceeded, ...).
    #[error("invalid fault plan: {0}")]
    InvalidFaultPlan(String),
    /// An option passed to a server is out of range.
    #[error("invalid option: {0}")]
    InvalidOption(String),
}

/// The simulator's result type.
pub type Result<T> = std::result::Result<T, Error>;
