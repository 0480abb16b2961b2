//! The document against the route table and the views: every route is documented and
//! nothing else, and every schema has exactly the fields its view serializes.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::json;

use super::*;
use crate::api::{
    CompactionState, CompactionView, ErrorBody, HealthStatus, HealthView, IntentPage, IntentView,
    LogHealth, LogStatsView, PaymentBody, ReasonView, ResolveBody, StatsView, SubmitBody, SyncName,
};

fn routes_in_document() -> BTreeSet<(String, String)> {
    let document = document();
    let mut routes = BTreeSet::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            routes.insert((method.clone(), path.clone()));
        }
    }
    routes
}

#[test]
fn every_route_in_the_table_is_documented_and_nothing_else() {
    let listed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|route| (route.method.as_str().to_string(), route.path.to_string()))
        .collect();
    assert!(listed.len() >= 12, "too few routes: {listed:?}");
    assert_eq!(listed, routes_in_document());
}

fn reason_sample() -> ReasonView {
    ReasonView {
        code: "execution_failed".to_string(),
        details: Some(json!({"execution_id": "ex_1"})),
        http_status: Some(502),
        message: "m".to_string(),
    }
}

/// An intent with every optional field present (a resolved one).
fn intent_sample() -> IntentView {
    IntentView {
        attempts: 1,
        connector: "aeeron".to_string(),
        evidence: Some(Some("tx_1".to_string())),
        id: "0b8e4f5c-1d2a-4a39-9d0e-3f1f2c3d4e5f".to_string(),
        idempotency_key: "k-1".to_string(),
        last_error: Some(reason_sample()),
        note: Some("paid by hand".to_string()),
        operation: "execute".to_string(),
        params: json!({}),
        reason: Some(reason_sample()),
        resource_id: Some("ex_1".to_string()),
        result: Some(json!({"ok": true})),
        state: "resolved".to_string(),
        status_checks: 0,
        submitted_at_ms: 1,
        updated_at_ms: 2,
    }
}

fn compaction_sample() -> CompactionView {
    CompactionView {
        checkpoint_lsn: Some(1),
        compactions_total: 1,
        consecutive_failures: 0,
        failures_total: 0,
        last_error: None,
        last_success_at_ms: Some(1),
        retry_at_ms: None,
        state: CompactionState::Ok,
    }
}

fn log_stats_sample() -> LogStatsView {
    LogStatsView {
        batches_total: 1,
        bytes: 2,
        bytes_written_total: 3,
        records_total: 4,
        segments: 1,
        sync_micros_total: 5,
    }
}

fn stats_sample() -> StatsView {
    StatsView {
        compaction: compaction_sample(),
        counts: scheduler::StateName::ALL
            .iter()
            .map(|name| (name.as_str().to_string(), 0))
            .collect(),
        log: log_stats_sample(),
    }
}

fn fields(view: &impl Serialize) -> BTreeSet<String> {
    let value = serde_json::to_value(view).expect("serialize");
    value
        .as_object()
        .expect("an object")
        .keys()
        .cloned()
        .collect()
}

/// Schema name -> the serialized fields of a sample of its view with every optional
/// field present.
fn view_fields() -> BTreeMap<&'static str, BTreeSet<String>> {
    let health = HealthView {
        compaction: compaction_sample(),
        log: LogHealth::Poisoned,
        message: Some("refused".to_string()),
        status: HealthStatus::Degraded,
        sync: SyncName::Data,
    };
    let submit = SubmitBody {
        connector: "purple_flea".to_string(),
        idempotency_key: Some("k".to_string()),
        operation: "bet".to_string(),
        params: json!({}),
    };
    let resolve = ResolveBody {
        evidence: Some("tx".to_string()),
        note: "n".to_string(),
    };
    let error = ErrorBody {
        error: "not_found".to_string(),
        message: "m".to_string(),
    };
    let page = IntentPage {
        intents: vec![intent_sample()],
        next_cursor: None,
    };
    BTreeMap::from([
        ("Error", fields(&error)),
        ("SubmitRequest", fields(&submit)),
        (
            "PaymentRequest",
            fields(&PaymentBody {
                payment_id: "p".to_string(),
            }),
        ),
        ("ResolveRequest", fields(&resolve)),
        ("Reason", fields(&reason_sample())),
        ("Intent", fields(&intent_sample())),
        ("IntentPage", fields(&page)),
        ("Health", fields(&health)),
        ("Compaction", fields(&compaction_sample())),
        ("Stats", fields(&stats_sample())),
        ("LogStats", fields(&log_stats_sample())),
    ])
}

#[test]
fn every_object_schema_has_exactly_the_fields_of_its_view() {
    let document = document();
    let schemas = document["components"]["schemas"]
        .as_object()
        .expect("schemas");
    let views = view_fields();
    for (name, schema) in schemas {
        if schema["type"] != "object" {
            continue;
        }
        let documented: BTreeSet<String> = schema["properties"]
            .as_object()
            .expect("properties")
            .keys()
            .cloned()
            .collect();
        let Some(serialized) = views.get(name.as_str()) else {
            panic!("schema {name} describes no view of crate::api");
        };
        assert_eq!(&documented, serialized, "schema {name}");
        for required in schema["required"].as_array().into_iter().flatten() {
            let required = required.as_str().expect("a field name");
            assert!(documented.contains(required), "{name}: {required}");
        }
    }
    let counts: BTreeSet<String> = document
        .pointer("/components/schemas/Stats/properties/counts/properties")
        .and_then(Value::as_object)
        .expect("counts")
        .keys()
        .cloned()
        .collect();
    assert_eq!(counts, fields(&stats_sample().counts), "Stats.counts");
    for name in views.keys() {
        assert!(schemas.contains_key(*name), "view {name} has no schema");
    }
}

#[test]
fn document_shape_table() {
    let document = document();
    // (JSON pointer, expected value)
    let cases: &[(&str, Value)] = &[
        ("/openapi", json!("3.0.3")),
        ("/components/securitySchemes/bearer/scheme", json!("bearer")),
        ("/security/0/bearer", json!([])),
        ("/paths/~1healthz/get/security", json!([])),
        ("/paths/~1openapi.json/get/security", json!([])),
        (
            "/paths/~1v1~1intents/post/requestBody/content/application~1json/schema/$ref",
            json!("#/components/schemas/SubmitRequest"),
        ),
        (
            "/components/schemas/SubmitRequest/properties/idempotency_key/maxLength",
            json!(64),
        ),
        (
            "/components/schemas/StateName/enum/3",
            json!("awaiting_payment"),
        ),
    ];
    for (pointer, expected) in cases {
        assert_eq!(document.pointer(pointer), Some(expected), "{pointer}");
    }
}

#[test]
fn every_operation_documents_errors_as_error_schema_and_every_ref_resolves() {
    let document = document();
    let text = document.to_string();
    for (start, _) in text.match_indices("#/components/schemas/") {
        let rest = &text[start + "#/components/schemas/".len()..];
        let name: String = rest.chars().take_while(|c| c.is_alphanumeric()).collect();
        assert!(
            document["components"]["schemas"].get(&name).is_some(),
            "dangling $ref {name}"
        );
    }
    for route in &ROUTES {
        let (method, path) = (route.method.as_str(), route.path);
        let responses = &document["paths"][path][method]["responses"];
        let responses = responses.as_object().expect("responses");
        assert!(!responses.is_empty(), "{method} {path}");
        for (status, response) in responses {
            let errors_are_health = path == "/healthz";
            if (status.starts_with('4') || status.starts_with('5')) && !errors_are_health {
                assert_eq!(
                    response.pointer("/content/application~1json/schema/$ref"),
                    Some(&json!("#/components/schemas/Error")),
                    "{method} {path} {status}"
                );
            }
        }
        let protected = !matches!(path, "/healthz" | "/openapi.json");
        assert_eq!(
            responses.contains_key("401"),
            protected,
            "{method} {path}: 401 documented iff the token applies"
        );
    }
}
