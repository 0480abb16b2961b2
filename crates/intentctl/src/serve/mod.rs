//! `intentctl serve`: the engine as a sidecar behind a small JSON HTTP API (axum).
//!
//! The routes, their limits and their bodies are in [`crate::api`]; the router below is
//! built from [`crate::api::ROUTES`]. Errors are `{"error":"<code>","message":"<text>"}`;
//! bad input is 400 or 422, never 500.
//!
//! Disk full (or any failed log write or sync): the log poisons itself (G7) and the engine
//! stops. The server keeps answering: `POST /v1/intents` (and every other change) is 503
//! `log_unavailable`, reads answer from memory, and `GET /healthz` is 503
//! `{"status":"degraded","log":"poisoned",..}` (200 `{"status":"ok","log":"ok"}` otherwise).
//! A background task (recovery.rs) stops the poisoned engine and reopens it on the same
//! data directory until a space probe and the reopen succeed; then intents are accepted
//! again and the acknowledged ones are driven on.

mod auth;
mod dlq;
mod error;
mod health;
mod intents;
mod metrics;
mod recovery;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::Router;
use scheduler::Engine;
use tokio::sync::watch;

use crate::api::{Endpoint, Method, Route, REQUEST_BODY_BYTES_MAX, ROUTES};
use crate::config::ServeConfig;
use recovery::{open_engine, recover_poisoned_log, EngineSlot};

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

/// The handler of `route`, answering only the route's method.
fn method_router(route: &Route) -> MethodRouter<App> {
    let method = match route.method {
        Method::Get => MethodFilter::GET,
        Method::Post => MethodFilter::POST,
    };
    match route.endpoint {
        Endpoint::SubmitIntent => on(method, intents::submit),
        Endpoint::ListIntents => on(method, intents::list_intents),
        Endpoint::GetIntent => on(method, intents::get_intent),
        Endpoint::WaitIntent => on(method, intents::wait_intent),
        Endpoint::AttachPayment => on(method, intents::attach_payment),
        Endpoint::ListDeadLetters => on(method, dlq::list_dlq),
        Endpoint::RetryDeadLetter => on(method, dlq::dlq_retry),
        Endpoint::ResolveDeadLetter => on(method, dlq::dlq_resolve),
        Endpoint::Stats => on(method, metrics::stats),
        Endpoint::Metrics => on(method, metrics::metrics),
        Endpoint::Health => on(method, health::healthz),
        Endpoint::OpenApi => on(method, crate::openapi::serve_document),
    }
}

/// Every route of [`ROUTES`]; the token guards the ones that require it (not the
/// fallback's 404).
fn router(app: App) -> Router {
    let (mut guarded, mut open) = (Router::new(), Router::new());
    for route in &ROUTES {
        if route.token_required {
            guarded = guarded.route(route.path, method_router(route));
        } else {
            open = open.route(route.path, method_router(route));
        }
    }
    guarded
        .route_layer(middleware::from_fn_with_state(
            app.clone(),
            auth::require_token,
        ))
        .merge(open)
        .fallback(error::fallback)
        .layer(DefaultBodyLimit::max(REQUEST_BODY_BYTES_MAX))
        .with_state(app)
}

/// The bearer token from the variable `--token-env` names, if it names one.
fn token(args: &ServeArgs) -> anyhow::Result<Option<Arc<str>>> {
    let Some(variable) = &args.token_env else {
        return Ok(None);
    };
    let token = std::env::var(variable)
        .with_context(|| format!("environment variable {variable} is not set"))?;
    if token.is_empty() {
        bail!("environment variable {variable} is empty");
    }
    Ok(Some(token.into()))
}

/// Opens the engine (creating the data directory), binds, and prints the address.
async fn open(
    args: &ServeArgs,
    config: &ServeConfig,
) -> anyhow::Result<(Engine, tokio::net::TcpListener)> {
    std::fs::create_dir_all(&args.data)
        .with_context(|| format!("creating {}", args.data.display()))?;
    let (engine, report) = open_engine(config, &args.data, false).await?;
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
    Ok((engine, listener))
}

/// Runs the sidecar until SIGINT or SIGTERM, then drains the engine.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let token = token(&args)?;
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
    // Before `listening` is printed: a SIGTERM right after it drains the engine.
    let signals = crate::signals::Signals::install()?;
    let (engine, listener) = open(&args, &config).await?;
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
        let name = signals.wait().await;
        tracing::info!(signal = name, "shutting down");
        // Nobody listening any more only means everyone has stopped already.
        let _ = stop.send(true);
    };
    axum::serve(listener, router(app))
        .with_graceful_shutdown(signal)
        .await
        .context("serving")?;
    if let Err(error) = recovery.await {
        tracing::error!(%error, "the log recovery task failed");
    }
    slot.get().shutdown().await;
    Ok(())
}
