//! The Aeeron adapter: paid actions over the JSON error-code model, payment and execution failures kept apart.
//!
//! The one intent operation is `execute` (`POST /v1/executions`), with params
//! `{"action": "..", "params": {..}, "budget": {"amount": "12.00", "currency": "USDC"}}`;
//! the payment id travels in [`DispatchRequest::payment`], outside the params, because
//! Aeeron's idempotency fingerprint excludes it: the same key is re-sent once funding is
//! attached. Quotes and payments are not intents (a quote moves no money, a payment only
//! authorises funding for one execution) and have their own methods.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use reqwest::Method;
use serde_json::{json, Value};

use crate::amount::Amount;
use crate::classify::{self, classify_lookup, unknown, ErrorModel, Exchange, Lookup};
use crate::config::HttpConnectorConfig;
use crate::connector::{amount_micros_field, resource_id_field, Connector, DispatchRequest};
use crate::error::{echo, Error, Result};
use crate::http::HttpTransport;
use crate::keys::IdempotencyKey;
use crate::outcome::{ErrorDetail, Outcome, RemoteStatus, StatusCheck};
use crate::params;
use crate::purple_flea::invalid_request;

/// The connector's name.
pub const AEERON_NAME: &str = "aeeron";

/// The one intent operation.
pub const AEERON_EXECUTE: &str = "execute";

/// A checked `execute` request.
#[derive(Clone, Debug, PartialEq)]
pub struct ExecuteParams {
    /// The action, e.g. `compute.gpu_hours`.
    pub action: String,
    /// The action's own parameters (a JSON object, sent as is).
    pub params: Value,
    /// The most the caller will pay, a decimal string.
    pub budget_amount: String,
    /// The budget's currency.
    pub budget_currency: String,
}

impl ExecuteParams {
    /// Reads `execute` params, with a typed error for anything wrong.
    pub fn parse(operation: &str, params: &Value) -> Result<Self> {
        if operation != AEERON_EXECUTE {
            return Err(Error::UnknownOperation {
                connector: AEERON_NAME.to_owned(),
                operation: echo(operation),
            });
        }
        params::object(operation, params)?;
        let budget = params::json_object(operation, params, "budget")?;
        Ok(Self {
            action: params::text(operation, params, "action")?,
            params: params::json_object(operation, params, "params")?,
            budget_amount: params::amount(operation, &budget, "amount").map_err(rename_budget)?,
            budget_currency: params::text(operation, &budget, "currency").map_err(rename_budget)?,
        })
    }

    /// The JSON params [`ExecuteParams::parse`] reads back.
    pub fn to_params(&self) -> Value {
        json!({
            "action": self.action,
            "params": self.params,
            "budget": {"amount": self.budget_amount, "currency": self.budget_currency},
        })
    }
}

/// Names nested budget fields `budget.amount` / `budget.currency` in errors.
fn rename_budget(error: Error) -> Error {
    match error {
        Error::InvalidParams {
            operation,
            field,
            reason,
        } => Error::InvalidParams {
            operation,
            field: format!("budget.{field}"),
            reason,
        },
        other => other,
    }
}

/// Reads the payment id out of [`DispatchRequest::payment`]: a string, or an object
/// with a `payment_id` string.
fn payment_id(payment: Option<&Value>) -> Result<Option<String>> {
    let Some(payment) = payment else {
        return Ok(None);
    };
    let id = match payment {
        Value::String(id) => id.as_str(),
        Value::Object(object) => object
            .get("payment_id")
            .and_then(Value::as_str)
            .unwrap_or_default(),
        Value::Null => return Ok(None),
        _ => "",
    };
    params::check_resource_id(id).map_err(|reason| Error::InvalidParams {
        operation: AEERON_EXECUTE.to_owned(),
        field: "payment_id".to_owned(),
        reason,
    })?;
    Ok(Some(id.to_owned()))
}

/// The Aeeron connector: one pooled client, the table of `classify.rs`.
#[derive(Debug, Clone)]
pub struct AeeronConnector {
    transport: HttpTransport,
    key_lifetime: Duration,
}

impl AeeronConnector {
    /// Builds the connector and its HTTP client.
    pub fn new(config: HttpConnectorConfig) -> Result<Self> {
        config.validate()?;
        let transport = HttpTransport::new(
            AEERON_NAME,
            &config.base_url,
            config.api_key,
            config.connect_timeout,
            config.request_timeout,
        )?;
        Ok(Self {
            transport,
            key_lifetime: config.key_lifetime,
        })
    }

    /// The base URL requests go to.
    pub fn base_url(&self) -> &str {
        self.transport.base_url()
    }

    /// Asks for a quote (`POST /v1/quotes`); success holds `quote_id`, `amount`, `currency`.
    pub async fn quote(&self, action: &str, action_params: &Value, currency: &str) -> Outcome {
        let body = json!({"action": action, "params": action_params, "currency": currency});
        let exchange = self
            .transport
            .send(Method::POST, "/v1/quotes", &[], None, Some(&body))
            .await;
        self.classify(&exchange)
    }

    /// Authorises funding (`POST /v1/payments`); success holds `payment_id`, to be put in
    /// [`DispatchRequest::payment`] of the intent that was told `PaymentRequired`.
    pub async fn create_payment(
        &self,
        amount: &str,
        currency: &str,
        key: &IdempotencyKey,
    ) -> Outcome {
        if let Err(error) = Amount::parse(amount) {
            return invalid_request(&error);
        }
        let body = json!({"amount": amount, "currency": currency});
        let exchange = self
            .transport
            .send(Method::POST, "/v1/payments", &[], Some(key), Some(&body))
            .await;
        self.classify(&exchange)
    }
}

#[async_trait]
impl Connector for AeeronConnector {
    fn name(&self) -> &str {
        AEERON_NAME
    }

    fn key_lifetime(&self) -> Duration {
        self.key_lifetime
    }

    fn validate(&self, operation: &str, params: &Value) -> Result<()> {
        ExecuteParams::parse(operation, params).map(|_| ())
    }

    async fn dispatch(&self, request: &DispatchRequest) -> Outcome {
        let execute = match ExecuteParams::parse(&request.operation, &request.params) {
            Ok(execute) => execute,
            Err(error) => return invalid_request(&error),
        };
        let payment_id = match payment_id(request.payment.as_ref()) {
            Ok(payment_id) => payment_id,
            Err(error) => return invalid_request(&error),
        };
        let mut body = execute.to_params();
        if let (Some(payment_id), Value::Object(object)) = (payment_id, &mut body) {
            object.insert("payment_id".to_owned(), Value::String(payment_id));
        }
        let exchange = self
            .transport
            .send(
                Method::POST,
                "/v1/executions",
                &[],
                Some(&request.idempotency_key),
                Some(&body),
            )
            .await;
        self.classify(&exchange)
    }

    async fn check_status(&self, request: &DispatchRequest) -> StatusCheck {
        let key = &request.idempotency_key;
        let exchange = match &request.resource_id {
            Some(execution_id) => {
                if let Err(reason) = params::check_resource_id(execution_id) {
                    return StatusCheck::Unknown {
                        reason: ErrorDetail::new("invalid_resource_id", reason),
                    };
                }
                self.transport
                    .send(
                        Method::GET,
                        &format!("/v1/executions/{execution_id}"),
                        &[],
                        None,
                        None,
                    )
                    .await
            }
            None => {
                self.transport
                    .send(
                        Method::GET,
                        "/v1/executions/by-idempotency-key",
                        &[("key", key.as_str())],
                        None,
                        None,
                    )
                    .await
            }
        };
        execution_status(classify_lookup(ErrorModel::Aeeron, &exchange), key)
    }

    fn amount_micros(&self, _operation: &str, params: &Value) -> Option<u64> {
        // The budget is the most an execution may spend (the quote is unknown until the
        // provider prices it), so the guards count the budget.
        params
            .get("budget")
            .and_then(|budget| amount_micros_field(budget, "amount"))
    }

    fn resource_id(&self, outcome: &Outcome) -> Option<String> {
        // An execution answers with its `id`; once the provider was touched, a failure
        // (`execution_failed`, `provider_unavailable`) names it in `details.execution_id`.
        match outcome {
            Outcome::Success { result } => resource_id_field(result, "id"),
            other => other
                .detail()
                .and_then(|detail| detail.details.as_ref())
                .and_then(|details| resource_id_field(details, "execution_id")),
        }
    }

    fn classify(&self, exchange: &Exchange) -> Outcome {
        classify::classify(ErrorModel::Aeeron, exchange, SystemTime::now())
    }
}

/// An execution look-up → status check. `succeeded` → complete, `processing` or
/// `pending` → pending, `failed` → failed (bound to the key: never re-send).
pub(crate) fn execution_status(lookup: Lookup, key: &IdempotencyKey) -> StatusCheck {
    let result = match lookup {
        Lookup::Resource(result) => result,
        Lookup::NotFound => return StatusCheck::NotFound,
        Lookup::Unknown(reason) => return StatusCheck::Unknown { reason },
    };
    if let Some(found_key) = result.get("idempotency_key").and_then(Value::as_str) {
        if found_key != key.as_str() {
            return unknown(
                "status_check_mismatch",
                format!("the execution belongs to key {:?}", echo(found_key)),
            );
        }
    }
    let remote_status = match result.get("status").and_then(Value::as_str) {
        Some("succeeded") => RemoteStatus::Complete,
        Some("processing" | "pending") => RemoteStatus::Pending,
        Some("failed") => RemoteStatus::Failed,
        Some(other) => {
            return unknown(
                "status_check_unreadable",
                format!("unknown execution status {:?}", echo(other)),
            )
        }
        None => return unknown("status_check_unreadable", "the execution has no status"),
    };
    StatusCheck::Found {
        result,
        remote_status,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aeeron() -> AeeronConnector {
        AeeronConnector::new(HttpConnectorConfig::new("http://127.0.0.1:1")).unwrap()
    }

    #[test]
    fn amount_is_the_budget() {
        let connector = aeeron();
        #[rustfmt::skip]
        let cases: &[(Value, Option<u64>)] = &[
            (json!({"action":"web.search","params":{"queries":3},"budget":{"amount":"12.00","currency":"USDC"}}), Some(12_000_000)),
            (json!({"action":"web.search","params":{"queries":3},"budget":{"amount":"0.5","currency":"USDC"}}), Some(500_000)),
            (json!({"action":"web.search","params":{"queries":3}}), None),
            (json!({"action":"web.search","params":{"queries":3},"budget":{"amount":12,"currency":"USDC"}}), None),
            (json!({"action":"web.search","params":{"queries":3},"budget":"12.00"}), None),
            // A stray top-level amount is not what an execution may spend: the budget is.
            (json!({"action":"web.search","amount":"0.01","budget":{"amount":"12.00","currency":"USDC"}}), Some(12_000_000)),
        ];
        for (params, expected) in cases {
            assert_eq!(
                connector.amount_micros(AEERON_EXECUTE, params),
                *expected,
                "{params}"
            );
        }
    }

    #[test]
    fn resource_id_is_the_execution_id_of_a_success_or_a_touched_failure() {
        let connector = aeeron();
        let classified = |status: u16, body: &str| {
            connector.classify(&Exchange::Response(crate::RawResponse::new(status, body)))
        };
        let longest = "x".repeat(crate::RESOURCE_ID_CHARS_MAX);
        let too_long = "x".repeat(crate::RESOURCE_ID_CHARS_MAX + 1);
        #[rustfmt::skip]
        let cases: &[(Outcome, Option<&str>)] = &[
            (classified(201, r#"{"id":"ex_1","status":"succeeded"}"#), Some("ex_1")),
            (classified(502, r#"{"error":{"code":"execution_failed","details":{"execution_id":"ex_2","payment_cleared":true,"provider_touched":true}}}"#), Some("ex_2")),
            (classified(503, r#"{"error":{"code":"provider_unavailable","details":{"payment_cleared":true,"provider_touched":true,"execution_id":"ex_3"}}}"#), Some("ex_3")),
            (classified(503, r#"{"error":{"code":"provider_unavailable","details":{"payment_cleared":false,"provider_touched":false,"execution_id":null}}}"#), None),
            (classified(402, r#"{"error":{"code":"payment_required","details":{"amount":"16.80","currency":"USDC"}}}"#), None),
            (classified(201, r#"{"status":"succeeded"}"#), None),
            (Outcome::Success { result: json!({"id": longest}) }, Some(longest.as_str())),
            (Outcome::Success { result: json!({"id": too_long}) }, None),
            // An id its own status check would refuse is not kept: checks use the key.
            (Outcome::Success { result: json!({"id": "ex 1/../2"}) }, None),
        ];
        for (outcome, expected) in cases {
            assert_eq!(
                connector.resource_id(outcome).as_deref(),
                *expected,
                "{outcome:?}"
            );
        }
    }

    #[test]
    #[rustfmt::skip]
    fn validation_table() {
        let cases: &[(&str, Value, Option<&str>)] = &[
            ("execute", json!({"action":"compute.gpu_hours","params":{"hours":2},"budget":{"amount":"12.00","currency":"USDC"}}), None),
            ("execute", json!({"action":"compute.gpu_hours","params":{},"budget":{"amount":"12.00","currency":"USDC"},"note":"x"}), None),
            ("execute", json!({"action":"","params":{},"budget":{"amount":"12.00","currency":"USDC"}}), Some("action")),
            ("execute", json!({"action":"a","params":[],"budget":{"amount":"12.00","currency":"USDC"}}), Some("params")),
            ("execute", json!({"action":"a","params":{},"budget":{"amount":"0","currency":"USDC"}}), Some("greater than zero")),
            ("execute", json!({"action":"a","params":{},"budget":{"amount":"12.00"}}), Some("budget.currency")),
            ("execute", json!({"action":"a","params":{},"budget":"12.00"}), Some("budget")),
            ("execute", json!({"action":"a","params":{}}), Some("budget")),
            ("quote", json!({}), Some("no operation")),
        ];
        for (operation, params, expected_error) in cases {
            match (expected_error, ExecuteParams::parse(operation, params)) {
                (None, Ok(parsed)) => assert_eq!(ExecuteParams::parse(operation, &parsed.to_params()).unwrap(), parsed),
                (Some(fragment), Err(error)) => assert!(error.to_string().contains(fragment), "{params}: {error}"),
                (expected, got) => panic!("{params}: expected {expected:?}, got {got:?}"),
            }
        }
    }

    #[test]
    #[rustfmt::skip]
    fn payment_id_table() {
        let cases: &[(Option<Value>, Option<Option<&str>>)] = &[
            (None, Some(None)),
            (Some(json!(null)), Some(None)),
            (Some(json!("pay_123")), Some(Some("pay_123"))),
            (Some(json!({"payment_id":"pay_123","amount":"1.00"})), Some(Some("pay_123"))),
            (Some(json!("")), None),
            (Some(json!("pay/../x")), None),
            (Some(json!(42)), None),
        ];
        for (payment, expected) in cases {
            let got = payment_id(payment.as_ref()).ok();
            assert_eq!(got.as_ref().map(|id| id.as_deref()), *expected, "{payment:?}");
        }
    }

    #[test]
    #[rustfmt::skip]
    fn execution_status_table() {
        let key = IdempotencyKey::new("k1").unwrap();
        let rows: &[(Lookup, &str)] = &[
            (Lookup::Resource(json!({"id":"ex_1","idempotency_key":"k1","status":"succeeded"})), "Complete"),
            (Lookup::Resource(json!({"id":"ex_1","idempotency_key":"k1","status":"processing"})), "Pending"),
            (Lookup::Resource(json!({"id":"ex_1","idempotency_key":"k1","status":"failed"})), "Failed"),
            (Lookup::Resource(json!({"id":"ex_1","idempotency_key":"k2","status":"succeeded"})), "unknown"),
            (Lookup::Resource(json!({"id":"ex_1","idempotency_key":"k1","status":"weird"})), "unknown"),
            (Lookup::NotFound, "not_found"),
            (Lookup::Unknown(ErrorDetail::new("x", "y")), "unknown"),
        ];
        for (lookup, expected) in rows {
            let kind = match execution_status(lookup.clone(), &key) {
                StatusCheck::Found { remote_status, .. } => format!("{remote_status:?}"),
                StatusCheck::NotFound => "not_found".to_owned(),
                StatusCheck::Unknown { .. } => "unknown".to_owned(),
            };
            assert_eq!(kind, *expected, "{lookup:?}");
        }
    }
}
