//! The OpenAPI 3.0 document of `intentctl serve`, served at `GET /openapi.json`.
//!
//! Kept by hand next to the router; a unit test reads serve.rs and checks that every
//! `.route(..)` registered there (path and method) is described here, and the other way round.

use axum::Json;
use serde_json::{json, Map, Value};

use crate::serve::REQUEST_BODY_BYTES_MAX;

/// Every (method, path) the sidecar serves, in OpenAPI path syntax.
pub const ROUTES: &[(&str, &str)] = &[
    ("post", "/v1/intents"),
    ("get", "/v1/intents"),
    ("get", "/v1/intents/{id}"),
    ("get", "/v1/intents/{id}/wait"),
    ("post", "/v1/intents/{id}/payment"),
    ("get", "/v1/dlq"),
    ("post", "/v1/dlq/{id}/retry"),
    ("post", "/v1/dlq/{id}/resolve"),
    ("get", "/metrics"),
    ("get", "/healthz"),
    ("get", "/openapi.json"),
];

/// `GET /openapi.json`.
pub async fn serve_document() -> Json<Value> {
    Json(document())
}

/// A response that carries the error body, with a description of when it happens.
fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    })
}

fn json_response(description: &str, schema: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}
    })
}

fn json_body(schema: &str) -> Value {
    json!({
        "required": true,
        "description": format!(
            "JSON, at most {REQUEST_BODY_BYTES_MAX} bytes (413 above). The body is parsed as \
             JSON whatever the Content-Type says: not JSON is 400 `malformed_json`, the wrong \
             shape (unknown or missing fields) is 422 `invalid_input`."
        ),
        "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}
    })
}

fn id_parameter() -> Value {
    json!({
        "name": "id", "in": "path", "required": true,
        "description": "Intent id (a UUID); anything else is 404.",
        "schema": {"type": "string", "format": "uuid"}
    })
}

fn list_parameters() -> Value {
    json!([
        {"name": "state", "in": "query", "required": false,
         "description": "Only intents in this state (422 when unknown).",
         "schema": {"$ref": "#/components/schemas/StateName"}},
        {"name": "connector", "in": "query", "required": false,
         "schema": {"type": "string"}},
        {"name": "limit", "in": "query", "required": false,
         "description": "Page size, 1..=1000 (422 otherwise).",
         "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}},
        {"name": "cursor", "in": "query", "required": false,
         "description": "`next_cursor` of the previous page.",
         "schema": {"type": "string", "format": "uuid"}}
    ])
}

fn unauthorized() -> Value {
    error_response("`unauthorized`: missing or wrong bearer token (only with --token-env).")
}

fn too_large() -> Value {
    error_response("`invalid_body`: the body is larger than the cap.")
}

fn schemas() -> Value {
    let states: Vec<&str> = scheduler::StateName::ALL
        .iter()
        .map(|name| name.as_str())
        .collect();
    json!({
        "Error": {
            "type": "object",
            "required": ["error", "message"],
            "properties": {
                "error": {"type": "string", "description": "Machine-readable code, e.g. malformed_json, invalid_input, unknown_connector, spending_limit, idempotency_conflict, not_found, wrong_state, unauthorized, invalid_body, shutting_down, log_unavailable, engine_error."},
                "message": {"type": "string"}
            }
        },
        "StateName": {"type": "string", "enum": states},
        "SubmitRequest": {
            "type": "object",
            "additionalProperties": false,
            "required": ["connector", "operation"],
            "properties": {
                "connector": {"type": "string", "description": "`purple_flea` or `aeeron` (422 `unknown_connector` otherwise)."},
                "operation": {"type": "string", "description": "purple_flea: bet, escrow_create, escrow_fund, escrow_release, escrow_refund, transfer; aeeron: execute."},
                "params": {"type": "object", "description": "Operation parameters; amounts are decimal strings, never numbers."},
                "idempotency_key": {"type": "string", "minLength": 1, "maxLength": 64, "description": "Visible ASCII; generated when absent. The same key with the same body returns the same intent (200); with another body, 409."}
            },
            "example": {"connector": "purple_flea", "operation": "bet", "idempotency_key": "agent-1-bet-1", "params": {"game": "dice", "amount": "10.00", "target": 50, "prediction": "over"}}
        },
        "PaymentRequest": {
            "type": "object",
            "additionalProperties": false,
            "required": ["payment_id"],
            "properties": {"payment_id": {"type": "string", "minLength": 1, "maxLength": 128}}
        },
        "ResolveRequest": {
            "type": "object",
            "additionalProperties": false,
            "required": ["note"],
            "properties": {
                "note": {"type": "string", "minLength": 1, "maxLength": 4096},
                "evidence": {"type": "string", "maxLength": 4096, "nullable": true}
            }
        },
        "Reason": {
            "type": "object",
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {"nullable": true, "description": "The provider's details (JSON when it was JSON)."},
                "http_status": {"type": "integer", "nullable": true}
            }
        },
        "Intent": {
            "type": "object",
            "required": ["id", "state", "connector", "operation", "params", "idempotency_key", "attempts", "status_checks", "submitted_at_ms", "updated_at_ms"],
            "properties": {
                "id": {"type": "string", "format": "uuid"},
                "state": {"$ref": "#/components/schemas/StateName"},
                "connector": {"type": "string"},
                "operation": {"type": "string"},
                "params": {"type": "object"},
                "idempotency_key": {"type": "string"},
                "attempts": {"type": "integer", "minimum": 0},
                "status_checks": {"type": "integer", "minimum": 0},
                "last_error": {"allOf": [{"$ref": "#/components/schemas/Reason"}], "nullable": true},
                "result": {"nullable": true, "description": "Provider result once succeeded or reconciled."},
                "reason": {"allOf": [{"$ref": "#/components/schemas/Reason"}], "nullable": true, "description": "Why failed, dead_lettered or awaiting_payment (code payment_required, details with amount and currency)."},
                "resource_id": {"type": "string", "nullable": true},
                "submitted_at_ms": {"type": "integer"},
                "updated_at_ms": {"type": "integer"},
                "note": {"type": "string", "description": "Only when resolved."},
                "evidence": {"type": "string", "nullable": true, "description": "Only when resolved."}
            }
        },
        "IntentPage": {
            "type": "object",
            "required": ["intents", "next_cursor"],
            "properties": {
                "intents": {"type": "array", "items": {"$ref": "#/components/schemas/Intent"}},
                "next_cursor": {"type": "string", "nullable": true}
            }
        },
        "Health": {
            "type": "object",
            "required": ["status"],
            "properties": {
                "status": {"type": "string", "enum": ["ok", "warning", "degraded"]},
                "log": {"type": "string", "enum": ["ok", "poisoned"]},
                "message": {"type": "string"},
                "sync": {"type": "string", "enum": ["data", "all", "none_unsafe"]},
                "compaction": {
                    "type": "object",
                    "properties": {
                        "state": {"type": "string", "enum": ["ok", "failing"]},
                        "compactions_total": {"type": "integer"},
                        "failures_total": {"type": "integer"},
                        "consecutive_failures": {"type": "integer"},
                        "last_error": {"type": "string", "nullable": true},
                        "retry_at_ms": {"type": "integer", "nullable": true},
                        "last_success_at_ms": {"type": "integer", "nullable": true},
                        "checkpoint_lsn": {"type": "integer", "nullable": true}
                    }
                }
            }
        }
    })
}

/// The operation object of one (method, path); `None` for a pair not in [`ROUTES`].
fn operation(method: &str, path: &str) -> Option<Value> {
    let intent = |text: &str| json_response(text, "Intent");
    let shutting_down = error_response(
        "`shutting_down`: the engine is stopping; `log_unavailable`: the log refused a write (disk full?) and no change is accepted until it recovers.",
    );
    let operation = match (method, path) {
        ("post", "/v1/intents") => json!({
            "operationId": "submitIntent",
            "summary": "Submit an intent (written to the log before it is dispatched).",
            "requestBody": json_body("SubmitRequest"),
            "responses": {
                "201": intent("Accepted: a new intent."),
                "200": intent("The same key and body were submitted before: that intent."),
                "400": error_response("`malformed_json`: the body is not JSON."),
                "401": unauthorized(),
                "409": error_response("`idempotency_conflict`: the key was used with another body."),
                "413": too_large(),
                "422": error_response("`invalid_input` (wrong shape, bad params, key over 64 characters), `unknown_connector` or `spending_limit`."),
                "503": shutting_down
            }
        }),
        ("get", "/v1/intents") => json!({
            "operationId": "listIntents",
            "summary": "List intents, oldest first, a page at a time.",
            "parameters": list_parameters(),
            "responses": {
                "200": json_response("A page of intents.", "IntentPage"),
                "401": unauthorized(),
                "422": error_response("`invalid_input`: bad state, limit or cursor.")
            }
        }),
        ("get", "/v1/intents/{id}") => json!({
            "operationId": "getIntent",
            "parameters": [id_parameter()],
            "responses": {
                "200": intent("The intent."),
                "401": unauthorized(),
                "404": error_response("`not_found`.")
            }
        }),
        ("get", "/v1/intents/{id}/wait") => json!({
            "operationId": "waitIntent",
            "summary": "Long-poll until the intent is terminal or awaiting payment, or the timeout passes.",
            "parameters": [id_parameter(), {
                "name": "timeout", "in": "query", "required": false,
                "description": "Milliseconds, default 10000, at most 30000 (larger values are clamped).",
                "schema": {"type": "integer", "minimum": 0, "default": 10000}
            }],
            "responses": {
                "200": intent("The intent as it is now (check `state`: it may still be in flight)."),
                "401": unauthorized(),
                "404": error_response("`not_found`."),
                "422": error_response("`invalid_input`: timeout is not a number.")
            }
        }),
        ("post", "/v1/intents/{id}/payment") => json!({
            "operationId": "attachPayment",
            "summary": "Attach a payment to an intent awaiting payment; it is dispatched again.",
            "parameters": [id_parameter()],
            "requestBody": json_body("PaymentRequest"),
            "responses": {
                "200": intent("The intent, pending again."),
                "400": error_response("`malformed_json`."),
                "401": unauthorized(),
                "404": error_response("`not_found`."),
                "409": error_response("`wrong_state`: the intent is not awaiting payment."),
                "413": too_large(),
                "422": error_response("`invalid_input`: payment_id missing, empty or over 128 characters."),
                "503": shutting_down
            }
        }),
        ("get", "/v1/dlq") => json!({
            "operationId": "listDeadLetters",
            "summary": "List dead-lettered intents.",
            "parameters": list_parameters(),
            "responses": {
                "200": json_response("A page of dead letters.", "IntentPage"),
                "401": unauthorized(),
                "422": error_response("`invalid_input`: bad limit or cursor.")
            }
        }),
        ("post", "/v1/dlq/{id}/retry") => json!({
            "operationId": "retryDeadLetter",
            "summary": "Reopen a dead letter: it is dispatched again with the same key.",
            "parameters": [id_parameter()],
            "responses": {
                "200": intent("The intent, pending again."),
                "401": unauthorized(),
                "404": error_response("`not_found`."),
                "409": error_response("`wrong_state`: not dead-lettered."),
                "503": shutting_down
            }
        }),
        ("post", "/v1/dlq/{id}/resolve") => json!({
            "operationId": "resolveDeadLetter",
            "summary": "Close a dead letter by hand with a note (and evidence).",
            "parameters": [id_parameter()],
            "requestBody": json_body("ResolveRequest"),
            "responses": {
                "200": intent("The intent, resolved."),
                "400": error_response("`malformed_json`."),
                "401": unauthorized(),
                "404": error_response("`not_found`."),
                "409": error_response("`wrong_state`: not dead-lettered."),
                "413": too_large(),
                "422": error_response("`invalid_input`: note empty or too long."),
                "503": shutting_down
            }
        }),
        ("get", "/metrics") => json!({
            "operationId": "metrics",
            "summary": "Prometheus text: intents by state, log records, sync latency and batch histograms.",
            "responses": {
                "200": {"description": "Prometheus text format 0.0.4.", "content": {"text/plain": {"schema": {"type": "string"}}}},
                "401": unauthorized()
            }
        }),
        ("get", "/healthz") => json!({
            "operationId": "health",
            "security": [],
            "responses": {
                "200": json_response("Serving.", "Health"),
                "503": json_response("`degraded`: the log refused a write (disk full?); reads answer, changes are refused until it recovers.", "Health")
            }
        }),
        ("get", "/openapi.json") => json!({
            "operationId": "openapi",
            "security": [],
            "responses": {"200": {"description": "This document.", "content": {"application/json": {"schema": {"type": "object"}}}}}
        }),
        _ => return None,
    };
    Some(operation)
}

/// The whole OpenAPI 3.0 document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for (method, path) in ROUTES {
        let Some(operation) = operation(method, path) else {
            continue;
        };
        let entry = paths
            .entry(path.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(entry) = entry.as_object_mut() {
            entry.insert(method.to_string(), operation);
        }
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "intents sidecar",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Durable, exactly-once money-moving intents over HTTP (`intentctl serve`). Every error is `{\"error\":\"<code>\",\"message\":\"<text>\"}`; bad input is 4xx, never 500."
        },
        "servers": [{"url": "http://127.0.0.1:7700"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Required only when the server runs with --token-env VARIABLE; the token is that variable's value."
                }
            },
            "schemas": schemas()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// (method, path) of every `.route("PATH", get(..).post(..))` line in serve.rs.
    fn routes_in_serve_rs() -> BTreeSet<(String, String)> {
        let source = include_str!("serve.rs");
        let mut routes = BTreeSet::new();
        for line in source.lines() {
            let Some(start) = line.find(".route(\"") else {
                continue;
            };
            let rest = &line[start + ".route(\"".len()..];
            let Some(end) = rest.find('"') else { continue };
            let path = rest[..end].to_string();
            let handlers = &rest[end..];
            for method in ["get", "post", "put", "patch", "delete"] {
                let found = handlers
                    .match_indices(&format!("{method}("))
                    .any(|(at, _)| {
                        at == 0
                            || !handlers.as_bytes()[at - 1].is_ascii_alphanumeric()
                                && handlers.as_bytes()[at - 1] != b'_'
                    });
                if found {
                    routes.insert((method.to_string(), path.clone()));
                }
            }
        }
        routes
    }

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
    fn every_router_route_is_documented_and_nothing_else() {
        let served = routes_in_serve_rs();
        assert!(served.len() >= 11, "parsed too few routes: {served:?}");
        assert_eq!(served, routes_in_document());
        let listed: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|(method, path)| (method.to_string(), path.to_string()))
            .collect();
        assert_eq!(served, listed);
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
        for (method, path) in ROUTES {
            let responses = &document["paths"][path][method]["responses"];
            let responses = responses.as_object().expect("responses");
            assert!(!responses.is_empty(), "{method} {path}");
            for (status, response) in responses {
                let errors_are_health = *path == "/healthz";
                if (status.starts_with('4') || status.starts_with('5')) && !errors_are_health {
                    assert_eq!(
                        response.pointer("/content/application~1json/schema/$ref"),
                        Some(&json!("#/components/schemas/Error")),
                        "{method} {path} {status}"
                    );
                }
            }
            let protected = !matches!(*path, "/healthz" | "/openapi.json");
            assert_eq!(
                responses.contains_key("401"),
                protected,
                "{method} {path}: 401 documented iff the token applies"
            );
        }
    }
}
