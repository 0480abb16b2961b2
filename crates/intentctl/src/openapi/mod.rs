//! The OpenAPI 3.0 document of `intentctl serve`, served at `GET /openapi.json`.
//!
//! Paths come from the route table ([`crate::api::ROUTES`]): one operation per row, with
//! `security: []` on the rows that need no token and a 401 answer on the rows that do.
//! The schemas describe the views of [`crate::api`]; the tests check both against the
//! table and against the views' serialized fields.

mod operations;
mod schemas;

#[cfg(test)]
mod tests;

use axum::Json;
use serde_json::{json, Map, Value};

use crate::api::{REQUEST_BODY_BYTES_MAX, ROUTES};

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

fn unauthorized() -> Value {
    error_response("`unauthorized`: missing or wrong bearer token (only with --token-env).")
}

/// The operations of every row of the route table, by path and method.
fn paths() -> Map<String, Value> {
    let mut paths = Map::new();
    for route in &ROUTES {
        let mut operation = operations::operation(route.endpoint);
        if let Some(operation) = operation.as_object_mut() {
            if route.token_required {
                if let Some(responses) = operation
                    .get_mut("responses")
                    .and_then(Value::as_object_mut)
                {
                    responses.insert("401".to_string(), unauthorized());
                }
            } else {
                operation.insert("security".to_string(), json!([]));
            }
        }
        let entry = paths
            .entry(route.path.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(entry) = entry.as_object_mut() {
            entry.insert(route.method.as_str().to_string(), operation);
        }
    }
    paths
}

/// The whole OpenAPI 3.0 document.
pub fn document() -> Value {
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "intents sidecar",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Durable, exactly-once money-moving intents over HTTP (`intentctl serve`). Every error is `{\"error\":\"<code>\",\"message\":\"<text>\"}`; bad input is 4xx, never 500."
        },
        "servers": [{"url": "http://127.0.0.1:7700"}],
        "security": [{"bearer": []}],
        "paths": paths(),
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Required only when the server runs with --token-env VARIABLE; the token is that variable's value."
                }
            },
            "schemas": schemas::schemas()
        }
    })
}
