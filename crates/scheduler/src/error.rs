//! The one error type of the engine: what `submit`, `wait` and the operator actions can
//! return, each a clear, typed reason (G8).

use crate::intent::{IntentId, StateName};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The same idempotency key was submitted with a different payload (G4). Nothing was
    /// recorded.
    #[error(
        "idempotency key {key:?} is already used by intent {existing} with a different payload"
    )]
    IdempotencyConflict { key: String, existing: IntentId },

    /// Bad input: unknown operation, bad params or amount, over-long key (G8). Nothing was
    /// recorded.
    #[error("invalid intent: {0}")]
    InvalidInput(String),

    #[error("unknown connector {0:?}")]
    UnknownConnector(String),

    /// A spending guard refused the intent before it was recorded.
    #[error("spending limit: {0}")]
    SpendingLimit(String),

    #[error("no intent {0}")]
    NotFound(String),

    /// The action does not apply to the intent's current state.
    #[error("intent {id} is {state}, {action} does not apply")]
    WrongState {
        id: IntentId,
        state: &'static str,
        action: &'static str,
    },

    /// The log failed; if it is poisoned (an fsync error), nothing more is accepted until
    /// the engine is reopened (G7).
    #[error("write-ahead log: {0}")]
    Log(#[from] intent_log::Error),

    /// The index (sled) failed. At open: an error that proves no damage (disk full, EIO, a
    /// permission) fails the open and leaves the index as it is; corruption moves it aside
    /// and rebuilds it from the log. Later: the log stays the record, and the index is
    /// re-folded from it on the next open.
    #[error("index: {0}")]
    Index(String),

    /// The log holds something the engine cannot fold: a bug or a foreign log.
    #[error("replay: {0}")]
    Replay(String),

    #[error("the engine is shut down")]
    ShutDown,

    #[error("invalid configuration: {0}")]
    Config(String),
}

impl Error {
    pub(crate) fn wrong_state(id: IntentId, state: StateName, action: &'static str) -> Error {
        Error::WrongState {
            id,
            state: state.as_str(),
            action,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
