//! Purple Flea request bodies: JSON parsing and field checks that turn a body into a
//! [`Command`], or into the message of a 400 `invalid_request`.

use serde_json::{Map, Value};

use crate::money::parse_amount_minor_positive;

use super::ledger::{Command, EscrowMove};
use super::CURRENCY;

/// The longest buyer, seller or recipient name, in bytes.
const PARTY_NAME_BYTES_MAX: usize = 128;
/// Legal dice targets: the chance of winning stays between 1% and 99% (never 0, never certain).
const DICE_TARGET_MIN: i64 = 1;
const DICE_TARGET_MAX: i64 = 99;

/// Parses a body that must be a JSON object; an empty body counts as `{}`.
pub(super) fn parse_json_object(body: &[u8]) -> Result<Value, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Map::new()));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(value @ Value::Object(_)) => Ok(value),
        Ok(_) => Err("the body must be a JSON object".to_owned()),
        Err(error) => Err(format!("the body is not valid JSON: {error}")),
    }
}

fn field_str<'a>(value: &'a Value, name: &str) -> Result<&'a str, String> {
    match value.get(name) {
        Some(Value::String(text)) => Ok(text),
        Some(_) => Err(format!("{name} must be a string")),
        None => Err(format!("{name} is required")),
    }
}

fn field_amount(value: &Value, name: &str) -> Result<i64, String> {
    match value.get(name) {
        Some(Value::String(text)) => parse_amount_minor_positive(text).ok_or_else(|| {
            format!("{name} must be a positive decimal string with at most 2 decimals")
        }),
        Some(Value::Number(_)) => Err(format!(
            "{name} must be a decimal string such as \"10.00\", not a number"
        )),
        Some(_) => Err(format!("{name} must be a decimal string")),
        None => Err(format!("{name} is required")),
    }
}

fn field_party(value: &Value, name: &str) -> Result<String, String> {
    let text = field_str(value, name)?;
    if text.is_empty() || text.len() > PARTY_NAME_BYTES_MAX {
        return Err(format!("{name} must be 1 to {PARTY_NAME_BYTES_MAX} bytes"));
    }
    Ok(text.to_owned())
}

/// `POST /casino/bet`: `game` (only `dice`), `amount`, `target`, `prediction`.
pub(super) fn parse_bet(value: &Value) -> Result<Command, String> {
    let game = field_str(value, "game")?;
    if game != "dice" {
        return Err(format!(
            "unknown game {game:?}; the simulator offers \"dice\""
        ));
    }
    let amount_minor = field_amount(value, "amount")?;
    let target = value
        .get("target")
        .and_then(Value::as_i64)
        .filter(|target| (DICE_TARGET_MIN..=DICE_TARGET_MAX).contains(target))
        .ok_or_else(|| {
            format!("target must be an integer from {DICE_TARGET_MIN} to {DICE_TARGET_MAX}")
        })?;
    let over = match field_str(value, "prediction")? {
        "over" => true,
        "under" => false,
        _ => return Err("prediction must be \"over\" or \"under\"".to_owned()),
    };
    Ok(Command::Bet {
        amount_minor,
        target,
        over,
    })
}

/// `POST /escrow/create`: `buyer`, `seller`, `amount`.
pub(super) fn parse_create_escrow(value: &Value) -> Result<Command, String> {
    Ok(Command::CreateEscrow {
        buyer: field_party(value, "buyer")?,
        seller: field_party(value, "seller")?,
        amount_minor: field_amount(value, "amount")?,
    })
}

/// `POST /wallet/transfer`: `to`, `amount`, `currency` (only the wallet's).
pub(super) fn parse_transfer(value: &Value) -> Result<Command, String> {
    let to = field_party(value, "to")?;
    let amount_minor = field_amount(value, "amount")?;
    let currency = field_str(value, "currency")?;
    if currency != CURRENCY {
        return Err(format!(
            "unsupported currency {currency:?}; the wallet holds {CURRENCY}"
        ));
    }
    Ok(Command::Transfer { to, amount_minor })
}

/// `POST /escrow/{id}/{fund,release,refund}`: an empty body or `{}`.
pub(super) fn parse_escrow_move(
    id: String,
    step: EscrowMove,
    value: &Value,
) -> Result<Command, String> {
    if value.as_object().is_some_and(|object| !object.is_empty()) {
        return Err(format!("{} takes an empty body or {{}}", step.verb()));
    }
    Ok(Command::MoveEscrow { id, step })
}
