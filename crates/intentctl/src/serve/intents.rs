//! `/v1/intents`: submit, read, list, long-poll, and attach a payment.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use scheduler::{Intent, IntentId, ListFilter, StateName, SubmitRequest};
use serde::Deserialize;
use serde_json::json;

use super::error::{
    body_json, invalid_input, log_refused, not_found, parse_id, query_or_422, ApiResult,
};
use super::App;
use crate::api::{
    IntentPage, IntentView, PaymentBody, SubmitBody, LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX,
    PAYMENT_ID_BYTES_MAX, WAIT_TIMEOUT_MS_DEFAULT, WAIT_TIMEOUT_MS_MAX,
};

/// An intent as the answer, with `status`.
pub fn ok(status: StatusCode, intent: &Intent) -> ApiResult {
    Ok((status, Json(IntentView::from(intent))).into_response())
}

pub async fn submit(
    State(app): State<App>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> ApiResult {
    let engine = app.engine();
    if engine.is_log_poisoned() {
        return Err(log_refused(None));
    }
    let body: SubmitBody = body_json(body)?;
    let submitted = engine
        .submit(SubmitRequest {
            connector: body.connector,
            operation: body.operation,
            params: body.params,
            idempotency_key: body.idempotency_key,
        })
        .await?;
    let status = if submitted.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    ok(status, &submitted.intent)
}

pub async fn get_intent(State(app): State<App>, Path(id): Path<String>) -> ApiResult {
    let intent = app
        .engine()
        .get(parse_id(&id)?)
        .ok_or_else(|| not_found(&id))?;
    ok(StatusCode::OK, &intent)
}

#[derive(Deserialize)]
pub struct ListQuery {
    state: Option<String>,
    connector: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// One page of intents in submit order; `state` fixed by the route (the DLQ) or the query.
pub fn list_page(app: &App, query: ListQuery, state: Option<StateName>) -> ApiResult {
    let state = match (state, query.state.as_deref()) {
        (Some(state), _) => Some(state),
        (None, None | Some("")) => None,
        (None, Some(text)) => Some(StateName::parse(text).ok_or_else(|| {
            let known: Vec<&str> = StateName::ALL.iter().map(|name| name.as_str()).collect();
            invalid_input(format!(
                "state {text:?} is unknown; one of {}",
                known.join(", ")
            ))
        })?),
    };
    let after = match query.cursor.as_deref() {
        None | Some("") => None,
        Some(text) => Some(
            IntentId::parse(text)
                .ok_or_else(|| invalid_input(format!("cursor {text:?} is not an intent id")))?,
        ),
    };
    let limit = query.limit.unwrap_or(LIST_LIMIT_DEFAULT);
    if limit == 0 || limit > LIST_LIMIT_MAX {
        return Err(invalid_input(format!("limit must be 1..={LIST_LIMIT_MAX}")));
    }
    let intents = app.engine().list(&ListFilter {
        state,
        connector: query.connector.filter(|name| !name.is_empty()),
        after,
        limit: limit + 1,
    });
    let more = intents.len() > limit;
    let page = &intents[..intents.len().min(limit)];
    let next_cursor = if more {
        page.last().map(|intent| intent.spec.id.to_string())
    } else {
        None
    };
    let intents = page.iter().map(IntentView::from).collect();
    Ok(Json(IntentPage {
        intents,
        next_cursor,
    })
    .into_response())
}

pub async fn list_intents(
    State(app): State<App>,
    query: std::result::Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult {
    list_page(&app, query_or_422(query)?, None)
}

#[derive(Deserialize)]
pub struct WaitQuery {
    timeout: Option<u64>,
}

/// Long-polls until the intent is terminal or awaiting payment, the timeout passes, or the
/// server stops (then it answers with the intent as it is).
pub async fn wait_intent(
    State(app): State<App>,
    Path(id): Path<String>,
    query: std::result::Result<Query<WaitQuery>, QueryRejection>,
) -> ApiResult {
    let query = query_or_422(query)?;
    let id = parse_id(&id)?;
    let timeout_ms = query
        .timeout
        .unwrap_or(WAIT_TIMEOUT_MS_DEFAULT)
        .min(WAIT_TIMEOUT_MS_MAX);
    let mut shutdown = app.shutdown.clone();
    let engine = app.engine();
    let wait = engine.wait(id, Duration::from_millis(timeout_ms));
    let intent = tokio::select! {
        intent = wait => intent?,
        _ = shutdown.wait_for(|stopping| *stopping) => {
            engine.get(id).ok_or_else(|| not_found(&id.to_string()))?
        }
    };
    ok(StatusCode::OK, &intent)
}

pub async fn attach_payment(
    State(app): State<App>,
    Path(id): Path<String>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> ApiResult {
    let id = parse_id(&id)?;
    let body: PaymentBody = body_json(body)?;
    if body.payment_id.trim().is_empty() || body.payment_id.len() > PAYMENT_ID_BYTES_MAX {
        return Err(invalid_input(format!(
            "payment_id must be 1..={PAYMENT_ID_BYTES_MAX} characters"
        )));
    }
    let intent = app
        .engine()
        .attach_payment(id, json!({"payment_id": body.payment_id}))
        .await?;
    ok(StatusCode::OK, &intent)
}
