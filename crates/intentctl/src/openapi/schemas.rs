//! The schemas of the OpenAPI document: one per view of [`crate::api`] (request bodies,
//! intents, pages, health, stats, errors). A test checks each schema's properties against
//! its view's serialized fields.

use serde_json::{json, Value};

use crate::api::{NOTE_CHARS_MAX, PAYMENT_ID_BYTES_MAX};

/// Every schema, by name.
pub fn schemas() -> Value {
    let mut schemas = request_schemas();
    let parts = [intent_schemas(), status_schemas()];
    if let Some(all) = schemas.as_object_mut() {
        for part in parts {
            if let Value::Object(part) = part {
                all.extend(part);
            }
        }
    }
    schemas
}

fn request_schemas() -> Value {
    json!({
        "Error": {
            "type": "object",
            "required": ["error", "message"],
            "properties": {
                "error": {"type": "string", "description": "Machine-readable code, e.g. malformed_json, invalid_input, unknown_connector, spending_limit, idempotency_conflict, not_found, wrong_state, unauthorized, invalid_body, shutting_down, log_unavailable, engine_error."},
                "message": {"type": "string"}
            }
        },
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
            "properties": {"payment_id": {"type": "string", "minLength": 1, "maxLength": PAYMENT_ID_BYTES_MAX}}
        },
        "ResolveRequest": {
            "type": "object",
            "additionalProperties": false,
            "required": ["note"],
            "properties": {
                "note": {"type": "string", "minLength": 1, "maxLength": NOTE_CHARS_MAX},
                "evidence": {"type": "string", "maxLength": NOTE_CHARS_MAX, "nullable": true}
            }
        }
    })
}

fn intent_schemas() -> Value {
    let states: Vec<&str> = scheduler::StateName::ALL
        .iter()
        .map(|name| name.as_str())
        .collect();
    json!({
        "StateName": {"type": "string", "enum": states},
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
        }
    })
}

fn status_schemas() -> Value {
    let counts: serde_json::Map<String, Value> = scheduler::StateName::ALL
        .iter()
        .map(|name| {
            (
                name.as_str().to_string(),
                json!({"type": "integer", "minimum": 0}),
            )
        })
        .collect();
    json!({
        "Health": {
            "type": "object",
            "required": ["status"],
            "properties": {
                "status": {"type": "string", "enum": ["ok", "warning", "degraded"]},
                "log": {"type": "string", "enum": ["ok", "poisoned"]},
                "message": {"type": "string", "description": "Only when degraded."},
                "sync": {"type": "string", "enum": ["data", "all", "none_unsafe"]},
                "compaction": {"$ref": "#/components/schemas/Compaction"}
            }
        },
        "Compaction": {
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
        },
        "Stats": {
            "type": "object",
            "required": ["counts", "log", "compaction"],
            "properties": {
                "counts": {"type": "object", "description": "Intents by state; every state is present.", "properties": counts},
                "log": {"$ref": "#/components/schemas/LogStats"},
                "compaction": {"$ref": "#/components/schemas/Compaction"}
            }
        },
        "LogStats": {
            "type": "object",
            "description": "Counters (`_total`) since the log was opened; size now.",
            "properties": {
                "bytes": {"type": "integer", "description": "Bytes of the log on disk, headers included."},
                "segments": {"type": "integer"},
                "records_total": {"type": "integer", "description": "Records made durable."},
                "batches_total": {"type": "integer", "description": "Batches written (one write and one sync each)."},
                "bytes_written_total": {"type": "integer"},
                "sync_micros_total": {"type": "integer"}
            }
        }
    })
}
