//! `scheduler`: the durable engine of `intents`. Every intent is logged before it is
//! acknowledged (G1), every attempt before it is sent (G2); ambiguous outcomes are
//! reconciled by status checks before anything is re-sent (G3); keys map to one intent
//! (G4); everything ends terminal or visibly waiting (G5).
//!
//! `machine.rs` is the pure state machine, `record.rs` the log records and their fold,
//! `engine.rs` the driver and the library API, `policy.rs` retry and status-check
//! policies, `guards.rs` spending guards, `index.rs` the sled index behind `StateStore`,
//! `history.rs` the index's history retention.

mod clock;
mod engine;
mod error;
mod guards;
mod history;
mod index;
mod intent;
pub mod machine;
mod policy;
pub mod record;

pub use clock::Clock;
pub use engine::{
    CompactionReport, CompactionStatus, ConnectorSettings, Engine, EngineConfig, ListFilter,
    OpenReport, SubmitRequest, Submitted, HISTORY_RETENTION_MS_DEFAULT, PARAMS_BYTES_MAX,
};
pub use error::{Error, Result};
pub use guards::SpendingGuard;
pub use index::{SledStore, StateStore};
pub use intent::{
    truncated_json, Attempt, Intent, IntentId, IntentSpec, Reason, State, StateName,
    REASON_DETAILS_BYTES_MAX, REASON_MESSAGE_BYTES_MAX, TRUNCATED_JSON_BYTES_MAX,
};
pub use policy::{RetryPolicy, StatusCheckPolicy};

#[cfg(test)]
mod tests;
