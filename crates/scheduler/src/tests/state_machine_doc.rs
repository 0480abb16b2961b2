//! docs/state-machine.md held to the machine: every row of its "Decisions, one line each"
//! table is run through `machine::step`, and the next state, the records and the actions
//! (timers to the millisecond) must be what the row says. The table is read from the file
//! at test time, so the doc and the code cannot drift apart again; a wrong row fails with
//! its line number, and a missing row for a required (state, event, given) case fails too.
//!
//! The vocabulary of the cells is explained in the doc above the table. The numbers
//! behind it (policies, the time, Retry-After values) are fixed here, with a jitter draw
//! of 0.5, which puts every jittered delay at its exact midpoint.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use connectors::{ErrorDetail, Outcome, RemoteStatus, RetryScope, StatusCheck};
use serde_json::json;

use crate::intent::{Attempt, Intent, IntentId, IntentSpec, Reason, State, StateName};
use crate::machine::{self, Action, Context, Event, NotApplicable, Transition};
use crate::policy::{RetryPolicy, StatusCheckPolicy};
use crate::record::{AttemptOutcome, Record};

/// The heading of the table this test holds to the machine.
const TABLE_HEADING: &str = "## Decisions, one line each";
const COLUMNS: [&str; 7] = [
    "state", "event", "given", "next", "records", "actions", "why",
];

/// The time of every step, far from zero so that "long ago" fits before it.
const NOW_MS: u64 = 100_000_000;
/// A jitter draw of 0.5 adds nothing and takes nothing: delays are exact.
const UNIT: f64 = 0.5;
const KEY_LIFETIME_MS: u64 = 2 * 3_600_000;
const RETRY_AFTER_LONG_MS: u64 = 20_000;
const RETRY_AFTER_SHORT_MS: u64 = 100;
const CONNECTOR: &str = "c";

/// Distinct numbers on purpose: `+backoff` after two attempts (2 s), `+delay_base` (1 s),
/// `+check_delay` (3 s, 6 s, 12 s…) and `+retry_after` (20 s) never coincide, so a row
/// that names the wrong one fails.
fn retry_policy() -> RetryPolicy {
    RetryPolicy {
        attempts_max: 3,
        delay_base_ms: 1_000,
        multiplier: 2.0,
        delay_max_ms: 60_000,
        jitter: 0.25,
        deadline_ms: 6 * 3_600_000,
    }
}

fn check_policy() -> StatusCheckPolicy {
    StatusCheckPolicy {
        checks_max: 4,
        delay_base_ms: 3_000,
        multiplier: 2.0,
        delay_max_ms: 60_000,
        jitter: 0.25,
    }
}

/// One row of the table, its cells split into their lists.
#[derive(Debug)]
struct Row {
    line: usize,
    states: Vec<String>,
    events: Vec<String>,
    given: BTreeSet<String>,
    next: String,
    records: Vec<String>,
    actions: Vec<String>,
}

fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    inner
        .split('|')
        .map(|cell| cell.trim().replace('`', ""))
        .collect()
}

fn list(cell: &str) -> Vec<String> {
    cell.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_string)
        .collect()
}

/// The rows of the decisions table in `doc`, each with its 1-based line number.
fn parse_table(doc: &str) -> Result<Vec<Row>, String> {
    let mut lines = doc
        .lines()
        .enumerate()
        .skip_while(|(_, line)| line.trim() != TABLE_HEADING);
    if lines.next().is_none() {
        return Err(format!("no {TABLE_HEADING:?} heading"));
    }
    let mut lines = lines.skip_while(|(_, line)| !line.trim_start().starts_with('|'));
    let (header_index, header) = lines.next().ok_or("no table under the heading")?;
    if cells(header) != COLUMNS {
        return Err(format!(
            "line {}: the columns must be {COLUMNS:?}",
            header_index + 1
        ));
    }
    lines.next(); // The |---| separator.
    let mut rows = Vec::new();
    for (index, line) in lines.take_while(|(_, line)| line.trim_start().starts_with('|')) {
        let cells = cells(line);
        if cells.len() != COLUMNS.len() {
            return Err(format!(
                "line {}: {} cells, not {}",
                index + 1,
                cells.len(),
                COLUMNS.len()
            ));
        }
        rows.push(Row {
            line: index + 1,
            states: list(&cells[0]),
            events: list(&cells[1]),
            given: list(&cells[2]).into_iter().collect(),
            next: cells[3].clone(),
            records: list(&cells[4]),
            actions: list(&cells[5]),
        });
    }
    Ok(rows)
}

fn spec() -> IntentSpec {
    IntentSpec {
        id: IntentId([7; 16]),
        connector: CONNECTOR.into(),
        operation: "pay".into(),
        params_json: "{}".into(),
        idempotency_key: "k".into(),
        payload_sha256: [0; 32],
        amount_micros: None,
        submitted_at_ms: NOW_MS - 10_000,
    }
}

fn attempt(number: u32, started_at_ms: u64, outcome: Option<AttemptOutcome>) -> Attempt {
    Attempt {
        number,
        started_at_ms,
        finished_at_ms: outcome.map(|_| started_at_ms + 100),
        outcome,
        detail: None,
    }
}

/// An intent in `state` that has been sent twice (the second attempt in flight when
/// `sent`), or never for a pending one that is not given as sent before.
fn intent_in(state: StateName) -> Result<Intent, String> {
    let mut intent = Intent::new(spec(), 1);
    intent.updated_at_ms = NOW_MS - 1_000;
    let last_outcome = match state {
        StateName::Sent => None,
        StateName::Ambiguous => Some(AttemptOutcome::Ambiguous),
        StateName::AwaitingPayment => Some(AttemptOutcome::PaymentRequired),
        StateName::Succeeded => Some(AttemptOutcome::Success),
        StateName::Reconciled => Some(AttemptOutcome::AlreadyDone),
        StateName::Failed => Some(AttemptOutcome::Permanent),
        StateName::Pending | StateName::DeadLettered | StateName::Resolved => {
            Some(AttemptOutcome::Retryable)
        }
    };
    intent.attempts = vec![
        attempt(1, NOW_MS - 9_000, Some(AttemptOutcome::Retryable)),
        attempt(2, NOW_MS - 5_000, last_outcome),
    ];
    let reason = |code: &str| Reason::new(code, "from the test");
    intent.state = match state {
        StateName::Pending => State::Pending { due_ms: NOW_MS },
        StateName::Sent => State::Sent { attempt: 2 },
        StateName::Ambiguous => State::Ambiguous {
            checks: 1,
            due_ms: NOW_MS,
            resend_allowed: true,
        },
        StateName::AwaitingPayment => State::AwaitingPayment {
            reason: reason("payment_required"),
        },
        StateName::Succeeded => State::Succeeded {
            result_json: "{}".into(),
        },
        StateName::Reconciled => State::Reconciled {
            result_json: "{}".into(),
        },
        StateName::Failed => State::Failed {
            reason: reason("invalid"),
        },
        StateName::DeadLettered => State::DeadLettered {
            reason: reason("undecidable"),
        },
        StateName::Resolved => State::Resolved {
            note: "by hand".into(),
            evidence: None,
        },
    };
    Ok(intent)
}

/// Applies one named precondition to `intent`.
fn apply_given(intent: &mut Intent, given: &str) -> Result<(), String> {
    let retry = retry_policy();
    match given {
        // Retry-After shapes the event, not the intent.
        "retry-after long" | "retry-after short" => {}
        "attempts spent" => {
            let in_flight = matches!(intent.state, State::Sent { .. });
            let outcome = (!in_flight).then_some(AttemptOutcome::Retryable);
            intent.attempts[1].outcome = Some(AttemptOutcome::Retryable);
            intent.attempts.push(attempt(3, NOW_MS - 2_000, outcome));
            if in_flight {
                intent.state = State::Sent { attempt: 3 };
            }
        }
        "deadline passed" => restart_budget(intent, NOW_MS - retry.deadline_ms - 1),
        "deadline near" => restart_budget(intent, NOW_MS + 500 - retry.deadline_ms),
        "key old" => {
            // Exactly on the margin: `>=` dead-letters it.
            let margin_ms = machine::key_lifetime_margin_default(KEY_LIFETIME_MS);
            intent.attempts[0].started_at_ms = NOW_MS - (KEY_LIFETIME_MS - margin_ms);
            restart_budget(intent, intent.attempts[0].started_at_ms - 1_000);
        }
        "checks spent" => match &mut intent.state {
            State::Ambiguous { checks, .. } => *checks = check_policy().checks_max - 1,
            other => {
                return Err(format!(
                    "{given:?} needs an ambiguous intent, not {other:?}"
                ))
            }
        },
        "after execution_failed" => match &mut intent.state {
            State::Ambiguous { resend_allowed, .. } => {
                *resend_allowed = false;
                intent.attempts[1].outcome = Some(AttemptOutcome::ExecutionFailed);
                intent.last_error = Some(Reason::new("execution_failed", "it ran and failed"));
            }
            other => {
                return Err(format!(
                    "{given:?} needs an ambiguous intent, not {other:?}"
                ))
            }
        },
        "never sent" => intent.attempts.clear(),
        unknown => return Err(format!("unknown given {unknown:?}")),
    }
    Ok(())
}

/// The current budget (and so the retry deadline) started at `at_ms`.
fn restart_budget(intent: &mut Intent, at_ms: u64) {
    intent.spec.submitted_at_ms = at_ms;
    intent.budget_started_at_ms = at_ms;
}

fn detail(code: &str) -> ErrorDetail {
    ErrorDetail::new(code, "from the test")
}

fn retryable(scope: RetryScope, given: &BTreeSet<String>) -> Outcome {
    let retry_after_ms = if given.contains("retry-after long") {
        Some(RETRY_AFTER_LONG_MS)
    } else if given.contains("retry-after short") {
        Some(RETRY_AFTER_SHORT_MS)
    } else {
        None
    };
    Outcome::Retryable {
        reason: detail("unavailable"),
        retry_after: retry_after_ms.map(Duration::from_millis),
        scope,
    }
}

fn outcome(name: &str, given: &BTreeSet<String>) -> Option<Outcome> {
    Some(match name {
        "success" => Outcome::Success {
            result: json!({"id": "r1"}),
        },
        "permanent" => Outcome::Permanent {
            reason: detail("invalid"),
        },
        "budget_exceeded" => Outcome::BudgetExceeded {
            details: detail("budget_exceeded"),
        },
        "retryable(intent)" => retryable(RetryScope::Intent, given),
        "retryable(connector)" => retryable(RetryScope::Connector, given),
        "ambiguous" => Outcome::Ambiguous {
            reason: detail("timeout"),
        },
        "already_done" => Outcome::AlreadyDone {
            reason: detail("conflict"),
        },
        "payment_required" => Outcome::PaymentRequired {
            details: detail("payment_required"),
        },
        "execution_failed" => Outcome::ExecutionFailed {
            details: detail("execution_failed"),
        },
        _ => return None,
    })
}

fn check(name: &str) -> Option<StatusCheck> {
    let found = |remote_status| StatusCheck::Found {
        result: json!({"id": "r1"}),
        remote_status,
    };
    Some(match name {
        "found(complete)" => found(RemoteStatus::Complete),
        "found(pending)" => found(RemoteStatus::Pending),
        "found(failed)" => found(RemoteStatus::Failed),
        "not_found" => StatusCheck::NotFound,
        "unknown" => StatusCheck::Unknown {
            reason: detail("timeout"),
        },
        _ => return None,
    })
}

/// The event a row names, for `intent`.
fn event(name: &str, intent: &Intent, given: &BTreeSet<String>) -> Result<Event, String> {
    let unknown = || format!("unknown event {name:?}");
    if let Some(outcome_name) = name.strip_prefix("dispatched:") {
        let outcome = outcome(outcome_name, given).ok_or_else(unknown)?;
        let attempt = intent.attempts.len() as u32;
        return Ok(Event::Dispatched {
            attempt,
            outcome,
            resource_id: None,
        });
    }
    if let Some(check_name) = name.strip_prefix("checked:") {
        return Ok(Event::Checked {
            check: check(check_name).ok_or_else(unknown)?,
        });
    }
    Ok(match name {
        "due" => Event::Due,
        "in_flight_lost" => Event::InFlightLost,
        "payment:attached" => Event::PaymentAttached {
            payment: json!({"payment_id": "p1"}),
        },
        "operator:retry" => Event::OperatorRetry,
        "operator:resolve" => Event::OperatorResolve {
            note: "checked by hand".into(),
            evidence: None,
        },
        _ => return Err(unknown()),
    })
}

/// The action a row names, with its times made exact for `intent` before `event`.
fn action(name: &str, intent: &Intent, event: &Event) -> Result<Action, String> {
    let (retry, checks) = (retry_policy(), check_policy());
    let attempts_made = intent.attempts.len() as u32;
    // The checks done once this step is logged: one more after a check, none after a send.
    let checks_done = match (&intent.state, event) {
        (State::Ambiguous { checks, .. }, Event::Checked { .. }) => checks + 1,
        _ => 0,
    };
    let timer = |offset_ms: u64| Action::SetTimer {
        due_ms: NOW_MS + offset_ms,
    };
    let pause = |offset_ms: u64| Action::PauseConnector {
        connector: CONNECTOR.into(),
        until_ms: NOW_MS + offset_ms,
    };
    Ok(match name {
        "dispatch" => Action::Dispatch {
            attempt: attempts_made + 1,
        },
        "check_status" => Action::CheckStatus,
        "notify_waiters" => Action::NotifyWaiters,
        "set_timer(now)" => timer(0),
        "set_timer(+backoff)" => timer(retry.delay_ms(attempts_made, UNIT)),
        "set_timer(+retry_after)" => timer(RETRY_AFTER_LONG_MS),
        "set_timer(+check_delay)" => timer(checks.delay_ms(checks_done, UNIT)),
        "pause_connector(+retry_after)" => pause(RETRY_AFTER_LONG_MS),
        "pause_connector(+delay_base)" => pause(retry.delay_base_ms),
        _ => return Err(format!("unknown action {name:?}")),
    })
}

/// A record as the table names it: its kind, and the stored name of its vocabulary.
fn record_name(record: &Record) -> String {
    match record {
        Record::Submitted(_) => "submitted".into(),
        Record::AttemptStarted { .. } => "attempt_started".into(),
        Record::AttemptFinished { outcome, .. } => format!("attempt_finished({outcome})"),
        Record::StatusChecked { result, .. } => format!("status_checked({result})"),
        Record::PaymentAttached { .. } => "payment_attached".into(),
        Record::Operator { action, .. } => format!("operator({action})"),
        Record::Recovered { .. } => "recovered".into(),
        Record::ConnectorPaused { .. } => "connector_paused".into(),
        Record::Snapshot(_) => "snapshot".into(),
    }
}

/// The next state as the table names it, from what the machine returned.
fn next_name(result: &Result<Transition, NotApplicable>) -> String {
    let transition = match result {
        Ok(transition) => transition,
        Err(NotApplicable(_)) => return "not_applicable".into(),
    };
    let next = transition
        .records
        .iter()
        .rev()
        .find_map(|record| match record {
            Record::AttemptFinished { next, .. }
            | Record::StatusChecked { next, .. }
            | Record::PaymentAttached { next, .. }
            | Record::Operator { next, .. }
            | Record::Recovered { next, .. } => Some(next.clone()),
            Record::AttemptStarted { attempt, .. } => Some(State::Sent { attempt: *attempt }),
            Record::Submitted(_) | Record::ConnectorPaused { .. } | Record::Snapshot(_) => None,
        });
    match next {
        None => "unchanged".into(),
        Some(State::DeadLettered { reason }) => format!("dead_lettered:{}", reason.code),
        Some(State::Ambiguous {
            resend_allowed: false,
            ..
        }) => "ambiguous(no resend)".into(),
        Some(state) => state.name().as_str().into(),
    }
}

fn context<'a>(retry: &'a RetryPolicy, checks: &'a StatusCheckPolicy) -> Context<'a> {
    Context {
        retry,
        checks,
        key_lifetime_ms: KEY_LIFETIME_MS,
        key_lifetime_margin_ms: machine::key_lifetime_margin_default(KEY_LIFETIME_MS),
        now_ms: NOW_MS,
        unit: UNIT,
    }
}

/// Runs one (state, event) case of `row`; `Err` says how the machine disagrees.
fn check_case(row: &Row, state_name: &str, event_name: &str) -> Result<(), String> {
    let state = StateName::parse(state_name).ok_or(format!("unknown state {state_name:?}"))?;
    let mut intent = intent_in(state)?;
    for given in &row.given {
        apply_given(&mut intent, given)?;
    }
    let event = event(event_name, &intent, &row.given)?;
    let expected_actions = row
        .actions
        .iter()
        .map(|name| action(name, &intent, &event))
        .collect::<Result<Vec<_>, _>>()?;
    let (retry, checks) = (retry_policy(), check_policy());
    let result = machine::step(&intent, event, context(&retry, &checks));
    let mut disagreements = Vec::new();
    let next = next_name(&result);
    if next != row.next {
        disagreements.push(format!(
            "next: the doc says {:?}, the machine {next:?}",
            row.next
        ));
    }
    let (records, actions) = match &result {
        Ok(transition) => (
            transition.records.iter().map(record_name).collect(),
            transition.actions.clone(),
        ),
        Err(NotApplicable(name)) if name.as_str() != state_name => {
            return Err(format!("refused naming state {name:?}, not {state_name:?}"));
        }
        Err(_) => (Vec::new(), Vec::new()),
    };
    if records != row.records {
        disagreements.push(format!(
            "records: the doc says {:?}, the machine {records:?}",
            row.records
        ));
    }
    if actions != expected_actions {
        disagreements.push(format!(
            "actions: the doc says {:?} = {expected_actions:?}, the machine {actions:?}",
            row.actions
        ));
    }
    match disagreements.is_empty() {
        true => Ok(()),
        false => Err(disagreements.join("; ")),
    }
}

/// Every case of every row run against the machine; one line per disagreement, naming
/// the row's line in the doc.
fn disagreements(rows: &[Row]) -> Vec<String> {
    let mut failures = Vec::new();
    for row in rows {
        for state in &row.states {
            for event in &row.events {
                if let Err(why) = check_case(row, state, event) {
                    failures.push(format!(
                        "docs/state-machine.md line {}: {state} | {event} | {:?}: {why}",
                        row.line, row.given
                    ));
                }
            }
        }
    }
    failures
}

/// The cases the table must answer: each needs exactly one row.
fn required_cases() -> Vec<(String, String, BTreeSet<String>)> {
    let mut cases: Vec<(&str, &str, &[&str])> = vec![
        ("pending", "due", &[]),
        ("pending", "due", &["attempts spent"]),
        ("pending", "due", &["deadline passed"]),
        ("pending", "due", &["key old"]),
        ("sent", "dispatched:retryable(intent)", &["attempts spent"]),
        ("sent", "dispatched:retryable(intent)", &["deadline near"]),
        (
            "sent",
            "dispatched:retryable(intent)",
            &["retry-after long"],
        ),
        (
            "sent",
            "dispatched:retryable(connector)",
            &["retry-after long"],
        ),
        (
            "ambiguous",
            "checked:found(failed)",
            &["after execution_failed"],
        ),
        ("ambiguous", "checked:found(pending)", &["checks spent"]),
        ("ambiguous", "checked:unknown", &["checks spent"]),
        (
            "ambiguous",
            "checked:not_found",
            &["after execution_failed"],
        ),
        ("ambiguous", "checked:not_found", &["key old"]),
        ("ambiguous", "checked:not_found", &["attempts spent"]),
        ("ambiguous", "checked:not_found", &["deadline near"]),
        ("dead_lettered", "operator:retry", &["never sent"]),
    ];
    let outcomes = [
        "success",
        "permanent",
        "budget_exceeded",
        "retryable(intent)",
        "retryable(connector)",
        "ambiguous",
        "already_done",
        "payment_required",
        "execution_failed",
    ];
    let checks = [
        "found(complete)",
        "found(pending)",
        "found(failed)",
        "not_found",
        "unknown",
    ];
    let outcome_events: Vec<String> = outcomes
        .iter()
        .map(|name| format!("dispatched:{name}"))
        .collect();
    let check_events: Vec<String> = checks
        .iter()
        .map(|name| format!("checked:{name}"))
        .collect();
    cases.extend(
        outcome_events
            .iter()
            .map(|event| ("sent", event.as_str(), &[][..])),
    );
    cases.extend(
        check_events
            .iter()
            .map(|event| ("ambiguous", event.as_str(), &[][..])),
    );
    // Every state answers every event the driver, the agent or an operator can raise.
    let mut all: Vec<(String, String, BTreeSet<String>)> = Vec::new();
    for state in StateName::ALL {
        for event in [
            "due",
            "in_flight_lost",
            "payment:attached",
            "operator:retry",
            "operator:resolve",
        ] {
            all.push((state.as_str().into(), event.into(), BTreeSet::new()));
        }
    }
    let given = |names: &[&str]| names.iter().map(|name| name.to_string()).collect();
    all.extend(
        cases
            .into_iter()
            .map(|(state, event, names)| (state.into(), event.into(), given(names))),
    );
    all
}

/// Required cases no row answers, or that more than one row answers.
fn coverage_gaps(rows: &[Row]) -> Vec<String> {
    let mut gaps = Vec::new();
    for (state, event, given) in required_cases() {
        let lines: Vec<usize> = rows
            .iter()
            .filter(|row| {
                row.states.contains(&state) && row.events.contains(&event) && row.given == given
            })
            .map(|row| row.line)
            .collect();
        match lines.len() {
            1 => {}
            0 => gaps.push(format!("no row for {state} | {event} | {given:?}")),
            _ => gaps.push(format!(
                "rows at lines {lines:?} all answer {state} | {event} | {given:?}"
            )),
        }
    }
    gaps
}

fn doc_text() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/state-machine.md");
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

#[test]
fn every_row_of_the_decisions_table_is_what_the_machine_does() {
    let rows = parse_table(&doc_text()).unwrap();
    assert!(
        rows.len() >= 30,
        "only {} rows found under {TABLE_HEADING:?}",
        rows.len()
    );
    let failures = disagreements(&rows);
    assert!(
        failures.is_empty(),
        "the doc and the machine disagree:\n{}",
        failures.join("\n")
    );
}

#[test]
fn the_decisions_table_answers_every_required_case_once() {
    let rows = parse_table(&doc_text()).unwrap();
    let gaps = coverage_gaps(&rows);
    assert!(
        gaps.is_empty(),
        "docs/state-machine.md:\n{}",
        gaps.join("\n")
    );
}

/// The checker itself can fail: a 409 row that says "check at once" (what the doc said
/// before this test existed) is reported with its line, as is the case it leaves bare.
#[test]
fn a_wrong_or_missing_row_is_reported_with_its_line() {
    let doc = "# t\n\n## Decisions, one line each\n\n\
        | state | event | given | next | records | actions | why |\n|---|---|---|---|---|---|---|\n\
        | sent | dispatched:already_done | | ambiguous | attempt_finished(already_done) | set_timer(now) | |\n\
        | pending | due | | sent | attempt_started | dispatch | |\n\nafter\n";
    let rows = parse_table(doc).unwrap();
    assert_eq!(rows.len(), 2);
    let failures = disagreements(&rows);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(
        failures[0].starts_with("docs/state-machine.md line 7: sent | dispatched:already_done"),
        "{}",
        failures[0]
    );
    assert!(failures[0].contains("actions"), "{}", failures[0]);
    let gaps = coverage_gaps(&rows);
    assert!(
        gaps.contains(&"no row for pending | due | {\"attempts spent\"}".to_string()),
        "{gaps:?}"
    );
}
