//! One OpenAPI operation object per [`Endpoint`]: what it does, its parameters, body and
//! answers. The 401 answer and `security: []` come from the route table (see `paths`).

use serde_json::{json, Value};

use super::{error_response, json_body, json_response};
use crate::api::{
    Endpoint, LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX, PAYMENT_ID_BYTES_MAX, WAIT_TIMEOUT_MS_DEFAULT,
    WAIT_TIMEOUT_MS_MAX,
};

/// The operation object of `endpoint`.
pub fn operation(endpoint: Endpoint) -> Value {
    match endpoint {
        Endpoint::SubmitIntent => submit_intent(),
        Endpoint::ListIntents => list(
            "listIntents",
            "List intents, oldest first, a page at a time.",
            "A page of intents.",
            "`invalid_input`: bad state, limit or cursor.",
        ),
        Endpoint::GetIntent => get_intent(),
        Endpoint::WaitIntent => wait_intent(),
        Endpoint::AttachPayment => attach_payment(),
        Endpoint::ListDeadLetters => list(
            "listDeadLetters",
            "List dead-lettered intents.",
            "A page of dead letters.",
            "`invalid_input`: bad limit or cursor.",
        ),
        Endpoint::RetryDeadLetter => retry_dead_letter(),
        Endpoint::ResolveDeadLetter => resolve_dead_letter(),
        Endpoint::Stats => stats(),
        Endpoint::Metrics => metrics(),
        Endpoint::Health => health(),
        Endpoint::OpenApi => json!({
            "operationId": "openapi",
            "responses": {"200": {"description": "This document.", "content": {"application/json": {"schema": {"type": "object"}}}}}
        }),
    }
}

fn intent(description: &str) -> Value {
    json_response(description, "Intent")
}

fn too_large() -> Value {
    error_response("`invalid_body`: the body is larger than the cap.")
}

fn not_found() -> Value {
    error_response("`not_found`.")
}

fn shutting_down() -> Value {
    error_response(
        "`shutting_down`: the engine is stopping; `log_unavailable`: the log refused a write (disk full?) and no change is accepted until it recovers.",
    )
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
         "description": format!("Page size, 1..={LIST_LIMIT_MAX} (422 otherwise)."),
         "schema": {"type": "integer", "minimum": 1, "maximum": LIST_LIMIT_MAX, "default": LIST_LIMIT_DEFAULT}},
        {"name": "cursor", "in": "query", "required": false,
         "description": "`next_cursor` of the previous page.",
         "schema": {"type": "string", "format": "uuid"}}
    ])
}

fn submit_intent() -> Value {
    json!({
        "operationId": "submitIntent",
        "summary": "Submit an intent (written to the log before it is dispatched).",
        "requestBody": json_body("SubmitRequest"),
        "responses": {
            "201": intent("Accepted: a new intent."),
            "200": intent("The same key and body were submitted before: that intent."),
            "400": error_response("`malformed_json`: the body is not JSON."),
            "409": error_response("`idempotency_conflict`: the key was used with another body."),
            "413": too_large(),
            "422": error_response("`invalid_input` (wrong shape, bad params, key over 64 characters), `unknown_connector` or `spending_limit`."),
            "503": shutting_down()
        }
    })
}

/// A listing (all intents, or the dead letters).
fn list(operation_id: &str, summary: &str, page: &str, invalid: &str) -> Value {
    json!({
        "operationId": operation_id,
        "summary": summary,
        "parameters": list_parameters(),
        "responses": {
            "200": json_response(page, "IntentPage"),
            "422": error_response(invalid)
        }
    })
}

fn get_intent() -> Value {
    json!({
        "operationId": "getIntent",
        "parameters": [id_parameter()],
        "responses": {
            "200": intent("The intent."),
            "404": not_found()
        }
    })
}

fn wait_intent() -> Value {
    json!({
        "operationId": "waitIntent",
        "summary": "Long-poll until the intent is terminal or awaiting payment, or the timeout passes.",
        "parameters": [id_parameter(), {
            "name": "timeout", "in": "query", "required": false,
            "description": format!("Milliseconds, default {WAIT_TIMEOUT_MS_DEFAULT}, at most {WAIT_TIMEOUT_MS_MAX} (larger values are clamped)."),
            "schema": {"type": "integer", "minimum": 0, "default": WAIT_TIMEOUT_MS_DEFAULT}
        }],
        "responses": {
            "200": intent("The intent as it is now (check `state`: it may still be in flight)."),
            "404": not_found(),
            "422": error_response("`invalid_input`: timeout is not a number.")
        }
    })
}

fn attach_payment() -> Value {
    json!({
        "operationId": "attachPayment",
        "summary": "Attach a payment to an intent awaiting payment; it is dispatched again.",
        "parameters": [id_parameter()],
        "requestBody": json_body("PaymentRequest"),
        "responses": {
            "200": intent("The intent, pending again."),
            "400": error_response("`malformed_json`."),
            "404": not_found(),
            "409": error_response("`wrong_state`: the intent is not awaiting payment."),
            "413": too_large(),
            "422": error_response(&format!("`invalid_input`: payment_id missing, empty or over {PAYMENT_ID_BYTES_MAX} characters.")),
            "503": shutting_down()
        }
    })
}

fn retry_dead_letter() -> Value {
    json!({
        "operationId": "retryDeadLetter",
        "summary": "Reopen a dead letter: it is dispatched again with the same key.",
        "parameters": [id_parameter()],
        "responses": {
            "200": intent("The intent, pending again."),
            "404": not_found(),
            "409": error_response("`wrong_state`: not dead-lettered."),
            "503": shutting_down()
        }
    })
}

fn resolve_dead_letter() -> Value {
    json!({
        "operationId": "resolveDeadLetter",
        "summary": "Close a dead letter by hand with a note (and evidence).",
        "parameters": [id_parameter()],
        "requestBody": json_body("ResolveRequest"),
        "responses": {
            "200": intent("The intent, resolved."),
            "400": error_response("`malformed_json`."),
            "404": not_found(),
            "409": error_response("`wrong_state`: not dead-lettered."),
            "413": too_large(),
            "422": error_response("`invalid_input`: note empty or too long."),
            "503": shutting_down()
        }
    })
}

fn stats() -> Value {
    json!({
        "operationId": "stats",
        "summary": "Intents by state, log figures and compaction status as JSON (the figures of /metrics, for programs).",
        "responses": {
            "200": json_response("The engine's counts now.", "Stats")
        }
    })
}

fn metrics() -> Value {
    json!({
        "operationId": "metrics",
        "summary": "Prometheus text: intents by state, log records, sync latency and batch histograms.",
        "responses": {
            "200": {"description": "Prometheus text format 0.0.4.", "content": {"text/plain": {"schema": {"type": "string"}}}}
        }
    })
}

fn health() -> Value {
    json!({
        "operationId": "health",
        "responses": {
            "200": json_response("Serving.", "Health"),
            "503": json_response("`degraded`: the log refused a write (disk full?); reads answer, changes are refused until it recovers.", "Health")
        }
    })
}
