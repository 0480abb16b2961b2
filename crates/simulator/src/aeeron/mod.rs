//! The Aeeron simulator: quotes, payments and paid executions with Aeeron's JSON error codes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::audit::Audit;
use crate::error::Result;
use crate::fault::{FaultOutcome, FaultPlan, ServiceName};
use crate::idempotency::{fingerprint, read_key, Fingerprint, KeyProblem, StoredResponse};
use crate::money::{format_amount_minor, parse_amount_minor_positive};
use crate::server::{
    self, json_bytes_response, json_response, mark_replayed, read_body, request_faults,
    RunningServer, SimCore,
};
use crate::time::{now_rfc3339, rfc3339_after};

/// The currency every action is priced in.
const PRICE_CURRENCY: &str = "USDC";
/// Currencies a payment may be authorised in (a EURC payment shows the currency-mismatch check).
const PAYMENT_CURRENCIES: [&str; 2] = ["USDC", "EURC"];
/// H100 hours the simulated provider can deliver in one execution. An execution asking for
/// more is accepted and paid (the quote does not know capacity), reserves, then fails at
/// provisioning: a real, deterministic `execution_failed` that needs no fault plan.
const H100_HOURS_CAPACITY: i64 = 1_000;
/// How long a quote is valid, in seconds (informational: executions re-price themselves).
const QUOTE_TTL_S: u64 = 900;
/// The route the audit names for executions and payments.
const EXECUTIONS_ROUTE: &str = "POST /v1/executions";
const PAYMENTS_ROUTE: &str = "POST /v1/payments";

/// Options of an Aeeron server (none yet; kept so options can be added without breaking callers).
#[derive(Clone, Debug, Default)]
pub struct AeeronOptions {}

/// The Aeeron simulator. See `docs/connectors.md` ("Aeeron action API") for the routes.
#[derive(Debug)]
pub struct Aeeron;

impl Aeeron {
    /// Starts a server on `address` (port 0 picks a free port).
    pub async fn start(address: SocketAddr, plan: FaultPlan) -> Result<RunningServer> {
        Aeeron::start_with(address, plan, AeeronOptions::default()).await
    }

    /// Starts a server with `options`.
    pub async fn start_with(
        address: SocketAddr,
        plan: FaultPlan,
        _options: AeeronOptions,
    ) -> Result<RunningServer> {
        server::start(ServiceName::Aeeron, address, plan, move |core| {
            let state = Arc::new(AeeronState {
                core,
                ledger: Mutex::new(AeeronLedger::default()),
            });
            let audit_state = state.clone();
            let audit = Arc::new(move || {
                audit_state
                    .lock()
                    .audit
                    .report(ServiceName::Aeeron.as_str())
            });
            (routes(state), audit)
        })
        .await
    }
}

fn routes(state: Arc<AeeronState>) -> Router {
    Router::new()
        .route("/v1/quotes", post(create_quote))
        .route("/v1/payments", post(create_payment))
        .route("/v1/payments/{id}", get(payment_by_id))
        .route("/v1/executions", post(create_execution))
        .route("/v1/executions/by-idempotency-key", get(execution_by_key))
        .route("/v1/executions/{id}", get(execution_by_id))
        .with_state(state)
}

/// A priced action: what one unit costs and how many provider steps an execution takes.
struct ActionPrice {
    name: &'static str,
    units: i64,
    unit_price_minor: i64,
    steps_total: u32,
    /// Steps the provider can actually complete; below `steps_total` the execution fails there.
    steps_possible: u32,
}

impl ActionPrice {
    fn amount_minor(&self) -> i64 {
        // Units and unit prices are bounded below, so the product stays far below i64::MAX.
        self.units * self.unit_price_minor
    }
}

/// Prices `action` with `params`, or says what is invalid. The quote is a pure function of
/// its inputs; `docs/connectors.md` lists the table.
fn price(action: &str, params: &Value) -> std::result::Result<ActionPrice, String> {
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
    let integer = |name: &str, maximum: i64| -> std::result::Result<i64, String> {
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

struct AeeronState {
    core: Arc<SimCore>,
    ledger: Mutex<AeeronLedger>,
}

impl AeeronState {
    fn lock(&self) -> std::sync::MutexGuard<'_, AeeronLedger> {
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn invalid_input(&self, message: &str, details: Value) -> Response {
        self.core
            .error(StatusCode::BAD_REQUEST, "invalid_input", message, details)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PaymentStatus {
    Authorized,
    Cleared,
}

struct Payment {
    id: String,
    amount_minor: i64,
    currency: &'static str,
    status: PaymentStatus,
    execution_id: Option<String>,
}

impl Payment {
    fn body(&self) -> Value {
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

struct ExecutionRecord {
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
    fn refresh(&mut self, now: Instant) {
        if self.status == ExecutionStatus::Processing && self.settles_at.is_some_and(|at| at <= now)
        {
            self.succeed();
        }
    }

    fn body(&self) -> Value {
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

enum KeyBinding {
    Execution {
        request: Fingerprint,
        execution_id: String,
    },
    Payment {
        request: Fingerprint,
        stored: StoredResponse,
    },
}

#[derive(Default)]
struct AeeronLedger {
    audit: Audit,
    keys: HashMap<String, KeyBinding>,
    payments: HashMap<String, Payment>,
    executions: HashMap<String, ExecutionRecord>,
}

/// What the checks before the provider decided.
enum ExecutionStart {
    /// The key was bound before: answer with the execution's current outcome.
    Replay(Response),
    /// Refused without binding the key (invalid_input, budget_exceeded, payment_required, conflict).
    Refused(Response),
    /// The payment cleared and the provider was touched: execution `id` is bound to the key.
    Started(String),
}

/// A checked execution request.
struct ExecutionRequest {
    key: String,
    request: Fingerprint,
    price: ActionPrice,
    params: Value,
    budget_minor: i64,
    budget_currency: String,
    payment_id: Option<String>,
}

impl AeeronLedger {
    fn start_execution(
        &mut self,
        service: ServiceName,
        checked: ExecutionRequest,
    ) -> ExecutionStart {
        let error = |status, code: &str, message: &str, details| {
            ExecutionStart::Refused(server::error_response(
                service, status, code, message, details,
            ))
        };
        match self.keys.get(&checked.key) {
            Some(KeyBinding::Execution {
                request,
                execution_id,
            }) if *request == checked.request => {
                return match self.executions.get_mut(execution_id) {
                    Some(record) => {
                        record.refresh(Instant::now());
                        ExecutionStart::Replay(mark_replayed(record.outcome(service)))
                    }
                    None => error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal_error",
                        "lost execution",
                        Value::Null,
                    ),
                };
            }
            Some(_) => {
                return error(
                    StatusCode::CONFLICT,
                    "idempotency_conflict",
                    "this Idempotency-Key was used for a different request",
                    json!({ "idempotency_key": checked.key }),
                )
            }
            None => {}
        }
        let payment = checked
            .payment_id
            .as_deref()
            .and_then(|id| self.payments.get(id));
        if let Some(payment) = payment {
            if payment.currency != checked.budget_currency {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_input",
                    "currency mismatch between the payment and the budget",
                    json!({ "payment_currency": payment.currency, "budget_currency": checked.budget_currency }),
                );
            }
        }
        let quote_minor = checked.price.amount_minor();
        if quote_minor > checked.budget_minor {
            return error(
                StatusCode::FORBIDDEN,
                "budget_exceeded",
                "Quoted amount is higher than the allowed budget.",
                json!({
                    "budget": format_amount_minor(checked.budget_minor),
                    "quote": format_amount_minor(quote_minor),
                    "currency": PRICE_CURRENCY,
                }),
            );
        }
        let usable = payment.is_some_and(|payment| {
            payment.status == PaymentStatus::Authorized && payment.amount_minor >= quote_minor
        });
        let (Some(payment_id), true) = (checked.payment_id.clone(), usable) else {
            let message = match (&checked.payment_id, payment) {
                (None, _) => "attach an authorized payment of at least the quoted amount",
                (Some(_), None) => "the attached payment does not exist",
                (Some(_), Some(payment)) if payment.status == PaymentStatus::Cleared => {
                    "the attached payment was already used by another execution"
                }
                (Some(_), Some(_)) => "the attached payment is smaller than the quoted amount",
            };
            return error(
                StatusCode::PAYMENT_REQUIRED,
                "payment_required",
                message,
                json!({ "amount": format_amount_minor(quote_minor), "currency": PRICE_CURRENCY }),
            );
        };
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
                amount_minor: quote_minor,
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
        // The provider is touched from here on: this is the side effect the audit counts.
        self.audit.record(&checked.key, EXECUTIONS_ROUTE);
        ExecutionStart::Started(execution_id)
    }

    /// The provider's part: how the execution ends, per the request's fault decision.
    fn finish_execution(
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
}

async fn create_execution(State(state): State<Arc<AeeronState>>, request: Request) -> Response {
    let key = match read_key(request.headers()) {
        Ok(key) => key,
        Err(problem) => {
            return state.invalid_input(&problem.message(), json!({ "field": "Idempotency-Key" }))
        }
    };
    let faults = request_faults(&request);
    let Some(body) = read_body(request.into_body()).await else {
        return state.invalid_input("the body is too large or unreadable", Value::Null);
    };
    let checked = match check_execution(key, &body) {
        Ok(checked) => checked,
        Err((message, details)) => return state.invalid_input(&message, details),
    };
    let service = state.core.service;
    let execution_id = match state.lock().start_execution(service, checked) {
        ExecutionStart::Replay(response) | ExecutionStart::Refused(response) => return response,
        ExecutionStart::Started(execution_id) => execution_id,
    };
    let fault = faults.as_ref().and_then(|faults| faults.decision.outcome);
    let latency = faults
        .map(|faults| faults.take_latency())
        .unwrap_or_default();
    if latency.is_zero() {
        return state.lock().finish_execution(service, &execution_id, fault);
    }
    // The provider works for `latency` (the execution is `processing` meanwhile). It runs in
    // its own task so a client hanging up does not leave the execution processing forever.
    let worker_state = state.clone();
    let worker = tokio::spawn(async move {
        worker_state.core.sleep_unless_shutdown(latency).await;
        worker_state
            .lock()
            .finish_execution(service, &execution_id, fault)
    });
    match worker.await {
        Ok(response) => response,
        Err(_) => state.core.error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "the execution was cancelled",
            Value::Null,
        ),
    }
}

type InvalidInput = (String, Value);

fn invalid(message: impl Into<String>) -> InvalidInput {
    (message.into(), Value::Null)
}

fn parse_object(body: &[u8]) -> std::result::Result<Map<String, Value>, InvalidInput> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(invalid("the body must be a JSON object")),
        Err(error) => Err(invalid(format!("the body is not valid JSON: {error}"))),
    }
}

fn amount_field(object: &Map<String, Value>, name: &str) -> std::result::Result<i64, InvalidInput> {
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

fn check_execution(
    key: String,
    body: &[u8],
) -> std::result::Result<ExecutionRequest, InvalidInput> {
    let object = parse_object(body)?;
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
            format!("currency mismatch: {action} is priced in {PRICE_CURRENCY}"),
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
        json!({ "action": action, "params": params, "budget": Value::Object(budget.clone()) });
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

async fn create_quote(State(state): State<Arc<AeeronState>>, request: Request) -> Response {
    let Some(body) = read_body(request.into_body()).await else {
        return state.invalid_input("the body is too large or unreadable", Value::Null);
    };
    let object = match parse_object(&body) {
        Ok(object) => object,
        Err((message, details)) => return state.invalid_input(&message, details),
    };
    let Some(action) = object.get("action").and_then(Value::as_str) else {
        return state.invalid_input("action must be a string", json!({ "field": "action" }));
    };
    let params = object
        .get("params")
        .cloned()
        .unwrap_or_else(|| Value::Object(Map::new()));
    let price = match price(action, &params) {
        Ok(price) => price,
        Err(message) => return state.invalid_input(&message, json!({ "field": "params" })),
    };
    match object.get("currency").and_then(Value::as_str) {
        None | Some(PRICE_CURRENCY) => {}
        Some(other) => {
            return state.invalid_input(
                &format!("currency mismatch: actions are priced in {PRICE_CURRENCY}"),
                json!({ "currency": other }),
            )
        }
    }
    json_response(
        StatusCode::OK,
        &json!({
            "quote_id": format!("q_{}", uuid::Uuid::new_v4()),
            "action": price.name,
            "params": params,
            "amount": format_amount_minor(price.amount_minor()),
            "currency": PRICE_CURRENCY,
            "expires_at": rfc3339_after(Duration::from_secs(QUOTE_TTL_S)),
        }),
    )
}

async fn create_payment(State(state): State<Arc<AeeronState>>, request: Request) -> Response {
    // The key is optional on payments; when present it makes the authorisation idempotent.
    let key = match read_key(request.headers()) {
        Ok(key) => Some(key),
        Err(KeyProblem::Missing) => None,
        Err(problem) => {
            return state.invalid_input(&problem.message(), json!({ "field": "Idempotency-Key" }))
        }
    };
    let Some(body) = read_body(request.into_body()).await else {
        return state.invalid_input("the body is too large or unreadable", Value::Null);
    };
    let object = match parse_object(&body) {
        Ok(object) => object,
        Err((message, details)) => return state.invalid_input(&message, details),
    };
    let amount_minor = match amount_field(&object, "amount") {
        Ok(amount_minor) => amount_minor,
        Err((message, details)) => return state.invalid_input(&message, details),
    };
    let requested_currency = object
        .get("currency")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let Some(currency) = PAYMENT_CURRENCIES
        .into_iter()
        .find(|known| *known == requested_currency)
    else {
        return state.invalid_input(
            &format!("currency must be one of {PAYMENT_CURRENCIES:?}"),
            json!({ "field": "currency" }),
        );
    };
    let request_fingerprint = fingerprint(
        "POST",
        "/v1/payments",
        &json!({ "amount": object.get("amount"), "currency": currency }).to_string(),
    );
    let mut ledger = state.lock();
    if let Some(key) = &key {
        match ledger.keys.get(key) {
            Some(KeyBinding::Payment { request, stored }) if *request == request_fingerprint => {
                return mark_replayed(json_bytes_response(stored.status, stored.body.clone()));
            }
            Some(_) => {
                return state.core.error(
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
        amount_minor,
        currency,
        status: PaymentStatus::Authorized,
        execution_id: None,
    };
    let stored = StoredResponse {
        status: StatusCode::CREATED,
        body: Bytes::from(payment.body().to_string()),
    };
    ledger.payments.insert(payment.id.clone(), payment);
    if let Some(key) = key {
        ledger.audit.record(&key, PAYMENTS_ROUTE);
        ledger.keys.insert(
            key,
            KeyBinding::Payment {
                request: request_fingerprint,
                stored: stored.clone(),
            },
        );
    }
    drop(ledger);
    json_bytes_response(stored.status, stored.body)
}

async fn payment_by_id(State(state): State<Arc<AeeronState>>, Path(id): Path<String>) -> Response {
    let found = state.lock().payments.get(&id).map(Payment::body);
    match found {
        Some(body) => json_response(StatusCode::OK, &body),
        None => state.core.error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such payment",
            json!({ "payment_id": id }),
        ),
    }
}

#[derive(Deserialize)]
struct KeyQuery {
    key: Option<String>,
}

fn execution_body(
    state: &AeeronState,
    find: impl FnOnce(&AeeronLedger) -> Option<String>,
) -> Option<Value> {
    let mut ledger = state.lock();
    let id = find(&ledger)?;
    let record = ledger.executions.get_mut(&id)?;
    record.refresh(Instant::now());
    Some(record.body())
}

async fn execution_by_id(
    State(state): State<Arc<AeeronState>>,
    Path(id): Path<String>,
) -> Response {
    let lookup = id.clone();
    match execution_body(&state, move |_| Some(lookup)) {
        Some(body) => json_response(StatusCode::OK, &body),
        None => state.core.error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such execution",
            json!({ "execution_id": id }),
        ),
    }
}

async fn execution_by_key(
    State(state): State<Arc<AeeronState>>,
    _headers: HeaderMap,
    Query(query): Query<KeyQuery>,
) -> Response {
    let Some(key) = query.key.filter(|key| !key.is_empty()) else {
        return state.invalid_input(
            "the key query parameter is required",
            json!({ "field": "key" }),
        );
    };
    let found = execution_body(&state, |ledger| match ledger.keys.get(&key) {
        Some(KeyBinding::Execution { execution_id, .. }) => Some(execution_id.clone()),
        _ => None,
    });
    match found {
        Some(body) => json_response(StatusCode::OK, &body),
        None => state.core.error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no execution is bound to this idempotency key",
            json!({ "idempotency_key": key }),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
