//! The engine: a library API for agent daemons (submit, wait, look up, attach payment,
//! operator actions on dead letters, shutdown) and the driver that performs what the pure
//! machine decides: log first, then act (G2), per-connector concurrency, timers, status
//! checks before any re-send (G3), connector-wide pauses on 429, compaction.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use connectors::{
    canonical_json, Connector, DispatchRequest, IdempotencyKey, Outcome, StatusCheck,
};
use intent_log::{FileSystem, Log, StdFileSystem};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::{oneshot, Notify, Semaphore};
use tracing::Instrument;

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::guards::{SpendingGuard, Window};
use crate::index::{SledStore, StateStore, INDEX_DIR};
use crate::intent::{Intent, IntentId, IntentSpec, State, StateName};
use crate::machine::{self, Context};
use crate::policy::{millis, RetryPolicy, StatusCheckPolicy};
use crate::record::{apply, Folded, Record, RECORD_KIND};

/// Largest canonical JSON of one intent's params.
pub const PARAMS_BYTES_MAX: usize = 64 * 1024;
/// Concurrent submits are serialised per key through this many locks.
const SUBMIT_LOCKS: usize = 64;
/// How long finished intents stay in the index by default: 30 days.
pub const HISTORY_RETENTION_MS_DEFAULT: u64 = 30 * 24 * 3_600_000;
/// Records per append when compaction writes snapshots.
const SNAPSHOT_RECORDS_PER_BATCH: usize = 512;

/// One connector and how the engine drives it.
#[derive(Clone)]
pub struct ConnectorSettings {
    pub connector: Arc<dyn Connector>,
    /// Attempts and status checks in flight at once for this connector.
    pub concurrency: usize,
    pub retry: RetryPolicy,
    pub guard: Option<SpendingGuard>,
}

impl ConnectorSettings {
    pub fn new(connector: Arc<dyn Connector>) -> ConnectorSettings {
        ConnectorSettings {
            connector,
            concurrency: 32,
            retry: RetryPolicy::default(),
            guard: None,
        }
    }
}

/// How an engine is opened.
#[derive(Clone)]
pub struct EngineConfig {
    /// Holds `wal/` (the log).
    pub data_dir: PathBuf,
    pub log: intent_log::Options,
    pub status_checks: StatusCheckPolicy,
    /// Finished intents (and their keys) stay known this long after they finish; a key
    /// resubmitted later is a new intent.
    pub key_retention_ms: u64,
    /// Finished intents (not dead letters) stay in the index this long after their last
    /// update, then history retention removes them (`history::prune_history`). Default 30
    /// days; at least `key_retention_ms` and every guard window, so nothing still in memory
    /// is pruned.
    pub history_retention_ms: u64,
    /// Compact when the log is larger than this.
    pub compact_log_bytes: u64,
    /// Time source (tests anchor it and pause tokio's clock).
    pub clock: Option<Clock>,
    /// Seed of the jitter; random when `None`.
    pub seed: Option<u64>,
    /// The file system of the log (tests pass a simulated one).
    pub fs: Option<Arc<dyn FileSystem>>,
    /// Keep the sled index in `<data_dir>/index/` (history beyond the key-retention
    /// window). It uses the real disk: turn it off with a simulated file system.
    pub index: bool,
    /// Tests on tokio's paused clock only: while the engine waits for the log's writer
    /// thread, hold the clock still (a blocking task inhibits auto-advance), so simulated
    /// time does not race ahead of real I/O.
    #[doc(hidden)]
    pub hold_paused_clock_during_io: bool,
}

impl EngineConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> EngineConfig {
        EngineConfig {
            data_dir: data_dir.into(),
            log: intent_log::Options::default(),
            status_checks: StatusCheckPolicy::default(),
            key_retention_ms: 24 * 3_600_000,
            history_retention_ms: HISTORY_RETENTION_MS_DEFAULT,
            compact_log_bytes: 256 << 20,
            clock: None,
            seed: None,
            fs: None,
            index: true,
            hold_paused_clock_during_io: false,
        }
    }
}

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

/// A filter for [`Engine::list`].
#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    pub state: Option<StateName>,
    pub connector: Option<String>,
    /// Only intents after this id in the listing order (a cursor).
    pub after: Option<IntentId>,
    pub limit: usize,
}

struct ConnectorEntry {
    settings: ConnectorSettings,
    permits: Arc<Semaphore>,
}

#[derive(Default)]
struct EngineState {
    folded: Folded,
    keys: HashMap<(String, String), IntentId>,
    timers: BTreeSet<(u64, IntentId)>,
    in_flight: HashSet<IntentId>,
    waiters: HashMap<IntentId, Vec<oneshot::Sender<()>>>,
    windows: HashMap<String, Window>,
}

struct Inner {
    log: Log,
    connectors: HashMap<String, ConnectorEntry>,
    config: EngineConfig,
    clock: Clock,
    state: Mutex<EngineState>,
    rng: Mutex<SmallRng>,
    wake: Notify,
    /// Appends hold it shared; compaction holds it exclusively so its snapshot is exact.
    barrier: tokio::sync::RwLock<()>,
    submit_locks: Vec<tokio::sync::Mutex<()>>,
    shutting_down: AtomicBool,
    workers: AtomicUsize,
    workers_done: Notify,
    max_guard_window_ms: u64,
    /// Workers in flight, so `kill` can stop them where they are.
    worker_handles: Mutex<Vec<tokio::task::AbortHandle>>,
    /// Log size right after the last compaction.
    compacted_bytes: std::sync::atomic::AtomicU64,
    /// The index (None when `config.index` is off, or once shut down or killed, so its
    /// files are released).
    store: Mutex<Option<Arc<dyn StateStore>>>,
}

/// The engine. Cheap to clone; all clones drive the same intents.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
    driver: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

/// What opening found.
#[derive(Clone, Debug)]
pub struct OpenReport {
    pub log: intent_log::RecoveryReport,
    pub intents: usize,
    /// Intents found in flight and made ambiguous (G3).
    pub recovered_in_flight: usize,
    /// The index was corrupt: it was moved aside (see `index_moved_aside`) and rebuilt
    /// from the log.
    pub index_rebuilt: bool,
    /// Where the corrupt index was moved (`<data_dir>/index.corrupt-<unix-seconds>`). It
    /// still holds the history compaction removed from the log; the rebuilt index does not.
    pub index_moved_aside: Option<PathBuf>,
    /// Intents written to the index on open because it was behind the log.
    pub index_refolded: usize,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
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

/// The amount an intent moves, for spending guards: `params.amount`, else Aeeron's
/// `params.budget.amount` (the most it may spend).
fn amount_micros(params: &Value) -> Option<u64> {
    let text = params.get("amount").and_then(Value::as_str).or_else(|| {
        params
            .get("budget")
            .and_then(|budget| budget.get("amount"))
            .and_then(Value::as_str)
    })?;
    connectors::amount::Amount::parse(text)
        .ok()
        .map(|amount| amount.micros)
}

fn settled(state: &State) -> bool {
    state.name().is_terminal() || matches!(state, State::AwaitingPayment { .. })
}

impl EngineState {
    /// Folds one record and keeps the derived indexes (keys, guard windows, timers,
    /// waiters) in step. Used live and on replay.
    fn apply(&mut self, lsn: u64, record: Record, live: bool) -> Result<Option<IntentId>> {
        let submitted = match &record {
            Record::Submitted(spec) => Some(spec.clone()),
            Record::Snapshot(intent) if !self.folded.intents.contains_key(&intent.spec.id) => {
                Some(intent.spec.clone())
            }
            _ => None,
        };
        let id = apply(&mut self.folded, lsn, record).map_err(|error| Error::Replay(error.0))?;
        if let Some(spec) = submitted {
            self.keys.insert(
                (spec.connector.clone(), spec.idempotency_key.clone()),
                spec.id,
            );
            if let Some(micros) = spec.amount_micros {
                self.windows
                    .entry(spec.connector.clone())
                    .or_default()
                    .record(spec.submitted_at_ms, micros);
            }
        }
        if let (Some(id), true) = (id, live) {
            if let Some(intent) = self.folded.intents.get(&id) {
                if let Some(due) = intent.state.due_ms() {
                    self.timers.insert((due, id));
                }
                if settled(&intent.state) {
                    for waiter in self.waiters.remove(&id).unwrap_or_default() {
                        let _ = waiter.send(());
                    }
                }
            }
        }
        Ok(id)
    }
}

impl Engine {
    /// Opens the engine on `config.data_dir`: recovers the log, replays it, makes intents
    /// caught in flight ambiguous, and starts driving. Needs no operator after a crash.
    pub async fn open(
        config: EngineConfig,
        connectors: Vec<ConnectorSettings>,
    ) -> Result<(Engine, OpenReport)> {
        let mut by_name = HashMap::new();
        for settings in connectors {
            if settings.concurrency == 0 {
                return Err(Error::Config(format!(
                    "connector {} has concurrency 0",
                    settings.connector.name()
                )));
            }
            let name = settings.connector.name().to_string();
            let permits = Arc::new(Semaphore::new(settings.concurrency));
            if by_name
                .insert(name.clone(), ConnectorEntry { settings, permits })
                .is_some()
            {
                return Err(Error::Config(format!("connector {name} registered twice")));
            }
        }
        check_history_retention(&config, &by_name)?;
        let fs: Arc<dyn FileSystem> = config.fs.clone().unwrap_or_else(|| Arc::new(StdFileSystem));
        let wal_dir = config.data_dir.join("wal");
        let log_options = config.log.clone();
        let (log, log_report) =
            tokio::task::spawn_blocking(move || Log::open_with(fs, wal_dir, log_options))
                .await
                .map_err(|error| Error::Replay(format!("open task: {error}")))??;
        if let Some(torn) = &log_report.torn_tail {
            tracing::warn!(file = %torn.file.display(), offset = torn.offset, bytes = torn.bytes, "recovery cut a torn tail");
        }
        // Replay: every record through the same fold as live operation.
        let mut state = EngineState::default();
        for entry in log.read_from(log.first_lsn())? {
            let entry = entry?;
            if entry.kind != RECORD_KIND {
                return Err(Error::Replay(format!(
                    "LSN {}: unknown record kind {}",
                    entry.lsn, entry.kind
                )));
            }
            let record = Record::decode(&entry.body)
                .map_err(|error| Error::Replay(format!("LSN {}: {error}", entry.lsn)))?;
            state.apply(entry.lsn, record, false)?;
        }
        let (store, index_moved_aside, index_refolded) = if config.index {
            let (store, moved_aside, refolded) = open_index(&config, &log, &state).await?;
            (Some(store), moved_aside, refolded)
        } else {
            (None, None, 0)
        };
        let clock = config.clock.unwrap_or_else(Clock::system);
        let max_guard_window_ms = by_name
            .values()
            .filter_map(|entry| entry.settings.guard.as_ref().map(|guard| guard.window_ms))
            .max()
            .unwrap_or(0);
        let seed = config.seed.unwrap_or_else(rand::random);
        let inner = Arc::new(Inner {
            log,
            connectors: by_name,
            clock,
            state: Mutex::new(state),
            rng: Mutex::new(SmallRng::seed_from_u64(seed)),
            wake: Notify::new(),
            barrier: tokio::sync::RwLock::new(()),
            submit_locks: (0..SUBMIT_LOCKS)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            shutting_down: AtomicBool::new(false),
            workers: AtomicUsize::new(0),
            workers_done: Notify::new(),
            max_guard_window_ms,
            compacted_bytes: std::sync::atomic::AtomicU64::new(0),
            worker_handles: Mutex::new(Vec::new()),
            store: Mutex::new(store),
            config,
        });
        // G3: whatever was on the wire when the process died may have executed.
        let now = inner.clock.now_ms();
        let in_flight: Vec<(IntentId, State)> = {
            let state = lock(&inner.state);
            state
                .folded
                .intents
                .values()
                .filter_map(|intent| {
                    machine::recovered(intent, now).map(|next| (intent.spec.id, next))
                })
                .collect()
        };
        let recovered_in_flight = in_flight.len();
        for (id, next) in in_flight {
            tracing::warn!(intent = %id, "found in flight after a restart: ambiguous until a status check decides");
            inner
                .log_and_apply(Record::Recovered {
                    id,
                    at_ms: now,
                    next,
                })
                .await?;
        }
        let intents = {
            let mut state = lock(&inner.state);
            let timers: Vec<(u64, IntentId)> = state
                .folded
                .intents
                .values()
                .filter_map(|intent| intent.state.due_ms().map(|due| (due, intent.spec.id)))
                .collect();
            state.timers.extend(timers);
            state.folded.intents.len()
        };
        let driver = tokio::spawn(drive(inner.clone()));
        let engine = Engine {
            inner,
            driver: Arc::new(Mutex::new(Some(driver))),
        };
        Ok((
            engine,
            OpenReport {
                log: log_report,
                intents,
                recovered_in_flight,
                index_rebuilt: index_moved_aside.is_some(),
                index_moved_aside,
                index_refolded,
            },
        ))
    }

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
        entry
            .settings
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
        let key = key.as_str().to_string();
        let payload = payload_sha256(&request.connector, &request.operation, &params_json);
        let map_key = (request.connector.clone(), key.clone());
        let _serial = inner.submit_locks[shard(&map_key)].lock().await;
        let now = inner.clock.now_ms();
        {
            let mut state = lock(&inner.state);
            if let Some(id) = state.keys.get(&map_key).copied() {
                if let Some(existing) = state.folded.intents.get(&id) {
                    if existing.spec.payload_sha256 == payload {
                        return Ok(Submitted {
                            intent: existing.clone(),
                            created: false,
                        });
                    }
                    return Err(Error::IdempotencyConflict { key, existing: id });
                }
            }
            let amount = amount_micros(&request.params);
            if let (Some(guard), Some(micros)) = (&entry.settings.guard, amount) {
                state
                    .windows
                    .entry(request.connector.clone())
                    .or_default()
                    .check(guard, now, micros)
                    .map_err(Error::SpendingLimit)?;
            }
        }
        let spec = IntentSpec {
            id: IntentId::random(),
            connector: request.connector,
            operation: request.operation,
            params_json,
            idempotency_key: key,
            payload_sha256: payload,
            amount_micros: amount_micros(&request.params),
            submitted_at_ms: now,
        };
        let id = spec.id;
        inner.log_and_apply(Record::Submitted(spec)).await?;
        inner.wake.notify_one();
        let intent = self
            .get(id)
            .ok_or_else(|| Error::NotFound(id.to_string()))?;
        tracing::info!(intent = %id, key = %intent.spec.idempotency_key, connector = %intent.spec.connector, "accepted");
        Ok(Submitted {
            intent,
            created: true,
        })
    }

    /// The intent as the engine knows it now: from memory, else (once compaction evicted
    /// it after the key-retention window) from the index.
    pub fn get(&self, id: IntentId) -> Option<Intent> {
        if let Some(intent) = lock(&self.inner.state).folded.intents.get(&id).cloned() {
            return Some(intent);
        }
        let store = self.inner.store()?;
        match store.get(id) {
            Ok(intent) => intent,
            Err(error) => {
                tracing::warn!(intent = %id, %error, "index lookup failed");
                None
            }
        }
    }

    /// The intent submitted with this key on this connector: from memory while the key
    /// is retained, else the one the index last saw with it. Only lookups fall back to the
    /// index: G4 (a replayed key returns the same intent) is guaranteed within the
    /// key-retention window only; a key submitted again after it is a new intent.
    pub fn get_by_key(&self, connector: &str, key: &str) -> Option<Intent> {
        {
            let state = lock(&self.inner.state);
            if let Some(id) = state.keys.get(&(connector.to_string(), key.to_string())) {
                if let Some(intent) = state.folded.intents.get(id) {
                    return Some(intent.clone());
                }
            }
        }
        let store = self.inner.store()?;
        match store.get_by_key(connector, key) {
            Ok(intent) => intent,
            Err(error) => {
                tracing::warn!(connector, %error, "index lookup by key failed");
                None
            }
        }
    }

    /// Intents in submit order, filtered: those in memory, and those the index still
    /// holds after compaction evicted them (history beyond the key-retention window).
    pub fn list(&self, filter: &ListFilter) -> Vec<Intent> {
        let limit = if filter.limit == 0 {
            usize::MAX
        } else {
            filter.limit
        };
        let cursor = filter
            .after
            .and_then(|after| self.get(after))
            .map(|intent| (intent.spec.submitted_at_ms, intent.spec.id));
        let matches = |intent: &Intent| {
            filter.state.is_none_or(|name| intent.state.name() == name)
                && filter
                    .connector
                    .as_ref()
                    .is_none_or(|connector| &intent.spec.connector == connector)
                && cursor
                    .is_none_or(|cursor| (intent.spec.submitted_at_ms, intent.spec.id) > cursor)
        };
        let (mut intents, in_memory): (Vec<Intent>, HashSet<IntentId>) = {
            let state = lock(&self.inner.state);
            let mut intents: Vec<&Intent> = state
                .folded
                .intents
                .values()
                .filter(|intent| matches(intent))
                .collect();
            intents.sort_by_key(|intent| (intent.spec.submitted_at_ms, intent.spec.id));
            let intents = intents.into_iter().take(limit).cloned().collect();
            (intents, state.folded.intents.keys().copied().collect())
        };
        if let Some(store) = self.inner.store() {
            // The memory copy decides for intents still in memory; the index adds the
            // evicted ones, read page by page until `limit` of them match.
            let mut from_store = 0;
            let mut after = cursor;
            let page = crate::index::list_page_size();
            'pages: loop {
                let batch = match store.list(filter.state, after, page) {
                    Ok(batch) => batch,
                    Err(error) => {
                        tracing::warn!(%error, "index listing failed");
                        break;
                    }
                };
                let done = batch.len() < page;
                for intent in batch {
                    after = Some((intent.spec.submitted_at_ms, intent.spec.id));
                    if in_memory.contains(&intent.spec.id) || !matches(&intent) {
                        continue;
                    }
                    intents.push(intent);
                    from_store += 1;
                    if from_store >= limit {
                        break 'pages;
                    }
                }
                if done {
                    break;
                }
            }
        }
        intents.sort_by_key(|intent| (intent.spec.submitted_at_ms, intent.spec.id));
        intents.truncate(limit);
        intents
    }

    /// How many intents in memory are in each state (live ones, and finished ones within
    /// the key-retention window; not the index's history).
    pub fn counts(&self) -> HashMap<StateName, usize> {
        let state = lock(&self.inner.state);
        let mut counts = HashMap::new();
        for intent in state.folded.intents.values() {
            *counts.entry(intent.state.name()).or_insert(0) += 1;
        }
        counts
    }

    /// Waits until the intent is settled (terminal, or awaiting payment) or `timeout`
    /// passes, and returns it as it is then.
    pub async fn wait(&self, id: IntentId, timeout: Duration) -> Result<Intent> {
        let receiver = {
            let mut state = lock(&self.inner.state);
            let Some(intent) = state.folded.intents.get(&id) else {
                drop(state);
                // Evicted by compaction: finished, so settled, if the index has it.
                return self.get(id).ok_or_else(|| Error::NotFound(id.to_string()));
            };
            if settled(&intent.state) {
                return Ok(intent.clone());
            }
            let (sender, receiver) = oneshot::channel();
            state.waiters.entry(id).or_default().push(sender);
            receiver
        };
        let _ = tokio::time::timeout(timeout, receiver).await;
        self.get(id).ok_or_else(|| Error::NotFound(id.to_string()))
    }

    /// Attaches funding (Aeeron `payment_id`) to an intent awaiting payment; it is then
    /// sent again with the same key.
    pub async fn attach_payment(&self, id: IntentId, payment: Value) -> Result<Intent> {
        self.act(id, "attach_payment", |intent, now| {
            machine::attach_payment(intent, now).map(|next| Record::PaymentAttached {
                id,
                at_ms: now,
                payment_json: payment.to_string(),
                next,
            })
        })
        .await
    }

    /// Operator: a dead letter is checked again and, if the provider has no record of it,
    /// re-sent with the same key and a fresh attempt budget.
    pub async fn dlq_retry(&self, id: IntentId) -> Result<Intent> {
        self.act(id, "retry", |intent, now| {
            machine::operator_retry(intent, now).map(|next| Record::Operator {
                id,
                at_ms: now,
                action: "retry".to_string(),
                next,
            })
        })
        .await
    }

    /// Operator: closes a dead letter with a note and optional evidence (a transaction id).
    pub async fn dlq_resolve(
        &self,
        id: IntentId,
        note: String,
        evidence: Option<String>,
    ) -> Result<Intent> {
        self.act(id, "resolve", |intent, now| {
            machine::operator_resolve(intent, note.clone(), evidence.clone()).map(|next| {
                Record::Operator {
                    id,
                    at_ms: now,
                    action: "resolve".to_string(),
                    next,
                }
            })
        })
        .await
    }

    async fn act(
        &self,
        id: IntentId,
        action: &'static str,
        decide: impl Fn(&Intent, u64) -> std::result::Result<Record, machine::NotApplicable>,
    ) -> Result<Intent> {
        let inner = &self.inner;
        let _serial = inner.submit_locks[shard(&id)].lock().await;
        let now = inner.clock.now_ms();
        let record = {
            let state = lock(&inner.state);
            let intent = state
                .folded
                .intents
                .get(&id)
                .ok_or_else(|| Error::NotFound(id.to_string()))?;
            // Agent and operator actions apply only to states no worker moves out of
            // (awaiting payment, dead-lettered), so a worker still finishing its last
            // step for this intent is no conflict.
            decide(intent, now)
                .map_err(|machine::NotApplicable(name)| Error::wrong_state(id, name, action))?
        };
        inner.log_and_apply(record).await?;
        inner.wake.notify_one();
        self.get(id).ok_or_else(|| Error::NotFound(id.to_string()))
    }

    /// Log statistics (for `/metrics`).
    pub fn log_stats(&self) -> intent_log::LogStats {
        self.inner.log.stats()
    }

    /// True once the log refused a write or a sync (G7): from then on nothing more is
    /// recorded and the engine stops driving intents until it is reopened on the same data.
    pub fn is_log_poisoned(&self) -> bool {
        self.inner.log.is_poisoned()
    }

    /// Writes snapshots of what is still needed and deletes older log segments. Runs by
    /// itself when the log passes `compact_log_bytes`; callable directly.
    pub async fn compact(&self) -> Result<usize> {
        self.inner.compact().await
    }

    /// Stops starting new work, waits for attempts and checks in flight to finish (their
    /// outcomes are logged), and closes the log.
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        inner.shutting_down.store(true, Ordering::Release);
        inner.wake.notify_one();
        let driver = lock(&self.driver).take();
        if let Some(driver) = driver {
            let _ = driver.await;
        }
        while inner.workers.load(Ordering::Acquire) > 0 {
            let notified = inner.workers_done.notified();
            if inner.workers.load(Ordering::Acquire) == 0 {
                break;
            }
            notified.await;
        }
        inner.log.close();
        if let Some(store) = lock(&inner.store).take() {
            if let Err(error) = store.flush() {
                tracing::warn!(%error, "flushing the index failed; it is re-folded from the log on open");
            }
        }
    }

    /// For tests and diagnostics: (driver still running, intents in flight, timers set).
    #[doc(hidden)]
    pub fn debug_driver(&self) -> (bool, usize, usize) {
        let alive = lock(&self.driver)
            .as_ref()
            .is_some_and(|driver| !driver.is_finished());
        let state = lock(&self.inner.state);
        (alive, state.in_flight.len(), state.timers.len())
    }

    /// Simulates `kill -9` for tests: stops the driver at once without draining. Work in
    /// flight is abandoned where it is (its log appends fail once the log is gone).
    #[doc(hidden)]
    pub fn kill(&self) {
        self.inner.shutting_down.store(true, Ordering::Release);
        if let Some(driver) = lock(&self.driver).take() {
            driver.abort();
        }
        for handle in lock(&self.inner.worker_handles).drain(..) {
            handle.abort();
        }
        self.inner.log.close();
        // Release the index (and sled's file lock) without flushing, as a crash would.
        lock(&self.inner.store).take();
    }
}

/// Opens the index in `<data_dir>/index/` (moving it aside and rebuilding it if corrupt; an
/// I/O error fails the open), refuses a log that lost records the index saw, and re-folds
/// into it whatever it is behind on.
async fn open_index(
    config: &EngineConfig,
    log: &Log,
    state: &EngineState,
) -> Result<(Arc<dyn StateStore>, Option<PathBuf>, usize)> {
    let dir = config.data_dir.join(INDEX_DIR);
    let (store, moved_aside) =
        tokio::task::spawn_blocking(move || SledStore::open_or_rebuild(&dir))
            .await
            .map_err(|error| Error::Index(format!("open task: {error}")))??;
    let applied = store.applied_lsn()?;
    let log_last = log.durable_lsn();
    if applied > log_last {
        return Err(Error::Index(format!(
            "the index in {} has applied LSN {applied} but the log ends at LSN {log_last}: \
             the log lost records the index saw; refusing to open (restore the log, or \
             delete the index directory to rebuild it from this log)",
            store.dir().display()
        )));
    }
    // `put` keeps a stored copy at the same or a later LSN, so writing every intent in
    // memory re-folds exactly those the index is behind on (including any written out of
    // LSN order before a crash).
    let mut refolded = 0;
    for intent in state.folded.intents.values() {
        if store.put(intent, intent.last_lsn)? {
            refolded += 1;
        }
    }
    store.mark_applied(log_last)?;
    if refolded > 0 {
        store.flush()?;
    }
    let rebuilt = moved_aside.is_some();
    if rebuilt || refolded > 0 {
        tracing::info!(refolded, rebuilt, "index re-folded from the log");
    }
    Ok((Arc::new(store), moved_aside, refolded))
}

/// History retention may not be shorter than key retention or any guard window: an intent
/// pruned from the index must long since have been evictable from memory (history.rs).
fn check_history_retention(
    config: &EngineConfig,
    connectors: &HashMap<String, ConnectorEntry>,
) -> Result<()> {
    let guard_window_ms = connectors
        .values()
        .filter_map(|entry| entry.settings.guard.as_ref().map(|guard| guard.window_ms))
        .max()
        .unwrap_or(0);
    let floor_ms = config.key_retention_ms.max(guard_window_ms);
    if config.history_retention_ms < floor_ms {
        return Err(Error::Config(format!(
            "history_retention_ms ({}) is shorter than key_retention_ms ({}) or a guard \
             window ({guard_window_ms} ms)",
            config.history_retention_ms, config.key_retention_ms
        )));
    }
    Ok(())
}

fn shard<T: Hash>(value: &T) -> usize {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut hasher);
    (hasher.finish() as usize) % SUBMIT_LOCKS
}

impl Inner {
    async fn log_and_apply(&self, record: Record) -> Result<u64> {
        let _shared = self.barrier.read().await;
        let body = record.encode()?;
        let _hold = self.hold_clock();
        let lsn = self.log.append(RECORD_KIND, body).await?;
        let id = lock(&self.state).apply(lsn, record, true)?;
        if let Some(id) = id {
            self.index_intent(id, lsn);
        }
        Ok(lsn)
    }

    /// See `EngineConfig::hold_paused_clock_during_io`: a blocking task that lives until
    /// the returned guard is dropped.
    fn hold_clock(&self) -> Option<std::sync::mpsc::Sender<()>> {
        if !self.config.hold_paused_clock_during_io {
            return None;
        }
        let (release, held) = std::sync::mpsc::channel::<()>();
        tokio::task::spawn_blocking(move || {
            let _ = held.recv();
        });
        Some(release)
    }

    fn store(&self) -> Option<Arc<dyn StateStore>> {
        lock(&self.store).clone()
    }

    /// Writes an intent to the index after a transition (outside the state lock). A
    /// failure is logged, not returned: the transition is durable in the log, and the
    /// index is re-folded from the log on the next open.
    fn index_intent(&self, id: IntentId, lsn: u64) {
        let Some(store) = self.store() else {
            return;
        };
        let Some(intent) = lock(&self.state).folded.intents.get(&id).cloned() else {
            return;
        };
        if let Err(error) = store.put(&intent, lsn) {
            tracing::error!(intent = %id, %error, "could not write the index; it is re-folded from the log on open");
        }
    }

    /// A uniform random number in [0, 1) for jitter.
    fn unit(&self) -> f64 {
        lock(&self.rng).gen()
    }

    async fn compact(&self) -> Result<usize> {
        let _exclusive = self.barrier.write().await;
        let now = self.clock.now_ms();
        let retention = self.config.key_retention_ms;
        let keep_window = self.max_guard_window_ms;
        let mut evicted_intents = Vec::new();
        let (snapshots, pauses) = {
            let mut state = lock(&self.state);
            let evicted: Vec<IntentId> = state
                .folded
                .intents
                .values()
                .filter(|intent| {
                    let finished = intent.state.name().is_terminal()
                        && !matches!(intent.state, State::DeadLettered { .. });
                    finished
                        && intent.updated_at_ms.saturating_add(retention) <= now
                        && intent.spec.submitted_at_ms.saturating_add(keep_window) <= now
                })
                .map(|intent| intent.spec.id)
                .collect();
            for id in &evicted {
                if let Some(intent) = state.folded.intents.remove(id) {
                    state.keys.remove(&(
                        intent.spec.connector.clone(),
                        intent.spec.idempotency_key.clone(),
                    ));
                    evicted_intents.push(intent);
                }
            }
            let mut snapshots: Vec<Intent> = state.folded.intents.values().cloned().collect();
            snapshots.sort_by_key(|intent| intent.last_lsn);
            let pauses: Vec<(String, u64)> = state
                .folded
                .paused_until_ms
                .iter()
                .filter(|(_, until)| **until > now)
                .map(|(name, until)| (name.clone(), *until))
                .collect();
            (snapshots, pauses)
        };
        // Evicted intents leave memory but stay in the index (history). Live writes already
        // put them there; this makes sure, and flushes. The log is still what compaction
        // keeps: nothing below is deleted because the index holds it.
        if let Some(store) = self.store() {
            let written: Result<()> = evicted_intents.iter().try_for_each(|intent| {
                store.put(intent, intent.last_lsn)?;
                Ok(())
            });
            if let Err(error) = written.and_then(|()| store.flush()) {
                tracing::warn!(%error, "could not keep evicted intents in the index; their history is lost from lookups");
            }
        }
        let mut records: Vec<Record> = pauses
            .into_iter()
            .map(|(connector, until_ms)| Record::ConnectorPaused {
                connector,
                until_ms,
            })
            .collect();
        records.extend(
            snapshots
                .into_iter()
                .map(|intent| Record::Snapshot(Box::new(intent))),
        );
        // A marker so an empty engine still has a record at the new start of the log.
        let mut first_lsn = None;
        for chunk in records.chunks(SNAPSHOT_RECORDS_PER_BATCH) {
            let mut batch = Vec::with_capacity(chunk.len());
            for record in chunk {
                batch.push((RECORD_KIND, record.encode()?));
            }
            let _hold = self.hold_clock();
            let lsn = self.log.append_batch(batch).await?;
            first_lsn.get_or_insert(lsn);
        }
        let cut = first_lsn.unwrap_or(self.log.durable_lsn() + 1);
        let log = &self.log;
        let deleted = log.truncate_before(cut)?;
        self.compacted_bytes
            .store(log.stats().log_bytes, Ordering::Relaxed);
        tracing::info!(
            deleted_segments = deleted,
            first_kept_lsn = cut,
            "compacted the log"
        );
        Ok(deleted)
    }
}

/// The driver loop: wakes at the earliest timer or when notified, starts due work.
async fn drive(inner: Arc<Inner>) {
    loop {
        if inner.shutting_down.load(Ordering::Acquire) {
            return;
        }
        if inner.log.is_poisoned() {
            tracing::error!("the write-ahead log is poisoned: the engine stops driving intents until it is reopened");
            return;
        }
        let now = inner.clock.now_ms();
        let mut ready = Vec::new();
        let next_due = {
            let mut state = lock(&inner.state);
            while let Some(&(due, id)) = state.timers.first() {
                // Timers are wake-ups, not decisions (see below).
                if due > now {
                    break;
                }
                state.timers.pop_first();
                let Some(intent) = state.folded.intents.get(&id) else {
                    continue;
                };
                // A timer is only a wake-up: the intent's own due time decides. A timer set
                // for an older state, or deferred by a connector pause, is harmless.
                if intent.state.due_ms().is_none_or(|own_due| own_due > now)
                    || state.in_flight.contains(&id)
                {
                    continue;
                }
                if let Some(&until) = state.folded.paused_until_ms.get(&intent.spec.connector) {
                    if until > now {
                        state.timers.insert((until, id));
                        continue;
                    }
                }
                state.in_flight.insert(id);
                ready.push(id);
            }
            state.timers.first().map(|(due, _)| *due)
        };
        if !ready.is_empty() {
            let mut handles = lock(&inner.worker_handles);
            handles.retain(|handle| !handle.is_finished());
            for id in ready {
                inner.workers.fetch_add(1, Ordering::AcqRel);
                handles.push(tokio::spawn(work(inner.clone(), id)).abort_handle());
            }
        }
        // Compact when the log passed the threshold and doubled since the last compaction
        // (what compaction keeps can itself exceed the threshold).
        let log_bytes = inner.log.stats().log_bytes;
        let floor = inner
            .compacted_bytes
            .load(Ordering::Relaxed)
            .saturating_mul(2);
        if log_bytes > inner.config.compact_log_bytes && log_bytes > floor {
            if let Err(error) = inner.compact().await {
                tracing::error!(%error, "compaction failed");
            }
        }
        let sleep = match next_due {
            Some(due) => tokio::time::sleep_until(inner.clock.instant_at(due)),
            None => tokio::time::sleep(Duration::from_secs(3600)),
        };
        tokio::select! {
            _ = inner.wake.notified() => {}
            _ = sleep => {}
        }
    }
}

/// After a failed step, an intent is not tried again sooner than this.
const FAILED_STEP_DELAY_MS: u64 = 1_000;

async fn work(inner: Arc<Inner>, id: IntentId) {
    let failed = match work_on(&inner, id).await {
        Ok(()) => false,
        Err(error) => {
            tracing::error!(intent = %id, %error, "could not record a transition; the intent stays where the log has it");
            true
        }
    };
    {
        let mut state = lock(&inner.state);
        state.in_flight.remove(&id);
        // A poisoned log stops the engine (G7): nothing is retried until it is reopened.
        if !inner.log.is_poisoned() {
            if let Some(due) = state
                .folded
                .intents
                .get(&id)
                .and_then(|intent| intent.state.due_ms())
            {
                let due = if failed {
                    due.max(inner.clock.now_ms() + FAILED_STEP_DELAY_MS)
                } else {
                    due
                };
                state.timers.insert((due, id));
            }
        }
    }
    inner.wake.notify_one();
    if inner.workers.fetch_sub(1, Ordering::AcqRel) == 1 {
        inner.workers_done.notify_waiters();
    }
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

fn resource_id_of(outcome: &Outcome) -> Option<String> {
    match outcome {
        Outcome::Success { result } => result.get("id").and_then(Value::as_str).map(str::to_string),
        _ => outcome
            .detail()
            .and_then(|detail| detail.details.as_ref())
            .and_then(|details| details.get("execution_id"))
            .and_then(Value::as_str)
            .map(str::to_string),
    }
}

async fn work_on(inner: &Arc<Inner>, id: IntentId) -> Result<()> {
    let Some(intent) = lock(&inner.state).folded.intents.get(&id).cloned() else {
        return Ok(());
    };
    let Some(entry) = inner.connectors.get(&intent.spec.connector) else {
        tracing::error!(intent = %id, connector = %intent.spec.connector, "no such connector is registered; the intent waits");
        return Ok(());
    };
    let connector = entry.settings.connector.clone();
    let retry = entry.settings.retry.clone();
    let _permit = entry
        .permits
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| Error::ShutDown)?;
    let span = tracing::info_span!("intent", intent = %id, key = %intent.spec.idempotency_key, connector = %intent.spec.connector, attempt = intent.attempts.len());
    async move {
        let request = request_of(&intent)?;
        let now = inner.clock.now_ms();
        let context = |now_ms: u64| Context {
            retry: &retry,
            checks: &inner.config.status_checks,
            key_lifetime_ms: millis(connector.key_lifetime()),
            now_ms,
            unit: inner.unit(),
        };
        match intent.state {
            State::Pending { .. } => {
                if let Some(next) = machine::before_dispatch(&intent, context(now)) {
                    tracing::warn!(state = next.name().as_str(), "not sent");
                    inner
                        .log_and_apply(Record::StatusChecked {
                            id,
                            at_ms: now,
                            result: "not_sent".to_string(),
                            detail: None,
                            next,
                        })
                        .await?;
                    return Ok(());
                }
                let attempt = intent.attempts.len() as u32 + 1;
                // G2: the attempt is durable before its first byte goes out.
                inner
                    .log_and_apply(Record::AttemptStarted {
                        id,
                        attempt,
                        at_ms: now,
                    })
                    .await?;
                tracing::info!(attempt, "sending");
                let outcome = connector.dispatch(&request).await;
                let now = inner.clock.now_ms();
                let Some(current) = lock(&inner.state).folded.intents.get(&id).cloned() else {
                    return Ok(());
                };
                let decision = machine::after_outcome(&current, &outcome, context(now));
                if let Some(until_ms) = decision.pause_connector_until_ms {
                    tracing::warn!(until_ms, "provider throttling: the whole connector pauses");
                    inner
                        .log_and_apply(Record::ConnectorPaused {
                            connector: current.spec.connector.clone(),
                            until_ms,
                        })
                        .await?;
                }
                tracing::info!(
                    outcome = outcome.kind(),
                    next = decision.next.name().as_str(),
                    "attempt finished"
                );
                inner
                    .log_and_apply(Record::AttemptFinished {
                        id,
                        attempt,
                        at_ms: now,
                        outcome: outcome.kind().to_string(),
                        detail: outcome.detail().map(crate::intent::Reason::from_detail),
                        resource_id: resource_id_of(&outcome),
                        next: decision.next,
                    })
                    .await?;
            }
            State::Ambiguous { .. } => {
                let check = connector.check_status(&request).await;
                let now = inner.clock.now_ms();
                let decision = machine::after_status_check(&intent, &check, context(now));
                let (result, detail) = match &check {
                    StatusCheck::Found { .. } => ("found", None),
                    StatusCheck::NotFound => ("not_found", None),
                    StatusCheck::Unknown { reason } => {
                        ("unknown", Some(crate::intent::Reason::from_detail(reason)))
                    }
                    _ => ("unknown", None),
                };
                tracing::info!(
                    result,
                    next = decision.next.name().as_str(),
                    "status checked"
                );
                inner
                    .log_and_apply(Record::StatusChecked {
                        id,
                        at_ms: now,
                        result: result.to_string(),
                        detail,
                        next: decision.next,
                    })
                    .await?;
            }
            _ => {}
        }
        Ok(())
    }
    .instrument(span)
    .await
}
