//! The `Connector` trait the scheduler drives, and the request it hands over.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use crate::amount::Amount;
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

    /// The amount `operation` with `params` moves, in micro-units (as [`Amount::micros`]),
    /// for the engine's spending guards; `None` when it names no amount (a read, an escrow
    /// move that names only the escrow) or the amount does not parse.
    ///
    /// The connector answers, not the scheduler, because only the connector knows its
    /// provider's params (Purple Flea's `amount`, Aeeron's `budget.amount`): the scheduler
    /// never reads provider JSON. There is no default: a new connector must decide.
    fn amount_micros(&self, operation: &str, params: &Value) -> Option<u64>;

    /// The provider's id for what an attempt created or touched (a bet, an escrow, an
    /// execution), read from its outcome. The engine records it and hands it back in
    /// [`DispatchRequest::resource_id`], so status checks can look the resource up by id.
    /// `None` when the outcome names no resource, or names one its status check would
    /// refuse (with a warning; see [`resource_id_field`]).
    ///
    /// The connector answers for the same reason as [`Connector::amount_micros`]: where a
    /// provider puts the id (a success's `id`, an Aeeron error's `details.execution_id`) is
    /// provider JSON, which the scheduler never reads. There is no default.
    fn resource_id(&self, outcome: &Outcome) -> Option<String>;

    /// The pure classification this connector applies to a dispatch exchange, exposed so
    /// tools and tests can classify recorded exchanges without a network.
    fn classify(&self, exchange: &Exchange) -> Outcome;
}

/// `value[field]` as an amount in micro-units: a decimal string that [`Amount::parse`]
/// accepts, else `None` (a number, a malformed or missing amount). A building block for
/// [`Connector::amount_micros`].
pub fn amount_micros_field(value: &Value, field: &str) -> Option<u64> {
    let text = value.get(field).and_then(Value::as_str)?;
    Amount::parse(text).ok().map(|amount| amount.micros)
}

/// `value[field]` as a provider resource id: only an id this crate's status checks accept
/// (`[A-Za-z0-9_-]`, 1 to [`RESOURCE_ID_CHARS_MAX`](crate::RESOURCE_ID_CHARS_MAX)
/// characters), else `None` with a warning, so status checks fall back to the idempotency
/// key. Keeping an id the check would refuse made every check of that intent "unknown"
/// until it dead-lettered; cutting one would name another resource. A building block for
/// [`Connector::resource_id`].
pub fn resource_id_field(value: &Value, field: &str) -> Option<String> {
    let id = value.get(field).and_then(Value::as_str)?;
    if let Err(why) = crate::params::check_resource_id(id) {
        tracing::warn!(
            bytes = id.len(),
            %why,
            "the provider's resource id is not one a status check can use; status checks use the key"
        );
        return None;
    }
    Some(id.to_owned())
}
