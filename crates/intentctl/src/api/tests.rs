//! The views against the JSON the sidecar emitted before they existed: the `json!` code
//! below is that code, kept as the oracle, and every view must serialize to its bytes and
//! read back to itself.

use std::collections::BTreeMap;

use scheduler::{CompactionStatus, Intent, IntentId, IntentSpec, Reason, State, StateName};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use super::*;

fn parse_json_text(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

fn legacy_reason_view(reason: &Reason) -> Value {
    json!({
        "code": reason.code,
        "message": reason.message,
        "details": reason.details_json.as_deref().map(parse_json_text),
        "http_status": reason.http_status,
    })
}

/// serve.rs's `intent_view` before the views.
fn legacy_intent_view(intent: &Intent) -> Value {
    use scheduler::State as S;
    let (result, reason) = match &intent.state {
        S::Succeeded { result_json } | S::Reconciled { result_json } => {
            (Some(parse_json_text(result_json)), None)
        }
        S::Failed { reason } | S::DeadLettered { reason } | S::AwaitingPayment { reason } => {
            (None, Some(legacy_reason_view(reason)))
        }
        _ => (None, None),
    };
    let mut view = json!({
        "id": intent.spec.id.to_string(),
        "state": intent.state.name().as_str(),
        "connector": intent.spec.connector,
        "operation": intent.spec.operation,
        "params": parse_json_text(&intent.spec.params_json),
        "idempotency_key": intent.spec.idempotency_key,
        "attempts": intent.attempts.len(),
        "status_checks": intent.status_checks,
        "last_error": intent.last_error.as_ref().map(legacy_reason_view),
        "result": result,
        "reason": reason,
        "resource_id": intent.resource_id,
        "submitted_at_ms": intent.spec.submitted_at_ms,
        "updated_at_ms": intent.updated_at_ms,
    });
    if let (S::Resolved { note, evidence }, Some(object)) = (&intent.state, view.as_object_mut()) {
        object.insert("note".to_string(), json!(note));
        object.insert("evidence".to_string(), json!(evidence));
    }
    view
}

/// serve.rs's compaction JSON in `/healthz` before the views.
fn legacy_compaction(compaction: &CompactionStatus) -> Value {
    json!({
        "state": if compaction.consecutive_failures > 0 { "failing" } else { "ok" },
        "compactions_total": compaction.compactions_total,
        "failures_total": compaction.failures_total,
        "consecutive_failures": compaction.consecutive_failures,
        "last_error": compaction.last_error,
        "retry_at_ms": compaction.retry_at_ms,
        "last_success_at_ms": compaction.last_success_at_ms,
        "checkpoint_lsn": compaction.checkpoint_lsn,
    })
}

/// `view` serializes to exactly the bytes of `legacy`, and reads back to itself.
fn assert_same_bytes_and_round_trip<T>(view: &T, legacy: &Value)
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let text = serde_json::to_string(view).expect("serialize");
    assert_eq!(text, legacy.to_string(), "bytes differ from today's JSON");
    let back: T = serde_json::from_str(&text).expect("deserialize");
    assert_eq!(&back, view, "round trip through {text}");
}

fn reason(details_json: Option<&str>, http_status: Option<u16>) -> Reason {
    Reason {
        code: "execution_failed".to_string(),
        message: "the provider said no".to_string(),
        details_json: details_json.map(str::to_string),
        http_status,
    }
}

fn intent_in(state: State) -> Intent {
    let spec = IntentSpec {
        id: IntentId::parse("0b8e4f5c-1d2a-4a39-9d0e-3f1f2c3d4e5f").expect("id"),
        connector: "aeeron".to_string(),
        operation: "execute".to_string(),
        params_json: r#"{"action":"compute.gpu_hours","budget":{"amount":"10.00"}}"#.to_string(),
        idempotency_key: "k-1".to_string(),
        payload_sha256: [7; 32],
        amount_micros: Some(10_000_000),
        submitted_at_ms: 1_700_000_000_000,
    };
    let mut intent = Intent::new(spec, 3);
    intent.state = state;
    intent.status_checks = 2;
    intent.updated_at_ms = 1_700_000_000_500;
    intent
}

/// One intent in every state, with the optional parts both set and unset.
fn sample_intents() -> Vec<Intent> {
    let mut with_history = intent_in(State::Ambiguous {
        checks: 1,
        due_ms: 5,
        resend_allowed: false,
    });
    with_history.last_error = Some(reason(Some(r#"{"execution_id":"ex_1"}"#), Some(502)));
    with_history.resource_id = Some("ex_1".to_string());
    vec![
        intent_in(State::Pending { due_ms: 0 }),
        intent_in(State::Sent { attempt: 1 }),
        with_history,
        intent_in(State::AwaitingPayment {
            reason: reason(Some(r#"{"amount":"8.40","currency":"USDC"}"#), Some(402)),
        }),
        intent_in(State::Succeeded {
            result_json: r#"{"id":"bet_1","won":true}"#.to_string(),
        }),
        intent_in(State::Reconciled {
            result_json: "not json".to_string(),
        }),
        intent_in(State::Failed {
            reason: reason(None, None),
        }),
        intent_in(State::DeadLettered {
            reason: reason(Some("details that are not JSON"), Some(500)),
        }),
        intent_in(State::Resolved {
            note: "paid by hand".to_string(),
            evidence: Some("tx_123".to_string()),
        }),
        intent_in(State::Resolved {
            note: "nothing happened".to_string(),
            evidence: None,
        }),
    ]
}

#[test]
fn intent_view_is_byte_compatible_and_round_trips_in_every_state() {
    let intents = sample_intents();
    let covered: std::collections::BTreeSet<StateName> =
        intents.iter().map(|intent| intent.state.name()).collect();
    assert_eq!(covered.len(), StateName::ALL.len(), "a state has no sample");
    for intent in &intents {
        assert_same_bytes_and_round_trip(&IntentView::from(intent), &legacy_intent_view(intent));
    }
}

#[test]
fn intent_page_is_byte_compatible_and_round_trips() {
    let intents = sample_intents();
    for next_cursor in [
        None,
        Some("0b8e4f5c-1d2a-4a39-9d0e-3f1f2c3d4e5f".to_string()),
    ] {
        let page = IntentPage {
            intents: intents.iter().map(IntentView::from).collect(),
            next_cursor: next_cursor.clone(),
        };
        let views: Vec<Value> = intents.iter().map(legacy_intent_view).collect();
        let legacy = json!({"intents": views, "next_cursor": next_cursor});
        assert_same_bytes_and_round_trip(&page, &legacy);
    }
}

fn compaction_samples() -> Vec<CompactionStatus> {
    vec![
        CompactionStatus::default(),
        CompactionStatus {
            compactions_total: 4,
            failures_total: 2,
            consecutive_failures: 1,
            last_error: Some("no space left on device".to_string()),
            last_success_at_ms: Some(1_000),
            retry_at_ms: Some(2_000),
            checkpoint_lsn: Some(40),
        },
    ]
}

#[test]
fn health_view_is_byte_compatible_and_round_trips() {
    let message = "the write-ahead log refused a write";
    for compaction in compaction_samples() {
        let view = CompactionView::from(&compaction);
        let legacy = legacy_compaction(&compaction);
        assert_same_bytes_and_round_trip(&view, &legacy);
        let ok = HealthView {
            compaction: view.clone(),
            log: LogHealth::Ok,
            message: None,
            status: HealthStatus::Warning,
            sync: SyncName::NoneUnsafe,
        };
        let legacy_ok =
            json!({"status": "warning", "log": "ok", "sync": "none_unsafe", "compaction": legacy});
        assert_same_bytes_and_round_trip(&ok, &legacy_ok);
        let degraded = HealthView {
            compaction: view,
            log: LogHealth::Poisoned,
            message: Some(message.to_string()),
            status: HealthStatus::Degraded,
            sync: SyncName::Data,
        };
        let legacy_degraded = json!({"status": "degraded", "log": "poisoned", "message": message, "sync": "data", "compaction": legacy});
        assert_same_bytes_and_round_trip(&degraded, &legacy_degraded);
    }
}

#[test]
fn error_and_request_bodies_keep_their_field_names() {
    let error = ErrorBody {
        error: "not_found".to_string(),
        message: "no such route".to_string(),
    };
    assert_same_bytes_and_round_trip(
        &error,
        &json!({"error": "not_found", "message": "no such route"}),
    );
    let submit = SubmitBody {
        connector: "purple_flea".to_string(),
        idempotency_key: Some("k1".to_string()),
        operation: "bet".to_string(),
        params: json!({"amount": "1.00"}),
    };
    assert_same_bytes_and_round_trip(
        &submit,
        &json!({"connector": "purple_flea", "operation": "bet", "params": {"amount": "1.00"}, "idempotency_key": "k1"}),
    );
    let payment = PaymentBody {
        payment_id: "pay_1".to_string(),
    };
    assert_same_bytes_and_round_trip(&payment, &json!({"payment_id": "pay_1"}));
    // The CLI's `dlq resolve --server` sends exactly this.
    let resolve = ResolveBody {
        evidence: None,
        note: "paid".to_string(),
    };
    assert_same_bytes_and_round_trip(&resolve, &json!({"note": "paid", "evidence": null}));
    // What clients may leave out stays optional; what they may not add is refused.
    let minimal: SubmitBody =
        serde_json::from_value(json!({"connector": "aeeron", "operation": "execute"}))
            .expect("minimal submit");
    assert_eq!(
        (minimal.params, minimal.idempotency_key),
        (Value::Null, None)
    );
    for (body, what) in [
        (json!({"payment_id": "p", "amount": 1}), "payment"),
        (json!({"note": "n", "extra": 1}), "resolve"),
    ] {
        let refused = match what {
            "payment" => serde_json::from_value::<PaymentBody>(body).is_err(),
            _ => serde_json::from_value::<ResolveBody>(body).is_err(),
        };
        assert!(refused, "{what}: an unknown field must be refused");
    }
}

#[test]
fn stats_view_round_trips() {
    let counts: BTreeMap<String, u64> = StateName::ALL
        .iter()
        .map(|name| (name.as_str().to_string(), 1))
        .collect();
    let stats = StatsView {
        compaction: CompactionView::from(&compaction_samples()[1]),
        counts,
        log: LogStatsView {
            batches_total: 3,
            bytes: 4_096,
            bytes_written_total: 8_192,
            records_total: 9,
            segments: 1,
            sync_micros_total: 120,
        },
    };
    let text = serde_json::to_string(&stats).expect("serialize");
    let back: StatsView = serde_json::from_str(&text).expect("deserialize");
    assert_eq!(back, stats);
    let value: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(value["counts"]["awaiting_payment"], 1, "{value}");
    assert_eq!(value["log"]["bytes"], 4_096, "{value}");
    assert_eq!(value["compaction"]["state"], "failing", "{value}");
}

#[test]
fn every_endpoint_is_its_row_of_the_route_table() {
    for (index, route) in ROUTES.iter().enumerate() {
        assert_eq!(route.endpoint as usize, index, "{route:?}");
        assert!(std::ptr::eq(route.endpoint.route(), route), "{route:?}");
    }
    let mut pairs: Vec<(Method, &str)> = ROUTES
        .iter()
        .map(|route| (route.method, route.path))
        .collect();
    pairs.sort();
    pairs.dedup();
    assert_eq!(
        pairs.len(),
        ROUTES.len(),
        "a (method, path) is listed twice"
    );
    assert_eq!(
        Endpoint::RetryDeadLetter.path_with_id("abc"),
        "/v1/dlq/abc/retry"
    );
}
