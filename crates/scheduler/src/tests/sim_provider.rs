//! An in-process provider with an idempotency cache that forgets keys after their
//! lifetime, and a seeded fault menu: 503 and 429 before commit, a timeout before the
//! server, "executed, then timed out", "executed, then the connection dropped", execution
//! failures, unknown status answers. It is the oracle of the simulation: it counts
//! executions per key and requests that arrive for a key it has already executed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use connectors::{
    DispatchRequest, ErrorDetail, Exchange, Outcome, RemoteStatus, RetryScope, StatusCheck,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

pub const KEY_LIFETIME: Duration = Duration::from_secs(6 * 3600);

#[derive(Default, Debug, Clone)]
pub struct KeyRecord {
    pub executions: u32,
    pub calls: u32,
    pub calls_after_executed: u32,
    pub executed_at: Option<tokio::time::Instant>,
    pub failed: bool,
    pub result: Option<Value>,
}

pub struct ProviderState {
    pub keys: HashMap<String, KeyRecord>,
    rng: SmallRng,
}

#[derive(Clone)]
pub struct SimProvider {
    pub state: Arc<Mutex<ProviderState>>,
    /// Percent of dispatches that hit a fault.
    pub fault_percent: u32,
}

impl SimProvider {
    pub fn new(seed: u64, fault_percent: u32) -> SimProvider {
        SimProvider {
            state: Arc::new(Mutex::new(ProviderState {
                keys: HashMap::new(),
                rng: SmallRng::seed_from_u64(seed ^ 0x5eed),
            })),
            fault_percent,
        }
    }

    pub fn keys(&self) -> HashMap<String, KeyRecord> {
        self.state.lock().unwrap().keys.clone()
    }
}

fn detail(code: &str) -> ErrorDetail {
    ErrorDetail::new(code, format!("simulated {code}"))
}

#[async_trait]
impl connectors::Connector for SimProvider {
    fn name(&self) -> &str {
        "sim"
    }

    fn key_lifetime(&self) -> Duration {
        KEY_LIFETIME
    }

    fn validate(&self, operation: &str, params: &Value) -> connectors::Result<()> {
        match operation {
            "pay" | "paid" => {}
            other => {
                return Err(connectors::Error::UnknownOperation {
                    connector: "sim".into(),
                    operation: other.into(),
                })
            }
        }
        let amount = params.get("amount").and_then(Value::as_str).unwrap_or("");
        connectors::amount::Amount::parse(amount).map(|_| ())
    }

    fn amount_micros(&self, _operation: &str, params: &Value) -> Option<u64> {
        super::scripted::amount_micros(params)
    }

    fn resource_id(&self, outcome: &Outcome) -> Option<String> {
        super::scripted::resource_id(outcome)
    }

    async fn dispatch(&self, request: &DispatchRequest) -> Outcome {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let key = request.idempotency_key.as_str().to_string();
        let mut state = self.state.lock().unwrap();
        let roll = state.rng.gen_range(0..100u32);
        let now = tokio::time::Instant::now();
        let record = state.keys.entry(key.clone()).or_default();
        record.calls += 1;
        // The idempotency cache forgets a key after its lifetime, like a real provider.
        let remembered = record
            .executed_at
            .is_some_and(|at| now.duration_since(at) < KEY_LIFETIME);
        if record.executed_at.is_some() {
            record.calls_after_executed += 1;
        }
        if remembered {
            return match &record.result {
                Some(result) if !record.failed => Outcome::Success {
                    result: result.clone(),
                },
                _ => Outcome::ExecutionFailed {
                    details: detail("execution_failed"),
                },
            };
        }
        if request.operation == "paid" && request.payment.is_none() {
            return Outcome::PaymentRequired {
                details: detail("payment_required"),
            };
        }
        if request.params.get("reject").is_some() {
            return Outcome::Permanent {
                reason: detail("invalid_input"),
            };
        }
        let fault = if roll < self.fault_percent {
            roll * 100 / self.fault_percent.max(1)
        } else {
            100
        };
        let mut execute = |failed: bool| {
            record.executions += 1;
            record.executed_at = Some(now);
            record.failed = failed;
            let result = json!({"id": format!("res-{key}"), "key": key, "status": if failed { "failed" } else { "complete" }});
            record.result = Some(result.clone());
            result
        };
        match fault {
            0..=24 => Outcome::Retryable {
                reason: detail("unavailable"),
                retry_after: None,
                scope: RetryScope::Intent,
            },
            25..=34 => Outcome::Retryable {
                reason: detail("rate_limited"),
                retry_after: Some(Duration::from_secs(2)),
                scope: RetryScope::Connector,
            },
            35..=49 => Outcome::Ambiguous {
                reason: detail("timeout_before_server"),
            },
            50..=69 => {
                execute(false);
                Outcome::Ambiguous {
                    reason: detail("executed_then_timeout"),
                }
            }
            70..=84 => {
                execute(false);
                Outcome::Ambiguous {
                    reason: detail("executed_then_connection_dropped"),
                }
            }
            85..=94 => {
                execute(true);
                Outcome::ExecutionFailed {
                    details: detail("execution_failed"),
                }
            }
            95..=99 => {
                execute(false);
                Outcome::Ambiguous {
                    reason: detail("internal_error_after_commit"),
                }
            }
            _ => Outcome::Success {
                result: execute(false),
            },
        }
    }

    async fn check_status(&self, request: &DispatchRequest) -> StatusCheck {
        tokio::time::sleep(Duration::from_millis(2)).await;
        let mut state = self.state.lock().unwrap();
        if state.rng.gen_range(0..100u32) < self.fault_percent / 3 {
            return StatusCheck::Unknown {
                reason: detail("status_timeout"),
            };
        }
        let now = tokio::time::Instant::now();
        match state.keys.get(request.idempotency_key.as_str()) {
            Some(record)
                if record
                    .executed_at
                    .is_some_and(|at| now.duration_since(at) < KEY_LIFETIME) =>
            {
                StatusCheck::Found {
                    result: record.result.clone().unwrap_or(Value::Null),
                    remote_status: if record.failed {
                        RemoteStatus::Failed
                    } else {
                        RemoteStatus::Complete
                    },
                }
            }
            _ => StatusCheck::NotFound,
        }
    }

    fn classify(&self, _exchange: &Exchange) -> Outcome {
        Outcome::Ambiguous {
            reason: detail("not_http"),
        }
    }
}
