//! Work that cannot finish must end visibly (a state with a reason, or a logged wait with a
//! timer), never spin the driver and never hang `shutdown`; and an operator's retry of a
//! dead letter gets a fresh deadline. All on tokio's paused clock.

use std::sync::Arc;
use std::time::Duration;

use connectors::{ErrorDetail, Outcome};
use serde_json::{json, Value};

use super::scripted::{unavailable, Scripted};
use crate::record::{Record, RECORD_KIND};
use crate::{
    ConnectorSettings, Engine, EngineConfig, Intent, IntentId, IntentSpec, State, StateName,
    SubmitRequest,
};

const HOUR: Duration = Duration::from_secs(3600);
const ANCHOR_MS: u64 = 1_800_000_000_000;

fn config(dir: &std::path::Path) -> EngineConfig {
    let mut config = EngineConfig::new(dir);
    config.index = false;
    config.hold_paused_clock_during_io = true;
    config.seed = Some(7);
    config.clock = Some(crate::Clock::anchored_at(ANCHOR_MS));
    config
}

async fn open(config: EngineConfig, scripted: Option<&Scripted>) -> Engine {
    let connectors = scripted
        .map(|scripted| vec![ConnectorSettings::new(Arc::new(scripted.clone()))])
        .unwrap_or_default();
    Engine::open(config, connectors).await.unwrap().0
}

async fn submit(engine: &Engine, key: &str) -> IntentId {
    let request = SubmitRequest {
        connector: "scripted".into(),
        operation: "pay".into(),
        params: json!({"amount": "1.00"}),
        idempotency_key: Some(key.into()),
    };
    engine.submit(request).await.unwrap().intent.spec.id
}

/// Shutdown must finish: a hang shows as this timeout (the paused clock auto-advances
/// while everything waits).
async fn shutdown(engine: &Engine) {
    tokio::time::timeout(Duration::from_secs(60), engine.shutdown())
        .await
        .expect("shutdown hung");
}

fn last_error_code(intent: &Intent) -> Option<&str> {
    intent
        .last_error
        .as_ref()
        .map(|reason| reason.code.as_str())
}

// Defect 6: `dlq retry` reset the attempt budget but not the deadline (one hour after
// submit in the aggressive preset), so a retry made after that hour dead-lettered the
// intent again as `deadline_exceeded` once the status check said "not found".
#[tokio::test(start_paused = true)]
async fn a_dead_letter_retried_two_hours_after_submit_is_re_sent() {
    let dir = tempfile::tempdir().unwrap();
    let scripted =
        Scripted::with(|script| script.outcomes = (0..10).map(|_| unavailable()).collect());
    let engine = open(config(dir.path()), Some(&scripted)).await;
    let submitted_at = tokio::time::Instant::now();
    let id = submit(&engine, "dlq-1").await;
    let dead = engine.wait(id, HOUR).await.unwrap();
    assert_eq!(dead.state.name(), StateName::DeadLettered, "{dead:?}");
    assert_eq!(scripted.counts(), (10, 0));
    tokio::time::sleep_until(submitted_at + 2 * HOUR).await;
    let retried = engine.dlq_retry(id).await.unwrap();
    assert_eq!(retried.state.name(), StateName::Ambiguous);
    let done = engine.wait(id, HOUR).await.unwrap();
    assert_eq!(done.state.name(), StateName::Succeeded, "{done:?}");
    assert_eq!(
        scripted.counts(),
        (11, 1),
        "one status check, then one re-send"
    );
    shutdown(&engine).await;
    // The fresh deadline is folded from the operator's record: a replay agrees.
    let engine = open(config(dir.path()), Some(&scripted)).await;
    assert_eq!(engine.get(id).unwrap(), done);
    shutdown(&engine).await;
}

// Defect 7a: a connector that panicked in `dispatch` left the intent in flight forever
// and `shutdown` waiting for a worker that never finished.
#[tokio::test(start_paused = true)]
async fn a_panicking_dispatch_makes_the_attempt_ambiguous_and_shutdown_completes() {
    let dir = tempfile::tempdir().unwrap();
    let scripted = Scripted::with(|script| script.panic_in_dispatch = true);
    let engine = open(config(dir.path()), Some(&scripted)).await;
    let id = submit(&engine, "panic-1").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let intent = engine.get(id).unwrap();
    // The request may have gone out before the panic: ambiguous, a status check first (G3).
    assert!(
        matches!(
            intent.state,
            State::Ambiguous {
                resend_allowed: true,
                ..
            }
        ),
        "{intent:?}"
    );
    assert_eq!(last_error_code(&intent), Some("connector_panicked"));
    assert_eq!(engine.debug_driver().1, 0, "nothing stays in flight");
    scripted.script.lock().unwrap().panic_in_dispatch = false;
    let done = engine.wait(id, HOUR).await.unwrap();
    assert_eq!(done.state.name(), StateName::Succeeded, "{done:?}");
    assert_eq!(scripted.counts(), (2, 1), "checked before the re-send");
    shutdown(&engine).await;
}

// Defect 7a: a panic in `check_status` is an unknown answer: checked again later.
#[tokio::test(start_paused = true)]
async fn a_panicking_status_check_is_an_unknown_answer() {
    let dir = tempfile::tempdir().unwrap();
    let scripted = Scripted::with(|script| {
        script.outcomes.push_back(Outcome::Ambiguous {
            reason: ErrorDetail::new("timeout", "scripted timeout"),
        });
        script.panic_in_check = true;
    });
    let engine = open(config(dir.path()), Some(&scripted)).await;
    let id = submit(&engine, "panic-2").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let intent = engine.get(id).unwrap();
    assert!(
        matches!(intent.state, State::Ambiguous { checks: 1, .. }),
        "{intent:?}"
    );
    assert_eq!(last_error_code(&intent), Some("connector_panicked"));
    assert_eq!(engine.debug_driver().1, 0, "nothing stays in flight");
    scripted.script.lock().unwrap().panic_in_check = false;
    let done = engine.wait(id, HOUR).await.unwrap();
    assert_eq!(done.state.name(), StateName::Succeeded, "{done:?}");
    shutdown(&engine).await;
}

/// Writes intents straight into a log, as an engine that knew their connector would have.
async fn write_log(dir: &std::path::Path, records: Vec<Record>) {
    let (log, _) = intent_log::Log::open_with(
        Arc::new(intent_log::StdFileSystem),
        dir.join("wal"),
        intent_log::Options::default(),
    )
    .unwrap();
    for record in records {
        log.append(RECORD_KIND, record.encode().unwrap())
            .await
            .unwrap();
    }
    log.close();
}

fn spec(byte: u8, key: &str) -> IntentSpec {
    IntentSpec {
        id: IntentId([byte; 16]),
        connector: "scripted".into(),
        operation: "pay".into(),
        params_json: r#"{"amount":"1.00"}"#.into(),
        idempotency_key: key.into(),
        payload_sha256: [byte; 32],
        amount_micros: Some(1_000_000),
        submitted_at_ms: ANCHOR_MS - 1_000,
    }
}

// Defect 7b: an intent whose connector is not registered (removed from the config; the
// offline `dlq retry`, which opens with no connectors) spun the driver: the worker
// returned at once and the timer was set again at the same, past, due time.
#[tokio::test(start_paused = true)]
async fn an_unregistered_connector_waits_without_spinning_and_shutdown_completes() {
    let dir = tempfile::tempdir().unwrap();
    let (pending, sent) = (spec(1, "orphan-1"), spec(2, "orphan-2"));
    let sent_id = sent.id;
    write_log(
        dir.path(),
        vec![
            Record::Submitted(pending.clone()),
            Record::Submitted(sent),
            Record::AttemptStarted {
                id: sent_id,
                attempt: 1,
                at_ms: ANCHOR_MS - 500,
            },
        ],
    )
    .await;
    let engine = open(config(dir.path()), None).await;
    // Ten simulated minutes, stepped by hand (a spinning driver never lets the paused
    // clock auto-advance, so a plain sleep would hang instead of failing).
    for second in 1..=600u64 {
        tokio::time::advance(Duration::from_secs(1)).await;
        let starts = engine.worker_starts();
        assert!(
            starts <= 2 * (second / 60 + 2),
            "the driver spins: {starts} worker starts after {second} s"
        );
    }
    assert!(
        engine.worker_starts() >= 2,
        "the intents were never looked at"
    );
    let pending = engine.get(pending.id).unwrap();
    assert_eq!(pending.state.name(), StateName::Pending, "{pending:?}");
    // Found in flight on open: it stays ambiguous (a status check decides, later).
    let sent = engine.get(sent_id).unwrap();
    assert_eq!(sent.state.name(), StateName::Ambiguous, "{sent:?}");
    shutdown(&engine).await;
}

/// A result whose JSON is exactly the connectors' response cap (1 MiB), the most a
/// provider can send back.
fn big_result() -> Value {
    let frame = json!({"id": "res-big", "status": "complete", "filler": ""});
    let filler_bytes = connectors::http::RESPONSE_BODY_BYTES_MAX - frame.to_string().len();
    let result = json!({"id": "res-big", "status": "complete", "filler": "x".repeat(filler_bytes)});
    assert_eq!(
        result.to_string().len(),
        connectors::http::RESPONSE_BODY_BYTES_MAX
    );
    result
}

// Defect 7c: a success body near the 1 MiB response cap (= record_bytes_max) made the
// "attempt finished" record too large: the append failed and the intent stayed `Sent`
// with no timer, forever.
#[tokio::test(start_paused = true)]
async fn a_success_body_at_the_response_cap_ends_succeeded() {
    let dir = tempfile::tempdir().unwrap();
    let result = big_result();
    let original_bytes = result.to_string().len();
    let scripted = Scripted::with(|script| {
        script.outcomes.push_back(Outcome::Success { result });
    });
    let engine = open(config(dir.path()), Some(&scripted)).await;
    let id = submit(&engine, "big-1").await;
    let done = engine.wait(id, Duration::from_secs(60)).await.unwrap();
    let State::Succeeded { result_json } = &done.state else {
        panic!("not succeeded: {:?}", done.state.name());
    };
    let stored: Value = serde_json::from_str(result_json).unwrap();
    let marker = &stored["truncated"];
    assert_eq!(marker["original_bytes"], json!(original_bytes), "{marker}");
    assert_eq!(done.resource_id.as_deref(), Some("res-big"));
    // Compaction snapshots the intent: it must fit a record too.
    engine.compact().await.unwrap();
    shutdown(&engine).await;
    let engine = open(config(dir.path()), Some(&scripted)).await;
    assert_eq!(engine.get(id).unwrap().state, done.state);
    shutdown(&engine).await;
}

// Defect 7c, found the same way after a status check: "found, complete" with a huge body.
#[tokio::test(start_paused = true)]
async fn a_reconciled_body_at_the_response_cap_ends_reconciled() {
    let dir = tempfile::tempdir().unwrap();
    let scripted = Scripted::with(|script| {
        script.outcomes.push_back(Outcome::Ambiguous {
            reason: ErrorDetail::new("timeout", "scripted timeout"),
        });
        script.checks.push_back(connectors::StatusCheck::Found {
            result: big_result(),
            remote_status: connectors::RemoteStatus::Complete,
        });
    });
    let engine = open(config(dir.path()), Some(&scripted)).await;
    let id = submit(&engine, "big-2").await;
    let done = engine.wait(id, Duration::from_secs(600)).await.unwrap();
    assert_eq!(
        done.state.name(),
        StateName::Reconciled,
        "{:?}",
        done.state.name()
    );
    shutdown(&engine).await;
}

// Any step whose record the log refuses (here: an error message too long for a tiny
// `record_bytes_max`) must leave the intent with a timer or a visible state. An attempt
// whose outcome could not be recorded used to stay `Sent` with no timer until a restart;
// it is ambiguous now, as after a crash, and a status check decides (G3).
#[tokio::test(start_paused = true)]
async fn an_attempt_whose_outcome_cannot_be_logged_becomes_ambiguous() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.log.record_bytes_max = 1024;
    let scripted = Scripted::with(|script| {
        script.outcomes.push_back(Outcome::Retryable {
            reason: ErrorDetail::new("unavailable", "m".repeat(1500)),
            retry_after: None,
            scope: connectors::RetryScope::Intent,
        });
    });
    let engine = open(config, Some(&scripted)).await;
    let id = submit(&engine, "unloggable-1").await;
    let done = engine.wait(id, Duration::from_secs(600)).await.unwrap();
    assert_eq!(done.state.name(), StateName::Succeeded, "{done:?}");
    assert_eq!(
        done.attempts[0].outcome, None,
        "the first outcome was never recorded"
    );
    assert_eq!(done.status_checks, 1, "checked before the re-send");
    assert_eq!(scripted.counts(), (2, 1));
    assert!(!engine.is_log_poisoned());
    shutdown(&engine).await;
}
