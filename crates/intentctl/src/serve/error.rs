//! Error answers of the sidecar and the request parsing that produces them: bad input is
//! 400, 404, 413 or 422 with an [`ErrorBody`], never 500.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use scheduler::IntentId;
use serde_json::Value;

use crate::api::ErrorBody;

/// What a refused change and a degraded `/healthz` say.
pub const LOG_REFUSED_MESSAGE: &str =
    "the write-ahead log refused a write (disk full?): no intent is accepted until it recovers";

/// An error answer: status, code, message.
pub struct ApiError(pub StatusCode, pub &'static str, pub String);

pub type ApiResult = std::result::Result<Response, ApiError>;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let ApiError(status, code, message) = self;
        let body = ErrorBody {
            error: code.to_string(),
            message,
        };
        (status, Json(body)).into_response()
    }
}

impl From<scheduler::Error> for ApiError {
    fn from(error: scheduler::Error) -> ApiError {
        use scheduler::Error as E;
        if let E::Log(cause) = &error {
            tracing::error!(error = %cause, "the write-ahead log refused a change");
            return log_refused(Some(&cause.to_string()));
        }
        let (status, code) = match &error {
            E::IdempotencyConflict { .. } => (StatusCode::CONFLICT, "idempotency_conflict"),
            E::InvalidInput(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_input"),
            E::UnknownConnector(_) => (StatusCode::UNPROCESSABLE_ENTITY, "unknown_connector"),
            E::SpendingLimit(_) => (StatusCode::UNPROCESSABLE_ENTITY, "spending_limit"),
            E::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            E::WrongState { .. } => (StatusCode::CONFLICT, "wrong_state"),
            E::ShutDown => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "engine_error"),
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(%error, "engine error");
        }
        ApiError(status, code, error.to_string())
    }
}

/// 503 `log_unavailable`: the log is poisoned and changes are refused until it recovers.
pub fn log_refused(cause: Option<&str>) -> ApiError {
    let message = match cause {
        Some(cause) => format!("{LOG_REFUSED_MESSAGE} ({cause})"),
        None => LOG_REFUSED_MESSAGE.to_string(),
    };
    ApiError(StatusCode::SERVICE_UNAVAILABLE, "log_unavailable", message)
}

pub fn not_found(id: &str) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no intent {id}"),
    )
}

pub fn invalid_input(message: String) -> ApiError {
    ApiError(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", message)
}

/// An intent id from the path; anything that is not one is an intent that does not exist.
pub fn parse_id(text: &str) -> std::result::Result<IntentId, ApiError> {
    IntentId::parse(text).ok_or_else(|| not_found(text))
}

/// Reads a JSON body into `T`: 413 when too large, 400 when not JSON, 422 when the shape is wrong.
pub fn body_json<T: serde::de::DeserializeOwned>(
    body: std::result::Result<Bytes, BytesRejection>,
) -> std::result::Result<T, ApiError> {
    let bytes = body.map_err(|rejection| {
        ApiError(
            rejection.status(),
            "invalid_body",
            format!("request body: {}", rejection.body_text()),
        )
    })?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|error| {
        ApiError(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("request body is not JSON: {error}"),
        )
    })?;
    serde_json::from_value(value).map_err(|error| invalid_input(format!("request body: {error}")))
}

/// A query string into `T`, or 422.
pub fn query_or_422<T>(
    query: std::result::Result<Query<T>, QueryRejection>,
) -> std::result::Result<T, ApiError> {
    query
        .map(|Query(query)| query)
        .map_err(|rejection| invalid_input(rejection.body_text()))
}

/// The answer when no route matches.
pub async fn fallback() -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such route".to_string(),
    )
}
