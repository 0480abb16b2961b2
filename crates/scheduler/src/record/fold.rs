//! The fold: applies one record to what is known of the intents. The same code runs live
//! (after the record is durable) and on replay, so the two cannot disagree.

use std::collections::HashMap;

use crate::intent::{Attempt, Intent, IntentId, Reason, State};

use super::{AttemptOutcome, OperatorAction, Record};

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
    let id = match record {
        Record::Submitted(spec) => {
            let id = spec.id;
            folded
                .intents
                .entry(id)
                .or_insert_with(|| Intent::new(spec, lsn));
            return Ok(Some(id));
        }
        Record::ConnectorPaused {
            connector,
            until_ms,
        } => {
            let entry = folded.paused_until_ms.entry(connector).or_insert(0);
            *entry = (*entry).max(until_ms);
            return Ok(None);
        }
        Record::Snapshot(intent) => {
            let id = intent.spec.id;
            let mut intent = *intent;
            intent.last_lsn = lsn;
            folded.intents.insert(id, intent);
            return Ok(Some(id));
        }
        Record::AttemptStarted { id, .. }
        | Record::AttemptFinished { id, .. }
        | Record::StatusChecked { id, .. }
        | Record::PaymentAttached { id, .. }
        | Record::Operator { id, .. }
        | Record::Recovered { id, .. } => id,
    };
    let intent = folded
        .intents
        .get_mut(&id)
        .ok_or_else(|| FoldError(format!("LSN {lsn}: record for unknown intent {id}")))?;
    let at_ms = transition(intent, record);
    intent.last_lsn = lsn;
    intent.updated_at_ms = intent.updated_at_ms.max(at_ms);
    Ok(Some(id))
}

/// Applies a record that moves one known intent; returns the record's time.
fn transition(intent: &mut Intent, record: Record) -> u64 {
    match record {
        Record::AttemptStarted { attempt, at_ms, .. } => {
            start_attempt(intent, attempt, at_ms);
            at_ms
        }
        Record::AttemptFinished {
            attempt,
            at_ms,
            outcome,
            detail,
            resource_id,
            next,
            ..
        } => {
            finish_attempt(intent, attempt, at_ms, outcome, detail);
            if resource_id.is_some() {
                intent.resource_id = resource_id;
            }
            intent.state = next;
            at_ms
        }
        Record::StatusChecked {
            at_ms,
            detail,
            next,
            ..
        } => {
            // A `not_sent` decision counts too, as format v1 always counted it.
            intent.status_checks += 1;
            if detail.is_some() {
                intent.last_error = detail;
            }
            intent.state = next;
            at_ms
        }
        Record::PaymentAttached {
            at_ms,
            payment_json,
            next,
            ..
        } => {
            intent.payment_json = Some(payment_json);
            intent.state = next;
            at_ms
        }
        Record::Operator {
            at_ms,
            action,
            next,
            ..
        } => {
            if action == OperatorAction::Retry {
                fresh_budget(intent, at_ms);
            }
            intent.state = next;
            at_ms
        }
        Record::Recovered { at_ms, next, .. } => {
            if let State::Ambiguous { checks: 0, .. } = next {
                intent.status_checks = 0;
            }
            intent.state = next;
            at_ms
        }
        // Handled by `apply` before it looks the intent up.
        Record::Submitted(_) | Record::ConnectorPaused { .. } | Record::Snapshot(_) => {
            intent.updated_at_ms
        }
    }
}

/// Opens attempt `attempt`: the intent is on the wire (`Sent`) from this record on.
fn start_attempt(intent: &mut Intent, attempt: u32, at_ms: u64) {
    intent.attempts.push(Attempt {
        number: attempt,
        started_at_ms: at_ms,
        finished_at_ms: None,
        outcome: None,
        detail: None,
    });
    intent.state = State::Sent { attempt };
}

/// Closes attempt `attempt` with its outcome; its error, if any, becomes the intent's last.
fn finish_attempt(
    intent: &mut Intent,
    attempt: u32,
    at_ms: u64,
    outcome: AttemptOutcome,
    detail: Option<Reason>,
) {
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
}

/// An operator's retry starts a fresh budget: attempts and the retry deadline both count
/// from it (operators act long after the deadline of the first); the key lifetime still
/// counts from the first attempt.
fn fresh_budget(intent: &mut Intent, at_ms: u64) {
    intent.attempt_budget_start = intent.attempts.len() as u32;
    intent.budget_started_at_ms = at_ms;
    intent.status_checks = 0;
}
