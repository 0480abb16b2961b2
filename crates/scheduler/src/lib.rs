//! `scheduler`: the durable engine of `intents`. Every intent is logged before it is
//! acknowledged (G1), every attempt before it is sent (G2); ambiguous outcomes are
//! reconciled by status checks before anything is re-sent (G3); keys map to one intent
//! (G4); everything ends terminal or visibly waiting (G5).
//!
//! Where things are:
//! - `machine/`: the pure state machine. `step(intent, event, context)` returns the
//!   records to log and the actions to perform (`step.rs`); `decide.rs` holds the
//!   decisions (next state after an outcome, a status check, a restart, an operator).
//! - `record/`: the log records (`mod.rs`, with the format), their closed vocabularies
//!   (`kinds.rs`) and the fold that applies them live and on replay (`fold.rs`).
//! - `engine/`: the library API and the driver that interprets the machine: `open.rs`
//!   (replay, crash recovery), `submit.rs`, `queries.rs`, `operator.rs` (payments, the
//!   dead-letter queue), `driver.rs`, `worker.rs`, `state.rs`, `compaction.rs`,
//!   `config.rs`.
//! - `index/`: the sled index behind `StateStore`; `history.rs` its retention.
//! - `intent.rs` (the data), `policy.rs` (retry and status-check policies), `guards.rs`
//!   (spending guards), `clock.rs`, `error.rs`.
//!
//! The scheduler never reads provider JSON: connectors classify answers and name an
//! intent's amount and the provider's resource id.

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
