//! Agent and operator actions on one intent: attaching a payment to an intent awaiting
//! one, and the dead-letter queue's retry and resolve. Each is a machine event, logged
//! before it takes effect.

use serde_json::Value;

use super::submit::shard;
use super::{lock, Engine};
use crate::error::{Error, Result};
use crate::intent::{Intent, IntentId};
use crate::machine::Event;

impl Engine {
    /// Attaches funding (Aeeron `payment_id`) to an intent awaiting payment; it is then
    /// sent again with the same key.
    pub async fn attach_payment(&self, id: IntentId, payment: Value) -> Result<Intent> {
        self.act(id, Event::PaymentAttached { payment }).await
    }

    /// Operator: a dead letter is checked again and, if the provider has no record of it,
    /// re-sent with the same key, a fresh attempt budget and a fresh retry deadline (both
    /// counted from now; never past the provider's key lifetime).
    pub async fn dlq_retry(&self, id: IntentId) -> Result<Intent> {
        self.act(id, Event::OperatorRetry).await
    }

    /// Operator: closes a dead letter with a note and optional evidence (a transaction id).
    pub async fn dlq_resolve(
        &self,
        id: IntentId,
        note: String,
        evidence: Option<String>,
    ) -> Result<Intent> {
        self.act(id, Event::OperatorResolve { note, evidence })
            .await
    }

    /// One agent or operator event on an intent in memory, serialised with submits of the
    /// same shard. These events apply only to states no worker moves out of (awaiting
    /// payment, dead-lettered), so a worker still finishing its last step for this intent
    /// is no conflict; in any other state the machine refuses them (`WrongState`).
    async fn act(&self, id: IntentId, event: Event) -> Result<Intent> {
        let inner = &self.inner;
        let _serial = inner.submit_locks[shard(&id)].lock().await;
        if !lock(&inner.state).folded.intents.contains_key(&id) {
            return Err(Error::NotFound(id.to_string()));
        }
        // Provider calls never follow an agent's or operator's event: the timer it sets
        // hands the intent to the driver.
        let calls = inner.step(id, event).await?;
        debug_assert!(calls.is_empty(), "{calls:?}");
        inner.wake.notify_one();
        self.get(id).ok_or_else(|| Error::NotFound(id.to_string()))
    }
}
