//! A worker drives one intent through machine steps: it asks the machine what an event
//! leads to, logs the records, and performs the actions (send, check, set a timer, pause
//! a connector, wake waiters), feeding each answer back as the next event. It decides
//! nothing itself. It also keeps a failed or panicking step from stranding its intent.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use connectors::{Connector, DispatchRequest, ErrorDetail, IdempotencyKey, Outcome, StatusCheck};
use serde_json::Value;
use tokio::sync::OwnedSemaphorePermit;
use tracing::Instrument;

use super::state::ProviderCall;
use super::{lock, Inner};
use crate::error::{Error, Result};
use crate::intent::{Intent, IntentId};
use crate::machine::Event;

/// After a failed step, an intent is not tried again sooner than this.
const FAILED_STEP_DELAY_MS: u64 = 1_000;
/// An intent whose connector is not registered is looked at again this often (it waits,
/// visibly, for an engine opened with its connector).
const UNREGISTERED_RECHECK_MS: u64 = 60_000;

/// What a step asks of the driver besides the intent's own due time.
enum Step {
    Done,
    /// Do not look at the intent again before this wall time.
    WaitUntil(u64),
}

/// Releases a worker's bookkeeping however it ends (returns, fails, panics, is aborted),
/// so an intent never stays "in flight" and `shutdown` never waits for a worker that is
/// gone.
struct WorkerGuard {
    inner: Arc<Inner>,
    id: IntentId,
    /// The intent's timer is set no earlier than this.
    not_before_ms: u64,
}

impl Drop for WorkerGuard {
    fn drop(&mut self) {
        let inner = &self.inner;
        let timer_set = {
            let mut state = lock(&inner.state);
            state.in_flight.remove(&self.id);
            // A poisoned log stops the engine (G7): nothing is retried until it is reopened.
            let due = state
                .folded
                .intents
                .get(&self.id)
                .and_then(|intent| intent.state.due_ms())
                .filter(|_| !inner.log.is_poisoned());
            if let Some(due) = due {
                state.timers.insert((due.max(self.not_before_ms), self.id));
            }
            due.is_some()
        };
        // The driver only needs to know about a new timer (it checks the log's size, for
        // compaction, on its own every second).
        if timer_set {
            inner.wake.notify_one();
        }
        if inner.workers.fetch_sub(1, Ordering::AcqRel) == 1 {
            inner.workers_done.notify_waiters();
        }
    }
}

/// Where a worker starts.
pub(super) enum Start {
    /// At the intent's own due event (the driver found it due).
    Due,
    /// At the provider calls of a step already logged, holding the connector permit they
    /// need (a submit that started its first attempt at once: `submit.rs`).
    Calls {
        calls: Vec<ProviderCall>,
        permit: OwnedSemaphorePermit,
    },
}

/// Starts a worker on intent `id`. The caller put `id` in `in_flight` under the state lock
/// where it found the intent free (so no two workers ever drive one intent); the worker
/// takes it out when it ends.
pub(super) fn spawn(inner: &Arc<Inner>, id: IntentId, start: Start) {
    inner.workers.fetch_add(1, Ordering::AcqRel);
    let handle = tokio::spawn(work(inner.clone(), id, start));
    let mut handles = lock(&inner.worker_handles);
    handles.retain(|handle| !handle.is_finished());
    handles.push(handle.abort_handle());
}

async fn work(inner: Arc<Inner>, id: IntentId, start: Start) {
    lock(&inner.state).worker_starts += 1;
    // Until the step ends normally, it counts as failed (a panic unwinds through here).
    let mut guard = WorkerGuard {
        inner: inner.clone(),
        id,
        not_before_ms: inner.clock.now_ms().saturating_add(FAILED_STEP_DELAY_MS),
    };
    match work_on(&inner, id, start).await {
        Ok(Step::Done) => guard.not_before_ms = 0,
        Ok(Step::WaitUntil(not_before_ms)) => guard.not_before_ms = not_before_ms,
        Err(error) => {
            tracing::error!(intent = %id, %error, "could not record a transition; the intent stays where the log has it and is looked at again in a second");
            make_stranded_attempt_ambiguous(&inner, id).await;
        }
    }
}

/// After a failed step: an intent left `Sent` (its attempt's outcome could not be
/// recorded) has no timer and would wait for a restart. The attempt may have executed,
/// so it becomes ambiguous now, exactly as recovery after a crash would make it (G3).
async fn make_stranded_attempt_ambiguous(inner: &Arc<Inner>, id: IntentId) {
    if inner.log.is_poisoned() || inner.shutting_down.load(Ordering::Acquire) {
        return;
    }
    // Not sent: the machine leads to nothing. Sent: a `Recovered` record and a timer.
    if let Err(error) = inner.step(id, Event::InFlightLost).await {
        tracing::error!(intent = %id, %error, "could not record it either; it stays sent until the engine is reopened (recovery makes it ambiguous)");
    }
}

/// Runs a connector call; a panic in it becomes `Err` instead of unwinding through the
/// worker (whose intent would otherwise stay in flight).
async fn catch_panic<T>(
    future: impl std::future::Future<Output = T>,
) -> std::result::Result<T, ()> {
    let mut future = std::pin::pin!(future);
    std::future::poll_fn(|context| {
        let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            future.as_mut().poll(context)
        }));
        match polled {
            Ok(std::task::Poll::Ready(value)) => std::task::Poll::Ready(Ok(value)),
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            // The payload is not kept: it is the connector's text, and may hold anything.
            Err(_payload) => std::task::Poll::Ready(Err(())),
        }
    })
    .await
}

fn connector_panicked(during: &str) -> ErrorDetail {
    ErrorDetail::new(
        "connector_panicked",
        format!("the connector panicked during {during}"),
    )
}

fn request_of(intent: &Intent) -> Result<DispatchRequest> {
    let params: Value = serde_json::from_str(&intent.spec.params_json)
        .map_err(|error| Error::Replay(format!("params of {}: {error}", intent.spec.id)))?;
    let key = IdempotencyKey::new(intent.spec.idempotency_key.clone())
        .map_err(|error| Error::Replay(error.to_string()))?;
    let mut request = DispatchRequest::new(intent.spec.operation.clone(), params, key);
    request.payment =
        match &intent.payment_json {
            Some(json) => Some(serde_json::from_str(json).map_err(|error| {
                Error::Replay(format!("payment of {}: {error}", intent.spec.id))
            })?),
            None => None,
        };
    request.resource_id = intent.resource_id.clone();
    Ok(request)
}

async fn work_on(inner: &Arc<Inner>, id: IntentId, start: Start) -> Result<Step> {
    let Some(intent) = lock(&inner.state).folded.intents.get(&id).cloned() else {
        return Ok(Step::Done);
    };
    let Some(entry) = inner.connectors.get(&intent.spec.connector) else {
        // Removed from the config, or an offline operator command that opened the engine
        // without connectors. Pending, it was not sent by this process; ambiguous, it
        // stays ambiguous: it waits, unchanged, for an engine that has its connector.
        if lock(&inner.state).unregistered_reported.insert(id) {
            tracing::warn!(intent = %id, connector = %intent.spec.connector, state = intent.state.name().as_str(), "no such connector is registered; the intent waits for an engine opened with it");
        }
        let now = inner.clock.now_ms();
        return Ok(Step::WaitUntil(now.saturating_add(UNREGISTERED_RECHECK_MS)));
    };
    let connector = entry.settings.connector.clone();
    let (_permit, first_calls) = match start {
        Start::Due => {
            let permit = entry
                .permits
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| Error::ShutDown)?;
            (permit, None)
        }
        Start::Calls { calls, permit } => (permit, Some(calls)),
    };
    let span = tracing::info_span!("intent", intent = %id, key = %intent.spec.idempotency_key, connector = %intent.spec.connector, attempt = intent.attempts.len());
    async move {
        let request = request_of(&intent)?;
        // Each step's actions are performed after its records are durable (G2); an
        // answer from the provider is the next step's event.
        let mut calls = match first_calls {
            Some(calls) => calls,
            None => inner.step(id, Event::Due).await?,
        };
        loop {
            let mut event = None;
            for call in calls {
                event = Some(perform(connector.as_ref(), &request, call).await);
            }
            match event {
                Some(event) => calls = inner.step(id, event).await?,
                None => return Ok(Step::Done),
            }
        }
    }
    .instrument(span)
    .await
}

/// Performs an action that reaches the provider and returns its answer as the next
/// event. A panic in the connector is an answer too: after a send it is as ambiguous as a
/// timeout (G3); during a check it is an unknown answer.
async fn perform(
    connector: &dyn Connector,
    request: &DispatchRequest,
    call: ProviderCall,
) -> Event {
    match call {
        ProviderCall::Dispatch { attempt } => {
            let outcome = catch_panic(connector.dispatch(request))
                .await
                .unwrap_or_else(|()| {
                    tracing::error!(
                        "the connector panicked while sending; the attempt is ambiguous"
                    );
                    Outcome::Ambiguous {
                        reason: connector_panicked("dispatch"),
                    }
                });
            // The connector reads its provider's answer: the scheduler never does.
            let resource_id = connector.resource_id(&outcome);
            Event::Dispatched {
                attempt,
                outcome,
                resource_id,
            }
        }
        ProviderCall::CheckStatus => {
            let check = catch_panic(connector.check_status(request))
                .await
                .unwrap_or_else(|()| {
                    tracing::error!("the connector panicked during a status check; counted as an unknown answer");
                    StatusCheck::Unknown {
                        reason: connector_panicked("a status check"),
                    }
                });
            Event::Checked { check }
        }
    }
}
