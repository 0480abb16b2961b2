//! The scheduler's log records and the one fold that applies them, used both live and on
//! replay, so the state after a crash is by construction the state before it.
//!
//! Each record that changes an intent's state carries the state it moves to, decided by the
//! pure machine (`machine.rs`) before the record was written. Replay never re-runs the
//! policy (whose jitter is random): it re-applies decisions.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::intent::{Attempt, Intent, IntentId, IntentSpec, Reason, State};

/// The intent-log record kind of every scheduler record (the body says which one).
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
        outcome: String,
        detail: Option<Reason>,
        resource_id: Option<String>,
        next: State,
    },
    /// What a status check came to, and the state that follows.
    StatusChecked {
        id: IntentId,
        at_ms: u64,
        result: String,
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
    /// An operator's action on a dead letter (`retry` or `resolve`).
    Operator {
        id: IntentId,
        at_ms: u64,
        action: String,
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

/// What the fold knows: every intent it has seen, and connector pauses.
#[derive(Default)]
pub struct Folded {
    pub intents: HashMap<IntentId, Intent>,
    pub paused_until_ms: HashMap<String, u64>,
}

/// A record that does not fit what the fold knows (a transition for an unknown intent).
/// The log verified it, so this is a bug or a log from elsewhere: it is reported, never
/// silently dropped.
#[derive(Debug)]
pub struct FoldError(pub String);

/// Applies one record at `lsn`. Returns the id of the intent it changed, if any.
pub fn apply(folded: &mut Folded, lsn: u64, record: Record) -> Result<Option<IntentId>, FoldError> {
    let missing = |id: IntentId| FoldError(format!("LSN {lsn}: record for unknown intent {id}"));
    match record {
        Record::Submitted(spec) => {
            let id = spec.id;
            folded
                .intents
                .entry(id)
                .or_insert_with(|| Intent::new(spec, lsn));
            Ok(Some(id))
        }
        Record::AttemptStarted { id, attempt, at_ms } => {
            let intent = folded.intents.get_mut(&id).ok_or_else(|| missing(id))?;
            intent.attempts.push(Attempt {
                number: attempt,
                started_at_ms: at_ms,
                finished_at_ms: None,
                outcome: None,
                detail: None,
            });
            intent.state = State::Sent { attempt };
            touch(intent, lsn, at_ms);
            Ok(Some(id))
        }
        Record::AttemptFinished {
            id,
            attempt,
            at_ms,
            outcome,
            detail,
            resource_id,
            next,
        } => {
            let intent = folded.intents.get_mut(&id).ok_or_else(|| missing(id))?;
            if let Some(entry) = intent
                .attempts
                .iter_mut()
                .rev()
                .find(|entry| entry.number == attempt)
            {
                entry.finished_at_ms = Some(at_ms);
                entry.outcome = Some(outcome);
                entry.detail = detail.clone();
            }
            if detail.is_some() {
                intent.last_error = detail;
            }
            if resource_id.is_some() {
                intent.resource_id = resource_id;
            }
            intent.state = next;
            touch(intent, lsn, at_ms);
            Ok(Some(id))
        }
        Record::StatusChecked {
            id,
            at_ms,
            result: _,
            detail,
            next,
        } => {
            let intent = folded.intents.get_mut(&id).ok_or_else(|| missing(id))?;
            intent.status_checks += 1;
            if detail.is_some() {
                intent.last_error = detail;
            }
            intent.state = next;
            touch(intent, lsn, at_ms);
            Ok(Some(id))
        }
        Record::PaymentAttached {
            id,
            at_ms,
            payment_json,
            next,
        } => {
            let intent = folded.intents.get_mut(&id).ok_or_else(|| missing(id))?;
            intent.payment_json = Some(payment_json);
            intent.state = next;
            touch(intent, lsn, at_ms);
            Ok(Some(id))
        }
        Record::Operator {
            id,
            at_ms,
            action,
            next,
        } => {
            let intent = folded.intents.get_mut(&id).ok_or_else(|| missing(id))?;
            if action == "retry" {
                // A fresh budget: attempts and the retry deadline both count from the
                // operator's retry (operators act long after the deadline of the first).
                intent.attempt_budget_start = intent.attempts.len() as u32;
                intent.budget_started_at_ms = at_ms;
                intent.status_checks = 0;
            }
            intent.state = next;
            touch(intent, lsn, at_ms);
            Ok(Some(id))
        }
        Record::Recovered { id, at_ms, next } => {
            let intent = folded.intents.get_mut(&id).ok_or_else(|| missing(id))?;
            if let State::Ambiguous { checks: 0, .. } = next {
                intent.status_checks = 0;
            }
            intent.state = next;
            touch(intent, lsn, at_ms);
            Ok(Some(id))
        }
        Record::ConnectorPaused {
            connector,
            until_ms,
        } => {
            let entry = folded.paused_until_ms.entry(connector).or_insert(0);
            *entry = (*entry).max(until_ms);
            Ok(None)
        }
        Record::Snapshot(intent) => {
            let id = intent.spec.id;
            let mut intent = *intent;
            intent.last_lsn = lsn;
            folded.intents.insert(id, intent);
            Ok(Some(id))
        }
    }
}

fn touch(intent: &mut Intent, lsn: u64, at_ms: u64) {
    intent.last_lsn = lsn;
    intent.updated_at_ms = intent.updated_at_ms.max(at_ms);
}
