//! The serve loop shared by both simulators: hyper connections, the fault layer, control routes, shutdown.
//!
//! We run our own hyper accept loop (rather than `axum::serve`) for one reason: a
//! `drop_after_commit` fault must close the TCP connection without writing a response, and
//! only the task that owns the connection can do that honestly. Each connection gets a
//! [`ConnectionKill`] handle in its requests' extensions; the fault layer triggers it and the
//! connection task drops the socket.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tokio::task::{JoinHandle, JoinSet};

use crate::audit::AuditReport;
use crate::error::{Error, Result};
use crate::fault::{FaultDecision, FaultOutcome, FaultPlan, ServiceName};
use crate::idempotency::read_key;

/// How long in-flight requests get to finish after shutdown starts, before they are cut.
const SHUTDOWN_GRACE_MS: u64 = 1_000;
/// The largest request body read, in bytes.
pub(crate) const REQUEST_BODY_BYTES_MAX: usize = 64 * 1024;
/// Pause after a failed `accept` (for example too many open files), so the loop does not spin.
const ACCEPT_ERROR_PAUSE_MS: u64 = 20;

/// State shared by every request of one server: the fault plan, attempt counters, shutdown.
pub(crate) struct SimCore {
    pub(crate) service: ServiceName,
    plan: RwLock<Arc<FaultPlan>>,
    /// (route, key) to the number of requests seen; the `attempt` input of fault decisions.
    attempts: Mutex<HashMap<(&'static str, String), u64>>,
    shutdown: watch::Receiver<bool>,
}

impl SimCore {
    pub(crate) fn plan(&self) -> Arc<FaultPlan> {
        self.plan
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn replace_plan(&self, plan: FaultPlan) {
        *self.plan.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(plan);
    }

    fn next_attempt(&self, route: &'static str, key: &str) -> u64 {
        let mut attempts = self.attempts.lock().unwrap_or_else(PoisonError::into_inner);
        let counter = attempts.entry((route, key.to_owned())).or_insert(0);
        let attempt = *counter;
        *counter += 1;
        attempt
    }

    /// Sleeps, but wakes early when the server shuts down (so held work never blocks shutdown).
    /// Returns true when the whole duration passed.
    pub(crate) async fn sleep_unless_shutdown(&self, duration: Duration) -> bool {
        if duration.is_zero() {
            return true;
        }
        let mut shutdown = self.shutdown.clone();
        if *shutdown.borrow() {
            return false;
        }
        tokio::select! {
            () = tokio::time::sleep(duration) => true,
            _ = shutdown.changed() => false,
        }
    }

    /// An error response in this service's error shape.
    pub(crate) fn error(
        &self,
        status: StatusCode,
        code: &str,
        message: &str,
        details: Value,
    ) -> Response {
        error_response(self.service, status, code, message, details)
    }
}

/// An error response in a service's error shape: Purple Flea `{"error":code,"message":..}`,
/// Aeeron `{"error":{"code":..,"message":..,"details":{..}}}`.
pub(crate) fn error_response(
    service: ServiceName,
    status: StatusCode,
    code: &str,
    message: &str,
    details: Value,
) -> Response {
    let body = match service {
        ServiceName::PurpleFlea => json!({ "error": code, "message": message }),
        ServiceName::Aeeron => {
            let details = if details.is_null() {
                json!({})
            } else {
                details
            };
            json!({ "error": { "code": code, "message": message, "details": details } })
        }
    };
    json_response(status, &body)
}

/// A JSON response from a value.
pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response {
    json_bytes_response(status, Bytes::from(body.to_string()))
}

/// A JSON response from already-serialised bytes.
pub(crate) fn json_bytes_response(status: StatusCode, body: Bytes) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The faults decided for one request, handed to its handler through the request extensions.
pub(crate) struct RequestFaults {
    pub(crate) decision: FaultDecision,
    latency_taken: AtomicBool,
}

impl RequestFaults {
    /// The latency to apply now, once: a handler takes it while the key is in progress;
    /// whatever no handler took, the fault layer applies before answering.
    pub(crate) fn take_latency(&self) -> Duration {
        if self.latency_taken.swap(true, Ordering::AcqRel) {
            Duration::ZERO
        } else {
            Duration::from_millis(self.decision.latency_ms)
        }
    }
}

/// Closes the request's TCP connection without a response when notified.
#[derive(Clone)]
struct ConnectionKill(Arc<Notify>);

#[derive(Deserialize)]
struct KeyQuery {
    key: Option<String>,
}

/// Decides and applies the fault plan around every API route (not the `/_sim` routes).
async fn fault_layer(
    State(core): State<Arc<SimCore>>,
    mut request: Request,
    next: Next,
) -> Response {
    let route = route_name(&request);
    let key = match read_key(request.headers()) {
        Ok(key) => key,
        Err(_) => Query::<KeyQuery>::try_from_uri(request.uri())
            .ok()
            .and_then(|Query(query)| query.key)
            .unwrap_or_default(),
    };
    let attempt = core.next_attempt(route, &key);
    let decision = core.plan().decide(core.service, route, &key, attempt);
    if let Some(response) = refusal_before_commit(&core, decision.outcome) {
        tokio::time::sleep(Duration::from_millis(decision.latency_ms)).await;
        return response;
    }
    let faults = Arc::new(RequestFaults {
        decision,
        latency_taken: AtomicBool::new(false),
    });
    request.extensions_mut().insert(faults.clone());
    let kill = request.extensions().get::<ConnectionKill>().cloned();
    let response = next.run(request).await;
    core.sleep_unless_shutdown(faults.take_latency()).await;
    after_commit(&core, decision.outcome, response, kill).await
}

/// The answer of a fault that strikes before the handler runs (nothing is executed), or
/// `None` to let the request through.
fn refusal_before_commit(core: &SimCore, outcome: Option<FaultOutcome>) -> Option<Response> {
    match outcome? {
        FaultOutcome::RateLimit { retry_after_s } => {
            let mut response = core.error(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests; retry after the Retry-After delay",
                json!({ "retry_after_s": retry_after_s }),
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s));
            Some(response)
        }
        FaultOutcome::Unavailable => Some(match core.service {
            ServiceName::PurpleFlea => core.error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the service is temporarily unavailable; nothing was executed",
                Value::Null,
            ),
            ServiceName::Aeeron => core.error(
                StatusCode::SERVICE_UNAVAILABLE,
                "provider_unavailable",
                "the provider is temporarily unavailable; it was not touched and no payment cleared",
                json!({ "payment_cleared": false, "provider_touched": false, "execution_id": null }),
            ),
        }),
        FaultOutcome::BadGateway => Some(core.error(
            StatusCode::BAD_GATEWAY,
            "bad_gateway",
            "the gateway could not reach the application; nothing was executed",
            Value::Null,
        )),
        FaultOutcome::RequestTimeout => Some(core.error(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            "the server timed out waiting for the request; nothing was executed",
            Value::Null,
        )),
        _ => None,
    }
}

/// What a fault that strikes after the handler committed does to its response: replace
/// it with an error, hold it, or drop the connection without one.
async fn after_commit(
    core: &SimCore,
    outcome: Option<FaultOutcome>,
    response: Response,
    kill: Option<ConnectionKill>,
) -> Response {
    match outcome {
        Some(FaultOutcome::ErrorAfterCommit) => core.error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "the server failed after committing the request; check its status before retrying",
            Value::Null,
        ),
        Some(FaultOutcome::TimeoutAfterCommit) => core.error(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            "the gateway timed out after the request was committed; check its status",
            Value::Null,
        ),
        Some(FaultOutcome::HoldAfterCommit { hold_ms }) => {
            core.sleep_unless_shutdown(Duration::from_millis(hold_ms))
                .await;
            response
        }
        Some(FaultOutcome::DropAfterCommit) => match kill {
            Some(ConnectionKill(notify)) => {
                notify.notify_one();
                // The connection task drops this future together with the socket.
                std::future::pending::<Response>().await
            }
            None => core.error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "connection lost",
                Value::Null,
            ),
        },
        _ => response,
    }
}

/// `"METHOD /template"`, interned so counters and audits can keep `&'static str`.
fn route_name(request: &Request) -> &'static str {
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str)
        .unwrap_or("");
    intern_route(request.method().as_str(), path)
}

fn intern_route(method: &str, path: &str) -> &'static str {
    static ROUTES: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    let mut routes = ROUTES.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(found) = routes.iter().find(|route| {
        route.len() == method.len() + 1 + path.len()
            && route.starts_with(method)
            && route.ends_with(path)
    }) {
        return found;
    }
    // Routes are a fixed set of templates, so this leaks a bounded few dozen bytes in total.
    let route: &'static str = Box::leak(format!("{method} {path}").into_boxed_str());
    routes.push(route);
    route
}

/// A server that is listening. Stops on [`RunningServer::shutdown`] or when dropped.
pub struct RunningServer {
    local_addr: SocketAddr,
    core: Arc<SimCore>,
    audit: Arc<dyn Fn() -> AuditReport + Send + Sync>,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for RunningServer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("RunningServer")
            .field("service", &self.core.service)
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl RunningServer {
    /// The bound address (the real port when started on port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.local_addr)
    }

    /// Which service this is.
    pub fn service(&self) -> ServiceName {
        self.core.service
    }

    /// The audit, read in-process (the same data as `GET /_sim/audit`).
    pub fn audit(&self) -> AuditReport {
        (self.audit)()
    }

    /// The fault plan in force.
    pub fn fault_plan(&self) -> FaultPlan {
        self.core.plan().as_ref().clone()
    }

    /// Replaces the fault plan (the same as `POST /_sim/faults`).
    pub fn set_fault_plan(&self, plan: FaultPlan) -> Result<()> {
        plan.validate()?;
        self.core.replace_plan(plan);
        Ok(())
    }

    /// Stops accepting, lets in-flight requests finish for a short grace period (held
    /// responses are released at once), then closes every connection.
    pub async fn shutdown(mut self) {
        self.shutdown.send_replace(true);
        if let Some(task) = self.task.take() {
            // The accept task never panics on its own; if it was aborted there is nothing to do.
            let _ = task.await;
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Binds `address` and serves `api` (with the fault layer) plus the control routes.
pub(crate) async fn start(
    service: ServiceName,
    address: SocketAddr,
    plan: FaultPlan,
    build: impl FnOnce(Arc<SimCore>) -> (Router, Arc<dyn Fn() -> AuditReport + Send + Sync>),
) -> Result<RunningServer> {
    plan.validate()?;
    let listener = TcpListener::bind(address)
        .await
        .map_err(|source| Error::Bind { address, source })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| Error::Bind { address, source })?;
    let (shutdown_sender, shutdown_receiver) = watch::channel(false);
    let core = Arc::new(SimCore {
        service,
        plan: RwLock::new(Arc::new(plan)),
        attempts: Mutex::new(HashMap::new()),
        shutdown: shutdown_receiver.clone(),
    });
    let (api, audit) = build(core.clone());
    let app = api
        .route_layer(middleware::from_fn_with_state(core.clone(), fault_layer))
        .merge(control_routes(core.clone(), audit.clone()))
        .fallback(move || async move {
            error_response(
                service,
                StatusCode::NOT_FOUND,
                "not_found",
                "no such route",
                Value::Null,
            )
        });
    let task = tokio::spawn(accept_loop(listener, app, shutdown_receiver));
    tracing::info!(service = service.as_str(), %local_addr, "simulator listening");
    Ok(RunningServer {
        local_addr,
        core,
        audit,
        shutdown: shutdown_sender,
        task: Some(task),
    })
}

async fn accept_loop(listener: TcpListener, app: Router, mut shutdown: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    // Small JSON responses: send them now rather than wait for Nagle.
                    let _ = stream.set_nodelay(true);
                    connections.spawn(serve_connection(stream, app.clone(), shutdown.clone()));
                }
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(ACCEPT_ERROR_PAUSE_MS)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(Duration::from_millis(SHUTDOWN_GRACE_MS), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::info!(
            remaining = connections.len(),
            "closing connections still open after the grace period"
        );
    }
    connections.shutdown().await;
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    app: Router,
    mut shutdown: watch::Receiver<bool>,
) {
    let kill = Arc::new(Notify::new());
    let connection_kill = ConnectionKill(kill.clone());
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(connection_kill.clone());
        let mut router = app.clone();
        async move {
            let response: std::result::Result<Response, Infallible> =
                tower_service::Service::call(&mut router, request).await;
            response
        }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    if *shutdown.borrow() {
        connection.as_mut().graceful_shutdown();
    }
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%error, "connection ended with an error");
            }
        }
        () = kill.notified() => {
            // Dropping the connection closes the socket: the client sees the connection end
            // before any response byte (a `drop_after_commit` fault).
        }
        _ = shutdown.changed() => {
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_millis(SHUTDOWN_GRACE_MS), connection.as_mut()).await;
        }
    }
}

fn control_routes(core: Arc<SimCore>, audit: Arc<dyn Fn() -> AuditReport + Send + Sync>) -> Router {
    let audit_route = get(move || {
        let audit = audit.clone();
        async move {
            json_response(
                StatusCode::OK,
                &serde_json::to_value(audit()).unwrap_or(Value::Null),
            )
        }
    });
    Router::new()
        .route("/_sim/audit", audit_route)
        .route("/_sim/faults", get(get_faults).post(post_faults))
        .with_state(core)
}

async fn get_faults(State(core): State<Arc<SimCore>>) -> Response {
    json_response(
        StatusCode::OK,
        &serde_json::to_value(core.plan().as_ref()).unwrap_or(Value::Null),
    )
}

async fn post_faults(State(core): State<Arc<SimCore>>, body: Bytes) -> Response {
    let text = String::from_utf8_lossy(&body);
    match FaultPlan::from_json_str(&text) {
        Ok(plan) => {
            core.replace_plan(plan);
            get_faults(State(core)).await
        }
        Err(error) => {
            let code = match core.service {
                ServiceName::PurpleFlea => "invalid_request",
                ServiceName::Aeeron => "invalid_input",
            };
            core.error(
                StatusCode::BAD_REQUEST,
                code,
                &error.to_string(),
                Value::Null,
            )
        }
    }
}

/// Reads a request body up to [`REQUEST_BODY_BYTES_MAX`]; `None` when it is larger or broken.
pub(crate) async fn read_body(body: Body) -> Option<Bytes> {
    axum::body::to_bytes(body, REQUEST_BODY_BYTES_MAX)
        .await
        .ok()
}

/// The fault decision a request carries (none when the fault layer did not run).
pub(crate) fn request_faults(request: &Request) -> Option<Arc<RequestFaults>> {
    request.extensions().get::<Arc<RequestFaults>>().cloned()
}

/// Adds `Idempotent-Replayed: true`.
pub(crate) fn mark_replayed(mut response: Response) -> Response {
    response.headers_mut().insert(
        crate::idempotency::IDEMPOTENT_REPLAYED_HEADER,
        HeaderValue::from_static("true"),
    );
    response
}
