//! Aeeron request bodies: JSON parsing and field checks for quotes, payments and
//! executions. Every failure is an `invalid_input` message with its `details`.

use serde_json::{json, Map, Value};

use crate::idempotency::{fingerprint, Fingerprint};
use crate::money::parse_amount_minor_positive;

use super::price::{price, ActionPrice};
use super::PRICE_CURRENCY;

/// Currencies a payment may be authorised in (a EURC payment shows the currency-mismatch check).
const PAYMENT_CURRENCIES: [&str; 2] = ["USDC", "EURC"];

/// The message and `details` of a 400 `invalid_input`.
pub(super) type InvalidInput = (String, Value);

fn invalid(message: impl Into<String>) -> InvalidInput {
    (message.into(), Value::Null)
}

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, InvalidInput> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(invalid("the body must be a JSON object")),
        Err(error) => Err(invalid(format!("the body is not valid JSON: {error}"))),
    }
}

fn amount_field(object: &Map<String, Value>, name: &str) -> Result<i64, InvalidInput> {
    match object.get(name) {
        Some(Value::String(text)) => parse_amount_minor_positive(text).ok_or_else(|| {
            (
                format!("{name} must be a positive decimal string with at most 2 decimals"),
                json!({ "field": name }),
            )
        }),
        _ => Err((
            format!("{name} must be a decimal string such as \"12.00\""),
            json!({ "field": name }),
        )),
    }
}

/// `action` (a string) and `params` (an object, `{}` when absent), priced.
fn action_and_params(object: &Map<String, Value>) -> Result<(ActionPrice, Value), InvalidInput> {
    let action = object
        .get("action")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            (
                String::from("action must be a string"),
                json!({ "field": "action" }),
            )
        })?;
    let params = object
        .get("params")
        .cloned()
        .unwrap_or_else(|| Value::Object(Map::new()));
    let price =
        price(action, &params).map_err(|message| (message, json!({ "field": "params" })))?;
    Ok((price, params))
}

/// A checked `POST /v1/quotes`: the priced action and its params as sent.
pub(super) fn check_quote(body: &[u8]) -> Result<(ActionPrice, Value), InvalidInput> {
    let object = parse_object(body)?;
    let (price, params) = action_and_params(&object)?;
    match object.get("currency").and_then(Value::as_str) {
        None | Some(PRICE_CURRENCY) => Ok((price, params)),
        Some(other) => Err((
            format!("currency mismatch: actions are priced in {PRICE_CURRENCY}"),
            json!({ "currency": other }),
        )),
    }
}

/// A checked `POST /v1/payments`.
pub(super) struct PaymentRequest {
    pub(super) request: Fingerprint,
    pub(super) amount_minor: i64,
    pub(super) currency: &'static str,
}

pub(super) fn check_payment(body: &[u8]) -> Result<PaymentRequest, InvalidInput> {
    let object = parse_object(body)?;
    let amount_minor = amount_field(&object, "amount")?;
    let requested_currency = object
        .get("currency")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let Some(currency) = PAYMENT_CURRENCIES
        .into_iter()
        .find(|known| *known == requested_currency)
    else {
        return Err((
            format!("currency must be one of {PAYMENT_CURRENCIES:?}"),
            json!({ "field": "currency" }),
        ));
    };
    let request = fingerprint(
        "POST",
        "/v1/payments",
        &json!({ "amount": object.get("amount"), "currency": currency }).to_string(),
    );
    Ok(PaymentRequest {
        request,
        amount_minor,
        currency,
    })
}

/// A checked `POST /v1/executions`.
pub(super) struct ExecutionRequest {
    pub(super) key: String,
    pub(super) request: Fingerprint,
    pub(super) price: ActionPrice,
    pub(super) params: Value,
    pub(super) budget_minor: i64,
    pub(super) budget_currency: String,
    pub(super) payment_id: Option<String>,
}

pub(super) fn check_execution(key: String, body: &[u8]) -> Result<ExecutionRequest, InvalidInput> {
    let object = parse_object(body)?;
    let (price, params) = action_and_params(&object)?;
    let Some(Value::Object(budget)) = object.get("budget") else {
        return Err((
            "budget must be an object with amount and currency".to_owned(),
            json!({ "field": "budget" }),
        ));
    };
    let budget_minor = amount_field(budget, "amount")?;
    let budget_currency = budget
        .get("currency")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if budget_currency != PRICE_CURRENCY {
        return Err((
            format!(
                "currency mismatch: {} is priced in {PRICE_CURRENCY}",
                price.name
            ),
            json!({ "budget_currency": budget_currency, "price_currency": PRICE_CURRENCY }),
        ));
    }
    let payment_id = match object.get("payment_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(id.clone()),
        Some(_) => {
            return Err((
                "payment_id must be a string".to_owned(),
                json!({ "field": "payment_id" }),
            ))
        }
    };
    // The fingerprint leaves payment_id out, so the same key can be re-sent once funded.
    let canonical =
        json!({ "action": price.name, "params": params, "budget": Value::Object(budget.clone()) });
    Ok(ExecutionRequest {
        request: fingerprint("POST", "/v1/executions", &canonical.to_string()),
        key,
        price,
        params,
        budget_minor,
        budget_currency,
        payment_id,
    })
}
