//! The state machine as pure code. [`step`] takes an intent, what happened to it (an
//! [`Event`]) and the [`Context`] (policies, the time, a jitter draw), and returns a
//! [`Transition`]: the records to log, and the [`Action`]s to perform once they are
//! durable (send, check, set a timer, pause a connector, wake waiters). The engine's
//! driver only interprets transitions (`engine/worker.rs`); it decides nothing.
//!
//! No I/O, no clock, no randomness of its own, so property tests drive it millions of
//! times (`tests/machine_props.rs`, `tests/machine_actions.rs`), replay never re-decides
//! (records carry the decided state), and docs/state-machine.md is checked against it row
//! by row (`tests/state_machine_doc.rs`).
//!
//! - `step.rs`: events, actions, and which records and actions each event leads to.
//! - `decide.rs`: the decisions themselves (the next state after an outcome, a status
//!   check, a restart, an agent's or operator's action).

use crate::policy::{RetryPolicy, StatusCheckPolicy};

mod decide;
mod step;

pub use decide::{
    after_outcome, after_status_check, attach_payment, before_dispatch,
    key_lifetime_margin_default, operator_resolve, operator_retry, recovered, Decision,
    NotApplicable, KEY_LIFETIME_MARGIN_MS_MIN,
};
pub use step::{settled, step, submitted, Action, Event, Transition};

/// The inputs a decision may depend on besides the intent.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    pub retry: &'a RetryPolicy,
    pub checks: &'a StatusCheckPolicy,
    /// How long the provider remembers an idempotency key.
    pub key_lifetime_ms: u64,
    /// No re-send starts later than this before the key lifetime ends.
    pub key_lifetime_margin_ms: u64,
    pub now_ms: u64,
    /// A uniform random number in [0, 1) for jitter.
    pub unit: f64,
}
