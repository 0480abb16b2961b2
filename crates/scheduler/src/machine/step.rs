//! One step of the machine: an event on an intent becomes the records to log and the
//! actions to perform after they are durable. The order inside a [`Transition`] is the
//! contract the driver keeps: every record is durable before any action runs, so an
//! attempt's `AttemptStarted` record is on disk before `Dispatch` sends a byte (G2).
//! Modelled on restate's `ActionCollector` (`partition/state_machine/actions.rs`).

use connectors::{Outcome, StatusCheck};
use serde_json::Value;

use crate::intent::{Intent, IntentId, IntentSpec, Reason, State};
use crate::record::{AttemptOutcome, CheckResult, OperatorAction, Record};

use super::{decide, Context, NotApplicable};

/// What happened to an intent.
#[derive(Clone, Debug)]
pub enum Event {
    /// Its due time came (a timer fired): send it if pending, check it if ambiguous.
    Due,
    /// The connector answered attempt `attempt`. `resource_id` is the provider's id for
    /// the resource, as the connector read it from the answer.
    Dispatched {
        attempt: u32,
        outcome: Outcome,
        resource_id: Option<String>,
    },
    /// The connector answered a status check.
    Checked { check: StatusCheck },
    /// The engine opened after a crash, or a step failed before an attempt's outcome was
    /// recorded: whatever was on the wire may have executed (G3).
    InFlightLost,
    /// The agent attached funding (as JSON) to an intent awaiting payment.
    PaymentAttached { payment: Value },
    /// An operator retries a dead letter.
    OperatorRetry,
    /// An operator closes a dead letter.
    OperatorResolve {
        note: String,
        evidence: Option<String>,
    },
}

/// What the driver does once a transition's records are durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send attempt `attempt` with the intent's key; its `AttemptStarted` record is in the
    /// same transition, before this action.
    Dispatch { attempt: u32 },
    /// Ask the provider whether the intent's key executed.
    CheckStatus,
    /// Look at the intent again at `due_ms`.
    SetTimer { due_ms: u64 },
    /// The provider throttles the whole connector: nothing of it is sent before
    /// `until_ms` (the `ConnectorPaused` record makes it survive a restart).
    PauseConnector { connector: String, until_ms: u64 },
    /// The intent settled (terminal, or awaiting payment): wake whoever waits for it.
    NotifyWaiters,
}

/// What an event leads to: records to log in order, then actions to perform in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transition {
    pub records: Vec<Record>,
    pub actions: Vec<Action>,
}

impl Transition {
    /// One record moving the intent to `next`, and what `next` asks of the driver.
    fn to(record: Record, next: &State) -> Transition {
        Transition {
            records: vec![record],
            actions: follow_up(next),
        }
    }
}

/// Settled: terminal, or waiting for the agent (awaiting payment). `wait` returns then.
pub fn settled(state: &State) -> bool {
    state.name().is_terminal() || matches!(state, State::AwaitingPayment { .. })
}

/// What a state asks of the driver on its own: a timer when it is due at some time, a
/// wake-up of waiters when it is settled.
fn follow_up(next: &State) -> Vec<Action> {
    match next.due_ms() {
        Some(due_ms) => vec![Action::SetTimer { due_ms }],
        None if settled(next) => vec![Action::NotifyWaiters],
        None => Vec::new(),
    }
}

/// An accepted intent: its `Submitted` record, and a timer for now.
pub fn submitted(spec: IntentSpec) -> Transition {
    let due_ms = spec.submitted_at_ms;
    Transition {
        records: vec![Record::Submitted(spec)],
        actions: vec![Action::SetTimer { due_ms }],
    }
}

/// The machine: what `event` on `intent` leads to. `Err` when an agent's or operator's
/// action does not apply to the intent's state; the events the driver itself raises
/// always apply (a stale one leads to an empty transition).
pub fn step(
    intent: &Intent,
    event: Event,
    context: Context<'_>,
) -> Result<Transition, NotApplicable> {
    let id = intent.spec.id;
    let at_ms = context.now_ms;
    Ok(match event {
        Event::Due => due(intent, context),
        Event::Dispatched {
            attempt,
            outcome,
            resource_id,
        } => dispatched(intent, attempt, &outcome, resource_id, context),
        Event::Checked { check } => checked(intent, &check, context),
        Event::InFlightLost => match decide::recovered(intent, at_ms) {
            Some(next) => Transition::to(
                Record::Recovered {
                    id,
                    at_ms,
                    next: next.clone(),
                },
                &next,
            ),
            None => Transition::default(),
        },
        Event::PaymentAttached { payment } => {
            let next = decide::attach_payment(intent, at_ms)?;
            let payment_json = payment.to_string();
            Transition::to(
                Record::PaymentAttached {
                    id,
                    at_ms,
                    payment_json,
                    next: next.clone(),
                },
                &next,
            )
        }
        Event::OperatorRetry => {
            let next = decide::operator_retry(intent, at_ms)?;
            operator(id, at_ms, OperatorAction::Retry, next)
        }
        Event::OperatorResolve { note, evidence } => {
            let next = decide::operator_resolve(intent, note, evidence)?;
            operator(id, at_ms, OperatorAction::Resolve, next)
        }
    })
}

/// An operator's action on a dead letter: its record, and what the next state asks for.
fn operator(id: IntentId, at_ms: u64, action: OperatorAction, next: State) -> Transition {
    let record = Record::Operator {
        id,
        at_ms,
        action,
        next: next.clone(),
    };
    Transition::to(record, &next)
}

/// Due (the driver found the intent's own due time passed): a pending intent is sent (or, past its budget, deadline or key lifetime,
/// dead-lettered without sending); an ambiguous one is checked, never re-sent (G3).
fn due(intent: &Intent, context: Context<'_>) -> Transition {
    let id = intent.spec.id;
    let at_ms = context.now_ms;
    match intent.state {
        State::Pending { .. } => {
            if let Some(next) = decide::before_dispatch(intent, context) {
                let result = CheckResult::NotSent;
                let record = Record::StatusChecked {
                    id,
                    at_ms,
                    result,
                    detail: None,
                    next: next.clone(),
                };
                return Transition::to(record, &next);
            }
            let attempt = intent.attempts.len() as u32 + 1;
            Transition {
                records: vec![Record::AttemptStarted { id, attempt, at_ms }],
                actions: vec![Action::Dispatch { attempt }],
            }
        }
        State::Ambiguous { .. } => Transition {
            records: Vec::new(),
            actions: vec![Action::CheckStatus],
        },
        // The driver raises `Due` only for pending and ambiguous intents (their own due
        // time, not a timer's, decides); for any other state there is nothing to do.
        _ => Transition::default(),
    }
}

/// The connector answered attempt `attempt` (the intent is `Sent`).
fn dispatched(
    intent: &Intent,
    attempt: u32,
    outcome: &Outcome,
    resource_id: Option<String>,
    context: Context<'_>,
) -> Transition {
    let id = intent.spec.id;
    let at_ms = context.now_ms;
    let decision = decide::after_outcome(intent, outcome, context);
    let mut transition = Transition::default();
    if let Some(until_ms) = decision.pause_connector_until_ms {
        let connector = intent.spec.connector.clone();
        transition.records.push(Record::ConnectorPaused {
            connector: connector.clone(),
            until_ms,
        });
        transition.actions.push(Action::PauseConnector {
            connector,
            until_ms,
        });
    }
    transition.actions.extend(follow_up(&decision.next));
    transition.records.push(Record::AttemptFinished {
        id,
        attempt,
        at_ms,
        outcome: AttemptOutcome::of(outcome),
        detail: outcome.detail().map(Reason::from_detail),
        resource_id,
        next: decision.next,
    });
    transition
}

/// The connector answered a status check (the intent is `Ambiguous`).
fn checked(intent: &Intent, check: &StatusCheck, context: Context<'_>) -> Transition {
    let decision = decide::after_status_check(intent, check, context);
    let detail = match check {
        StatusCheck::Unknown { reason } => Some(Reason::from_detail(reason)),
        StatusCheck::Found { .. } | StatusCheck::NotFound => None,
    };
    let record = Record::StatusChecked {
        id: intent.spec.id,
        at_ms: context.now_ms,
        result: CheckResult::of(check),
        detail,
        next: decision.next.clone(),
    };
    Transition::to(record, &decision.next)
}
