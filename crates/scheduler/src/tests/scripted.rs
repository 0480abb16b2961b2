//! A connector whose answers a test scripts: a queue of dispatch outcomes and one of
//! status-check answers (success and "not found" once they run out), with a switch to
//! panic instead, and counters of what it was asked.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use connectors::{DispatchRequest, ErrorDetail, Exchange, Outcome, RetryScope, StatusCheck};
use serde_json::{json, Value};

#[derive(Default)]
pub struct Script {
    pub outcomes: VecDeque<Outcome>,
    pub checks: VecDeque<StatusCheck>,
    pub panic_in_dispatch: bool,
    pub panic_in_check: bool,
    pub dispatches: u32,
    pub status_checks: u32,
    /// When set, the connector reads an intent's amount from this params field only (a
    /// provider shape the scheduler has never heard of).
    pub amount_field: Option<&'static str>,
}

#[derive(Clone, Default)]
pub struct Scripted {
    pub script: Arc<Mutex<Script>>,
}

impl Scripted {
    pub fn with(edit: impl FnOnce(&mut Script)) -> Scripted {
        let scripted = Scripted::default();
        edit(&mut scripted.script.lock().unwrap());
        scripted
    }

    pub fn counts(&self) -> (u32, u32) {
        let script = self.script.lock().unwrap();
        (script.dispatches, script.status_checks)
    }
}

/// The amount the engine counted before connectors answered it: `amount`, else
/// `budget.amount` (the test connectors' params take either shape).
pub fn amount_micros(params: &Value) -> Option<u64> {
    connectors::amount_micros_field(params, "amount").or_else(|| {
        params
            .get("budget")
            .and_then(|budget| connectors::amount_micros_field(budget, "amount"))
    })
}

/// The resource id the engine kept before connectors answered it: a success's `id`, else
/// the error's `details.execution_id`.
pub fn resource_id(outcome: &Outcome) -> Option<String> {
    match outcome {
        Outcome::Success { result } => connectors::resource_id_field(result, "id"),
        other => other
            .detail()
            .and_then(|detail| detail.details.as_ref())
            .and_then(|details| connectors::resource_id_field(details, "execution_id")),
    }
}

pub fn unavailable() -> Outcome {
    Outcome::Retryable {
        reason: ErrorDetail::new("unavailable", "scripted 503"),
        retry_after: None,
        scope: RetryScope::Intent,
    }
}

#[async_trait]
impl connectors::Connector for Scripted {
    fn name(&self) -> &str {
        "scripted"
    }

    fn key_lifetime(&self) -> Duration {
        Duration::from_secs(24 * 3600)
    }

    fn validate(&self, _operation: &str, _params: &Value) -> connectors::Result<()> {
        Ok(())
    }

    async fn dispatch(&self, request: &DispatchRequest) -> Outcome {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let mut script = self.script.lock().unwrap();
        script.dispatches += 1;
        if script.panic_in_dispatch {
            drop(script);
            panic!("scripted connector panics in dispatch");
        }
        script
            .outcomes
            .pop_front()
            .unwrap_or_else(|| Outcome::Success {
                result: json!({"id": format!("res-{}", request.idempotency_key.as_str())}),
            })
    }

    async fn check_status(&self, _request: &DispatchRequest) -> StatusCheck {
        tokio::time::sleep(Duration::from_millis(2)).await;
        let mut script = self.script.lock().unwrap();
        script.status_checks += 1;
        if script.panic_in_check {
            drop(script);
            panic!("scripted connector panics in check_status");
        }
        script.checks.pop_front().unwrap_or(StatusCheck::NotFound)
    }

    fn amount_micros(&self, _operation: &str, params: &Value) -> Option<u64> {
        match self.script.lock().unwrap().amount_field {
            Some(field) => connectors::amount_micros_field(params, field),
            None => amount_micros(params),
        }
    }

    fn resource_id(&self, outcome: &Outcome) -> Option<String> {
        resource_id(outcome)
    }

    fn classify(&self, _exchange: &Exchange) -> Outcome {
        unavailable()
    }
}
