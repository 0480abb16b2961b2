//! Purple Flea's axum routes: every mutation goes through [`mutate`] (authorisation, key
//! checks, body checks, the idempotency cache, the fault plan's latency, execution and
//! storage); look-ups read the ledger under the lock.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::idempotency::{fingerprint, read_key, Begin, Fingerprint, KeyProblem, StoredResponse};
use crate::money::format_amount_minor;
use crate::server::{
    json_bytes_response, json_response, mark_replayed, read_body, request_faults, RequestFaults,
};

use super::ledger::{Command, Escrow, EscrowMove, Ledger};
use super::request::{
    parse_bet, parse_create_escrow, parse_escrow_move, parse_json_object, parse_transfer,
};
use super::{PurpleFleaState, CURRENCY};

pub(super) fn routes(state: Arc<PurpleFleaState>) -> Router {
    Router::new()
        .route("/casino/bet", post(place_bet))
        .route("/casino/bet/by-idempotency-key", get(bet_by_key))
        .route("/escrow/create", post(create_escrow))
        .route("/escrow/by-idempotency-key", get(escrow_by_key))
        .route("/escrow/{id}", get(escrow_by_id))
        .route("/escrow/{id}/fund", post(fund_escrow))
        .route("/escrow/{id}/release", post(release_escrow))
        .route("/escrow/{id}/refund", post(refund_escrow))
        .route("/wallet/transfer", post(transfer))
        .route("/wallet/transfer/by-idempotency-key", get(transfer_by_key))
        .route("/wallet/balance", get(balance))
        .with_state(state)
}

/// A mutation that passed every check that comes before the idempotency cache.
struct CheckedMutation {
    key: String,
    faults: Option<Arc<RequestFaults>>,
    request_fingerprint: Fingerprint,
    command: Command,
}

/// What the idempotency cache and the fault plan's latency decided, under the lock.
enum Planned {
    /// The answer: a replay, a refusal, or the response of an execution done in the lock.
    Answered(Response),
    /// Execute after this latency; the key stays in progress meanwhile.
    Delayed(Duration),
}

/// Runs one mutation through authorisation, key checks, body checks, the idempotency cache,
/// the fault plan's latency, execution and storage.
async fn mutate(
    state: Arc<PurpleFleaState>,
    request: Request,
    parse: impl FnOnce(&Value) -> Result<Command, String>,
) -> Response {
    let checked = match check_mutation(&state, request, parse).await {
        Ok(checked) => checked,
        Err(response) => return response,
    };
    let latency = match begin(&state, &checked) {
        Planned::Answered(response) => return response,
        Planned::Delayed(latency) => latency,
    };
    // The work runs in its own task so a client that hangs up does not cancel it: the
    // request completes and is stored anyway.
    let worker_state = state.clone();
    let worker = tokio::spawn(async move {
        worker_state.core.sleep_unless_shutdown(latency).await;
        commit(&worker_state, &checked)
    });
    match worker.await {
        Ok(stored) => json_bytes_response(stored.status, stored.body),
        Err(_) => state.error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "the request was cancelled",
        ),
    }
}

/// Authorisation, the key, the body and the command, in that order (each failure is the
/// answer; none of them touches the ledger).
async fn check_mutation(
    state: &PurpleFleaState,
    request: Request,
    parse: impl FnOnce(&Value) -> Result<Command, String>,
) -> Result<CheckedMutation, Response> {
    if let Some(response) = state.authorization_refusal(request.headers()) {
        return Err(response);
    }
    let key = read_key(request.headers()).map_err(|problem| match problem {
        KeyProblem::Missing => state.error(
            StatusCode::BAD_REQUEST,
            "missing_idempotency_key",
            &KeyProblem::Missing.message(),
        ),
        problem => state.error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &problem.message(),
        ),
    })?;
    let faults = request_faults(&request);
    let path = request.uri().path().to_owned();
    let Some(body) = read_body(request.into_body()).await else {
        return Err(state.error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the body is too large or unreadable",
        ));
    };
    let invalid =
        |message: String| state.error(StatusCode::BAD_REQUEST, "invalid_request", &message);
    let value = parse_json_object(&body).map_err(invalid)?;
    let command = parse(&value).map_err(invalid)?;
    Ok(CheckedMutation {
        key,
        faults,
        request_fingerprint: fingerprint("POST", &path, &value.to_string()),
        command,
    })
}

/// Claims the key in the idempotency cache; without latency, executes and stores in the
/// same critical section. The guard lives only inside this function, never across an await.
fn begin(state: &PurpleFleaState, checked: &CheckedMutation) -> Planned {
    let seed = state.core.plan().seed;
    let mut ledger = state.lock();
    match ledger
        .cache
        .begin(&checked.key, checked.request_fingerprint)
    {
        Begin::Fresh => {}
        Begin::Replay(stored) => {
            return Planned::Answered(mark_replayed(json_bytes_response(
                stored.status,
                stored.body,
            )))
        }
        Begin::InProgress => {
            return Planned::Answered(state.error(
                StatusCode::CONFLICT,
                "request_in_progress",
                "a request with this Idempotency-Key is still being processed",
            ))
        }
        Begin::Mismatch => {
            return Planned::Answered(state.error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "this Idempotency-Key was used for a different request",
            ))
        }
    }
    let latency = checked
        .faults
        .as_ref()
        .map(|faults| faults.take_latency())
        .unwrap_or_default();
    if !latency.is_zero() {
        return Planned::Delayed(latency);
    }
    // The common case: check, execute and store in one critical section.
    let stored = ledger.commit(
        seed,
        &checked.key,
        checked.request_fingerprint,
        &checked.command,
    );
    Planned::Answered(json_bytes_response(stored.status, stored.body))
}

/// Executes and stores the result in one critical section (after a latency).
fn commit(state: &PurpleFleaState, checked: &CheckedMutation) -> StoredResponse {
    let seed = state.core.plan().seed;
    state.lock().commit(
        seed,
        &checked.key,
        checked.request_fingerprint,
        &checked.command,
    )
}

async fn place_bet(State(state): State<Arc<PurpleFleaState>>, request: Request) -> Response {
    mutate(state, request, parse_bet).await
}

async fn create_escrow(State(state): State<Arc<PurpleFleaState>>, request: Request) -> Response {
    mutate(state, request, parse_create_escrow).await
}

async fn fund_escrow(
    State(state): State<Arc<PurpleFleaState>>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    mutate(state, request, |value| {
        parse_escrow_move(id, EscrowMove::Fund, value)
    })
    .await
}

async fn release_escrow(
    State(state): State<Arc<PurpleFleaState>>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    mutate(state, request, |value| {
        parse_escrow_move(id, EscrowMove::Release, value)
    })
    .await
}

async fn refund_escrow(
    State(state): State<Arc<PurpleFleaState>>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    mutate(state, request, |value| {
        parse_escrow_move(id, EscrowMove::Refund, value)
    })
    .await
}

async fn transfer(State(state): State<Arc<PurpleFleaState>>, request: Request) -> Response {
    mutate(state, request, parse_transfer).await
}

#[derive(Deserialize)]
struct KeyQuery {
    key: Option<String>,
}

/// Shared body of the `by-idempotency-key` look-ups.
fn look_up_by_key(
    state: &PurpleFleaState,
    headers: &HeaderMap,
    query: KeyQuery,
    find: impl FnOnce(&Ledger, &str) -> Option<Bytes>,
) -> Response {
    if let Some(response) = state.authorization_refusal(headers) {
        return response;
    }
    let Some(key) = query.key.filter(|key| !key.is_empty()) else {
        return state.error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the key query parameter is required",
        );
    };
    let found = find(&state.lock(), &key);
    match found {
        Some(body) => json_bytes_response(StatusCode::OK, body),
        None => state.error(
            StatusCode::NOT_FOUND,
            "not_found",
            "nothing was executed with this idempotency key",
        ),
    }
}

async fn bet_by_key(
    State(state): State<Arc<PurpleFleaState>>,
    headers: HeaderMap,
    Query(query): Query<KeyQuery>,
) -> Response {
    look_up_by_key(&state, &headers, query, |ledger, key| {
        ledger.bets_by_key.get(key).cloned()
    })
}

async fn transfer_by_key(
    State(state): State<Arc<PurpleFleaState>>,
    headers: HeaderMap,
    Query(query): Query<KeyQuery>,
) -> Response {
    look_up_by_key(&state, &headers, query, |ledger, key| {
        ledger.transfers_by_key.get(key).cloned()
    })
}

async fn escrow_by_key(
    State(state): State<Arc<PurpleFleaState>>,
    headers: HeaderMap,
    Query(query): Query<KeyQuery>,
) -> Response {
    look_up_by_key(&state, &headers, query, |ledger, key| {
        let id = ledger.escrow_id_by_key.get(key)?;
        ledger
            .escrows_by_id
            .get(id)
            .map(|escrow| Bytes::from(escrow.body().to_string()))
    })
}

async fn escrow_by_id(
    State(state): State<Arc<PurpleFleaState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(response) = state.authorization_refusal(&headers) {
        return response;
    }
    let found = state.lock().escrows_by_id.get(&id).map(Escrow::body);
    match found {
        Some(body) => json_response(StatusCode::OK, &body),
        None => state.error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("no escrow {id}"),
        ),
    }
}

async fn balance(State(state): State<Arc<PurpleFleaState>>, headers: HeaderMap) -> Response {
    if let Some(response) = state.authorization_refusal(&headers) {
        return response;
    }
    let balance_minor = state.lock().balance_minor;
    json_response(
        StatusCode::OK,
        &json!({ "balance": format_amount_minor(balance_minor), "currency": CURRENCY }),
    )
}
