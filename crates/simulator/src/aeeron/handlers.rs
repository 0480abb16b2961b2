//! Aeeron's axum routes: quotes, payments, executions and their look-ups.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::idempotency::{read_key, KeyProblem};
use crate::money::format_amount_minor;
use crate::server::{json_response, read_body, request_faults};
use crate::time::rfc3339_after;

use super::ledger::{AeeronLedger, ExecutionStart, KeyBinding, Payment};
use super::request::{check_execution, check_payment, check_quote};
use super::{AeeronState, PRICE_CURRENCY};

/// How long a quote is valid, in seconds (informational: executions re-price themselves).
const QUOTE_TTL_S: u64 = 900;

pub(super) fn routes(state: Arc<AeeronState>) -> Router {
    Router::new()
        .route("/v1/quotes", post(create_quote))
        .route("/v1/payments", post(create_payment))
        .route("/v1/payments/{id}", get(payment_by_id))
        .route("/v1/executions", post(create_execution))
        .route("/v1/executions/by-idempotency-key", get(execution_by_key))
        .route("/v1/executions/{id}", get(execution_by_id))
        .with_state(state)
}

async fn create_quote(State(state): State<Arc<AeeronState>>, request: Request) -> Response {
    let Some(body) = read_body(request.into_body()).await else {
        return state.invalid_input("the body is too large or unreadable", Value::Null);
    };
    let (price, params) = match check_quote(&body) {
        Ok(quote) => quote,
        Err((message, details)) => return state.invalid_input(&message, details),
    };
    json_response(
        StatusCode::OK,
        &json!({
            "quote_id": format!("q_{}", uuid::Uuid::new_v4()),
            "action": price.name,
            "params": params,
            "amount": format_amount_minor(price.amount_minor()),
            "currency": PRICE_CURRENCY,
            "expires_at": rfc3339_after(Duration::from_secs(QUOTE_TTL_S)),
        }),
    )
}

async fn create_payment(State(state): State<Arc<AeeronState>>, request: Request) -> Response {
    // The key is optional on payments; when present it makes the authorisation idempotent.
    let key = match read_key(request.headers()) {
        Ok(key) => Some(key),
        Err(KeyProblem::Missing) => None,
        Err(problem) => {
            return state.invalid_input(&problem.message(), json!({ "field": "Idempotency-Key" }))
        }
    };
    let Some(body) = read_body(request.into_body()).await else {
        return state.invalid_input("the body is too large or unreadable", Value::Null);
    };
    let checked = match check_payment(&body) {
        Ok(checked) => checked,
        Err((message, details)) => return state.invalid_input(&message, details),
    };
    let service = state.core.service;
    state.lock().authorize_payment(service, key, checked)
}

async fn create_execution(State(state): State<Arc<AeeronState>>, request: Request) -> Response {
    let key = match read_key(request.headers()) {
        Ok(key) => key,
        Err(problem) => {
            return state.invalid_input(&problem.message(), json!({ "field": "Idempotency-Key" }))
        }
    };
    let faults = request_faults(&request);
    let Some(body) = read_body(request.into_body()).await else {
        return state.invalid_input("the body is too large or unreadable", Value::Null);
    };
    let checked = match check_execution(key, &body) {
        Ok(checked) => checked,
        Err((message, details)) => return state.invalid_input(&message, details),
    };
    let service = state.core.service;
    let execution_id = match state.lock().start_execution(service, checked) {
        ExecutionStart::Replay(response) | ExecutionStart::Refused(response) => return response,
        ExecutionStart::Started(execution_id) => execution_id,
    };
    let fault = faults.as_ref().and_then(|faults| faults.decision.outcome);
    let latency = faults
        .map(|faults| faults.take_latency())
        .unwrap_or_default();
    if latency.is_zero() {
        return state.lock().finish_execution(service, &execution_id, fault);
    }
    // The provider works for `latency` (the execution is `processing` meanwhile). It runs in
    // its own task so a client hanging up does not leave the execution processing forever.
    let worker_state = state.clone();
    let worker = tokio::spawn(async move {
        worker_state.core.sleep_unless_shutdown(latency).await;
        worker_state
            .lock()
            .finish_execution(service, &execution_id, fault)
    });
    match worker.await {
        Ok(response) => response,
        Err(_) => state.core.error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "the execution was cancelled",
            Value::Null,
        ),
    }
}

async fn payment_by_id(State(state): State<Arc<AeeronState>>, Path(id): Path<String>) -> Response {
    let found = state.lock().payments.get(&id).map(Payment::body);
    match found {
        Some(body) => json_response(StatusCode::OK, &body),
        None => state.core.error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such payment",
            json!({ "payment_id": id }),
        ),
    }
}

#[derive(Deserialize)]
struct KeyQuery {
    key: Option<String>,
}

fn execution_body(
    state: &AeeronState,
    find: impl FnOnce(&AeeronLedger) -> Option<String>,
) -> Option<Value> {
    let mut ledger = state.lock();
    let id = find(&ledger)?;
    let record = ledger.executions.get_mut(&id)?;
    record.refresh(Instant::now());
    Some(record.body())
}

async fn execution_by_id(
    State(state): State<Arc<AeeronState>>,
    Path(id): Path<String>,
) -> Response {
    let lookup = id.clone();
    match execution_body(&state, move |_| Some(lookup)) {
        Some(body) => json_response(StatusCode::OK, &body),
        None => state.core.error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such execution",
            json!({ "execution_id": id }),
        ),
    }
}

async fn execution_by_key(
    State(state): State<Arc<AeeronState>>,
    _headers: HeaderMap,
    Query(query): Query<KeyQuery>,
) -> Response {
    let Some(key) = query.key.filter(|key| !key.is_empty()) else {
        return state.invalid_input(
            "the key query parameter is required",
            json!({ "field": "key" }),
        );
    };
    let found = execution_body(&state, |ledger| match ledger.keys.get(&key) {
        Some(KeyBinding::Execution { execution_id, .. }) => Some(execution_id.clone()),
        _ => None,
    });
    match found {
        Some(body) => json_response(StatusCode::OK, &body),
        None => state.core.error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no execution is bound to this idempotency key",
            json!({ "idempotency_key": key }),
        ),
    }
}
