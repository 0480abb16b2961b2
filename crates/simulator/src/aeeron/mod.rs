//! The Aeeron simulator: quotes, payments and paid executions with Aeeron's JSON error codes.
//!
//! `price` is the price list, `request` checks bodies, `ledger` holds payments and
//! executions (the money and state), `handlers` are the axum routes; this file holds the
//! options, the server's shared state and start-up.

mod handlers;
mod ledger;
mod price;
mod request;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;

use crate::error::Result;
use crate::fault::{FaultPlan, ServiceName};
use crate::server::{self, RunningServer, SimCore};

use ledger::AeeronLedger;

/// The currency every action is priced in.
const PRICE_CURRENCY: &str = "USDC";
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
            (handlers::routes(state), audit)
        })
        .await
    }
}

/// What every request of one server shares: the core (fault plan, shutdown) and the
/// ledger behind its mutex.
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
