//! Accepting an intent: validated, deduplicated by key (G4), checked against the spending
//! guard, and durable in the log before `submit` returns (G1).

use std::hash::{Hash, Hasher};
use std::sync::atomic::Ordering;

use connectors::{canonical_json, IdempotencyKey};
use serde_json::Value;
use sha2::{Digest, Sha256};

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::state::ProviderCall;
use super::worker::{self, Start};
use super::{lock, ConnectorSettings, Engine, PARAMS_BYTES_MAX};
use crate::error::{Error, Result};
use crate::intent::{Intent, IntentId, IntentSpec};
use crate::machine;
use crate::record::Record;

/// Concurrent submits (and agent and operator actions) are serialised per key through
/// this many locks.
pub(super) const SUBMIT_LOCKS: usize = 64;

/// What an agent submits.
#[derive(Clone, Debug)]
pub struct SubmitRequest {
    pub connector: String,
    pub operation: String,
    pub params: Value,
    /// The agent's key; a random one is made when absent.
    pub idempotency_key: Option<String>,
}

/// What `submit` returns: the intent, and whether this call created it (false for a
/// replayed key with the same payload, G4).
#[derive(Clone, Debug)]
pub struct Submitted {
    pub intent: Intent,
    pub created: bool,
}

impl Engine {
    /// Records an intent durably (G1) and returns it; the engine then drives it. A replayed
    /// key with the same payload returns the existing intent; with another payload it is
    /// an `IdempotencyConflict` and nothing is recorded (G4). Bad input is rejected before
    /// the log (G8).
    pub async fn submit(&self, request: SubmitRequest) -> Result<Submitted> {
        let inner = &self.inner;
        if inner.shutting_down.load(Ordering::Acquire) {
            return Err(Error::ShutDown);
        }
        let entry = inner
            .connectors
            .get(&request.connector)
            .ok_or_else(|| Error::UnknownConnector(request.connector.clone()))?;
        let checked = check_request(&entry.settings, request)?;
        let map_key = (checked.connector.clone(), checked.key.clone());
        let _serial = inner.submit_locks[shard(&map_key)].lock().await;
        let now = inner.clock.now_ms();
        let reserved = match self.existing_or_reserve(&entry.settings, &checked, now)? {
            Admission::Existing(intent) => {
                let intent = *intent;
                return Ok(Submitted {
                    intent,
                    created: false,
                });
            }
            Admission::New { reserved_micros } => reserved_micros,
        };
        let spec = IntentSpec {
            id: IntentId::random(),
            connector: checked.connector,
            operation: checked.operation,
            params_json: checked.params_json,
            idempotency_key: checked.key,
            payload_sha256: checked.payload,
            amount_micros: checked.amount_micros,
            submitted_at_ms: now,
        };
        let id = spec.id;
        let connector = spec.connector.clone();
        if let Err(error) = self.accept(spec, &entry.permits).await {
            // Not recorded: give the reservation back. (A submit cancelled while its append
            // is under way keeps it: the record may be durable, and over-counting is the
            // safe side of a spending limit; it expires with the window.)
            if let Some(micros) = reserved {
                if let Some(window) = lock(&inner.state).windows.get_mut(&connector) {
                    window.release(now, micros);
                }
            }
            return Err(error);
        }
        let intent = self
            .get(id)
            .ok_or_else(|| Error::NotFound(id.to_string()))?;
        tracing::info!(intent = %id, key = %intent.spec.idempotency_key, connector = %intent.spec.connector, "accepted");
        Ok(Submitted {
            intent,
            created: true,
        })
    }

    /// Under the key's lock: the intent already submitted with this key (same payload), a
    /// conflict (another payload), or admission, with the amount reserved in the spending
    /// window when the connector has a guard. Check and reserve happen under one lock, so
    /// concurrent submits with other keys see this amount at once, not only after its
    /// append is synced.
    fn existing_or_reserve(
        &self,
        settings: &ConnectorSettings,
        checked: &CheckedRequest,
        now: u64,
    ) -> Result<Admission> {
        let map_key = (checked.connector.clone(), checked.key.clone());
        let (in_memory, may_be_retired) = {
            let mut state = lock(&self.inner.state);
            let in_memory = state
                .keys
                .get(&map_key)
                .and_then(|id| state.folded.intents.get(id))
                .map(|existing| Box::new(existing.clone()));
            let may_be_retired = in_memory.is_none()
                && state
                    .retired_keys
                    .may_hold(&checked.connector, &checked.key);
            state.index_key_lookups += u64::from(may_be_retired);
            (in_memory, may_be_retired)
        };
        // Not in memory: a finished intent retired to the index may hold the key. The
        // key's lock is held, so nothing enters memory with it meanwhile; an intent is
        // in the index before it leaves memory, and its key enters `retired_keys` under
        // the lock that removes it from memory (checked above under the same lock), so
        // one of the two looks finds it (engine/retired_keys.rs).
        let existing = match (in_memory, may_be_retired) {
            (Some(existing), _) => Some(existing),
            (None, true) => self.retired_with_key(checked, now)?,
            (None, false) => None,
        };
        if let Some(existing) = existing {
            if existing.spec.payload_sha256 == checked.payload {
                return Ok(Admission::Existing(existing));
            }
            let key = checked.key.clone();
            let id = existing.spec.id;
            return Err(Error::IdempotencyConflict { key, existing: id });
        }
        let mut state = lock(&self.inner.state);
        let reserved_micros = match (&settings.guard, checked.amount_micros) {
            (Some(guard), Some(micros)) => {
                let window = state.windows.entry(checked.connector.clone()).or_default();
                window
                    .check(guard, now, micros)
                    .map_err(Error::SpendingLimit)?;
                window.record(now, micros);
                Some(micros)
            }
            _ => None,
        };
        Ok(Admission::New { reserved_micros })
    }

    /// The finished intent the index holds with this key, while inside the key-retention
    /// window (G4 holds within it; past it the key makes a new intent, as it would once
    /// compaction forgot it). A failed lookup refuses the submit: without it, nothing
    /// proves the key is new.
    fn retired_with_key(&self, checked: &CheckedRequest, now: u64) -> Result<Option<Box<Intent>>> {
        let inner = &self.inner;
        let Some(store) = inner.store() else {
            return Ok(None);
        };
        let found = store
            .get_by_key(&checked.connector, &checked.key)
            .map_err(|error| {
                tracing::error!(connector = %checked.connector, %error, "the index could not be read to deduplicate a key: submit refused");
                error
            })?;
        let expiry = super::checkpoint_entries::Expiry {
            now_ms: now,
            retention_ms: inner.config.key_retention_ms,
            guard_window_ms: inner.max_guard_window_ms,
        };
        Ok(found.filter(|intent| !expiry.expired(intent)).map(Box::new))
    }

    /// Logs the machine's `Submitted` record (durable when this returns: G1) and either
    /// starts the first attempt at once (see [`Engine::first_attempt_now`]) or sets the
    /// intent's first timer for the driver.
    async fn accept(&self, spec: IntentSpec, permits: &Arc<Semaphore>) -> Result<()> {
        let inner = &self.inner;
        let id = spec.id;
        let now = self.first_attempt_now(&spec, permits)?;
        let accepted = machine::submitted(spec);
        if let Some(FirstAttempt {
            records,
            calls,
            permit,
        }) = now
        {
            let mut all = accepted.records;
            all.extend(records);
            inner.log_and_apply_all(all).await?;
            // No timer is set and no other worker can hold it: it is ours to drive.
            lock(&inner.state).in_flight.insert(id);
            worker::spawn(inner, id, Start::Calls { calls, permit });
            return Ok(());
        }
        for record in accepted.records {
            inner.log_and_apply(record).await?;
        }
        // `perform_in_memory` also wakes the driver; a submit leads to no provider call.
        let calls = inner.perform_in_memory(id, accepted.actions);
        debug_assert!(calls.is_empty(), "{calls:?}");
        Ok(())
    }

    /// The fast path: an intent whose connector is not paused and has a free permit has its
    /// first attempt decided now (by the machine, on the intent as `Submitted` makes it),
    /// so that `Submitted` and `AttemptStarted` are made durable by one sync and the
    /// worker starts without a trip through the driver: one sync fewer before the
    /// provider is called. G1 holds (the submit returns once both are durable) and G2 holds
    /// (the attempt is durable before the worker sends it). `None` when the machine decides
    /// anything but a send, or the connector is paused or busy: the driver starts it then.
    fn first_attempt_now(
        &self,
        spec: &IntentSpec,
        permits: &Arc<Semaphore>,
    ) -> Result<Option<FirstAttempt>> {
        let inner = &self.inner;
        let now = inner.clock.now_ms();
        let paused = lock(&inner.state)
            .folded
            .paused_until_ms
            .get(&spec.connector)
            .is_some_and(|until| *until > now);
        if paused || spec.submitted_at_ms > now {
            return Ok(None);
        }
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            return Ok(None);
        };
        let fresh = Intent::new(spec.clone(), 0);
        let transition = inner.decide(&fresh, machine::Event::Due)?;
        let mut calls = Vec::new();
        for action in transition.actions {
            match action {
                machine::Action::Dispatch { attempt } => {
                    calls.push(ProviderCall::Dispatch { attempt });
                }
                _ => return Ok(None),
            }
        }
        if calls.is_empty() {
            return Ok(None);
        }
        Ok(Some(FirstAttempt {
            records: transition.records,
            calls,
            permit,
        }))
    }
}

/// The first attempt a submit starts at once: its records (logged with `Submitted`), the
/// provider call, and the connector permit it runs under.
struct FirstAttempt {
    records: Vec<Record>,
    calls: Vec<ProviderCall>,
    permit: OwnedSemaphorePermit,
}

/// A submit request that passed the connector's validation, in canonical form.
struct CheckedRequest {
    connector: String,
    operation: String,
    params_json: String,
    key: String,
    payload: [u8; 32],
    amount_micros: Option<u64>,
}

/// What the key's lock found.
enum Admission {
    /// The intent already submitted with this key and payload (G4).
    Existing(Box<Intent>),
    /// A new intent; the amount reserved in the spending window, if any.
    New { reserved_micros: Option<u64> },
}

/// Validates a request (the connector's own checks, the params' size, the key's form)
/// and puts it in canonical form. Nothing is logged for a request refused here (G8).
fn check_request(settings: &ConnectorSettings, request: SubmitRequest) -> Result<CheckedRequest> {
    settings
        .connector
        .validate(&request.operation, &request.params)
        .map_err(|error| Error::InvalidInput(error.to_string()))?;
    let params_json = canonical_json(&request.params);
    if params_json.len() > PARAMS_BYTES_MAX {
        return Err(Error::InvalidInput(format!(
            "params are {} bytes, at most {PARAMS_BYTES_MAX}",
            params_json.len()
        )));
    }
    let key = match request.idempotency_key {
        Some(key) => {
            IdempotencyKey::new(key).map_err(|error| Error::InvalidInput(error.to_string()))?
        }
        None => IdempotencyKey::random(),
    };
    let payload = payload_sha256(&request.connector, &request.operation, &params_json);
    Ok(CheckedRequest {
        // The connector reads its provider's params: the scheduler never does.
        amount_micros: settings
            .connector
            .amount_micros(&request.operation, &request.params),
        connector: request.connector,
        operation: request.operation,
        params_json,
        key: key.as_str().to_string(),
        payload,
    })
}

fn payload_sha256(connector: &str, operation: &str, params_json: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(connector.as_bytes());
    hasher.update([0]);
    hasher.update(operation.as_bytes());
    hasher.update([0]);
    hasher.update(params_json.as_bytes());
    hasher.finalize().into()
}

pub(super) fn shard<T: Hash>(value: &T) -> usize {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut hasher);
    (hasher.finish() as usize) % SUBMIT_LOCKS
}
