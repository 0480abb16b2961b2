//! The `Connector` trait the scheduler drives, and the request it hands over.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use crate::classify::Exchange;
use crate::error::Result;
use crate::keys::IdempotencyKey;
use crate::outcome::{Outcome, StatusCheck};

/// Everything a connector needs to send (or look up) one intent. The scheduler builds it
/// from the logged intent; the same request is used for every attempt and status check.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DispatchRequest {
    /// The operation name, e.g. `bet` or `execute` (see each connector's list).
    pub operation: String,
    /// The operation's parameters, checked by [`Connector::validate`].
    pub params: Value,
    /// Sent as `Idempotency-Key` on every attempt of this intent.
    pub idempotency_key: IdempotencyKey,
    /// Funding attached to the intent: Aeeron's `payment_id` as a string (or an object
    /// with a `payment_id` field). Ignored by Purple Flea.
    pub payment: Option<Value>,
    /// The provider's id for the resource, when known: learnt from an earlier response
    /// (an escrow or execution id) and used by status checks instead of the key look-up.
    pub resource_id: Option<String>,
}

impl DispatchRequest {
    /// A request with no payment and no known resource id.
    pub fn new(
        operation: impl Into<String>,
        params: Value,
        idempotency_key: IdempotencyKey,
    ) -> Self {
        Self {
            operation: operation.into(),
            params,
            idempotency_key,
            payment: None,
            resource_id: None,
        }
    }
}

/// One provider, spoken to over HTTP. Implementations hold one pooled client, are cheap
/// to share (`Arc<dyn Connector>`), and never panic on what the network sends back.
#[async_trait]
pub trait Connector: Send + Sync {
    /// A short stable name (`purple_flea`, `aeeron`), used in logs and intent records.
    fn name(&self) -> &str;

    /// How long the provider remembers an idempotency key. The engine never re-sends a
    /// key older than this; past it, only status checks, then the DLQ.
    fn key_lifetime(&self) -> Duration;

    /// Checks an intent before it is logged: unknown operation, missing or ill-typed
    /// parameters, bad amounts. Pure; never touches the network.
    fn validate(&self, operation: &str, params: &Value) -> Result<()>;

    /// Sends one attempt and classifies what came back. Never fails: every failure is an
    /// [`Outcome`]. A request that does not validate is a `Permanent` outcome, never sent.
    async fn dispatch(&self, request: &DispatchRequest) -> Outcome;

    /// Asks the provider whether this intent was executed (after an ambiguous outcome,
    /// an already-done answer, or a crash mid-flight).
    async fn check_status(&self, request: &DispatchRequest) -> StatusCheck;

    /// The pure classification this connector applies to a dispatch exchange, exposed so
    /// tools and tests can classify recorded exchanges without a network.
    fn classify(&self, exchange: &Exchange) -> Outcome;
}
