//! The Purple Flea simulator: dice bets, escrow and wallet transfers behind an idempotency cache.
//!
//! `ledger` holds the money and state, `request` checks bodies into commands, `handlers`
//! are the axum routes; this file holds the options, the server's shared state and start-up.

mod handlers;
mod ledger;
mod request;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::fault::{FaultPlan, ServiceName};
use crate::money::parse_amount_minor;
use crate::server::{self, RunningServer, SimCore};

use ledger::Ledger;

/// The wallet balance a server starts with, in minor units (10,000.00 USDC).
pub const BALANCE_MINOR_INITIAL_DEFAULT: i64 = 10_000 * 100;
/// The only currency of the Purple Flea wallet.
const CURRENCY: &str = "USDC";

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
            (handlers::routes(state), audit)
        })
        .await
    }
}

/// What every request of one server shares: the core (fault plan, shutdown), the API key
/// and the ledger behind its mutex.
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
