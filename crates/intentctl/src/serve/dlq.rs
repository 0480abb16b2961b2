//! `/v1/dlq`: list dead letters, retry one, or resolve one by hand.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use scheduler::StateName;

use super::error::{body_json, invalid_input, parse_id, query_or_422, ApiResult};
use super::intents::{list_page, ok, ListQuery};
use super::App;
use crate::api::{ResolveBody, NOTE_CHARS_MAX};

pub async fn list_dlq(
    State(app): State<App>,
    query: std::result::Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult {
    list_page(&app, query_or_422(query)?, Some(StateName::DeadLettered))
}

pub async fn dlq_retry(State(app): State<App>, Path(id): Path<String>) -> ApiResult {
    let intent = app.engine().dlq_retry(parse_id(&id)?).await?;
    ok(StatusCode::OK, &intent)
}

pub async fn dlq_resolve(
    State(app): State<App>,
    Path(id): Path<String>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> ApiResult {
    let id = parse_id(&id)?;
    let body: ResolveBody = body_json(body)?;
    let too_long = |text: &str| text.chars().count() > NOTE_CHARS_MAX;
    if body.note.trim().is_empty()
        || too_long(&body.note)
        || body.evidence.as_deref().is_some_and(too_long)
    {
        return Err(invalid_input(format!(
            "note must be 1..={NOTE_CHARS_MAX} characters, evidence at most {NOTE_CHARS_MAX}"
        )));
    }
    let intent = app
        .engine()
        .dlq_resolve(id, body.note, body.evidence)
        .await?;
    ok(StatusCode::OK, &intent)
}
