//! Aeeron's money and state: payments, executions and the keys bound to them, with the
//! checks an execution passes before the provider is touched and how it then ends.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use crate::audit::Audit;
use crate::fault::{FaultOutcome, ServiceName};
use crate::idempotency::{Fingerprint, StoredResponse};
use crate::money::format_amount_minor;
use crate::server::{self, json_bytes_response, json_response, mark_replayed};
use crate::time::now_rfc3339;

use super::request::{ExecutionRequest, PaymentRequest};
use super::{EXECUTIONS_ROUTE, PAYMENTS_ROUTE, PRICE_CURRENCY};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PaymentStatus {
    Authorized,
    Cleared,
}

pub(super) struct Payment {
    id: String,
    amount_minor: i64,
    currency: &'static str,
    status: PaymentStatus,
    execution_id: Option<String>,
}

impl Payment {
    pub(super) fn body(&self) -> Value {
        json!({
            "payment_id": self.id,
            "amount": format_amount_minor(self.amount_minor),
            "currency": self.currency,
            "status": match self.status { PaymentStatus::Authorized => "authorized", PaymentStatus::Cleared => "cleared" },
            "execution_id": self.execution_id,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ExecutionStatus {
    Processing,
    Succeeded,
    Failed,
}

pub(super) struct ExecutionRecord {
    id: String,
    key: String,
    action: &'static str,
    params: Value,
    units: i64,
    amount_minor: i64,
    payment_id: String,
    status: ExecutionStatus,
    steps_completed: u32,
    steps_total: u32,
    steps_possible: u32,
    result: Option<Value>,
    created_at: String,
    /// When a `processing` execution (left by `provider_unavailable_after_provider`) succeeds.
    settles_at: Option<Instant>,
}

impl ExecutionRecord {
    fn succeed(&mut self) {
        self.status = ExecutionStatus::Succeeded;
        self.steps_completed = self.steps_total;
        self.settles_at = None;
        self.result = Some(
            json!({ "provider_ref": format!("prv_{}", uuid::Uuid::new_v4()), "units": self.units }),
        );
    }

    /// Lets time pass: a processing execution whose settle time has come succeeds.
    pub(super) fn refresh(&mut self, now: Instant) {
        if self.status == ExecutionStatus::Processing && self.settles_at.is_some_and(|at| at <= now)
        {
            self.succeed();
        }
    }

    pub(super) fn body(&self) -> Value {
        json!({
            "id": self.id,
            "idempotency_key": self.key,
            "action": self.action,
            "params": self.params,
            "amount": format_amount_minor(self.amount_minor),
            "currency": PRICE_CURRENCY,
            "status": match self.status {
                ExecutionStatus::Processing => "processing",
                ExecutionStatus::Succeeded => "succeeded",
                ExecutionStatus::Failed => "failed",
            },
            "payment": { "payment_id": self.payment_id, "status": "cleared" },
            "provider": { "touched": true, "steps_completed": self.steps_completed, "steps_total": self.steps_total },
            "result": self.result,
            "created_at": self.created_at,
        })
    }

    /// The answer `POST /v1/executions` gives for this execution now (first time or replay).
    fn outcome(&self, service: ServiceName) -> Response {
        match self.status {
            ExecutionStatus::Succeeded => json_response(StatusCode::CREATED, &self.body()),
            ExecutionStatus::Failed => server::error_response(
                service,
                StatusCode::BAD_GATEWAY,
                "execution_failed",
                "the provider failed part-way; inspect the execution and reconcile before any replay",
                json!({ "execution_id": self.id, "payment_cleared": true, "provider_touched": true }),
            ),
            ExecutionStatus::Processing => server::error_response(
                service,
                StatusCode::SERVICE_UNAVAILABLE,
                "provider_unavailable",
                "the provider became unavailable after it was touched; the execution is still processing",
                json!({ "payment_cleared": true, "provider_touched": true, "execution_id": self.id }),
            ),
        }
    }
}

pub(super) enum KeyBinding {
    Execution {
        request: Fingerprint,
        execution_id: String,
    },
    Payment {
        request: Fingerprint,
        stored: StoredResponse,
    },
}

/// Everything the server knows, behind one mutex; no await inside a critical section.
#[derive(Default)]
pub(super) struct AeeronLedger {
    pub(super) audit: Audit,
    pub(super) keys: HashMap<String, KeyBinding>,
    pub(super) payments: HashMap<String, Payment>,
    pub(super) executions: HashMap<String, ExecutionRecord>,
}

/// What the checks before the provider decided.
pub(super) enum ExecutionStart {
    /// The key was bound before: answer with the execution's current outcome.
    Replay(Response),
    /// Refused without binding the key (invalid_input, budget_exceeded, payment_required, conflict).
    Refused(Response),
    /// The payment cleared and the provider was touched: execution `id` is bound to the key.
    Started(String),
}

/// A refusal not yet rendered as a response (which would make every `Result` large).
struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: &'static str,
    details: Value,
}

fn refuse(
    service: ServiceName,
    status: StatusCode,
    code: &str,
    message: &str,
    details: Value,
) -> ExecutionStart {
    ExecutionStart::Refused(server::error_response(
        service, status, code, message, details,
    ))
}

impl AeeronLedger {
    /// The key, the payment's currency, the budget, the payment; then the execution is
    /// created, the payment cleared and the key bound (the side effect the audit counts).
    pub(super) fn start_execution(
        &mut self,
        service: ServiceName,
        checked: ExecutionRequest,
    ) -> ExecutionStart {
        if let Some(answer) = self.replay_or_conflict(service, &checked) {
            return answer;
        }
        match self.check_funding(&checked) {
            Ok(payment_id) => ExecutionStart::Started(self.bind_execution(checked, payment_id)),
            Err(refusal) => refuse(
                service,
                refusal.status,
                refusal.code,
                refusal.message,
                refusal.details,
            ),
        }
    }

    /// A key bound before: the execution's current outcome for the same request, else a conflict.
    fn replay_or_conflict(
        &mut self,
        service: ServiceName,
        checked: &ExecutionRequest,
    ) -> Option<ExecutionStart> {
        match self.keys.get(&checked.key) {
            Some(KeyBinding::Execution {
                request,
                execution_id,
            }) if *request == checked.request => {
                Some(match self.executions.get_mut(execution_id) {
                    Some(record) => {
                        record.refresh(Instant::now());
                        ExecutionStart::Replay(mark_replayed(record.outcome(service)))
                    }
                    None => refuse(
                        service,
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal_error",
                        "lost execution",
                        Value::Null,
                    ),
                })
            }
            Some(_) => Some(refuse(
                service,
                StatusCode::CONFLICT,
                "idempotency_conflict",
                "this Idempotency-Key was used for a different request",
                json!({ "idempotency_key": checked.key }),
            )),
            None => None,
        }
    }

    /// The id of an authorised payment that covers the quote, or why not.
    fn check_funding(&self, checked: &ExecutionRequest) -> Result<String, Refusal> {
        let payment = checked
            .payment_id
            .as_deref()
            .and_then(|id| self.payments.get(id));
        if let Some(payment) = payment {
            if payment.currency != checked.budget_currency {
                return Err(Refusal {
                    status: StatusCode::BAD_REQUEST,
                    code: "invalid_input",
                    message: "currency mismatch between the payment and the budget",
                    details: json!({ "payment_currency": payment.currency, "budget_currency": checked.budget_currency }),
                });
            }
        }
        let quote_minor = checked.price.amount_minor();
        if quote_minor > checked.budget_minor {
            return Err(Refusal {
                status: StatusCode::FORBIDDEN,
                code: "budget_exceeded",
                message: "Quoted amount is higher than the allowed budget.",
                details: json!({
                    "budget": format_amount_minor(checked.budget_minor),
                    "quote": format_amount_minor(quote_minor),
                    "currency": PRICE_CURRENCY,
                }),
            });
        }
        let usable = payment.is_some_and(|payment| {
            payment.status == PaymentStatus::Authorized && payment.amount_minor >= quote_minor
        });
        match (checked.payment_id.clone(), usable) {
            (Some(payment_id), true) => Ok(payment_id),
            _ => Err(Refusal {
                status: StatusCode::PAYMENT_REQUIRED,
                code: "payment_required",
                message: payment_refusal(checked.payment_id.as_deref(), payment),
                details: json!({ "amount": format_amount_minor(quote_minor), "currency": PRICE_CURRENCY }),
            }),
        }
    }

    /// Creates the execution (processing), clears the payment, binds the key and counts the
    /// side effect: the provider is touched from here on.
    fn bind_execution(&mut self, checked: ExecutionRequest, payment_id: String) -> String {
        let execution_id = format!("ex_{}", uuid::Uuid::new_v4());
        if let Some(payment) = self.payments.get_mut(&payment_id) {
            payment.status = PaymentStatus::Cleared;
            payment.execution_id = Some(execution_id.clone());
        }
        self.executions.insert(
            execution_id.clone(),
            ExecutionRecord {
                id: execution_id.clone(),
                key: checked.key.clone(),
                action: checked.price.name,
                params: checked.params,
                units: checked.price.units,
                amount_minor: checked.price.amount_minor(),
                payment_id,
                status: ExecutionStatus::Processing,
                steps_completed: 0,
                steps_total: checked.price.steps_total,
                steps_possible: checked.price.steps_possible,
                result: None,
                created_at: now_rfc3339(),
                settles_at: None,
            },
        );
        self.keys.insert(
            checked.key.clone(),
            KeyBinding::Execution {
                request: checked.request,
                execution_id: execution_id.clone(),
            },
        );
        self.audit.record(&checked.key, EXECUTIONS_ROUTE);
        execution_id
    }

    /// The provider's part: how the execution ends, per the request's fault decision.
    pub(super) fn finish_execution(
        &mut self,
        service: ServiceName,
        execution_id: &str,
        fault: Option<FaultOutcome>,
    ) -> Response {
        let Some(record) = self.executions.get_mut(execution_id) else {
            return server::error_response(
                service,
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "lost execution",
                Value::Null,
            );
        };
        match fault {
            Some(FaultOutcome::ExecutionFailed) => {
                record.status = ExecutionStatus::Failed;
                record.steps_completed = record.steps_total.saturating_sub(1);
            }
            Some(FaultOutcome::ProviderUnavailableAfterProvider { settle_ms }) => {
                record.steps_completed = 1;
                record.settles_at = Some(Instant::now() + Duration::from_millis(settle_ms));
            }
            _ if record.steps_possible < record.steps_total => {
                record.status = ExecutionStatus::Failed;
                record.steps_completed = record.steps_possible;
            }
            _ => record.succeed(),
        }
        record.outcome(service)
    }

    /// Authorises a payment; with a key, idempotently (a replay for the same request, a
    /// conflict for another).
    pub(super) fn authorize_payment(
        &mut self,
        service: ServiceName,
        key: Option<String>,
        checked: PaymentRequest,
    ) -> Response {
        if let Some(key) = &key {
            match self.keys.get(key) {
                Some(KeyBinding::Payment { request, stored }) if *request == checked.request => {
                    return mark_replayed(json_bytes_response(stored.status, stored.body.clone()));
                }
                Some(_) => {
                    return server::error_response(
                        service,
                        StatusCode::CONFLICT,
                        "idempotency_conflict",
                        "this Idempotency-Key was used for a different request",
                        json!({ "idempotency_key": key }),
                    )
                }
                None => {}
            }
        }
        let payment = Payment {
            id: format!("pay_{}", uuid::Uuid::new_v4()),
            amount_minor: checked.amount_minor,
            currency: checked.currency,
            status: PaymentStatus::Authorized,
            execution_id: None,
        };
        let stored = StoredResponse {
            status: StatusCode::CREATED,
            body: Bytes::from(payment.body().to_string()),
        };
        self.payments.insert(payment.id.clone(), payment);
        if let Some(key) = key {
            self.audit.record(&key, PAYMENTS_ROUTE);
            self.keys.insert(
                key,
                KeyBinding::Payment {
                    request: checked.request,
                    stored: stored.clone(),
                },
            );
        }
        json_bytes_response(stored.status, stored.body)
    }
}

/// Why an execution's attached payment cannot fund it.
fn payment_refusal(payment_id: Option<&str>, payment: Option<&Payment>) -> &'static str {
    match (payment_id, payment) {
        (None, _) => "attach an authorized payment of at least the quoted amount",
        (Some(_), None) => "the attached payment does not exist",
        (Some(_), Some(payment)) if payment.status == PaymentStatus::Cleared => {
            "the attached payment was already used by another execution"
        }
        (Some(_), Some(_)) => "the attached payment is smaller than the quoted amount",
    }
}
