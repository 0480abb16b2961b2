//! The decisions: given an intent, what happened and the time, the next state. `step.rs`
//! turns each into the records to log and the actions to perform.
//!
//! The scheduler acts on the connector's classification (`connectors::Outcome`) and never
//! on HTTP status codes (STYLE.md rule 5).

use connectors::{Outcome, RemoteStatus, RetryScope, StatusCheck};

use crate::intent::{Intent, Reason, State, StateName};
use crate::policy::millis;

use super::Context;

/// A decision: the next state, and whether the whole connector must pause (a 429).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub next: State,
    pub pause_connector_until_ms: Option<u64>,
}

impl Decision {
    fn to(next: State) -> Decision {
        Decision {
            next,
            pause_connector_until_ms: None,
        }
    }
}

fn dead(code: &str, message: String, last: Option<&Reason>) -> State {
    State::DeadLettered {
        reason: Reason {
            code: code.to_string(),
            message,
            details_json: last.and_then(|reason| reason.details_json.clone()),
            http_status: last.and_then(|reason| reason.http_status),
        },
    }
}

fn describe(reason: Option<&Reason>) -> String {
    match reason {
        Some(reason) => format!("last error {}: {}", reason.code, reason.message),
        None => "no error recorded".to_string(),
    }
}

/// The smallest default margin before the key lifetime ends.
pub const KEY_LIFETIME_MARGIN_MS_MIN: u64 = 5 * 60_000;

/// The default margin before the key lifetime ends: the larger of 5 minutes and a tenth
/// of the lifetime. A re-send that starts just inside the lifetime can reach the provider
/// a whole request timeout later (30 s by default; connect, TLS, a slow proxy), and our
/// clock and the provider's may disagree by seconds to minutes; a provider's "24 hours"
/// may also be approximate. Five minutes covers the default timeouts and ordinary skew
/// many times over; a tenth scales with providers whose lifetime is long enough that
/// their own bookkeeping is coarse. The cost is only that a re-send in the last tenth
/// becomes a dead letter for an operator instead.
pub fn key_lifetime_margin_default(key_lifetime_ms: u64) -> u64 {
    KEY_LIFETIME_MARGIN_MS_MIN.max(key_lifetime_ms / 10)
}

/// Before a pending intent is sent: `Some(state)` if it must not be sent (budget spent,
/// deadline passed, key too old to be safe), `None` to go ahead.
pub fn before_dispatch(intent: &Intent, context: Context<'_>) -> Option<State> {
    let last = intent.last_error.as_ref();
    if intent.attempts_in_budget() >= context.retry.attempts_max {
        return Some(dead(
            "retries_exhausted",
            format!(
                "{} attempts made; {}",
                intent.attempts_in_budget(),
                describe(last)
            ),
            last,
        ));
    }
    if let Some(first_sent) = intent.first_sent_at_ms() {
        // Past the provider's key lifetime a re-send could execute twice (G3, DESIGN §4),
        // so stop a margin before it (see `key_lifetime_margin_default`). The key's age is
        // measured in log time: the intent's records are never older than now, so a wall
        // clock stepped backwards (NTP, a restored VM, a new host) cannot make it look
        // younger than the log shows.
        let now_ms = context.now_ms.max(intent.updated_at_ms);
        let expires_ms = first_sent.saturating_add(context.key_lifetime_ms);
        if now_ms.saturating_add(context.key_lifetime_margin_ms) >= expires_ms {
            return Some(dead(
                "key_expired",
                format!(
                    "the idempotency key was first sent {} ms ago; the provider's key lifetime is {} ms and no re-send starts within {} ms of its end, or it could execute twice",
                    now_ms.saturating_sub(first_sent),
                    context.key_lifetime_ms,
                    context.key_lifetime_margin_ms
                ),
                last,
            ));
        }
    }
    if context.now_ms > intent.retry_deadline_ms(context.retry.deadline_ms) {
        return Some(dead(
            "deadline_exceeded",
            format!("the retry deadline passed; {}", describe(last)),
            last,
        ));
    }
    None
}

/// After the intent's latest attempt came back with `outcome` (the attempt is already in
/// `intent.attempts`, its outcome not yet recorded).
pub fn after_outcome(intent: &Intent, outcome: &Outcome, context: Context<'_>) -> Decision {
    let now = context.now_ms;
    match outcome {
        Outcome::Success { result } => Decision::to(State::Succeeded {
            result_json: result.to_string(),
        }),
        Outcome::Permanent { reason } => Decision::to(State::Failed {
            reason: Reason::from_detail(reason),
        }),
        Outcome::BudgetExceeded { details } => Decision::to(State::Failed {
            reason: Reason::from_detail(details),
        }),
        Outcome::PaymentRequired { details } => Decision::to(State::AwaitingPayment {
            reason: Reason::from_detail(details),
        }),
        Outcome::Retryable {
            reason,
            retry_after,
            scope,
        } => after_retryable(intent, reason, retry_after.map(millis), *scope, context),
        Outcome::Ambiguous { .. } => Decision::to(State::Ambiguous {
            checks: 0,
            due_ms: now.saturating_add(context.checks.delay_ms(0, context.unit)),
            resend_allowed: true,
        }),
        // The provider has the key already (409: the first request may still be running):
        // look the result up after the first check delay, not at once.
        Outcome::AlreadyDone { .. } => Decision::to(State::Ambiguous {
            checks: 0,
            due_ms: now.saturating_add(context.checks.delay_ms(0, context.unit)),
            resend_allowed: true,
        }),
        // Reconcile, then dead-letter for review; never replay automatically.
        Outcome::ExecutionFailed { .. } => Decision::to(State::Ambiguous {
            checks: 0,
            due_ms: now,
            resend_allowed: false,
        }),
    }
}

/// After a retryable outcome: pending again after `max(backoff, Retry-After)`, or a dead
/// letter when the budget is spent or the next attempt would start after the retry
/// deadline; a connector-wide 429 also pauses the connector.
fn after_retryable(
    intent: &Intent,
    detail: &connectors::ErrorDetail,
    retry_after_ms: Option<u64>,
    scope: RetryScope,
    context: Context<'_>,
) -> Decision {
    let now = context.now_ms;
    let reason = Reason::from_detail(detail);
    let attempts = intent.attempts_in_budget();
    let retry_after_ms = retry_after_ms.unwrap_or(0);
    let pause_connector_until_ms = match scope {
        RetryScope::Connector => {
            Some(now.saturating_add(retry_after_ms.max(context.retry.delay_base_ms)))
        }
        RetryScope::Intent => None,
    };
    let dead_letter = |code: &str, why: String| Decision {
        next: dead(
            code,
            format!("{why}; last error {}: {}", reason.code, reason.message),
            Some(&reason),
        ),
        pause_connector_until_ms,
    };
    if attempts >= context.retry.attempts_max {
        return dead_letter("retries_exhausted", format!("{attempts} attempts made"));
    }
    let delay = context
        .retry
        .delay_ms(attempts, context.unit)
        .max(retry_after_ms);
    let due_ms = now.saturating_add(delay);
    if due_ms > intent.retry_deadline_ms(context.retry.deadline_ms) {
        let why = "the next attempt would start after the retry deadline".to_string();
        return dead_letter("deadline_exceeded", why);
    }
    Decision {
        next: State::Pending { due_ms },
        pause_connector_until_ms,
    }
}

/// After a status check of an ambiguous intent.
pub fn after_status_check(intent: &Intent, check: &StatusCheck, context: Context<'_>) -> Decision {
    let now = context.now_ms;
    let (checks, resend_allowed) = match intent.state {
        State::Ambiguous {
            checks,
            resend_allowed,
            ..
        } => (checks, resend_allowed),
        _ => (0, true),
    };
    let last = intent.last_error.as_ref();
    let check_again = |reason: &str| {
        let done = checks + 1;
        if done >= context.checks.checks_max {
            dead(
                "undecidable",
                format!(
                    "{done} status checks could not decide whether it executed ({reason}); {}",
                    describe(last)
                ),
                last,
            )
        } else {
            State::Ambiguous {
                checks: done,
                due_ms: now.saturating_add(context.checks.delay_ms(done, context.unit)),
                resend_allowed,
            }
        }
    };
    let next = match check {
        StatusCheck::Found { result, remote_status: RemoteStatus::Complete } => State::Reconciled { result_json: result.to_string() },
        StatusCheck::Found { result, remote_status: RemoteStatus::Failed } => State::DeadLettered {
            reason: Reason {
                code: last.map(|reason| reason.code.clone()).filter(|code| code == "execution_failed").unwrap_or_else(|| "remote_failed".to_string()),
                message: format!("the provider executed it and reports it failed; an operator must review ({})", describe(last)),
                details_json: Some(result.to_string()),
                http_status: None,
            },
        },
        StatusCheck::Found { .. } => check_again("the provider reports it still in progress"),
        StatusCheck::NotFound if !resend_allowed => dead(
            "execution_failed",
            format!("the provider reported a failed execution and has no record of it; never replayed automatically ({})", describe(last)),
            last,
        ),
        StatusCheck::NotFound => {
            // Safe to re-send with the same key, but with the retry backoff: a provider
            // that said 409 a moment ago may not list a request it is still running.
            let due_ms = now.saturating_add(context.retry.delay_ms(intent.attempts.len() as u32, context.unit));
            let pending = Intent { state: State::Pending { due_ms }, ..intent.clone() };
            before_dispatch(&pending, Context { now_ms: due_ms, ..context }).unwrap_or(State::Pending { due_ms })
        }
        StatusCheck::Unknown { reason } => check_again(&format!("{}: {}", reason.code, reason.message)),
    };
    Decision::to(next)
}

/// After a crash: an intent caught in flight may have executed (G3).
pub fn recovered(intent: &Intent, now_ms: u64) -> Option<State> {
    match intent.state {
        State::Sent { .. } => Some(State::Ambiguous {
            checks: 0,
            due_ms: now_ms,
            resend_allowed: true,
        }),
        _ => None,
    }
}

/// Why an agent or operator action does not apply to the intent's state.
#[derive(Debug, PartialEq, Eq)]
pub struct NotApplicable(pub StateName);

/// Funding attached: an intent awaiting payment becomes pending again (same key).
pub fn attach_payment(intent: &Intent, now_ms: u64) -> Result<State, NotApplicable> {
    match intent.state {
        State::AwaitingPayment { .. } => Ok(State::Pending { due_ms: now_ms }),
        _ => Err(NotApplicable(intent.state.name())),
    }
}

/// Operator retry of a dead letter: first a status check (it may have executed after
/// all), then a re-send with the same key if the provider has no record of it. The fold
/// of the operator's record starts a fresh attempt budget and a fresh retry deadline,
/// both counted from the retry; the key lifetime still counts from the first attempt.
pub fn operator_retry(intent: &Intent, now_ms: u64) -> Result<State, NotApplicable> {
    match intent.state {
        State::DeadLettered { .. } if intent.attempts.is_empty() => {
            Ok(State::Pending { due_ms: now_ms })
        }
        State::DeadLettered { .. } => Ok(State::Ambiguous {
            checks: 0,
            due_ms: now_ms,
            resend_allowed: true,
        }),
        _ => Err(NotApplicable(intent.state.name())),
    }
}

/// Operator resolution of a dead letter, with a note and optional evidence.
pub fn operator_resolve(
    intent: &Intent,
    note: String,
    evidence: Option<String>,
) -> Result<State, NotApplicable> {
    match intent.state {
        State::DeadLettered { .. } => Ok(State::Resolved { note, evidence }),
        _ => Err(NotApplicable(intent.state.name())),
    }
}
