//! Aeeron's price list: what an action with its params costs, and how many provider steps
//! an execution of it takes. A pure function of its inputs; `docs/connectors.md` lists the table.

use serde_json::Value;

/// H100 hours the simulated provider can deliver in one execution. An execution asking for
/// more is accepted and paid (the quote does not know capacity), reserves, then fails at
/// provisioning: a real, deterministic `execution_failed` that needs no fault plan.
const H100_HOURS_CAPACITY: i64 = 1_000;

/// A priced action: what one unit costs and how many provider steps an execution takes.
pub(super) struct ActionPrice {
    pub(super) name: &'static str,
    pub(super) units: i64,
    unit_price_minor: i64,
    pub(super) steps_total: u32,
    /// Steps the provider can actually complete; below `steps_total` the execution fails there.
    pub(super) steps_possible: u32,
}

impl ActionPrice {
    pub(super) fn amount_minor(&self) -> i64 {
        // Units and unit prices are bounded below, so the product stays far below i64::MAX.
        self.units * self.unit_price_minor
    }
}

/// Prices `action` with `params`, or says what is invalid.
pub(super) fn price(action: &str, params: &Value) -> Result<ActionPrice, String> {
    let Some(params) = params.as_object() else {
        return Err("params must be an object".to_owned());
    };
    let allowed: &[&str] = match action {
        "compute.gpu_hours" => &["gpu", "hours"],
        "storage.gb_months" => &["gb", "months"],
        "web.search" => &["queries"],
        _ => {
            return Err(format!(
                "unknown action {action:?}; known: compute.gpu_hours, storage.gb_months, web.search"
            ))
        }
    };
    if let Some(unknown) = params.keys().find(|name| !allowed.contains(&name.as_str())) {
        return Err(format!("unknown parameter {unknown:?} for {action}"));
    }
    let integer = |name: &str, maximum: i64| -> Result<i64, String> {
        params
            .get(name)
            .and_then(Value::as_i64)
            .filter(|value| (1..=maximum).contains(value))
            .ok_or_else(|| format!("params.{name} must be an integer from 1 to {maximum}"))
    };
    match action {
        "compute.gpu_hours" => {
            let unit_price_minor = match params.get("gpu").and_then(Value::as_str) {
                Some("a100") => 420,
                Some("h100") => 840,
                _ => return Err("params.gpu must be \"a100\" or \"h100\"".to_owned()),
            };
            let hours = integer("hours", 10_000)?;
            let over_capacity = unit_price_minor == 840 && hours > H100_HOURS_CAPACITY;
            Ok(ActionPrice {
                name: "compute.gpu_hours",
                units: hours,
                unit_price_minor,
                steps_total: 3,
                steps_possible: if over_capacity { 1 } else { 3 },
            })
        }
        "storage.gb_months" => Ok(ActionPrice {
            name: "storage.gb_months",
            units: integer("gb", 1_000_000)? * integer("months", 120)?,
            unit_price_minor: 10,
            steps_total: 2,
            steps_possible: 2,
        }),
        _ => Ok(ActionPrice {
            name: "web.search",
            units: integer("queries", 100_000)?,
            unit_price_minor: 5,
            steps_total: 2,
            steps_possible: 2,
        }),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::money::format_amount_minor;

    fn check_price(action: &str, params: Value, expected: std::result::Result<&str, ()>) {
        let got = price(action, &params)
            .map(|price| format_amount_minor(price.amount_minor()))
            .map_err(|_| ());
        assert_eq!(
            got.as_deref().map_err(|_| ()),
            expected,
            "{action} {params}"
        );
    }

    #[test]
    fn prices_are_a_function_of_action_and_params() {
        check_price(
            "compute.gpu_hours",
            json!({"gpu": "a100", "hours": 4}),
            Ok("16.80"),
        );
        check_price(
            "compute.gpu_hours",
            json!({"gpu": "h100", "hours": 2}),
            Ok("16.80"),
        );
        check_price(
            "compute.gpu_hours",
            json!({"gpu": "h100", "hours": 10_000}),
            Ok("84000.00"),
        );
        check_price(
            "compute.gpu_hours",
            json!({"gpu": "tpu", "hours": 1}),
            Err(()),
        );
        check_price(
            "compute.gpu_hours",
            json!({"gpu": "a100", "hours": 0}),
            Err(()),
        );
        check_price(
            "compute.gpu_hours",
            json!({"gpu": "a100", "hours": 1.5}),
            Err(()),
        );
        check_price(
            "compute.gpu_hours",
            json!({"gpu": "a100", "hours": 1, "colour": 1}),
            Err(()),
        );
        check_price(
            "storage.gb_months",
            json!({"gb": 100, "months": 12}),
            Ok("120.00"),
        );
        check_price("web.search", json!({"queries": 3}), Ok("0.15"));
        check_price("web.search", json!([]), Err(()));
        check_price("teleport", json!({}), Err(()));
    }
}
