//! The scheduler's log records (`Record`), the closed vocabularies they store
//! (`kinds.rs`), and the one fold that applies them (`fold.rs`), used both live and on
//! replay, so the state after a crash is by construction the state before it.
//!
//! Each record that changes an intent's state carries the state it moves to, decided by the
//! pure machine (`machine/`) before the record was written. Replay never re-runs the
//! policy (whose jitter is random): it re-applies decisions.
//!
//! ## Format
//! A record is the log entry kind [`RECORD_KIND`] with a body encoded by
//! `intent_log::codec` (its own format byte, then bincode 2). The kind is the schema
//! version of the scheduler's records: schema 1 is this enum, variant order and field
//! order fixed, the vocabularies in `kinds.rs` stored by name. A change that old code
//! could not read gets a new kind, and replay keeps decoding the old one (or a documented
//! migration rewrites it). `tests/fixtures/wal-v1/` is a log written before the
//! vocabularies were enums; `a_log_written_in_format_v1_still_replays` holds every build
//! to it.

use serde::{Deserialize, Serialize};

use crate::intent::{Intent, IntentId, IntentSpec, Reason, State};

mod fold;
mod kinds;

pub use fold::{apply, FoldError, Folded};
pub use kinds::{AttemptOutcome, CheckResult, OperatorAction};

/// The intent-log record kind of every scheduler record: schema 1 (see the module docs).
pub const RECORD_KIND: u8 = 1;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// Accepted: durable before `submit` returns (G1).
    Submitted(IntentSpec),
    /// Durable before the first byte of the attempt is sent (G2).
    AttemptStarted {
        id: IntentId,
        attempt: u32,
        at_ms: u64,
    },
    /// What an attempt came to, and the state that follows.
    AttemptFinished {
        id: IntentId,
        attempt: u32,
        at_ms: u64,
        outcome: AttemptOutcome,
        detail: Option<Reason>,
        resource_id: Option<String>,
        next: State,
    },
    /// What a status check came to, and the state that follows.
    StatusChecked {
        id: IntentId,
        at_ms: u64,
        result: CheckResult,
        detail: Option<Reason>,
        next: State,
    },
    /// Funding attached by the agent.
    PaymentAttached {
        id: IntentId,
        at_ms: u64,
        payment_json: String,
        next: State,
    },
    /// An operator's action on a dead letter.
    Operator {
        id: IntentId,
        at_ms: u64,
        action: OperatorAction,
        next: State,
    },
    /// Found in flight when the log was replayed after a crash: now ambiguous (G3).
    Recovered {
        id: IntentId,
        at_ms: u64,
        next: State,
    },
    /// A 429 paused the whole connector until `until_ms` (survives a restart).
    ConnectorPaused { connector: String, until_ms: u64 },
    /// Compaction: the whole intent as of the snapshot; replaces what replay knew of it.
    Snapshot(Box<Intent>),
}

impl Record {
    pub fn intent_id(&self) -> Option<IntentId> {
        match self {
            Record::Submitted(spec) => Some(spec.id),
            Record::AttemptStarted { id, .. }
            | Record::AttemptFinished { id, .. }
            | Record::StatusChecked { id, .. }
            | Record::PaymentAttached { id, .. }
            | Record::Operator { id, .. }
            | Record::Recovered { id, .. } => Some(*id),
            Record::ConnectorPaused { .. } => None,
            Record::Snapshot(intent) => Some(intent.spec.id),
        }
    }

    /// The state the record moves its intent to, if it carries one.
    pub(crate) fn next_state_mut(&mut self) -> Option<&mut State> {
        match self {
            Record::AttemptFinished { next, .. }
            | Record::StatusChecked { next, .. }
            | Record::PaymentAttached { next, .. }
            | Record::Operator { next, .. }
            | Record::Recovered { next, .. } => Some(next),
            Record::Submitted(_)
            | Record::AttemptStarted { .. }
            | Record::ConnectorPaused { .. }
            | Record::Snapshot(_) => None,
        }
    }

    pub fn encode(&self) -> intent_log::Result<Vec<u8>> {
        intent_log::codec::encode(self)
    }

    pub fn decode(body: &[u8]) -> intent_log::Result<Record> {
        intent_log::codec::decode(body)
    }
}
