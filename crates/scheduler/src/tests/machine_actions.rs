//! The machine's effects, not only its states: a random walk drives one intent the way
//! the engine's worker does (every provider call the machine asks for is answered with a
//! random outcome or check; timers, restarts, payments and operator actions come at
//! random) and checks every transition:
//!
//! - G2: a `Dispatch` comes only from a pending intent, in the same transition as the
//!   `AttemptStarted` record of the same attempt, the next one;
//! - G3: nothing is ever dispatched from `Sent` or `Ambiguous` (a possible execution);
//!   `CheckStatus` comes only from `Ambiguous`;
//! - the actions agree with the state the records fold to: a timer exactly when it is
//!   due at some time (at that time), waiters woken exactly when it settles, a connector
//!   pause exactly with its `ConnectorPaused` record;
//! - an answer from the provider is recorded by exactly one record naming it;
//! - agent and operator events are refused, with nothing recorded, outside the one state
//!   each applies to.

use connectors::{Outcome, StatusCheck};
use proptest::prelude::*;
use serde_json::json;

use super::machine_props::{check, intent, outcome};
use crate::intent::{Intent, State, StateName};
use crate::machine::{self, settled, Action, Context, Event, Transition};
use crate::policy::{RetryPolicy, StatusCheckPolicy};
use crate::record::{apply, AttemptOutcome, CheckResult, Folded, Record};

/// One input of the walk besides answers to the machine's own calls.
#[derive(Clone, Debug)]
enum Input {
    /// Time passes, then the driver raises `Due` if the intent is due.
    Tick(u64),
    /// An answer to whatever provider call the last transition asked for.
    Answer(Box<(Outcome, StatusCheck)>),
    Crash,
    Pay,
    OperatorRetry,
    OperatorResolve,
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        4 => (0..120_000u64).prop_map(Input::Tick),
        6 => (outcome(), check()).prop_map(|answer| Input::Answer(Box::new(answer))),
        1 => Just(Input::Crash),
        1 => Just(Input::Pay),
        1 => Just(Input::OperatorRetry),
        1 => Just(Input::OperatorResolve),
    ]
}

/// The intent after `records` are folded onto it.
fn fold(before: &Intent, records: &[Record], lsn: u64) -> Intent {
    let mut folded = Folded::default();
    folded.intents.insert(before.spec.id, before.clone());
    for (offset, record) in records.iter().enumerate() {
        apply(&mut folded, lsn + offset as u64, record.clone())
            .expect("the fold accepts the machine's records");
    }
    folded.intents.remove(&before.spec.id).expect("still there")
}

/// Every property of one transition that holds whatever the event.
fn check_transition(
    before: &Intent,
    event: &Event,
    transition: &Transition,
    after: &Intent,
) -> Result<(), TestCaseError> {
    let dispatches: Vec<u32> = transition
        .actions
        .iter()
        .filter_map(|action| match action {
            Action::Dispatch { attempt } => Some(*attempt),
            _ => None,
        })
        .collect();
    let checks = transition
        .actions
        .iter()
        .filter(|action| **action == Action::CheckStatus)
        .count();
    prop_assert!(
        dispatches.len() + checks <= 1,
        "one provider call at most: {transition:?}"
    );
    for attempt in &dispatches {
        prop_assert!(
            matches!(before.state, State::Pending { .. }),
            "G2/G3: dispatch from {:?}",
            before.state
        );
        prop_assert_eq!(*attempt as usize, before.attempts.len() + 1);
        prop_assert!(
            transition.records.iter().any(|record| matches!(record, Record::AttemptStarted { attempt: started, .. } if started == attempt)),
            "G2: no AttemptStarted for attempt {} in {:?}", attempt, transition
        );
    }
    if checks == 1 {
        prop_assert!(
            matches!(before.state, State::Ambiguous { .. }),
            "check from {:?}",
            before.state
        );
        prop_assert!(transition.records.is_empty());
    }
    // The timers and wake-ups follow the state the records lead to.
    let timers: Vec<u64> = transition
        .actions
        .iter()
        .filter_map(|action| match action {
            Action::SetTimer { due_ms } => Some(*due_ms),
            _ => None,
        })
        .collect();
    let notified = transition.actions.contains(&Action::NotifyWaiters);
    let moved = transition
        .records
        .iter()
        .any(|record| !matches!(record, Record::ConnectorPaused { .. }));
    if moved && dispatches.is_empty() {
        match after.state.due_ms() {
            Some(due_ms) => {
                prop_assert_eq!(timers.clone(), vec![due_ms], "timer for {:?}", after.state)
            }
            None => prop_assert!(timers.is_empty(), "timer for {:?}", after.state),
        }
        prop_assert_eq!(
            notified,
            settled(&after.state),
            "waiters for {:?}",
            after.state
        );
    } else {
        prop_assert!(
            timers.is_empty() && !notified,
            "no state change, yet {:?}",
            transition.actions
        );
    }
    // A pause action exactly with its record.
    let paused_records: Vec<u64> = transition
        .records
        .iter()
        .filter_map(|record| match record {
            Record::ConnectorPaused { until_ms, .. } => Some(*until_ms),
            _ => None,
        })
        .collect();
    let paused_actions: Vec<u64> = transition
        .actions
        .iter()
        .filter_map(|action| match action {
            Action::PauseConnector { until_ms, .. } => Some(*until_ms),
            _ => None,
        })
        .collect();
    prop_assert_eq!(paused_records, paused_actions);
    check_answer_recorded(before, event, transition)
}

/// An answer from the provider is recorded by exactly one record that names it.
fn check_answer_recorded(
    before: &Intent,
    event: &Event,
    transition: &Transition,
) -> Result<(), TestCaseError> {
    match event {
        Event::Dispatched {
            attempt, outcome, ..
        } => {
            let finished: Vec<&Record> = transition
                .records
                .iter()
                .filter(|record| matches!(record, Record::AttemptFinished { .. }))
                .collect();
            prop_assert_eq!(finished.len(), 1);
            let Record::AttemptFinished {
                attempt: recorded,
                outcome: kind,
                ..
            } = finished[0]
            else {
                unreachable!()
            };
            prop_assert_eq!(recorded, attempt);
            prop_assert_eq!(*kind, AttemptOutcome::of(outcome));
        }
        Event::Checked { check } => {
            prop_assert_eq!(transition.records.len(), 1);
            let Record::StatusChecked { result, .. } = &transition.records[0] else {
                return Err(TestCaseError::fail(format!("{:?}", transition.records)));
            };
            prop_assert_eq!(*result, CheckResult::of(check));
            let was_ambiguous = matches!(before.state, State::Ambiguous { .. });
            prop_assert!(was_ambiguous, "checked in {:?}", before.state);
        }
        _ => {}
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn every_transition_chooses_the_right_actions(
        inputs in prop::collection::vec(input(), 1..60),
        unit in 0.0f64..1.0,
        deadline_hours in 1u64..48,
    ) {
        let retry = RetryPolicy { deadline_ms: deadline_hours * 3_600_000, ..RetryPolicy::default() };
        let checks = StatusCheckPolicy::default();
        let key_lifetime_ms = 24 * 3_600_000;
        let mut intent = intent();
        let mut now = 0u64;
        let mut lsn = 2u64;
        // The provider call the last transition asked for, answered by the next `Answer`.
        let mut call: Option<Action> = None;
        for input in inputs {
            let event = match (input, call.take()) {
                (Input::Answer(answer), Some(Action::Dispatch { attempt })) => {
                    let (outcome, _) = *answer;
                    Event::Dispatched { attempt, outcome, resource_id: None }
                }
                (Input::Answer(answer), Some(Action::CheckStatus)) => Event::Checked { check: answer.1 },
                // The call is never answered: the process died with it on the wire.
                (_, Some(_)) => Event::InFlightLost,
                (Input::Answer(_), None) => continue,
                (Input::Tick(ms), None) => {
                    now += ms;
                    if intent.state.due_ms().is_none_or(|due| due > now) {
                        continue;
                    }
                    Event::Due
                }
                (Input::Crash, None) => Event::InFlightLost,
                (Input::Pay, None) => Event::PaymentAttached { payment: json!({"payment_id": "p"}) },
                (Input::OperatorRetry, None) => Event::OperatorRetry,
                (Input::OperatorResolve, None) => Event::OperatorResolve { note: "n".into(), evidence: None },
            };
            let context = Context { retry: &retry, checks: &checks, key_lifetime_ms, key_lifetime_margin_ms: machine::key_lifetime_margin_default(key_lifetime_ms), now_ms: now, unit };
            let applies = match &event {
                Event::PaymentAttached { .. } => Some(intent.state.name() == StateName::AwaitingPayment),
                Event::OperatorRetry | Event::OperatorResolve { .. } => Some(intent.state.name() == StateName::DeadLettered),
                _ => None,
            };
            let transition = match machine::step(&intent, event.clone(), context) {
                Ok(transition) => transition,
                Err(machine::NotApplicable(name)) => {
                    prop_assert_eq!(applies, Some(false), "refused {:?} in {:?}", event, name);
                    prop_assert_eq!(name, intent.state.name());
                    continue;
                }
            };
            prop_assert_ne!(applies, Some(false), "{:?} applied in {:?}", event, intent.state);
            let after = fold(&intent, &transition.records, lsn);
            check_transition(&intent, &event, &transition, &after)?;
            lsn += transition.records.len() as u64;
            call = transition.actions.iter().find(|action| matches!(action, Action::Dispatch { .. } | Action::CheckStatus)).cloned();
            intent = after;
        }
    }
}

#[test]
fn due_on_each_state_table() {
    // (state, records, actions) for `Due`: a pending intent is sent, an ambiguous one is
    // checked, any other state leads to nothing.
    let retry = RetryPolicy::default();
    let checks = StatusCheckPolicy::default();
    let context = Context {
        retry: &retry,
        checks: &checks,
        key_lifetime_ms: 86_400_000,
        key_lifetime_margin_ms: 300_000,
        now_ms: 10,
        unit: 0.5,
    };
    let mut pending = intent();
    pending.state = State::Pending { due_ms: 10 };
    let sent = machine::step(&pending, Event::Due, context).unwrap();
    assert_eq!(
        sent.records,
        vec![Record::AttemptStarted {
            id: pending.spec.id,
            attempt: 1,
            at_ms: 10
        }]
    );
    assert_eq!(sent.actions, vec![Action::Dispatch { attempt: 1 }]);
    let mut ambiguous = intent();
    ambiguous.state = State::Ambiguous {
        checks: 0,
        due_ms: 10,
        resend_allowed: true,
    };
    let checked = machine::step(&ambiguous, Event::Due, context).unwrap();
    assert!(checked.records.is_empty());
    assert_eq!(checked.actions, vec![Action::CheckStatus]);
    for state in [
        State::Sent { attempt: 1 },
        State::Succeeded {
            result_json: "{}".into(),
        },
        State::DeadLettered {
            reason: crate::intent::Reason::new("x", "y"),
        },
    ] {
        let mut other = intent();
        other.state = state;
        assert_eq!(
            machine::step(&other, Event::Due, context).unwrap(),
            Transition::default()
        );
    }
}
