//! The pure machine against a small reference model: for any sequence of outcomes and
//! status checks, the machine never re-sends without a check after a possible execution,
//! never leaves a terminal state, keeps attempts within the budget, and respects the key
//! lifetime.

use connectors::{ErrorDetail, Outcome, RemoteStatus, RetryScope, StatusCheck};
use proptest::prelude::*;
use serde_json::json;

use crate::intent::{Attempt, Intent, IntentId, IntentSpec, State};
use crate::machine::{self, Context};
use crate::policy::{RetryPolicy, StatusCheckPolicy};
use crate::record::{apply, Folded, Record};

pub(super) fn outcome() -> impl Strategy<Value = Outcome> {
    let detail = || ErrorDetail::new("x", "x");
    prop_oneof![
        Just(Outcome::Success {
            result: json!({"id": "r"})
        }),
        Just(Outcome::Permanent { reason: detail() }),
        (0..5u64, any::<bool>()).prop_map(move |(seconds, global)| Outcome::Retryable {
            reason: ErrorDetail::new("x", "x"),
            retry_after: Some(std::time::Duration::from_secs(seconds)),
            scope: if global {
                RetryScope::Connector
            } else {
                RetryScope::Intent
            },
        }),
        Just(Outcome::Ambiguous { reason: detail() }),
        Just(Outcome::AlreadyDone { reason: detail() }),
        Just(Outcome::PaymentRequired { details: detail() }),
        Just(Outcome::BudgetExceeded { details: detail() }),
        Just(Outcome::ExecutionFailed { details: detail() }),
    ]
}

pub(super) fn check() -> impl Strategy<Value = StatusCheck> {
    prop_oneof![
        Just(StatusCheck::Found {
            result: json!({}),
            remote_status: RemoteStatus::Complete
        }),
        Just(StatusCheck::Found {
            result: json!({}),
            remote_status: RemoteStatus::Pending
        }),
        Just(StatusCheck::Found {
            result: json!({}),
            remote_status: RemoteStatus::Failed
        }),
        Just(StatusCheck::NotFound),
        Just(StatusCheck::Unknown {
            reason: ErrorDetail::new("x", "x")
        }),
    ]
}

pub(super) fn intent() -> Intent {
    let spec = IntentSpec {
        id: IntentId([1; 16]),
        connector: "c".into(),
        operation: "pay".into(),
        params_json: "{}".into(),
        idempotency_key: "k".into(),
        payload_sha256: [0; 32],
        amount_micros: None,
        submitted_at_ms: 0,
    };
    Intent::new(spec, 1)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn machine_matches_the_reference_model(
        outcomes in proptest::collection::vec(outcome(), 1..30),
        checks in proptest::collection::vec(check(), 1..30),
        steps_ms in proptest::collection::vec(0..7_200_000u64, 60),
        unit in 0.0..1.0f64,
    ) {
        let retry = RetryPolicy { attempts_max: 5, delay_base_ms: 100, multiplier: 2.0, delay_max_ms: 10_000, jitter: 0.5, deadline_ms: 86_400_000 };
        let status = StatusCheckPolicy { checks_max: 4, ..StatusCheckPolicy::default() };
        let key_lifetime_ms = 3 * 3_600_000;
        let key_lifetime_margin_ms = machine::key_lifetime_margin_default(key_lifetime_ms);
        let mut intent = intent();
        let mut now = 0u64;
        let (mut outcomes, mut checks) = (outcomes.into_iter(), checks.into_iter());
        // The reference model: may the provider have executed it since the last "not found"?
        let mut possibly_executed = false;
        for step in steps_ms {
            now += step;
            let context = Context { retry: &retry, checks: &status, key_lifetime_ms, key_lifetime_margin_ms, now_ms: now, unit };
            let before = intent.state.clone();
            match before {
                State::Pending { due_ms } if due_ms <= now => {
                    prop_assert!(!possibly_executed, "a send after a possible execution without a status check");
                    if let Some(next) = machine::before_dispatch(&intent, context) {
                        prop_assert!(next.name().is_terminal());
                        intent.state = next;
                        continue;
                    }
                    if let Some(first) = intent.first_sent_at_ms() {
                        prop_assert!(
                            now.max(intent.updated_at_ms) + key_lifetime_margin_ms < first + key_lifetime_ms,
                            "re-sent a key within the safety margin of its lifetime (now {now}, updated {}, first sent {first})",
                            intent.updated_at_ms
                        );
                    }
                    let Some(outcome) = outcomes.next() else { break };
                    let attempt = intent.attempts.len() as u32 + 1;
                    prop_assert!(intent.attempts_in_budget() < retry.attempts_max);
                    intent.attempts.push(Attempt { number: attempt, started_at_ms: now, finished_at_ms: Some(now), outcome: Some(crate::record::AttemptOutcome::of(&outcome)), detail: None });
                    possibly_executed = matches!(outcome, Outcome::Success { .. } | Outcome::Ambiguous { .. } | Outcome::AlreadyDone { .. } | Outcome::ExecutionFailed { .. });
                    let decision = machine::after_outcome(&intent, &outcome, context);
                    match (&outcome, &decision.next) {
                        (Outcome::Success { .. }, State::Succeeded { .. }) => {}
                        (Outcome::Permanent { .. } | Outcome::BudgetExceeded { .. }, State::Failed { .. }) => {}
                        (Outcome::PaymentRequired { .. }, State::AwaitingPayment { .. }) => {}
                        (Outcome::Retryable { .. }, State::Pending { due_ms }) => prop_assert!(*due_ms >= now),
                        (Outcome::Retryable { .. }, State::DeadLettered { .. }) => prop_assert!(attempt >= retry.attempts_max || now > 0),
                        (Outcome::Ambiguous { .. } | Outcome::AlreadyDone { .. }, State::Ambiguous { resend_allowed: true, .. }) => {}
                        (Outcome::ExecutionFailed { .. }, State::Ambiguous { resend_allowed: false, .. }) => {}
                        (outcome, next) => prop_assert!(false, "{outcome:?} led to {next:?}"),
                    }
                    if let (Outcome::Retryable { scope: RetryScope::Connector, .. }, None) = (&outcome, decision.pause_connector_until_ms) {
                        prop_assert!(false, "a 429 must pause the connector");
                    }
                    intent.state = decision.next;
                }
                State::Ambiguous { due_ms, resend_allowed, .. } if due_ms <= now => {
                    let Some(check) = checks.next() else { break };
                    let decision = machine::after_status_check(&intent, &check, context);
                    match (&check, &decision.next) {
                        (StatusCheck::Found { remote_status: RemoteStatus::Complete, .. }, State::Reconciled { .. }) => {}
                        (StatusCheck::Found { remote_status: RemoteStatus::Failed, .. }, State::DeadLettered { .. }) => {}
                        (StatusCheck::NotFound, State::Pending { .. }) => {
                            prop_assert!(resend_allowed, "execution_failed must never be replayed");
                            possibly_executed = false;
                        }
                        (StatusCheck::NotFound, State::DeadLettered { .. }) => {}
                        (StatusCheck::Found { remote_status: RemoteStatus::Pending, .. } | StatusCheck::Unknown { .. }, State::Ambiguous { checks, .. }) => prop_assert!(*checks < status.checks_max),
                        (StatusCheck::Found { remote_status: RemoteStatus::Pending, .. } | StatusCheck::Unknown { .. }, State::DeadLettered { .. }) => {}
                        (check, next) => prop_assert!(false, "{check:?} led to {next:?}"),
                    }
                    intent.status_checks += 1;
                    intent.state = decision.next;
                }
                State::AwaitingPayment { .. } => {
                    intent.state = machine::attach_payment(&intent, now).unwrap();
                }
                ref state if state.name().is_terminal() => {
                    prop_assert!(machine::attach_payment(&intent, now).is_err());
                    break;
                }
                _ => {}
            }
        }
    }
}

#[test]
fn operator_actions_table() {
    let mut dead = intent();
    dead.state = State::DeadLettered {
        reason: crate::Reason::new("x", "x"),
    };
    assert!(
        matches!(
            machine::operator_retry(&dead, 5),
            Ok(State::Pending { due_ms: 5 })
        ),
        "never sent: straight to pending"
    );
    dead.attempts.push(Attempt {
        number: 1,
        started_at_ms: 0,
        finished_at_ms: None,
        outcome: None,
        detail: None,
    });
    assert!(
        matches!(
            machine::operator_retry(&dead, 5),
            Ok(State::Ambiguous {
                resend_allowed: true,
                ..
            })
        ),
        "sent before: check first"
    );
    assert!(matches!(
        machine::operator_resolve(&dead, "refunded".into(), Some("tx1".into())),
        Ok(State::Resolved { .. })
    ));
    let pending = intent();
    assert!(machine::operator_retry(&pending, 5).is_err());
    assert!(machine::operator_resolve(&pending, "n".into(), None).is_err());
    let mut sent = intent();
    sent.state = State::Sent { attempt: 1 };
    assert!(matches!(
        machine::recovered(&sent, 9),
        Some(State::Ambiguous {
            due_ms: 9,
            resend_allowed: true,
            ..
        })
    ));
    assert_eq!(machine::recovered(&pending, 9), None);
}

/// The intent after `records` went through the fold (as live and as on replay).
fn folded(records: Vec<Record>) -> Intent {
    let mut folded = Folded::default();
    folded.intents.insert(IntentId([1; 16]), intent());
    for (lsn, record) in records.into_iter().enumerate() {
        apply(&mut folded, lsn as u64 + 2, record).unwrap();
    }
    folded.intents.remove(&IntentId([1; 16])).unwrap()
}

// Defect 6: an operator's retry reset the attempt budget but not the deadline (one hour
// after submit in the aggressive preset), so a dead letter retried later was dead-lettered
// again as `deadline_exceeded` before anything was re-sent.
#[test]
fn operator_retry_starts_a_fresh_deadline() {
    const HOUR: u64 = 3_600_000;
    let id = IntentId([1; 16]);
    let retry = RetryPolicy::aggressive();
    assert_eq!(retry.deadline_ms, HOUR);
    let checks = StatusCheckPolicy::default();
    let dead_letter = vec![
        Record::AttemptStarted {
            id,
            attempt: 1,
            at_ms: 1_000,
        },
        Record::AttemptFinished {
            id,
            attempt: 1,
            at_ms: 2_000,
            outcome: crate::record::AttemptOutcome::Retryable,
            detail: None,
            resource_id: None,
            next: State::DeadLettered {
                reason: crate::Reason::new("deadline_exceeded", "x"),
            },
        },
    ];
    let retried_at = |at_ms: u64| {
        let mut records = dead_letter.clone();
        let dead = folded(dead_letter.clone());
        records.push(Record::Operator {
            id,
            at_ms,
            action: crate::record::OperatorAction::Retry,
            next: machine::operator_retry(&dead, at_ms).unwrap(),
        });
        folded(records)
    };
    let not_retried = folded(dead_letter.clone());
    // (intent, now, key lifetime) → what before_dispatch decides (None: send).
    let check = |intent: &Intent, now_ms: u64, key_lifetime_ms: u64, expected: Option<&str>| {
        let context = Context {
            retry: &retry,
            checks: &checks,
            key_lifetime_ms,
            // The margin is tested with the key-lifetime rows; here only the deadline.
            key_lifetime_margin_ms: 0,
            now_ms,
            unit: 0.5,
        };
        let decided = machine::before_dispatch(intent, context).map(|next| match next {
            State::DeadLettered { reason } => reason.code,
            other => panic!("{other:?}"),
        });
        assert_eq!(
            decided.as_deref(),
            expected,
            "now {now_ms}, key lifetime {key_lifetime_ms}"
        );
    };
    let day = 24 * HOUR;
    check(&not_retried, 2 * HOUR, day, Some("deadline_exceeded"));
    check(&retried_at(2 * HOUR), 2 * HOUR + 5_000, day, None);
    check(&retried_at(2 * HOUR), 3 * HOUR, day, None);
    check(
        &retried_at(2 * HOUR),
        3 * HOUR + 1,
        day,
        Some("deadline_exceeded"),
    );
    check(
        &retried_at(2 * HOUR),
        2 * HOUR + 5_000,
        2 * HOUR,
        Some("key_expired"),
    );
    check(&retried_at(30 * 60_000), 90 * 60_000, day, None);
    // A status check that finds nothing re-sends (Pending), instead of dead-lettering it.
    let retried = retried_at(2 * HOUR);
    let context = Context {
        retry: &retry,
        checks: &checks,
        key_lifetime_ms: day,
        key_lifetime_margin_ms: 0,
        now_ms: 2 * HOUR + 10,
        unit: 0.5,
    };
    let after_check = machine::after_status_check(&retried, &StatusCheck::NotFound, context);
    assert!(
        matches!(after_check.next, State::Pending { .. }),
        "{:?}",
        after_check.next
    );
    // A retryable answer after the retry waits within the new deadline.
    let mut sent_again = retried.clone();
    sent_again.attempts.push(Attempt {
        number: 2,
        started_at_ms: 2 * HOUR + 10,
        finished_at_ms: None,
        outcome: None,
        detail: None,
    });
    let after =
        machine::after_outcome(&sent_again, &crate::tests::scripted::unavailable(), context);
    assert!(
        matches!(after.next, State::Pending { .. }),
        "{:?}",
        after.next
    );
}
