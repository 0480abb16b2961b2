//! What the engine holds in memory ([`EngineState`]: the fold, keys, guard windows,
//! timers, waiters) and the one path by which a record reaches it: appended to the log,
//! then folded ([`Inner::log_and_apply`]). The index is not written here: it holds
//! intents memory no longer does, and is written in batches when they leave memory
//! (`compaction.rs`) and on open (`open.rs`).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use rand::Rng;
use tokio::sync::oneshot;

use super::{hold_paused_clock, lock, ConnectorSettings, Inner};
use crate::error::{Error, Result};
use crate::guards::Window;
use crate::index::StateStore;
use crate::intent::{Intent, IntentId, State, StateName};
use crate::machine::{self, Action, Context, Event};
use crate::policy::RetryPolicy;
use crate::record::CheckResult;
use crate::record::{apply, Folded, Record, RECORD_KIND};

/// Room left in a record beyond an intent's encoded size (enum tags, the format byte,
/// varints that grow).
const RECORD_SLACK_BYTES: usize = 512;

#[derive(Default)]
pub(super) struct EngineState {
    pub(super) folded: Folded,
    pub(super) keys: HashMap<(String, String), IntentId>,
    pub(super) timers: BTreeSet<(u64, IntentId)>,
    pub(super) in_flight: HashSet<IntentId>,
    pub(super) waiters: HashMap<IntentId, Vec<oneshot::Sender<()>>>,
    pub(super) windows: HashMap<String, Window>,
    /// Workers started since open (tests count them to tell a wait from a spin).
    pub(super) worker_starts: u64,
    /// Intents already reported as waiting for a connector that is not registered.
    pub(super) unregistered_reported: HashSet<IntentId>,
    /// Intents that finished while in memory (may name some that left since): with the
    /// index on, they are retired from memory in batches (`engine/retire.rs`).
    pub(super) finished: Vec<IntentId>,
    /// Intents retired from memory since the last checkpoint: in the index (and the log
    /// segments), not yet in a checkpoint. The next compaction reads them back from the
    /// index, checked against these digests, into its checkpoint.
    pub(super) retired: Vec<super::retire::Retired>,
    /// A retirement task is running.
    pub(super) retiring: bool,
    /// Finished intents inside the window that are not in memory (retired, or held by
    /// the checkpoint), by state: `counts` adds them, so it still counts every intent
    /// inside the key-retention window, as when they all stayed in memory.
    pub(super) retained: HashMap<StateName, usize>,
    /// Replay: finished intents of the checkpoint written to the index (it was behind).
    pub(super) refolded_from_checkpoint: usize,
    /// The keys of the finished intents out of memory (retired, or held by the
    /// checkpoint): a submit looks a key up in the index only if this may hold it.
    pub(super) retired_keys: super::retired_keys::RetiredKeys,
    /// Submits that looked their key up in the index (it was not in memory and
    /// `retired_keys` may hold it).
    pub(super) index_key_lookups: u64,
}

/// Finished for good: terminal and not a dead letter (which waits for an operator). Such
/// an intent takes no more records.
pub(super) fn is_finished(state: &State) -> bool {
    state.name().is_terminal() && !matches!(state, State::DeadLettered { .. })
}

impl EngineState {
    /// Folds one record and keeps the derived indexes (keys, guard windows) in step. Used
    /// live and on replay; timers and waiters follow the machine's actions instead
    /// (`Inner::perform_in_memory`).
    pub(super) fn apply(
        &mut self,
        lsn: u64,
        record: Record,
        live: bool,
    ) -> Result<Option<IntentId>> {
        let submitted = match &record {
            Record::Submitted(spec) => Some(spec.clone()),
            Record::Snapshot(intent) if !self.folded.intents.contains_key(&intent.spec.id) => {
                Some(intent.spec.clone())
            }
            _ => None,
        };
        let transition = !matches!(
            record,
            Record::Submitted(_) | Record::ConnectorPaused { .. }
        );
        let id = apply(&mut self.folded, lsn, record).map_err(|error| Error::Replay(error.0))?;
        if let (Some(id), true) = (id, transition) {
            if self
                .folded
                .intents
                .get(&id)
                .is_some_and(|intent| is_finished(&intent.state))
            {
                self.finished.push(id);
            }
        }
        if let Some(spec) = submitted {
            self.keys.insert(
                (spec.connector.clone(), spec.idempotency_key.clone()),
                spec.id,
            );
            // Live, `submit` reserved the amount when it checked the window (under the
            // same lock); on replay the log is the only source, once per intent (a
            // snapshot counts only for an intent replay has not seen yet).
            if let (Some(micros), false) = (spec.amount_micros, live) {
                self.windows
                    .entry(spec.connector.clone())
                    .or_default()
                    .record(spec.submitted_at_ms, micros);
            }
        }
        Ok(id)
    }

    /// Replay with the index on: a finished intent from the checkpoint stays out of
    /// memory (the index holds it, and the next checkpoint copies it from this one); only
    /// its amount counts in the spending window.
    pub(super) fn note_retired_snapshot(&mut self, intent: &Intent) {
        *self.retained.entry(intent.state.name()).or_insert(0) += 1;
        self.retired_keys
            .insert(&intent.spec.connector, &intent.spec.idempotency_key);
        if let Some(micros) = intent.spec.amount_micros {
            self.windows
                .entry(intent.spec.connector.clone())
                .or_default()
                .record(intent.spec.submitted_at_ms, micros);
        }
    }

    /// Removes a finished intent from memory, and its key if the key still names it.
    pub(super) fn forget(&mut self, id: IntentId) -> Option<Intent> {
        let intent = self.folded.intents.remove(&id)?;
        let key = (
            intent.spec.connector.clone(),
            intent.spec.idempotency_key.clone(),
        );
        if self.keys.get(&key) == Some(&id) {
            self.keys.remove(&key);
        }
        Some(intent)
    }
}

impl Inner {
    pub(super) async fn log_and_apply(&self, record: Record) -> Result<u64> {
        let _shared = self.barrier.read().await;
        let body = record.encode()?;
        let _hold = self.hold_clock();
        let lsn = self.log.append(RECORD_KIND, body).await?;
        lock(&self.state).apply(lsn, record, true)?;
        Ok(lsn)
    }

    /// One machine step on intent `id`: decides what `event` leads to, logs its records in
    /// order (each durable and folded before the next, so the actions see them), performs
    /// the actions that only touch memory, and returns the ones that reach the provider
    /// (`Dispatch`, `CheckStatus`) for the worker. An intent this engine does not hold
    /// leads to nothing.
    pub(super) async fn step(&self, id: IntentId, event: Event) -> Result<Vec<ProviderCall>> {
        let Some(intent) = lock(&self.state).folded.intents.get(&id).cloned() else {
            return Ok(Vec::new());
        };
        let transition = self.decide(&intent, event)?;
        for record in transition.records {
            trace_record(&record);
            let current = lock(&self.state).folded.intents.get(&id).cloned();
            let record = match &current {
                Some(current) => self.fit_record(current, record),
                None => record,
            };
            self.log_and_apply(record).await?;
        }
        Ok(self.perform_in_memory(id, transition.actions))
    }

    /// What the machine decides `event` on `intent` leads to, with its connector's
    /// policies, the time and a jitter draw.
    pub(super) fn decide(&self, intent: &Intent, event: Event) -> Result<machine::Transition> {
        let action = event_name(&event);
        let fallback = ConnectorPolicy::fallback();
        let policy = self
            .connectors
            .get(&intent.spec.connector)
            .map_or(fallback, |entry| ConnectorPolicy::of(&entry.settings));
        let context = Context {
            retry: &policy.retry,
            checks: &self.config.status_checks,
            key_lifetime_ms: policy.key_lifetime_ms,
            key_lifetime_margin_ms: policy.key_lifetime_margin_ms,
            now_ms: self.clock.now_ms(),
            unit: self.unit(),
        };
        let id = intent.spec.id;
        machine::step(intent, event, context)
            .map_err(|machine::NotApplicable(name)| Error::wrong_state(id, name, action))
    }

    /// Logs `records` in one batch (durable together, with contiguous LSNs) and folds
    /// them in order: a submit that starts its first attempt at once has its `Submitted`
    /// and `AttemptStarted` made durable by one sync (`submit.rs`).
    pub(super) async fn log_and_apply_all(&self, records: Vec<Record>) -> Result<u64> {
        let _shared = self.barrier.read().await;
        let mut bodies = Vec::with_capacity(records.len());
        for record in &records {
            bodies.push((RECORD_KIND, record.encode()?));
        }
        let _hold = self.hold_clock();
        let first = self.log.append_batch(bodies).await?;
        let mut state = lock(&self.state);
        for (lsn, record) in (first..).zip(records) {
            state.apply(lsn, record, true)?;
        }
        Ok(first)
    }

    /// Performs the actions that only touch memory (timers, waiters, connector pauses) and
    /// returns the others in order.
    pub(super) fn perform_in_memory(
        &self,
        id: IntentId,
        actions: Vec<Action>,
    ) -> Vec<ProviderCall> {
        let mut remote = Vec::new();
        for action in actions {
            match action {
                Action::SetTimer { due_ms } => {
                    lock(&self.state).timers.insert((due_ms, id));
                    self.wake.notify_one();
                }
                Action::NotifyWaiters => {
                    let waiters = lock(&self.state).waiters.remove(&id).unwrap_or_default();
                    for waiter in waiters {
                        // A waiter that gave up (timed out, dropped) needs no answer.
                        let _ = waiter.send(());
                    }
                }
                // The `ConnectorPaused` record already holds the pause (the driver reads it
                // before starting any of the connector's intents); this is for the log.
                Action::PauseConnector {
                    connector,
                    until_ms,
                } => {
                    tracing::warn!(
                        connector,
                        until_ms,
                        "provider throttling: the whole connector pauses"
                    );
                }
                Action::Dispatch { attempt } => remote.push(ProviderCall::Dispatch { attempt }),
                Action::CheckStatus => remote.push(ProviderCall::CheckStatus),
            }
        }
        remote
    }

    /// `record` (about to move `current` on), with the large JSON of its next state (a
    /// provider's result or details, up to the 1 MiB response cap) cut to a marker when
    /// keeping it whole would make this record, or a later snapshot of the intent, larger
    /// than `record_bytes_max`: the transition must always be recorded.
    pub(super) fn fit_record(&self, current: &Intent, mut record: Record) -> Record {
        let Some(bytes) = record
            .next_state_mut()
            .and_then(State::bulk_json_mut)
            .map(|json| json.len())
        else {
            return record;
        };
        // The intent as it will be once the record is applied, without the large JSON.
        let mut probe = record.clone();
        if let Some(json) = probe.next_state_mut().and_then(State::bulk_json_mut) {
            json.clear();
        }
        let mut folded = crate::record::Folded::default();
        folded.intents.insert(current.spec.id, current.clone());
        let base_bytes = apply(&mut folded, current.last_lsn.saturating_add(1), probe)
            .ok()
            .and_then(|_| folded.intents.get(&current.spec.id))
            .and_then(|intent| intent_log::codec::encode(intent).ok())
            .map_or(self.config.log.record_bytes_max, |body| body.len());
        let room_bytes = self
            .config
            .log
            .record_bytes_max
            .saturating_sub(base_bytes.saturating_add(RECORD_SLACK_BYTES));
        if bytes <= room_bytes {
            return record;
        }
        if let Some(json) = record.next_state_mut().and_then(State::bulk_json_mut) {
            let limit = room_bytes.min(crate::intent::TRUNCATED_JSON_BYTES_MAX);
            *json = crate::intent::truncated_json(json, limit);
            tracing::warn!(intent = %current.spec.id, bytes, kept_bytes = json.len(), "the provider's answer is too large to log whole: a truncation marker with its size and SHA-256 is kept instead");
        }
        record
    }

    /// See `EngineConfig::hold_paused_clock_during_io`: a blocking task that lives until
    /// the returned guard is dropped.
    pub(super) fn hold_clock(&self) -> Option<std::sync::mpsc::Sender<()>> {
        hold_paused_clock(self.config.hold_paused_clock_during_io)
    }

    pub(super) fn store(&self) -> Option<Arc<dyn StateStore>> {
        lock(&self.store).clone()
    }

    /// A uniform random number in [0, 1) for jitter.
    pub(super) fn unit(&self) -> f64 {
        lock(&self.rng).gen()
    }
}

/// An action that reaches the provider, left to the worker by [`Inner::step`].
#[derive(Clone, Copy, Debug)]
pub(super) enum ProviderCall {
    Dispatch { attempt: u32 },
    CheckStatus,
}

/// The retry policy and key lifetimes a step of one connector's intent uses.
struct ConnectorPolicy {
    retry: RetryPolicy,
    key_lifetime_ms: u64,
    key_lifetime_margin_ms: u64,
}

impl ConnectorPolicy {
    fn of(settings: &ConnectorSettings) -> ConnectorPolicy {
        ConnectorPolicy {
            retry: settings.retry.clone(),
            key_lifetime_ms: settings.key_lifetime_ms(),
            key_lifetime_margin_ms: settings.key_lifetime_margin_ms(),
        }
    }

    /// For an intent whose connector is not registered (an offline operator command):
    /// only agent and operator events reach it, and those use no policy. A pending intent
    /// is never sent without its connector (the worker waits for it).
    fn fallback() -> ConnectorPolicy {
        ConnectorPolicy {
            retry: RetryPolicy::default(),
            key_lifetime_ms: 0,
            key_lifetime_margin_ms: 0,
        }
    }
}

/// The action named in a "does not apply to this state" error.
fn event_name(event: &Event) -> &'static str {
    match event {
        Event::PaymentAttached { .. } => "attach_payment",
        Event::OperatorRetry => "retry",
        Event::OperatorResolve { .. } => "resolve",
        Event::Due => "send",
        Event::Dispatched { .. } => "record an attempt",
        Event::Checked { .. } => "record a status check",
        Event::InFlightLost => "recover",
    }
}

/// What the intent's span says about a record as it is logged.
fn trace_record(record: &Record) {
    match record {
        Record::AttemptStarted { attempt, .. } => tracing::info!(attempt, "sending"),
        Record::AttemptFinished { outcome, next, .. } => {
            tracing::info!(
                outcome = outcome.as_str(),
                next = next.name().as_str(),
                "attempt finished"
            );
        }
        Record::StatusChecked {
            result: CheckResult::NotSent,
            next,
            ..
        } => {
            tracing::warn!(state = next.name().as_str(), "not sent");
        }
        Record::StatusChecked { result, next, .. } => {
            tracing::info!(
                result = result.as_str(),
                next = next.name().as_str(),
                "status checked"
            );
        }
        Record::Recovered { .. } => {
            tracing::warn!("caught in flight (a restart, or an outcome that could not be recorded): ambiguous until a status check decides");
        }
        Record::Submitted(_)
        | Record::PaymentAttached { .. }
        | Record::Operator { .. }
        | Record::ConnectorPaused { .. }
        | Record::Snapshot(_) => {}
    }
}
