//! The Purple Flea simulator: dice bets, escrow and wallet transfers behind an idempotency cache.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::audit::Audit;
use crate::error::{Error, Result};
use crate::fault::{draw, FaultPlan, ServiceName};
use crate::idempotency::{
    fingerprint, read_key, Begin, Fingerprint, IdempotencyCache, KeyProblem, StoredResponse,
};
use crate::money::{format_amount_minor, parse_amount_minor, parse_amount_minor_positive};
use crate::server::{
    self, json_bytes_response, json_response, mark_replayed, read_body, request_faults,
    RunningServer, SimCore,
};
use crate::time::now_rfc3339;

/// The wallet balance a server starts with, in minor units (10,000.00 USDC).
pub const BALANCE_MINOR_INITIAL_DEFAULT: i64 = 10_000 * 100;
/// The only currency of the Purple Flea wallet.
const CURRENCY: &str = "USDC";
/// The longest buyer, seller or recipient name, in bytes.
const PARTY_NAME_BYTES_MAX: usize = 128;
/// Dice rolls are uniform in `0..DICE_FACES`.
const DICE_FACES: u64 = 100;
/// The house keeps 1%: a win pays `amount * DICE_PAYOUT_PERCENT / chance_percent`.
const DICE_PAYOUT_PERCENT: i64 = 99;
/// Legal dice targets: the chance of winning stays between 1% and 99% (never 0, never certain).
const DICE_TARGET_MIN: i64 = 1;
const DICE_TARGET_MAX: i64 = 99;
/// A rule index no fault rule can have, so dice rolls are independent of fault draws.
const DICE_DRAW_STREAM: u64 = u64::MAX;

/// Options of a Purple Flea server.
#[derive(Clone)]
pub struct PurpleFleaOptions {
    /// The starting wallet balance in minor units (cents).
    pub balance_minor_initial: i64,
    /// When set, every request must carry `Authorization: Bearer <api_key>` (else 401).
    pub api_key: Option<String>,
}

impl Default for PurpleFleaOptions {
    fn default() -> PurpleFleaOptions {
        PurpleFleaOptions {
            balance_minor_initial: BALANCE_MINOR_INITIAL_DEFAULT,
            api_key: None,
        }
    }
}

impl std::fmt::Debug for PurpleFleaOptions {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The API key is a secret: show only whether one is set.
        formatter
            .debug_struct("PurpleFleaOptions")
            .field("balance_minor_initial", &self.balance_minor_initial)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl PurpleFleaOptions {
    /// Sets the starting balance from a decimal string such as `"10000.00"`.
    pub fn with_balance(mut self, amount: &str) -> Result<PurpleFleaOptions> {
        self.balance_minor_initial = parse_amount_minor(amount).ok_or_else(|| {
            Error::InvalidOption(format!("balance {amount:?} is not a decimal amount"))
        })?;
        Ok(self)
    }
}

/// The Purple Flea simulator. See `docs/simulator.md` for routes and behaviour.
#[derive(Debug)]
pub struct PurpleFlea;

impl PurpleFlea {
    /// Starts a server with default options on `address` (port 0 picks a free port).
    pub async fn start(address: SocketAddr, plan: FaultPlan) -> Result<RunningServer> {
        PurpleFlea::start_with(address, plan, PurpleFleaOptions::default()).await
    }

    /// Starts a server with `options`.
    pub async fn start_with(
        address: SocketAddr,
        plan: FaultPlan,
        options: PurpleFleaOptions,
    ) -> Result<RunningServer> {
        server::start(ServiceName::PurpleFlea, address, plan, move |core| {
            let state = Arc::new(PurpleFleaState {
                core,
                api_key: options.api_key,
                ledger: Mutex::new(Ledger {
                    balance_minor: options.balance_minor_initial,
                    ..Ledger::default()
                }),
            });
            let audit_state = state.clone();
            let audit = Arc::new(move || {
                audit_state
                    .lock()
                    .audit
                    .report(ServiceName::PurpleFlea.as_str())
            });
            (routes(state), audit)
        })
        .await
    }
}

fn routes(state: Arc<PurpleFleaState>) -> Router {
    Router::new()
        .route("/casino/bet", post(place_bet))
        .route("/casino/bet/by-idempotency-key", get(bet_by_key))
        .route("/escrow/create", post(create_escrow))
        .route("/escrow/by-idempotency-key", get(escrow_by_key))
        .route("/escrow/{id}", get(escrow_by_id))
        .route("/escrow/{id}/fund", post(fund_escrow))
        .route("/escrow/{id}/release", post(release_escrow))
        .route("/escrow/{id}/refund", post(refund_escrow))
        .route("/wallet/transfer", post(transfer))
        .route("/wallet/transfer/by-idempotency-key", get(transfer_by_key))
        .route("/wallet/balance", get(balance))
        .with_state(state)
}

struct PurpleFleaState {
    core: Arc<SimCore>,
    api_key: Option<String>,
    ledger: Mutex<Ledger>,
}

impl PurpleFleaState {
    fn lock(&self) -> std::sync::MutexGuard<'_, Ledger> {
        // No code panics while holding the lock, but a poisoned map is still consistent.
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn error(&self, status: StatusCode, code: &str, message: &str) -> Response {
        self.core.error(status, code, message, Value::Null)
    }

    /// The 401 to send when an API key is required and the request lacks it.
    fn authorization_refusal(&self, headers: &HeaderMap) -> Option<Response> {
        let expected = self.api_key.as_ref()?;
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        if presented == Some(expected.as_str()) {
            None
        } else {
            Some(self.error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid bearer API key is required",
            ))
        }
    }
}

/// Everything the server knows, behind one mutex: balance, records, idempotency cache, audit.
/// Critical sections are map operations and one small JSON serialisation; no await inside.
#[derive(Default)]
struct Ledger {
    balance_minor: i64,
    cache: IdempotencyCache,
    audit: Audit,
    bets_by_key: HashMap<String, Bytes>,
    escrows_by_id: HashMap<String, Escrow>,
    escrow_id_by_key: HashMap<String, String>,
    transfers_by_key: HashMap<String, Bytes>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EscrowState {
    Created,
    Funded,
    Released,
    Refunded,
}

impl EscrowState {
    fn as_str(self) -> &'static str {
        match self {
            EscrowState::Created => "created",
            EscrowState::Funded => "funded",
            EscrowState::Released => "released",
            EscrowState::Refunded => "refunded",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EscrowMove {
    Fund,
    Release,
    Refund,
}

impl EscrowMove {
    fn target(self, from: EscrowState) -> Option<EscrowState> {
        match (self, from) {
            (EscrowMove::Fund, EscrowState::Created) => Some(EscrowState::Funded),
            (EscrowMove::Release, EscrowState::Funded) => Some(EscrowState::Released),
            (EscrowMove::Refund, EscrowState::Funded | EscrowState::Created) => {
                Some(EscrowState::Refunded)
            }
            _ => None,
        }
    }

    fn verb(self) -> &'static str {
        match self {
            EscrowMove::Fund => "fund",
            EscrowMove::Release => "release",
            EscrowMove::Refund => "refund",
        }
    }

    fn route(self) -> &'static str {
        match self {
            EscrowMove::Fund => "POST /escrow/{id}/fund",
            EscrowMove::Release => "POST /escrow/{id}/release",
            EscrowMove::Refund => "POST /escrow/{id}/refund",
        }
    }
}

struct Escrow {
    id: String,
    create_key: String,
    state: EscrowState,
    buyer: String,
    seller: String,
    amount_minor: i64,
    created_at: String,
}

impl Escrow {
    fn body(&self) -> Value {
        json!({
            "id": self.id,
            "idempotency_key": self.create_key,
            "state": self.state.as_str(),
            "buyer": self.buyer,
            "seller": self.seller,
            "amount": format_amount_minor(self.amount_minor),
            "created_at": self.created_at,
        })
    }
}

/// A checked mutation, ready to execute.
enum Command {
    Bet {
        amount_minor: i64,
        target: i64,
        over: bool,
    },
    CreateEscrow {
        buyer: String,
        seller: String,
        amount_minor: i64,
    },
    MoveEscrow {
        id: String,
        step: EscrowMove,
    },
    Transfer {
        to: String,
        amount_minor: i64,
    },
}

impl Command {
    fn route(&self) -> &'static str {
        match self {
            Command::Bet { .. } => "POST /casino/bet",
            Command::CreateEscrow { .. } => "POST /escrow/create",
            Command::MoveEscrow { step, .. } => step.route(),
            Command::Transfer { .. } => "POST /wallet/transfer",
        }
    }
}

/// What one execution produced.
struct Execution {
    status: StatusCode,
    body: Value,
    /// True when state changed (a side effect the audit counts).
    side_effect: bool,
}

fn refused(status: StatusCode, code: &str, message: String) -> Execution {
    Execution {
        status,
        body: json!({ "error": code, "message": message }),
        side_effect: false,
    }
}

impl Ledger {
    fn execute(&mut self, seed: u64, key: &str, command: &Command) -> Execution {
        match command {
            Command::Bet {
                amount_minor,
                target,
                over,
            } => self.place_bet(seed, key, *amount_minor, *target, *over),
            Command::CreateEscrow {
                buyer,
                seller,
                amount_minor,
            } => {
                let escrow = Escrow {
                    id: format!("esc_{}", uuid::Uuid::new_v4()),
                    create_key: key.to_owned(),
                    state: EscrowState::Created,
                    buyer: buyer.clone(),
                    seller: seller.clone(),
                    amount_minor: *amount_minor,
                    created_at: now_rfc3339(),
                };
                let body = escrow.body();
                self.escrow_id_by_key
                    .insert(key.to_owned(), escrow.id.clone());
                self.escrows_by_id.insert(escrow.id.clone(), escrow);
                Execution {
                    status: StatusCode::CREATED,
                    body,
                    side_effect: true,
                }
            }
            Command::MoveEscrow { id, step } => self.move_escrow(key, id, *step),
            Command::Transfer { to, amount_minor } => {
                if self.balance_minor < *amount_minor {
                    return insufficient_funds(self.balance_minor, *amount_minor);
                }
                self.balance_minor -= amount_minor;
                let body = json!({
                    "id": format!("tx_{}", uuid::Uuid::new_v4()),
                    "idempotency_key": key,
                    "status": "complete",
                    "to": to,
                    "amount": format_amount_minor(*amount_minor),
                    "currency": CURRENCY,
                    "created_at": now_rfc3339(),
                });
                Execution {
                    status: StatusCode::CREATED,
                    body,
                    side_effect: true,
                }
            }
        }
    }

    fn place_bet(
        &mut self,
        seed: u64,
        key: &str,
        amount_minor: i64,
        target: i64,
        over: bool,
    ) -> Execution {
        if self.balance_minor < amount_minor {
            return insufficient_funds(self.balance_minor, amount_minor);
        }
        // The roll is a function of the seed and the key: reruns of a scenario roll the same dice.
        let roll = (draw(seed, DICE_DRAW_STREAM, "dice", key, 0) % DICE_FACES) as i64;
        let (won, chance_percent) = if over {
            (roll >= target, 100 - target)
        } else {
            (roll < target, target)
        };
        // amount <= AMOUNT_MINOR_MAX (1e14) times 99 stays far below i64::MAX.
        let payout_minor = if won {
            amount_minor * DICE_PAYOUT_PERCENT / chance_percent
        } else {
            0
        };
        // Saturating: a long lucky streak must not wrap the balance around.
        self.balance_minor = (self.balance_minor - amount_minor).saturating_add(payout_minor);
        let body = json!({
            "id": format!("bet_{}", uuid::Uuid::new_v4()),
            "idempotency_key": key,
            "status": "complete",
            "game": "dice",
            "amount": format_amount_minor(amount_minor),
            "target": target,
            "prediction": if over { "over" } else { "under" },
            "roll": roll,
            "outcome": if won { "win" } else { "loss" },
            "payout": format_amount_minor(payout_minor),
            "created_at": now_rfc3339(),
        });
        Execution {
            status: StatusCode::CREATED,
            body,
            side_effect: true,
        }
    }

    fn move_escrow(&mut self, key: &str, id: &str, step: EscrowMove) -> Execution {
        let balance_minor = self.balance_minor;
        let Some(escrow) = self.escrows_by_id.get_mut(id) else {
            return refused(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no escrow {id}"),
            );
        };
        let Some(target) = step.target(escrow.state) else {
            return refused(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_state_transition",
                format!(
                    "cannot {} an escrow in state {}",
                    step.verb(),
                    escrow.state.as_str()
                ),
            );
        };
        if step == EscrowMove::Fund {
            if balance_minor < escrow.amount_minor {
                return insufficient_funds(balance_minor, escrow.amount_minor);
            }
            self.balance_minor -= escrow.amount_minor;
        }
        escrow.state = target;
        let body = escrow.body();
        self.escrow_id_by_key.insert(key.to_owned(), id.to_owned());
        Execution {
            status: StatusCode::OK,
            body,
            side_effect: true,
        }
    }
}

fn insufficient_funds(balance_minor: i64, amount_minor: i64) -> Execution {
    refused(
        StatusCode::UNPROCESSABLE_ENTITY,
        "insufficient_funds",
        format!(
            "the balance {} is below the amount {}",
            format_amount_minor(balance_minor),
            format_amount_minor(amount_minor)
        ),
    )
}

/// Runs one mutation through authorisation, key checks, body checks, the idempotency cache,
/// the fault plan's latency, execution and storage.
async fn mutate(
    state: Arc<PurpleFleaState>,
    request: Request,
    parse: impl FnOnce(&Value) -> std::result::Result<Command, String>,
) -> Response {
    if let Some(response) = state.authorization_refusal(request.headers()) {
        return response;
    }
    let key = match read_key(request.headers()) {
        Ok(key) => key,
        Err(KeyProblem::Missing) => {
            return state.error(
                StatusCode::BAD_REQUEST,
                "missing_idempotency_key",
                &KeyProblem::Missing.message(),
            )
        }
        Err(problem) => {
            return state.error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &problem.message(),
            )
        }
    };
    let faults = request_faults(&request);
    let path = request.uri().path().to_owned();
    let Some(body) = read_body(request.into_body()).await else {
        return state.error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the body is too large or unreadable",
        );
    };
    let value = match parse_json_object(&body) {
        Ok(value) => value,
        Err(message) => return state.error(StatusCode::BAD_REQUEST, "invalid_request", &message),
    };
    let command = match parse(&value) {
        Ok(command) => command,
        Err(message) => return state.error(StatusCode::BAD_REQUEST, "invalid_request", &message),
    };
    let request_fingerprint = fingerprint("POST", &path, &value.to_string());
    let seed = state.core.plan().seed;
    // The guard lives only inside this block, never across an await.
    let planned = {
        let mut ledger = state.lock();
        match ledger.cache.begin(&key, request_fingerprint) {
            Begin::Fresh => {}
            Begin::Replay(stored) => {
                return mark_replayed(json_bytes_response(stored.status, stored.body))
            }
            Begin::InProgress => {
                return state.error(
                    StatusCode::CONFLICT,
                    "request_in_progress",
                    "a request with this Idempotency-Key is still being processed",
                )
            }
            Begin::Mismatch => {
                return state.error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "idempotency_key_reused",
                    "this Idempotency-Key was used for a different request",
                )
            }
        }
        let latency = faults
            .map(|faults| faults.take_latency())
            .unwrap_or_default();
        if latency.is_zero() {
            // The common case: check, execute and store in one critical section.
            Ok(commit_locked(
                &mut ledger,
                seed,
                &key,
                request_fingerprint,
                &command,
            ))
        } else {
            Err(latency)
        }
    };
    let stored = match planned {
        Ok(stored) => stored,
        Err(latency) => {
            // The key is in progress while the latency runs. The work runs in its own task so a
            // client that hangs up does not cancel it: the request completes and is stored anyway.
            let worker_state = state.clone();
            let worker = tokio::spawn(async move {
                worker_state.core.sleep_unless_shutdown(latency).await;
                commit(&worker_state, &key, request_fingerprint, &command)
            });
            match worker.await {
                Ok(stored) => stored,
                Err(_) => {
                    return state.error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal_error",
                        "the request was cancelled",
                    )
                }
            }
        }
    };
    json_bytes_response(stored.status, stored.body)
}

/// Executes and stores the result in one critical section.
fn commit(
    state: &PurpleFleaState,
    key: &str,
    request_fingerprint: Fingerprint,
    command: &Command,
) -> StoredResponse {
    let seed = state.core.plan().seed;
    commit_locked(&mut state.lock(), seed, key, request_fingerprint, command)
}

fn commit_locked(
    ledger: &mut Ledger,
    seed: u64,
    key: &str,
    request_fingerprint: Fingerprint,
    command: &Command,
) -> StoredResponse {
    let execution = ledger.execute(seed, key, command);
    let stored = StoredResponse {
        status: execution.status,
        body: Bytes::from(execution.body.to_string()),
    };
    if execution.side_effect {
        ledger.audit.record(key, command.route());
        // Look-ups by key share the stored bytes with the idempotency cache.
        match command {
            Command::Bet { .. } => {
                ledger
                    .bets_by_key
                    .insert(key.to_owned(), stored.body.clone());
            }
            Command::Transfer { .. } => {
                ledger
                    .transfers_by_key
                    .insert(key.to_owned(), stored.body.clone());
            }
            Command::CreateEscrow { .. } | Command::MoveEscrow { .. } => {}
        }
    }
    ledger
        .cache
        .finish(key, request_fingerprint, stored.clone());
    stored
}

/// Parses a body that must be a JSON object; an empty body counts as `{}`.
fn parse_json_object(body: &[u8]) -> std::result::Result<Value, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Map::new()));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(value @ Value::Object(_)) => Ok(value),
        Ok(_) => Err("the body must be a JSON object".to_owned()),
        Err(error) => Err(format!("the body is not valid JSON: {error}")),
    }
}

fn field_str<'a>(value: &'a Value, name: &str) -> std::result::Result<&'a str, String> {
    match value.get(name) {
        Some(Value::String(text)) => Ok(text),
        Some(_) => Err(format!("{name} must be a string")),
        None => Err(format!("{name} is required")),
    }
}

fn field_amount(value: &Value, name: &str) -> std::result::Result<i64, String> {
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

fn field_party(value: &Value, name: &str) -> std::result::Result<String, String> {
    let text = field_str(value, name)?;
    if text.is_empty() || text.len() > PARTY_NAME_BYTES_MAX {
        return Err(format!("{name} must be 1 to {PARTY_NAME_BYTES_MAX} bytes"));
    }
    Ok(text.to_owned())
}

fn parse_bet(value: &Value) -> std::result::Result<Command, String> {
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

fn parse_create_escrow(value: &Value) -> std::result::Result<Command, String> {
    Ok(Command::CreateEscrow {
        buyer: field_party(value, "buyer")?,
        seller: field_party(value, "seller")?,
        amount_minor: field_amount(value, "amount")?,
    })
}

fn parse_transfer(value: &Value) -> std::result::Result<Command, String> {
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

fn parse_escrow_move(
    id: String,
    step: EscrowMove,
    value: &Value,
) -> std::result::Result<Command, String> {
    if value.as_object().is_some_and(|object| !object.is_empty()) {
        return Err(format!("{} takes an empty body or {{}}", step.verb()));
    }
    Ok(Command::MoveEscrow { id, step })
}

async fn place_bet(State(state): State<Arc<PurpleFleaState>>, request: Request) -> Response {
    mutate(state, request, parse_bet).await
}

async fn create_escrow(State(state): State<Arc<PurpleFleaState>>, request: Request) -> Response {
    mutate(state, request, parse_create_escrow).await
}

async fn fund_escrow(
    State(state): State<Arc<PurpleFleaState>>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    mutate(state, request, |value| {
        parse_escrow_move(id, EscrowMove::Fund, value)
    })
    .await
}

async fn release_escrow(
    State(state): State<Arc<PurpleFleaState>>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    mutate(state, request, |value| {
        parse_escrow_move(id, EscrowMove::Release, value)
    })
    .await
}

async fn refund_escrow(
    State(state): State<Arc<PurpleFleaState>>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    mutate(state, request, |value| {
        parse_escrow_move(id, EscrowMove::Refund, value)
    })
    .await
}

async fn transfer(State(state): State<Arc<PurpleFleaState>>, request: Request) -> Response {
    mutate(state, request, parse_transfer).await
}

#[derive(Deserialize)]
struct KeyQuery {
    key: Option<String>,
}

/// Shared body of the `by-idempotency-key` look-ups.
fn look_up_by_key(
    state: &PurpleFleaState,
    headers: &HeaderMap,
    query: KeyQuery,
    find: impl FnOnce(&Ledger, &str) -> Option<Bytes>,
) -> Response {
    if let Some(response) = state.authorization_refusal(headers) {
        return response;
    }
    let Some(key) = query.key.filter(|key| !key.is_empty()) else {
        return state.error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the key query parameter is required",
        );
    };
    let found = find(&state.lock(), &key);
    match found {
        Some(body) => json_bytes_response(StatusCode::OK, body),
        None => state.error(
            StatusCode::NOT_FOUND,
            "not_found",
            "nothing was executed with this idempotency key",
        ),
    }
}

async fn bet_by_key(
    State(state): State<Arc<PurpleFleaState>>,
    headers: HeaderMap,
    Query(query): Query<KeyQuery>,
) -> Response {
    look_up_by_key(&state, &headers, query, |ledger, key| {
        ledger.bets_by_key.get(key).cloned()
    })
}

async fn transfer_by_key(
    State(state): State<Arc<PurpleFleaState>>,
    headers: HeaderMap,
    Query(query): Query<KeyQuery>,
) -> Response {
    look_up_by_key(&state, &headers, query, |ledger, key| {
        ledger.transfers_by_key.get(key).cloned()
    })
}

async fn escrow_by_key(
    State(state): State<Arc<PurpleFleaState>>,
    headers: HeaderMap,
    Query(query): Query<KeyQuery>,
) -> Response {
    look_up_by_key(&state, &headers, query, |ledger, key| {
        let id = ledger.escrow_id_by_key.get(key)?;
        ledger
            .escrows_by_id
            .get(id)
            .map(|escrow| Bytes::from(escrow.body().to_string()))
    })
}

async fn escrow_by_id(
    State(state): State<Arc<PurpleFleaState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(response) = state.authorization_refusal(&headers) {
        return response;
    }
    let found = state.lock().escrows_by_id.get(&id).map(Escrow::body);
    match found {
        Some(body) => json_response(StatusCode::OK, &body),
        None => state.error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("no escrow {id}"),
        ),
    }
}

async fn balance(State(state): State<Arc<PurpleFleaState>>, headers: HeaderMap) -> Response {
    if let Some(response) = state.authorization_refusal(&headers) {
        return response;
    }
    let balance_minor = state.lock().balance_minor;
    json_response(
        StatusCode::OK,
        &json!({ "balance": format_amount_minor(balance_minor), "currency": CURRENCY }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escrow_moves_follow_the_state_machine() {
        use EscrowMove::{Fund, Refund, Release};
        use EscrowState::{Created, Funded, Refunded, Released};
        let cases = [
            (Fund, Created, Some(Funded)),
            (Fund, Funded, None),
            (Fund, Released, None),
            (Fund, Refunded, None),
            (Release, Created, None),
            (Release, Funded, Some(Released)),
            (Release, Released, None),
            (Release, Refunded, None),
            (Refund, Created, Some(Refunded)),
            (Refund, Funded, Some(Refunded)),
            (Refund, Released, None),
            (Refund, Refunded, None),
        ];
        for (step, from, expected) in cases {
            assert_eq!(step.target(from), expected, "{step:?} from {from:?}");
        }
    }

    #[test]
    fn dice_pays_the_documented_odds() {
        let mut ledger = Ledger {
            balance_minor: 1_000_000,
            ..Ledger::default()
        };
        let mut wins = 0;
        for index in 0..1000 {
            let execution = ledger.place_bet(5, &format!("k{index}"), 1000, 50, true);
            assert_eq!(execution.status, StatusCode::CREATED);
            let payout = execution.body["payout"]
                .as_str()
                .expect("payout")
                .to_owned();
            if execution.body["outcome"] == "win" {
                wins += 1;
                assert_eq!(payout, "19.80");
                assert!(execution.body["roll"].as_i64().expect("roll") >= 50);
            } else {
                assert_eq!(payout, "0.00");
            }
        }
        assert!((400..=600).contains(&wins), "{wins} wins of 1000 at 50%");
    }
}
