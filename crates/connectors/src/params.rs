//! Reading typed operation parameters out of JSON, with typed errors naming the field.

use serde_json::Value;

use crate::amount::Amount;
use crate::error::{echo, Error, Result};

/// Longest free-text parameter (game, party names, currency, action).
pub const PARAM_TEXT_CHARS_MAX: usize = 128;

/// Longest resource id accepted in a URL path.
pub const RESOURCE_ID_CHARS_MAX: usize = 128;

fn invalid(operation: &str, field: &str, reason: impl Into<String>) -> Error {
    Error::InvalidParams {
        operation: operation.to_owned(),
        field: field.to_owned(),
        reason: reason.into(),
    }
}

/// The params as a JSON object (`null` counts as an empty object).
pub(crate) fn object<'a>(
    operation: &str,
    params: &'a Value,
) -> Result<Option<&'a serde_json::Map<String, Value>>> {
    match params {
        Value::Object(map) => Ok(Some(map)),
        Value::Null => Ok(None),
        _ => Err(invalid(operation, "params", "must be a JSON object")),
    }
}

/// A required non-empty string of at most [`PARAM_TEXT_CHARS_MAX`] characters.
pub(crate) fn text(operation: &str, params: &Value, field: &str) -> Result<String> {
    let value = params
        .get(field)
        .ok_or_else(|| invalid(operation, field, "is missing"))?;
    let text = value
        .as_str()
        .ok_or_else(|| invalid(operation, field, "must be a string"))?;
    if text.trim().is_empty() {
        return Err(invalid(operation, field, "must not be empty"));
    }
    if text.chars().count() > PARAM_TEXT_CHARS_MAX {
        return Err(invalid(
            operation,
            field,
            format!("is longer than {PARAM_TEXT_CHARS_MAX} characters"),
        ));
    }
    Ok(text.to_owned())
}

/// A required amount: a decimal string, checked by [`Amount::parse`]; returns the text as given.
pub(crate) fn amount(operation: &str, params: &Value, field: &str) -> Result<String> {
    let value = params
        .get(field)
        .ok_or_else(|| invalid(operation, field, "is missing"))?;
    let text = value.as_str().ok_or_else(|| {
        invalid(
            operation,
            field,
            "must be a decimal string such as \"10.00\", never a number",
        )
    })?;
    Amount::parse(text)?;
    Ok(text.to_owned())
}

/// A required resource id safe to put in a URL path: `[A-Za-z0-9_-]{1,128}`.
pub(crate) fn resource_id(operation: &str, params: &Value, field: &str) -> Result<String> {
    let value = params
        .get(field)
        .ok_or_else(|| invalid(operation, field, "is missing"))?;
    let id = value
        .as_str()
        .ok_or_else(|| invalid(operation, field, "must be a string"))?;
    check_resource_id(id).map_err(|reason| invalid(operation, field, reason))?;
    Ok(id.to_owned())
}

/// Checks an id before it goes into a URL path.
pub(crate) fn check_resource_id(id: &str) -> std::result::Result<(), String> {
    if id.is_empty() || id.len() > RESOURCE_ID_CHARS_MAX {
        return Err(format!("must be 1 to {RESOURCE_ID_CHARS_MAX} characters"));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(format!(
            "{:?} may hold only letters, digits, '_' and '-'",
            echo(id)
        ));
    }
    Ok(())
}

/// A required unsigned integer in `minimum..=maximum`.
pub(crate) fn integer(
    operation: &str,
    params: &Value,
    field: &str,
    minimum: u64,
    maximum: u64,
) -> Result<u64> {
    let value = params
        .get(field)
        .ok_or_else(|| invalid(operation, field, "is missing"))?;
    let number = value
        .as_u64()
        .ok_or_else(|| invalid(operation, field, "must be a whole number"))?;
    if !(minimum..=maximum).contains(&number) {
        return Err(invalid(
            operation,
            field,
            format!("must be between {minimum} and {maximum}"),
        ));
    }
    Ok(number)
}

/// A required string that is one of `allowed`.
pub(crate) fn one_of(
    operation: &str,
    params: &Value,
    field: &str,
    allowed: &[&str],
) -> Result<String> {
    let text = text(operation, params, field)?;
    if !allowed.contains(&text.as_str()) {
        return Err(invalid(
            operation,
            field,
            format!("must be one of {allowed:?}"),
        ));
    }
    Ok(text)
}

/// A required JSON object.
pub(crate) fn json_object(operation: &str, params: &Value, field: &str) -> Result<Value> {
    match params.get(field) {
        Some(value @ Value::Object(_)) => Ok(value.clone()),
        Some(_) => Err(invalid(operation, field, "must be a JSON object")),
        None => Err(invalid(operation, field, "is missing")),
    }
}
