//! Pure classification: what came back over the wire → the engine's [`Outcome`].
//!
//! Nothing here does I/O, so every row of the tables in `docs/connectors.md` is a line
//! of a table test below. The HTTP plumbing (`http.rs`) only has to produce an
//! [`Exchange`]: a complete (possibly size-capped) response, or a [`TransportFault`]
//! that says how far the request got.

use std::time::SystemTime;

use serde_json::Value;

use crate::outcome::{ErrorDetail, Outcome, RetryScope, StatusCheck};
use crate::retry_after::parse_retry_after;

/// What came back for one request: a response, or a transport fault.
#[derive(Clone, Debug, PartialEq)]
pub enum Exchange {
    /// A response head and a complete body (possibly cut at the size cap).
    Response(RawResponse),
    /// No complete response.
    Transport(TransportFault),
}

/// A complete HTTP response as far as classification needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct RawResponse {
    /// The status code.
    pub status: u16,
    /// The `Retry-After` header, if any (unparsed).
    pub retry_after: Option<String>,
    /// The body, at most `http::RESPONSE_BODY_BYTES_MAX` bytes.
    pub body: Vec<u8>,
    /// True when the body was longer than the cap and was cut (it will not parse).
    pub body_cut: bool,
}

impl RawResponse {
    /// A response with a body and no Retry-After (handy in tests).
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            retry_after: None,
            body: body.into(),
            body_cut: false,
        }
    }

    /// Adds a Retry-After header value.
    pub fn with_retry_after(mut self, value: &str) -> Self {
        self.retry_after = Some(value.to_owned());
        self
    }
}

/// How a request failed below HTTP, classified by whether it could have reached the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransportFault {
    /// The connection was never made (refused, no route, DNS failure, connect timeout):
    /// not one byte of the request reached the server.
    NotSent {
        /// The client library's explanation.
        message: String,
    },
    /// No complete response within the request timeout: the request may have been
    /// written and executed.
    Timeout {
        /// The client library's explanation.
        message: String,
    },
    /// The connection broke (reset, closed) after it was made and before a response
    /// head arrived: the request may have been written and executed.
    ConnectionLost {
        /// The client library's explanation.
        message: String,
    },
    /// A response head arrived but the body broke off (truncated, reset, timed out).
    BodyIncomplete {
        /// The status of the response head.
        status: u16,
        /// The client library's explanation.
        message: String,
    },
    /// The request could not even be built (bad URL or header): nothing was sent and
    /// sending again cannot help.
    NotBuilt {
        /// What could not be built.
        message: String,
    },
}

/// Which error model a response is read with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorModel {
    /// HTTP status decides; body `{"error":"<code>","message":".."}`.
    PurpleFlea,
    /// `error.code` decides; body `{"error":{"code","message","details"}}`.
    Aeeron,
}

/// Classifies a transport fault; the same for every provider.
///
/// | fault            | outcome                                   |
/// |------------------|-------------------------------------------|
/// | not sent         | retryable (this intent), code `not_sent`  |
/// | timeout          | ambiguous, code `timeout`                 |
/// | connection lost  | ambiguous, code `connection_lost`         |
/// | body incomplete  | ambiguous, code `body_incomplete`         |
/// | not built        | permanent, code `request_not_built`       |
pub(crate) fn classify_transport(fault: &TransportFault) -> Outcome {
    match fault {
        TransportFault::NotSent { message } => Outcome::Retryable {
            reason: ErrorDetail::new("not_sent", format!("the request never reached the server: {message}")),
            retry_after: None,
            scope: RetryScope::Intent,
        },
        TransportFault::Timeout { message } => Outcome::Ambiguous {
            reason: ErrorDetail::new("timeout", format!("no response in time; the request may have executed: {message}")),
        },
        TransportFault::ConnectionLost { message } => Outcome::Ambiguous {
            reason: ErrorDetail::new(
                "connection_lost",
                format!("the connection broke before a response; the request may have executed: {message}"),
            ),
        },
        TransportFault::BodyIncomplete { status, message } => Outcome::Ambiguous {
            reason: ErrorDetail::new(
                "body_incomplete",
                format!("the response body broke off; the request may have executed: {message}"),
            )
            .with_status(*status),
        },
        TransportFault::NotBuilt { message } => Outcome::Permanent {
            reason: ErrorDetail::new("request_not_built", format!("the request could not be built: {message}")),
        },
    }
}

/// Classifies one dispatch exchange with the given error model.
pub(crate) fn classify(model: ErrorModel, exchange: &Exchange, now: SystemTime) -> Outcome {
    match (model, exchange) {
        (_, Exchange::Transport(fault)) => classify_transport(fault),
        (ErrorModel::PurpleFlea, Exchange::Response(response)) => {
            classify_purple_flea(response, now)
        }
        (ErrorModel::Aeeron, Exchange::Response(response)) => classify_aeeron(response, now),
    }
}

/// Purple Flea: the HTTP status decides (the body only fills in the detail).
///
/// | status            | outcome                                           |
/// |-------------------|---------------------------------------------------|
/// | 2xx, JSON object  | success                                           |
/// | 2xx, anything else| ambiguous (`unreadable_success_body`)             |
/// | 400, 401, 403, 404, 422 | permanent                                   |
/// | 409               | already done                                      |
/// | 408, 500, 504     | ambiguous                                         |
/// | 429               | retryable, whole connector, after Retry-After     |
/// | 502, 503          | retryable, this intent, after Retry-After if given|
/// | any other         | ambiguous (`unexpected_status`)                   |
pub(crate) fn classify_purple_flea(response: &RawResponse, now: SystemTime) -> Outcome {
    let status = response.status;
    if (200..300).contains(&status) {
        return success_or_ambiguous(response, |_| true);
    }
    let detail = purple_flea_detail(response);
    let retry_after = || {
        response
            .retry_after
            .as_deref()
            .and_then(|value| parse_retry_after(value, now))
    };
    match status {
        400 | 401 | 403 | 404 | 422 => Outcome::Permanent { reason: detail },
        409 => Outcome::AlreadyDone { reason: detail },
        408 | 500 | 504 => Outcome::Ambiguous { reason: detail },
        429 => Outcome::Retryable {
            reason: detail,
            retry_after: retry_after(),
            scope: RetryScope::Connector,
        },
        502 | 503 => Outcome::Retryable {
            reason: detail,
            retry_after: retry_after(),
            scope: RetryScope::Intent,
        },
        _ => {
            let mut reason = detail;
            if reason.code.is_empty() || reason.code == UNREADABLE_ERROR_BODY {
                reason.code = "unexpected_status".to_owned();
            }
            Outcome::Ambiguous { reason }
        }
    }
}

/// Aeeron: `error.code` decides, never the status.
///
/// | error.code            | condition                          | outcome                         |
/// |-----------------------|------------------------------------|---------------------------------|
/// | (none), 2xx           | JSON object body                   | success                         |
/// | payment_required      |                                    | payment required                |
/// | budget_exceeded       |                                    | budget exceeded                 |
/// | invalid_input         |                                    | permanent                       |
/// | not_found             |                                    | permanent                       |
/// | idempotency_conflict  |                                    | permanent                       |
/// | rate_limited          |                                    | retryable, whole connector      |
/// | provider_unavailable  | details.provider_touched == false  | retryable, this intent          |
/// | provider_unavailable  | true, missing or not a boolean     | ambiguous                       |
/// | execution_failed      |                                    | execution failed                |
/// | any other code        |                                    | ambiguous                       |
/// | (unreadable body)     | any status                         | ambiguous                       |
pub(crate) fn classify_aeeron(response: &RawResponse, now: SystemTime) -> Outcome {
    let Some(error) = parse_aeeron_error(&response.body) else {
        if (200..300).contains(&response.status) {
            return success_or_ambiguous(response, |object| !object.contains_key("error"));
        }
        let reason = ErrorDetail::new(
            UNREADABLE_ERROR_BODY,
            "the error body is not an Aeeron error object",
        )
        .with_status(response.status)
        .with_raw_body(&response.body);
        return Outcome::Ambiguous { reason };
    };
    let detail = ErrorDetail {
        code: error.code.clone(),
        message: error.message,
        http_status: Some(response.status),
        details: error.details.clone(),
        raw_body: crate::outcome::capped_raw_body(&response.body),
    };
    let retry_after = || {
        response
            .retry_after
            .as_deref()
            .and_then(|value| parse_retry_after(value, now))
    };
    match error.code.as_str() {
        "payment_required" => Outcome::PaymentRequired { details: detail },
        "budget_exceeded" => Outcome::BudgetExceeded { details: detail },
        "invalid_input" | "not_found" | "idempotency_conflict" => {
            Outcome::Permanent { reason: detail }
        }
        "rate_limited" => Outcome::Retryable {
            reason: detail,
            retry_after: retry_after(),
            scope: RetryScope::Connector,
        },
        "provider_unavailable" => {
            let touched = error
                .details
                .as_ref()
                .and_then(|details| details.get("provider_touched"));
            if touched == Some(&Value::Bool(false)) {
                Outcome::Retryable {
                    reason: detail,
                    retry_after: retry_after(),
                    scope: RetryScope::Intent,
                }
            } else {
                Outcome::Ambiguous { reason: detail }
            }
        }
        "execution_failed" => Outcome::ExecutionFailed { details: detail },
        _ => Outcome::Ambiguous { reason: detail },
    }
}

/// The code given to error bodies that could not be read.
pub(crate) const UNREADABLE_ERROR_BODY: &str = "unreadable_error_body";

/// Success only for a JSON object body that `accept` allows; anything else is ambiguous,
/// since a 2xx means the provider executed but we cannot read what it did.
fn success_or_ambiguous(
    response: &RawResponse,
    accept: impl Fn(&serde_json::Map<String, Value>) -> bool,
) -> Outcome {
    if !response.body_cut {
        if let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(&response.body) {
            if accept(&object) && !object.contains_key("error") {
                return Outcome::Success {
                    result: Value::Object(object),
                };
            }
        }
    }
    Outcome::Ambiguous {
        reason: ErrorDetail::new(
            "unreadable_success_body",
            "a success status with a body that is not a readable result object; the request may have executed",
        )
        .with_status(response.status)
        .with_raw_body(&response.body),
    }
}

/// A Purple Flea error body: `{"error":"<code>","message":"<text>"}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PurpleFleaError {
    /// `error`.
    pub code: String,
    /// `message`, empty when absent.
    pub message: String,
}

/// Reads a Purple Flea error body; `None` for anything not of that shape. Never panics.
pub(crate) fn parse_purple_flea_error(body: &[u8]) -> Option<PurpleFleaError> {
    let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(body) else {
        return None;
    };
    let code = object.get("error")?.as_str()?.to_owned();
    let message = object
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    Some(PurpleFleaError { code, message })
}

/// An Aeeron error body: `{"error":{"code","message","details"}}`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct AeeronError {
    /// `error.code`.
    pub code: String,
    /// `error.message`, empty when absent.
    pub message: String,
    /// `error.details`, when present and not null.
    pub details: Option<Value>,
}

/// Reads an Aeeron error body; `None` for anything not of that shape. Never panics.
pub(crate) fn parse_aeeron_error(body: &[u8]) -> Option<AeeronError> {
    let Ok(Value::Object(mut object)) = serde_json::from_slice::<Value>(body) else {
        return None;
    };
    let Some(Value::Object(mut error)) = object.remove("error") else {
        return None;
    };
    let code = error.get("code")?.as_str()?.to_owned();
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let details = error.remove("details").filter(|details| !details.is_null());
    Some(AeeronError {
        code,
        message,
        details,
    })
}

fn purple_flea_detail(response: &RawResponse) -> ErrorDetail {
    let (code, message) = match parse_purple_flea_error(&response.body) {
        Some(error) => (error.code, error.message),
        None => (
            UNREADABLE_ERROR_BODY.to_owned(),
            format!("HTTP {} with an unreadable error body", response.status),
        ),
    };
    ErrorDetail::new(code, message)
        .with_status(response.status)
        .with_raw_body(&response.body)
}

/// What a status look-up (a GET) came to, before the adapter reads the resource.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Lookup {
    /// 200 with a JSON object.
    Resource(Value),
    /// 404 whose body carries the provider's own `not_found` code.
    NotFound,
    /// Anything else: the look-up did not decide.
    Unknown(ErrorDetail),
}

/// Classifies a status look-up.
///
/// | what came back                              | result   |
/// |---------------------------------------------|----------|
/// | 200, JSON object                            | resource |
/// | 404 with the provider's `not_found` code    | not found|
/// | 404 with any other body (a wrong route)     | unknown  |
/// | any other status, unreadable 200, transport | unknown  |
///
/// A bare 404 is not trusted: "not found" lets the engine re-send, so it must come from
/// the provider's own error body, not from a proxy or a mistyped base URL.
pub(crate) fn classify_lookup(model: ErrorModel, exchange: &Exchange) -> Lookup {
    let response = match exchange {
        Exchange::Transport(fault) => {
            let reason = classify_transport(fault)
                .detail()
                .cloned()
                .unwrap_or_else(|| {
                    ErrorDetail::new("transport", "the status check failed below HTTP")
                });
            return Lookup::Unknown(reason);
        }
        Exchange::Response(response) => response,
    };
    if response.status == 200 && !response.body_cut {
        if let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(&response.body) {
            if !object.contains_key("error") {
                return Lookup::Resource(Value::Object(object));
            }
        }
    }
    let code = match model {
        ErrorModel::PurpleFlea => parse_purple_flea_error(&response.body).map(|error| error.code),
        ErrorModel::Aeeron => parse_aeeron_error(&response.body).map(|error| error.code),
    };
    if response.status == 404 && code.as_deref() == Some("not_found") {
        return Lookup::NotFound;
    }
    let reason = ErrorDetail::new(
        code.unwrap_or_else(|| "status_check_undecided".to_owned()),
        format!(
            "the status check got HTTP {} and could not decide",
            response.status
        ),
    )
    .with_status(response.status)
    .with_raw_body(&response.body);
    Lookup::Unknown(reason)
}

/// Turns an undecided look-up into a [`StatusCheck::Unknown`].
pub(crate) fn unknown(code: &str, message: impl Into<String>) -> StatusCheck {
    StatusCheck::Unknown {
        reason: ErrorDetail::new(code, message),
    }
}

// The file passes 600 lines only through these tests, which stay beside the code they
// pin; the library part above is 434 lines.
#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    /// One row: status, Retry-After, body → outcome kind, retry-after seconds, scope.
    type Row<'a> = (
        u16,
        Option<&'a str>,
        &'a str,
        &'a str,
        Option<u64>,
        Option<RetryScope>,
    );

    fn check(model: ErrorModel, rows: &[Row<'_>]) {
        for (status, retry_after, body, kind, delay, scope) in rows {
            let mut response = RawResponse::new(*status, body.as_bytes());
            response.retry_after = retry_after.map(str::to_owned);
            let outcome = classify(model, &Exchange::Response(response), now());
            let context = format!("{model:?} {status} {retry_after:?} {body} → {outcome:?}");
            assert_eq!(outcome.kind(), *kind, "{context}");
            if let Outcome::Retryable {
                retry_after,
                scope: got_scope,
                ..
            } = &outcome
            {
                assert_eq!(retry_after.map(|d| d.as_secs()), *delay, "{context}");
                assert_eq!(Some(*got_scope), *scope, "{context}");
            }
            if let Some(detail) = outcome.detail() {
                assert_eq!(detail.http_status, Some(*status), "{context}");
            }
        }
    }

    // The Purple Flea table of docs/connectors.md, one line per row.
    #[test]
    #[rustfmt::skip]
    fn purple_flea_table() {
        use RetryScope::{Connector, Intent};
        check(ErrorModel::PurpleFlea, &[
            (200, None, r#"{"balance":"10000.00","currency":"USDC"}"#, "success", None, None),
            (201, None, r#"{"id":"bet_1","status":"complete"}"#, "success", None, None),
            (201, None, r#"{"id":"bet_1""#, "ambiguous", None, None),
            (201, None, "", "ambiguous", None, None),
            (201, None, "[1,2]", "ambiguous", None, None),
            (200, None, r#"{"error":"internal_error"}"#, "ambiguous", None, None),
            (400, None, r#"{"error":"invalid_request","message":"bad"}"#, "permanent", None, None),
            (401, None, r#"{"error":"unauthorized"}"#, "permanent", None, None),
            (403, None, "", "permanent", None, None),
            (404, None, r#"{"error":"not_found"}"#, "permanent", None, None),
            (422, None, r#"{"error":"insufficient_funds"}"#, "permanent", None, None),
            (422, None, r#"{"error":"idempotency_key_reused"}"#, "permanent", None, None),
            (422, None, r#"{"error":"invalid_state_transition"}"#, "permanent", None, None),
            (409, None, r#"{"error":"request_in_progress"}"#, "already_done", None, None),
            (408, None, r#"{"error":"timeout"}"#, "ambiguous", None, None),
            (500, None, r#"{"error":"internal_error"}"#, "ambiguous", None, None),
            (504, None, "<html>gateway timeout</html>", "ambiguous", None, None),
            (429, Some("7"), r#"{"error":"rate_limited"}"#, "retryable", Some(7), Some(Connector)),
            (429, Some("soon"), r#"{"error":"rate_limited"}"#, "retryable", None, Some(Connector)),
            (429, None, "", "retryable", None, Some(Connector)),
            (502, None, r#"{"error":"bad_gateway"}"#, "retryable", None, Some(Intent)),
            (503, Some("2"), r#"{"error":"unavailable"}"#, "retryable", Some(2), Some(Intent)),
            (302, None, "", "ambiguous", None, None),
            (418, None, "teapot", "ambiguous", None, None),
            (507, None, "", "ambiguous", None, None),
        ]);
    }

    // The Aeeron table of docs/connectors.md, one line per row. Statuses are deliberately
    // "wrong" in some rows: the code decides, never the status.
    #[test]
    #[rustfmt::skip]
    fn aeeron_table() {
        use RetryScope::{Connector, Intent};
        check(ErrorModel::Aeeron, &[
            (201, None, r#"{"id":"ex_1","status":"succeeded"}"#, "success", None, None),
            (200, None, r#"{"quote_id":"q_1","amount":"16.80"}"#, "success", None, None),
            (201, None, "not json", "ambiguous", None, None),
            (201, None, r#"{"error":"oops"}"#, "ambiguous", None, None),
            (402, None, r#"{"error":{"code":"payment_required","details":{"amount":"16.80","currency":"USDC"}}}"#, "payment_required", None, None),
            (403, None, r#"{"error":{"code":"budget_exceeded","details":{"budget":"12.00","quote":"16.80","currency":"USDC"}}}"#, "budget_exceeded", None, None),
            (400, None, r#"{"error":{"code":"invalid_input","message":"unknown action"}}"#, "permanent", None, None),
            (404, None, r#"{"error":{"code":"not_found"}}"#, "permanent", None, None),
            (409, None, r#"{"error":{"code":"idempotency_conflict"}}"#, "permanent", None, None),
            (429, Some("3"), r#"{"error":{"code":"rate_limited"}}"#, "retryable", Some(3), Some(Connector)),
            (503, Some("1"), r#"{"error":{"code":"provider_unavailable","details":{"payment_cleared":false,"provider_touched":false,"execution_id":null}}}"#, "retryable", Some(1), Some(Intent)),
            (503, None, r#"{"error":{"code":"provider_unavailable","details":{"payment_cleared":true,"provider_touched":true,"execution_id":"ex_1"}}}"#, "ambiguous", None, None),
            (503, None, r#"{"error":{"code":"provider_unavailable","details":{"payment_cleared":true}}}"#, "ambiguous", None, None),
            (503, None, r#"{"error":{"code":"provider_unavailable","details":{"provider_touched":"false"}}}"#, "ambiguous", None, None),
            (503, None, r#"{"error":{"code":"provider_unavailable"}}"#, "ambiguous", None, None),
            (502, None, r#"{"error":{"code":"execution_failed","details":{"execution_id":"ex_1","payment_cleared":true,"provider_touched":true}}}"#, "execution_failed", None, None),
            (500, None, r#"{"error":{"code":"something_new"}}"#, "ambiguous", None, None),
            (400, None, r#"{"error":{"code":"payment_required"}}"#, "payment_required", None, None),
            (503, None, "<html>upstream down</html>", "ambiguous", None, None),
            (400, None, r#"{"error":"invalid_input"}"#, "ambiguous", None, None),
            (400, None, r#"{"error":{"code":42}}"#, "ambiguous", None, None),
            (429, Some("3"), "", "ambiguous", None, None),
        ]);
    }

    // The transport-fault table of docs/connectors.md, one line per row.
    #[test]
    #[rustfmt::skip]
    fn transport_table() {
        let message = || "x".to_owned();
        let rows: &[(TransportFault, &str, &str)] = &[
            (TransportFault::NotSent { message: message() }, "retryable", "not_sent"),
            (TransportFault::Timeout { message: message() }, "ambiguous", "timeout"),
            (TransportFault::ConnectionLost { message: message() }, "ambiguous", "connection_lost"),
            (TransportFault::BodyIncomplete { status: 201, message: message() }, "ambiguous", "body_incomplete"),
            (TransportFault::NotBuilt { message: message() }, "permanent", "request_not_built"),
        ];
        for (fault, kind, code) in rows {
            for model in [ErrorModel::PurpleFlea, ErrorModel::Aeeron] {
                let outcome = classify(model, &Exchange::Transport(fault.clone()), now());
                assert_eq!(outcome.kind(), *kind, "{fault:?}");
                assert_eq!(outcome.detail().map(|d| d.code.as_str()), Some(*code), "{fault:?}");
            }
        }
    }

    // The status look-up table of docs/connectors.md, one line per row.
    #[test]
    #[rustfmt::skip]
    fn lookup_table() {
        use ErrorModel::{Aeeron, PurpleFlea};
        let rows: &[(ErrorModel, u16, &str, &str)] = &[
            (PurpleFlea, 200, r#"{"id":"bet_1","status":"complete"}"#, "resource"),
            (PurpleFlea, 200, "garbage", "unknown"),
            (PurpleFlea, 404, r#"{"error":"not_found","message":"no such key"}"#, "not_found"),
            (PurpleFlea, 404, "", "unknown"),
            (PurpleFlea, 404, r#"{"error":{"code":"not_found"}}"#, "unknown"),
            (PurpleFlea, 500, r#"{"error":"internal_error"}"#, "unknown"),
            (PurpleFlea, 429, r#"{"error":"rate_limited"}"#, "unknown"),
            (Aeeron, 200, r#"{"id":"ex_1","status":"processing"}"#, "resource"),
            (Aeeron, 404, r#"{"error":{"code":"not_found","message":"no such key"}}"#, "not_found"),
            (Aeeron, 404, r#"{"error":"not_found"}"#, "unknown"),
            (Aeeron, 404, "Not Found", "unknown"),
            (Aeeron, 503, r#"{"error":{"code":"provider_unavailable"}}"#, "unknown"),
        ];
        for (model, status, body, expected) in rows {
            let lookup = classify_lookup(*model, &Exchange::Response(RawResponse::new(*status, body.as_bytes())));
            let kind = match lookup {
                Lookup::Resource(_) => "resource",
                Lookup::NotFound => "not_found",
                Lookup::Unknown(_) => "unknown",
            };
            assert_eq!(kind, *expected, "{model:?} {status} {body}");
        }
        let fault = Exchange::Transport(TransportFault::Timeout { message: "t".to_owned() });
        assert!(matches!(classify_lookup(PurpleFlea, &fault), Lookup::Unknown(_)));
    }

    #[test]
    fn details_are_kept_for_the_operator() {
        let body = r#"{"error":{"code":"budget_exceeded","message":"too much","details":{"budget":"12.00","quote":"16.80","currency":"USDC"}}}"#;
        let outcome = classify_aeeron(&RawResponse::new(403, body.as_bytes()), now());
        let Outcome::BudgetExceeded { details } = outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(details.code, "budget_exceeded");
        assert_eq!(details.message, "too much");
        assert_eq!(details.http_status, Some(403));
        assert_eq!(
            details.details.as_ref().and_then(|d| d.get("quote")),
            Some(&Value::from("16.80"))
        );
        assert_eq!(details.raw_body.as_deref(), Some(body));

        let outcome = classify_purple_flea(
            &RawResponse::new(
                422,
                br#"{"error":"insufficient_funds","message":"balance 1.00"}"#.to_vec(),
            ),
            now(),
        );
        let detail = outcome.detail().unwrap();
        assert_eq!(
            (detail.code.as_str(), detail.message.as_str()),
            ("insufficient_funds", "balance 1.00")
        );
    }

    #[test]
    fn a_cut_body_is_never_success() {
        let mut response = RawResponse::new(201, br#"{"id":"bet_1"}"#.to_vec());
        response.body_cut = true;
        assert_eq!(classify_purple_flea(&response, now()).kind(), "ambiguous");
        assert_eq!(classify_aeeron(&response, now()).kind(), "ambiguous");
    }
}
