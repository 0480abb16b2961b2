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

fn outcome() -> impl Strategy<Value = Outcome> {
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

fn check() -> impl Strategy<Value = StatusCheck> {
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

fn intent() -> Intent {
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
                    intent.attempts.push(Attempt { number: attempt, started_at_ms: now, finished_at_ms: Some(now), outcome: Some(outcome.kind().into()), detail: None });
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
