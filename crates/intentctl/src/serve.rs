//! `intentctl serve`: the engine as a sidecar behind a small JSON HTTP API (axum).
//!
//! Routes: `POST /v1/intents`, `GET /v1/intents`, `GET /v1/intents/{id}`,
//! `GET /v1/intents/{id}/wait?timeout=MS`, `POST /v1/intents/{id}/payment`, `GET /v1/dlq`,
//! `POST /v1/dlq/{id}/retry`, `POST /v1/dlq/{id}/resolve`, `GET /metrics`, `GET /healthz`.
//! Errors are `{"error":"<code>","message":"<text>"}`; bad input is 400 or 422, never 500.
//!
//! Disk full (or any failed log write or sync): the log poisons itself (G7) and the engine
//! stops. The server keeps answering: `POST /v1/intents` (and every other change) is 503
//! `log_unavailable`, reads answer from memory, and `GET /healthz` is 503
//! `{"status":"degraded","log":"poisoned",..}` (200 `{"status":"ok","log":"ok"}` otherwise).
//! A background task stops the poisoned engine and reopens it on the same data directory
//! (recovery from disk) every [`RECOVERY_INTERVAL_MS`] until a space probe and the reopen
//! succeed; then intents are accepted again and the acknowledged ones are driven on.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path as FilePath, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{bail, Context};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use scheduler::{Engine, Intent, IntentId, ListFilter, Reason, StateName, SubmitRequest};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::config::ServeConfig;

/// Largest request body accepted, in bytes.
pub const REQUEST_BODY_BYTES_MAX: usize = 64 * 1024;
/// Long-poll wait when `timeout` is not given, and the most it may be.
const WAIT_TIMEOUT_MS_DEFAULT: u64 = 10_000;
const WAIT_TIMEOUT_MS_MAX: u64 = 30_000;
/// Page size of listings when `limit` is not given, and the most it may be.
const LIST_LIMIT_DEFAULT: usize = 100;
const LIST_LIMIT_MAX: usize = 1_000;
/// Longest operator note or evidence, in characters.
const NOTE_CHARS_MAX: usize = 4_096;
/// How often the recovery task checks the log, and waits between attempts to reopen it.
pub const RECOVERY_INTERVAL_MS: u64 = 1_000;
/// How long a poisoned engine may take to stop gracefully before it is stopped at once.
const POISONED_SHUTDOWN_MS_MAX: u64 = 5_000;
/// Bytes written and synced in the data directory to check that space is back before
/// reopening (so a still-full disk is not reopened only to be poisoned again).
const SPACE_PROBE_BYTES: usize = 256 * 1024;
const SPACE_PROBE_FILE_NAME: &str = ".space-probe";
/// What a refused change and a degraded `/healthz` say.
pub const LOG_REFUSED_MESSAGE: &str =
    "the write-ahead log refused a write (disk full?): no intent is accepted until it recovers";

/// Arguments of `intentctl serve`.
#[derive(clap::Args, Clone, Debug)]
pub struct ServeArgs {
    /// Data directory (the log lives in DIR/wal).
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// Address to listen on (port 0 picks a free port; the bound address is printed).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7700")]
    pub listen: SocketAddr,
    /// TOML configuration (connectors, sync mode, key retention); see config.rs.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Purple Flea base URL when no --config is given.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8080")]
    pub purple_flea: String,
    /// Aeeron base URL when no --config is given.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8081")]
    pub aeeron: String,
    /// Require `Authorization: Bearer <token>` with the token read from this variable.
    #[arg(long, value_name = "VARIABLE")]
    pub token_env: Option<String>,
    /// Allow listening on a non-loopback address (only together with --token-env).
    #[arg(long)]
    pub allow_remote: bool,
}

/// The engine being served; swapped for a reopened one after its log is poisoned.
struct EngineSlot {
    current: RwLock<Engine>,
}

impl EngineSlot {
    fn new(engine: Engine) -> EngineSlot {
        EngineSlot {
            current: RwLock::new(engine),
        }
    }

    fn get(&self) -> Engine {
        match self.current.read() {
            Ok(engine) => engine.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set(&self, engine: Engine) {
        match self.current.write() {
            Ok(mut current) => *current = engine,
            Err(poisoned) => *poisoned.into_inner() = engine,
        }
    }
}

#[derive(Clone)]
struct App {
    slot: Arc<EngineSlot>,
    token: Option<Arc<str>>,
    shutdown: watch::Receiver<bool>,
}

impl App {
    /// The engine now (a handler keeps the one it started with).
    fn engine(&self) -> Engine {
        self.slot.get()
    }
}

fn log_refused(cause: Option<&str>) -> ApiError {
    let message = match cause {
        Some(cause) => format!("{LOG_REFUSED_MESSAGE} ({cause})"),
        None => LOG_REFUSED_MESSAGE.to_string(),
    };
    ApiError(StatusCode::SERVICE_UNAVAILABLE, "log_unavailable", message)
}

/// An error answer: status, code, message.
struct ApiError(StatusCode, &'static str, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let ApiError(status, code, message) = self;
        (status, Json(json!({"error": code, "message": message}))).into_response()
    }
}

impl From<scheduler::Error> for ApiError {
    fn from(error: scheduler::Error) -> ApiError {
        use scheduler::Error as E;
        if let E::Log(cause) = &error {
            tracing::error!(error = %cause, "the write-ahead log refused a change");
            return log_refused(Some(&cause.to_string()));
        }
        let (status, code) = match &error {
            E::IdempotencyConflict { .. } => (StatusCode::CONFLICT, "idempotency_conflict"),
            E::InvalidInput(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_input"),
            E::UnknownConnector(_) => (StatusCode::UNPROCESSABLE_ENTITY, "unknown_connector"),
            E::SpendingLimit(_) => (StatusCode::UNPROCESSABLE_ENTITY, "spending_limit"),
            E::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            E::WrongState { .. } => (StatusCode::CONFLICT, "wrong_state"),
            E::ShutDown => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "engine_error"),
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(%error, "engine error");
        }
        ApiError(status, code, error.to_string())
    }
}

type ApiResult = std::result::Result<Response, ApiError>;

fn not_found(id: &str) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no intent {id}"),
    )
}

fn parse_id(text: &str) -> std::result::Result<IntentId, ApiError> {
    IntentId::parse(text).ok_or_else(|| not_found(text))
}

/// Reads a JSON body into `T`: 413 when too large, 400 when not JSON, 422 when the shape is wrong.
fn body_json<T: serde::de::DeserializeOwned>(
    body: std::result::Result<Bytes, BytesRejection>,
) -> std::result::Result<T, ApiError> {
    let bytes = body.map_err(|rejection| {
        ApiError(
            rejection.status(),
            "invalid_body",
            format!("request body: {}", rejection.body_text()),
        )
    })?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|error| {
        ApiError(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("request body is not JSON: {error}"),
        )
    })?;
    serde_json::from_value(value).map_err(|error| {
        ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            format!("request body: {error}"),
        )
    })
}

fn parse_json_text(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

fn reason_view(reason: &Reason) -> Value {
    json!({
        "code": reason.code,
        "message": reason.message,
        "details": reason.details_json.as_deref().map(parse_json_text),
        "http_status": reason.http_status,
    })
}

/// The JSON view of an intent.
pub fn intent_view(intent: &Intent) -> Value {
    use scheduler::State as S;
    let (result, reason) = match &intent.state {
        S::Succeeded { result_json } | S::Reconciled { result_json } => {
            (Some(parse_json_text(result_json)), None)
        }
        S::Failed { reason } | S::DeadLettered { reason } | S::AwaitingPayment { reason } => {
            (None, Some(reason_view(reason)))
        }
        _ => (None, None),
    };
    let mut view = json!({
        "id": intent.spec.id.to_string(),
        "state": intent.state.name().as_str(),
        "connector": intent.spec.connector,
        "operation": intent.spec.operation,
        "params": parse_json_text(&intent.spec.params_json),
        "idempotency_key": intent.spec.idempotency_key,
        "attempts": intent.attempts.len(),
        "status_checks": intent.status_checks,
        "last_error": intent.last_error.as_ref().map(reason_view),
        "result": result,
        "reason": reason,
        "resource_id": intent.resource_id,
        "submitted_at_ms": intent.spec.submitted_at_ms,
        "updated_at_ms": intent.updated_at_ms,
    });
    if let (S::Resolved { note, evidence }, Some(object)) = (&intent.state, view.as_object_mut()) {
        object.insert("note".to_string(), json!(note));
        object.insert("evidence".to_string(), json!(evidence));
    }
    view
}

fn ok(status: StatusCode, intent: &Intent) -> ApiResult {
    Ok((status, Json(intent_view(intent))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubmitBody {
    connector: String,
    operation: String,
    #[serde(default)]
    params: Value,
    #[serde(default)]
    idempotency_key: Option<String>,
}

async fn submit(
    State(app): State<App>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> ApiResult {
    let engine = app.engine();
    if engine.is_log_poisoned() {
        return Err(log_refused(None));
    }
    let body: SubmitBody = body_json(body)?;
    let submitted = engine
        .submit(SubmitRequest {
            connector: body.connector,
            operation: body.operation,
            params: body.params,
            idempotency_key: body.idempotency_key,
        })
        .await?;
    let status = if submitted.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    ok(status, &submitted.intent)
}

async fn get_intent(State(app): State<App>, Path(id): Path<String>) -> ApiResult {
    let intent = app
        .engine()
        .get(parse_id(&id)?)
        .ok_or_else(|| not_found(&id))?;
    ok(StatusCode::OK, &intent)
}

#[derive(Deserialize)]
struct ListQuery {
    state: Option<String>,
    connector: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

fn list_page(app: &App, query: ListQuery, state: Option<StateName>) -> ApiResult {
    let invalid =
        |message: String| ApiError(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", message);
    let state = match (state, query.state.as_deref()) {
        (Some(state), _) => Some(state),
        (None, None | Some("")) => None,
        (None, Some(text)) => Some(StateName::parse(text).ok_or_else(|| {
            let known: Vec<&str> = StateName::ALL.iter().map(|name| name.as_str()).collect();
            invalid(format!(
                "state {text:?} is unknown; one of {}",
                known.join(", ")
            ))
        })?),
    };
    let after = match query.cursor.as_deref() {
        None | Some("") => None,
        Some(text) => Some(
            IntentId::parse(text)
                .ok_or_else(|| invalid(format!("cursor {text:?} is not an intent id")))?,
        ),
    };
    let limit = query.limit.unwrap_or(LIST_LIMIT_DEFAULT);
    if limit == 0 || limit > LIST_LIMIT_MAX {
        return Err(invalid(format!("limit must be 1..={LIST_LIMIT_MAX}")));
    }
    let intents = app.engine().list(&ListFilter {
        state,
        connector: query.connector.filter(|name| !name.is_empty()),
        after,
        limit: limit + 1,
    });
    let more = intents.len() > limit;
    let page = &intents[..intents.len().min(limit)];
    let next_cursor = if more {
        page.last().map(|intent| intent.spec.id.to_string())
    } else {
        None
    };
    let views: Vec<Value> = page.iter().map(intent_view).collect();
    Ok(Json(json!({"intents": views, "next_cursor": next_cursor})).into_response())
}

fn query_or_422<T>(
    query: std::result::Result<Query<T>, QueryRejection>,
) -> std::result::Result<T, ApiError> {
    query.map(|Query(query)| query).map_err(|rejection| {
        ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            rejection.body_text(),
        )
    })
}

async fn list_intents(
    State(app): State<App>,
    query: std::result::Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult {
    list_page(&app, query_or_422(query)?, None)
}

async fn list_dlq(
    State(app): State<App>,
    query: std::result::Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult {
    list_page(&app, query_or_422(query)?, Some(StateName::DeadLettered))
}

#[derive(Deserialize)]
struct WaitQuery {
    timeout: Option<u64>,
}

async fn wait_intent(
    State(app): State<App>,
    Path(id): Path<String>,
    query: std::result::Result<Query<WaitQuery>, QueryRejection>,
) -> ApiResult {
    let query = query_or_422(query)?;
    let id = parse_id(&id)?;
    let timeout_ms = query
        .timeout
        .unwrap_or(WAIT_TIMEOUT_MS_DEFAULT)
        .min(WAIT_TIMEOUT_MS_MAX);
    let mut shutdown = app.shutdown.clone();
    let engine = app.engine();
    let wait = engine.wait(id, Duration::from_millis(timeout_ms));
    let intent = tokio::select! {
        intent = wait => intent?,
        _ = shutdown.wait_for(|stopping| *stopping) => {
            engine.get(id).ok_or_else(|| not_found(&id.to_string()))?
        }
    };
    ok(StatusCode::OK, &intent)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PaymentBody {
    payment_id: String,
}

async fn attach_payment(
    State(app): State<App>,
    Path(id): Path<String>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> ApiResult {
    let id = parse_id(&id)?;
    let body: PaymentBody = body_json(body)?;
    if body.payment_id.trim().is_empty() || body.payment_id.len() > 128 {
        return Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            "payment_id must be 1..=128 characters".to_string(),
        ));
    }
    let intent = app
        .engine()
        .attach_payment(id, json!({"payment_id": body.payment_id}))
        .await?;
    ok(StatusCode::OK, &intent)
}

async fn dlq_retry(State(app): State<App>, Path(id): Path<String>) -> ApiResult {
    let intent = app.engine().dlq_retry(parse_id(&id)?).await?;
    ok(StatusCode::OK, &intent)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResolveBody {
    note: String,
    #[serde(default)]
    evidence: Option<String>,
}

async fn dlq_resolve(
    State(app): State<App>,
    Path(id): Path<String>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> ApiResult {
    let id = parse_id(&id)?;
    let body: ResolveBody = body_json(body)?;
    let too_long = |text: &str| text.chars().count() > NOTE_CHARS_MAX;
    if body.note.trim().is_empty()
        || too_long(&body.note)
        || body.evidence.as_deref().is_some_and(too_long)
    {
        return Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            format!(
                "note must be 1..={NOTE_CHARS_MAX} characters, evidence at most {NOTE_CHARS_MAX}"
            ),
        ));
    }
    let intent = app
        .engine()
        .dlq_resolve(id, body.note, body.evidence)
        .await?;
    ok(StatusCode::OK, &intent)
}

/// 200 `{"status":"ok"}`; 200 `{"status":"warning"}` while compaction keeps failing (money
/// still moves, but the log grows until it succeeds) or the log is never synced (`"sync":
/// "none_unsafe"`, benchmarks only); 503 `{"status":"degraded"}` while the
/// log is poisoned (reads still answer; changes are refused until the engine is reopened).
/// Every answer carries the compaction status.
async fn healthz(State(app): State<App>) -> Response {
    let engine = app.engine();
    let compaction = engine.compaction_status();
    let compaction_json = json!({
        "state": if compaction.consecutive_failures > 0 { "failing" } else { "ok" },
        "compactions_total": compaction.compactions_total,
        "failures_total": compaction.failures_total,
        "consecutive_failures": compaction.consecutive_failures,
        "last_error": compaction.last_error,
        "retry_at_ms": compaction.retry_at_ms,
        "last_success_at_ms": compaction.last_success_at_ms,
        "checkpoint_lsn": compaction.checkpoint_lsn,
    });
    let sync = match engine.sync_mode() {
        intent_log::SyncMode::Data => "data",
        intent_log::SyncMode::All => "all",
        intent_log::SyncMode::NoSyncBenchmarkOnly => "none_unsafe",
    };
    if engine.is_log_poisoned() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "degraded", "log": "poisoned", "message": LOG_REFUSED_MESSAGE, "sync": sync, "compaction": compaction_json})),
        )
            .into_response();
    }
    // Unsynced acknowledgements (benchmarks only) are a warning every probe shows.
    let status = if compaction.consecutive_failures > 0 || sync == "none_unsafe" {
        "warning"
    } else {
        "ok"
    };
    Json(json!({"status": status, "log": "ok", "sync": sync, "compaction": compaction_json}))
        .into_response()
}

/// Opens the engine on `data` with `config`. A reopen after a poisoned log never salvages:
/// `recovery = "salvage"` is an operator's choice for one start, not something to do
/// unasked after a full disk.
async fn open_engine(
    config: &ServeConfig,
    data: &FilePath,
    reopen: bool,
) -> anyhow::Result<(Engine, scheduler::OpenReport)> {
    let mut engine_config = config.engine_config(data)?;
    if reopen && engine_config.log.recovery_mode == intent_log::RecoveryMode::Salvage {
        tracing::warn!(
            "reopening after a poisoned log with the default recovery mode, not salvage"
        );
        engine_config.log.recovery_mode = intent_log::RecoveryMode::TolerateTornTail;
    }
    let opened = Engine::open(engine_config, config.connector_settings()?)
        .await
        .context("opening the engine")?;
    Ok(opened)
}

/// Writes, syncs and deletes a small file in `data`: fails while the disk is still full.
async fn probe_space(data: &FilePath) -> anyhow::Result<()> {
    let path = data.join(SPACE_PROBE_FILE_NAME);
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let written = std::fs::File::create(&path).and_then(|mut file| {
            std::io::Write::write_all(&mut file, &[0u8; SPACE_PROBE_BYTES])?;
            file.sync_all()
        });
        let _ = std::fs::remove_file(&path);
        written.with_context(|| format!("space probe {}", path.display()))
    })
    .await
    .context("space probe task")?
}

/// Watches the log; once it is poisoned, stops the engine and reopens it on the same data
/// until that works (G7: the log is never written again through the poisoned handle).
async fn recover_poisoned_log(
    slot: Arc<EngineSlot>,
    config: ServeConfig,
    data: PathBuf,
    mut shutdown: watch::Receiver<bool>,
) {
    let interval = Duration::from_millis(RECOVERY_INTERVAL_MS);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.wait_for(|stopping| *stopping) => return,
        }
        let engine = slot.get();
        if !engine.is_log_poisoned() {
            continue;
        }
        tracing::error!(
            "the write-ahead log is poisoned (a write or sync failed; disk full?): refusing \
             new intents, answering reads from memory, stopping the engine to reopen it"
        );
        let graceful = Duration::from_millis(POISONED_SHUTDOWN_MS_MAX);
        if tokio::time::timeout(graceful, engine.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("the poisoned engine did not stop in time; stopping it at once");
        }
        // Stops whatever is left and releases the log's lock and the index.
        engine.kill();
        let mut attempts: u64 = 0;
        loop {
            attempts += 1;
            let reopened = match probe_space(&data).await {
                Ok(()) => open_engine(&config, &data, true).await,
                Err(error) => Err(error),
            };
            match reopened {
                Ok((engine, report)) => {
                    slot.set(engine);
                    tracing::warn!(
                        attempts,
                        intents = report.intents,
                        recovered_in_flight = report.recovered_in_flight,
                        "the write-ahead log recovered: the engine is reopened and accepts intents again"
                    );
                    break;
                }
                Err(error) => {
                    tracing::warn!(
                        attempts,
                        error = format!("{error:#}"),
                        "reopening the engine failed; still refusing intents, retrying"
                    );
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.wait_for(|stopping| *stopping) => return,
            }
        }
    }
}

/// Prometheus text: intents by state, log sync latency and batch size histograms.
fn metrics_text(engine: &Engine) -> String {
    let mut text = String::new();
    let counts = engine.counts();
    let _ = writeln!(
        text,
        "# HELP intents Intents known to the engine, by state."
    );
    let _ = writeln!(text, "# TYPE intents gauge");
    for name in StateName::ALL {
        let count = counts.get(&name).copied().unwrap_or(0);
        let _ = writeln!(text, "intents{{state=\"{}\"}} {count}", name.as_str());
    }
    let stats = engine.log_stats();
    let _ = writeln!(
        text,
        "# HELP intents_log_records_total Records made durable."
    );
    let _ = writeln!(text, "# TYPE intents_log_records_total counter");
    let _ = writeln!(text, "intents_log_records_total {}", stats.records);
    let _ = writeln!(text, "# TYPE intents_log_bytes gauge");
    let _ = writeln!(text, "intents_log_bytes {}", stats.log_bytes);
    let _ = writeln!(text, "# TYPE intents_log_segments gauge");
    let _ = writeln!(text, "intents_log_segments {}", stats.segments);
    let compaction = engine.compaction_status();
    for (name, kind, help, value) in [
        (
            "intents_compactions_total",
            "counter",
            "Compactions that completed (checkpoint written, covered segments deleted).",
            compaction.compactions_total,
        ),
        (
            "intents_compaction_failures_total",
            "counter",
            "Compactions that failed (nothing changed; retried with backoff).",
            compaction.failures_total,
        ),
        (
            "intents_compaction_consecutive_failures",
            "gauge",
            "Compaction failures since the last success (0 when healthy).",
            u64::from(compaction.consecutive_failures),
        ),
        (
            "intents_checkpoint_lsn",
            "gauge",
            "The LSN the newest checkpoint covers (0 with none).",
            compaction.checkpoint_lsn.unwrap_or(0),
        ),
    ] {
        let _ = writeln!(text, "# HELP {name} {help}");
        let _ = writeln!(text, "# TYPE {name} {kind}");
        let _ = writeln!(text, "{name} {value}");
    }
    histogram(
        &mut text,
        "intents_log_sync_micros",
        "Log sync (fsync) latency in microseconds.",
        &stats.sync_micros_histogram,
        stats.sync_micros_total,
    );
    histogram(
        &mut text,
        "intents_log_batch_records",
        "Records per log batch (group commit).",
        &stats.batch_records_histogram,
        stats.records,
    );
    text
}

/// Writes a log2-bucketed histogram (bucket i holds values below 2^(i+1)) cumulatively.
fn histogram(text: &mut String, name: &str, help: &str, buckets: &[u64], sum: u64) {
    let _ = writeln!(text, "# HELP {name} {help}");
    let _ = writeln!(text, "# TYPE {name} histogram");
    let mut cumulative = 0u64;
    for (index, count) in buckets.iter().enumerate() {
        cumulative = cumulative.saturating_add(*count);
        let upper = 1u128 << (index + 1);
        let _ = writeln!(text, "{name}_bucket{{le=\"{upper}\"}} {cumulative}");
    }
    let _ = writeln!(text, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
    let _ = writeln!(text, "{name}_sum {sum}");
    let _ = writeln!(text, "{name}_count {cumulative}");
}

async fn metrics(State(app): State<App>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics_text(&app.engine()),
    )
        .into_response()
}

/// Compares in time independent of where the first difference is.
fn same_secret(left: &[u8], right: &[u8]) -> bool {
    left.len() == right.len()
        && left
            .iter()
            .zip(right)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

async fn require_token(State(app): State<App>, request: Request, next: Next) -> Response {
    if let Some(token) = &app.token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .unwrap_or("");
        if !same_secret(given.as_bytes(), token.as_bytes()) {
            return ApiError(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid Authorization: Bearer token is required".to_string(),
            )
            .into_response();
        }
    }
    next.run(request).await
}

async fn fallback() -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such route".to_string(),
    )
}

fn router(app: App) -> Router {
    let api = Router::new()
        .route("/v1/intents", post(submit).get(list_intents))
        .route("/v1/intents/{id}", get(get_intent))
        .route("/v1/intents/{id}/wait", get(wait_intent))
        .route("/v1/intents/{id}/payment", post(attach_payment))
        .route("/v1/dlq", get(list_dlq))
        .route("/v1/dlq/{id}/retry", post(dlq_retry))
        .route("/v1/dlq/{id}/resolve", post(dlq_resolve))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(app.clone(), require_token));
    api.route("/healthz", get(healthz))
        .route("/openapi.json", get(crate::openapi::serve_document))
        .fallback(fallback)
        .layer(DefaultBodyLimit::max(REQUEST_BODY_BYTES_MAX))
        .with_state(app)
}

/// Runs the sidecar until SIGINT or SIGTERM, then drains the engine.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let token: Option<Arc<str>> = match &args.token_env {
        Some(variable) => {
            let token = std::env::var(variable)
                .with_context(|| format!("environment variable {variable} is not set"))?;
            if token.is_empty() {
                bail!("environment variable {variable} is empty");
            }
            Some(token.into())
        }
        None => None,
    };
    let remote_allowed = args.allow_remote && token.is_some();
    if !(args.listen.ip().is_loopback() || remote_allowed) {
        bail!(
            "refusing to listen on {} (not loopback) without --allow-remote and --token-env",
            args.listen
        );
    }
    let config = match &args.config {
        Some(path) => ServeConfig::load(path)?,
        None => ServeConfig::defaults(&args.purple_flea, &args.aeeron),
    };
    std::fs::create_dir_all(&args.data)
        .with_context(|| format!("creating {}", args.data.display()))?;
    let (engine, report) = open_engine(&config, &args.data, false).await?;
    tracing::info!(
        intents = report.intents,
        recovered_in_flight = report.recovered_in_flight,
        "engine open"
    );
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let address = listener.local_addr()?;
    println!("listening http://{address}");
    std::io::Write::flush(&mut std::io::stdout()).context("writing the address")?;
    let (stop, stopped) = watch::channel(false);
    let slot = Arc::new(EngineSlot::new(engine));
    let recovery = tokio::spawn(recover_poisoned_log(
        slot.clone(),
        config.clone(),
        args.data.clone(),
        stopped.clone(),
    ));
    let app = App {
        slot: slot.clone(),
        token,
        shutdown: stopped,
    };
    let signal = async move {
        match crate::signals::wait_for_signal().await {
            Ok(name) => tracing::info!(signal = name, "shutting down"),
            Err(error) => tracing::error!(%error, "signal handler"),
        }
        let _ = stop.send(true);
    };
    axum::serve(listener, router(app))
        .with_graceful_shutdown(signal)
        .await
        .context("serving")?;
    let _ = recovery.await;
    slot.get().shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn start() -> (
        tempfile::TempDir,
        Engine,
        String,
        tokio::task::JoinHandle<()>,
    ) {
        // Connectors point at a closed port: nothing is dispatched successfully, which is
        // fine for testing the API surface.
        start_with(ServeConfig::defaults(
            "http://127.0.0.1:9",
            "http://127.0.0.1:9",
        ))
        .await
    }

    async fn start_with(
        config: ServeConfig,
    ) -> (
        tempfile::TempDir,
        Engine,
        String,
        tokio::task::JoinHandle<()>,
    ) {
        let directory = tempfile::tempdir().expect("temporary directory");
        let (engine, _) = Engine::open(
            config.engine_config(directory.path()).expect("config"),
            config.connector_settings().expect("connectors"),
        )
        .await
        .expect("engine");
        let (_stop, stopped) = watch::channel(false);
        let app = App {
            slot: Arc::new(EngineSlot::new(engine.clone())),
            token: Some("sekrit".into()),
            shutdown: stopped,
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router(app)).await;
        });
        (directory, engine, base, server)
    }

    /// `/healthz` says how the log syncs and how compaction fares; an unsynced log (the
    /// benchmark-only opt-in) is a warning on every probe (issue 9, defect 8).
    #[tokio::test]
    async fn healthz_reports_sync_and_compaction() {
        let health = |base: String| async move {
            let answer = reqwest::get(format!("{base}/healthz"))
                .await
                .expect("healthz");
            assert_eq!(answer.status().as_u16(), 200);
            answer.json::<Value>().await.expect("json")
        };
        let (_directory, engine, base, server) = start().await;
        let body = health(base).await;
        assert_eq!(
            (&body["status"], &body["sync"], &body["compaction"]["state"]),
            (&json!("ok"), &json!("data"), &json!("ok")),
            "{body}"
        );
        engine.shutdown().await;
        server.abort();

        let mut config = ServeConfig::defaults("http://127.0.0.1:9", "http://127.0.0.1:9");
        config.sync = "none".to_string();
        config.unsafe_no_sync_benchmark_only = true;
        let (_directory, engine, base, server) = start_with(config).await;
        let body = health(base).await;
        assert_eq!(
            (&body["status"], &body["sync"]),
            (&json!("warning"), &json!("none_unsafe")),
            "{body}"
        );
        engine.shutdown().await;
        server.abort();
    }

    #[tokio::test]
    async fn api_statuses_table() {
        let (_directory, engine, base, server) = start().await;
        let client = reqwest::Client::new();
        let bet = json!({"connector":"purple_flea","operation":"bet","params":{"game":"dice","amount":"1.00","target":50,"prediction":"over"},"idempotency_key":"k1"});
        let other = json!({"connector":"purple_flea","operation":"bet","params":{"game":"dice","amount":"2.00","target":50,"prediction":"over"},"idempotency_key":"k1"});
        let big = "x".repeat(REQUEST_BODY_BYTES_MAX + 1);
        // (method, path, body, token, expected status)
        let cases: Vec<(&str, &str, Option<String>, bool, u16)> = vec![
            ("GET", "/healthz", None, false, 200),
            ("GET", "/v1/intents", None, false, 401),
            ("POST", "/v1/intents", Some(bet.to_string()), true, 201),
            ("POST", "/v1/intents", Some(bet.to_string()), true, 200),
            ("POST", "/v1/intents", Some(other.to_string()), true, 409),
            (
                "POST",
                "/v1/intents",
                Some("{not json".to_string()),
                true,
                400,
            ),
            (
                "POST",
                "/v1/intents",
                Some("{\"connector\":1}".to_string()),
                true,
                422,
            ),
            (
                "POST",
                "/v1/intents",
                Some(json!({"connector":"nope","operation":"bet","params":{}}).to_string()),
                true,
                422,
            ),
            (
                "POST",
                "/v1/intents",
                Some(
                    json!({"connector":"purple_flea","operation":"bet","params":{"amount":"-1"}})
                        .to_string(),
                ),
                true,
                422,
            ),
            ("POST", "/v1/intents", Some(big), true, 413),
            ("GET", "/v1/intents?state=bogus", None, true, 422),
            ("GET", "/v1/intents?limit=abc", None, true, 422),
            ("GET", "/v1/intents?state=pending&limit=5", None, true, 200),
            ("GET", "/v1/intents/not-an-id", None, true, 404),
            (
                "GET",
                "/v1/intents/00000000-0000-0000-0000-000000000000",
                None,
                true,
                404,
            ),
            (
                "POST",
                "/v1/intents/00000000-0000-0000-0000-000000000000/payment",
                Some("{\"payment_id\":\"pay_1\"}".to_string()),
                true,
                404,
            ),
            ("GET", "/v1/dlq", None, true, 200),
            (
                "POST",
                "/v1/dlq/00000000-0000-0000-0000-000000000000/resolve",
                Some("{\"note\":\"\"}".to_string()),
                true,
                422,
            ),
            ("GET", "/metrics", None, true, 200),
            ("GET", "/nowhere", None, true, 404),
        ];
        for (method, path, body, token, expected) in cases {
            let url = format!("{base}{path}");
            let mut request = match method {
                "GET" => client.get(&url),
                _ => client.post(&url),
            };
            if token {
                request = request.bearer_auth("sekrit");
            }
            if let Some(body) = body {
                request = request
                    .header("content-type", "application/json")
                    .body(body);
            }
            let response = request.send().await.expect("request");
            assert_eq!(response.status().as_u16(), expected, "{method} {path}");
        }
        let text = metrics_text(&engine);
        assert!(text.contains("intents{state=\"pending\"}"), "{text}");
        assert!(
            text.contains("intents_log_sync_micros_bucket{le=\"+Inf\"}"),
            "{text}"
        );
        server.abort();
        engine.kill();
    }
}
