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
    canonical_json, Connector, DispatchRequest, ErrorDetail, IdempotencyKey, Outcome, StatusCheck,
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

mod compaction;
pub use compaction::{CompactionReport, CompactionStatus};

/// Largest canonical JSON of one intent's params.
pub const PARAMS_BYTES_MAX: usize = 64 * 1024;
/// Concurrent submits are serialised per key through this many locks.
const SUBMIT_LOCKS: usize = 64;
/// How long finished intents stay in the index by default: 30 days.
pub const HISTORY_RETENTION_MS_DEFAULT: u64 = 30 * 24 * 3_600_000;

/// One connector and how the engine drives it.
#[derive(Clone)]
pub struct ConnectorSettings {
    pub connector: Arc<dyn Connector>,
    /// Attempts and status checks in flight at once for this connector.
    pub concurrency: usize,
    pub retry: RetryPolicy,
    pub guard: Option<SpendingGuard>,
    /// How long the provider remembers an idempotency key; `None` takes the connector's
    /// own `key_lifetime()`. Set it from the provider's documentation or contract: the
    /// engine never re-sends a key older than this less `key_lifetime_margin`.
    pub key_lifetime: Option<Duration>,
    /// How long before the key lifetime ends the engine stops re-sending; `None` takes
    /// [`machine::key_lifetime_margin_default`] (the larger of 5 minutes and a tenth of the
    /// lifetime). It must cover the request timeout and the clock skew to the provider.
    pub key_lifetime_margin: Option<Duration>,
}

impl ConnectorSettings {
    pub fn new(connector: Arc<dyn Connector>) -> ConnectorSettings {
        ConnectorSettings {
            connector,
            concurrency: 32,
            retry: RetryPolicy::default(),
            guard: None,
            key_lifetime: None,
            key_lifetime_margin: None,
        }
    }

    /// The key lifetime in force: the setting, else the connector's own.
    pub fn key_lifetime_ms(&self) -> u64 {
        millis(
            self.key_lifetime
                .unwrap_or_else(|| self.connector.key_lifetime()),
        )
    }

    /// The safety margin in force before the key lifetime ends.
    pub fn key_lifetime_margin_ms(&self) -> u64 {
        match self.key_lifetime_margin {
            Some(margin) => millis(margin),
            None => machine::key_lifetime_margin_default(self.key_lifetime_ms()),
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
    pub(crate) hold_paused_clock_during_io: bool,
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
    /// Workers started since open (tests count them to tell a wait from a spin).
    worker_starts: u64,
    /// Intents already reported as waiting for a connector that is not registered.
    unregistered_reported: HashSet<IntentId>,
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
    /// How compaction fared (and when it may run again after a failure).
    compaction: Mutex<CompactionStatus>,
    /// True while a background compaction task runs.
    compacting: AtomicBool,
    /// One compaction at a time, whether the driver or a caller started it.
    compaction_serial: tokio::sync::Mutex<()>,
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

/// Refuses a key lifetime of zero, and a key retention shorter than the key lifetime. The
/// engine must remember a key at least as long as the provider does: if it forgot first,
/// a resubmit of the same key would become a second intent, sent again, and the provider
/// would answer it as a replay of the first (or, with another payload, as a conflict), so
/// the agent would see a new intent "succeed" without executing, or be refused. Retention
/// counts from when an intent finished, which is after its last request, so retention >=
/// lifetime means the provider has forgotten the key before the engine does.
fn check_key_lifetime(config: &EngineConfig, settings: &ConnectorSettings) -> Result<()> {
    let name = settings.connector.name();
    let lifetime_ms = settings.key_lifetime_ms();
    if lifetime_ms == 0 {
        return Err(Error::Config(format!(
            "connector {name} has a key lifetime of 0: every re-send would be refused"
        )));
    }
    if config.key_retention_ms < lifetime_ms {
        return Err(Error::Config(format!(
            "key_retention ({} ms) is shorter than connector {name}'s key lifetime ({lifetime_ms} ms): the engine would forget keys the provider still remembers",
            config.key_retention_ms
        )));
    }
    Ok(())
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
            check_key_lifetime(&config, &settings)?;
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
        // The index first: the log must not cut what the index saw acknowledged, and it
        // refuses before changing anything if recovery would.
        let hold = hold_paused_clock(config.hold_paused_clock_during_io);
        let store = if config.index {
            Some(open_store(&config).await?)
        } else {
            None
        };
        let mut log_options = config.log.clone();
        if let Some((store, _)) = &store {
            log_options.last_lsn_min = log_options.last_lsn_min.max(store.applied_lsn()?);
        }
        let (log, log_report) =
            tokio::task::spawn_blocking(move || Log::open_with(fs, wal_dir, log_options))
                .await
                .map_err(|error| Error::Replay(format!("open task: {error}")))??;
        if let Some(torn) = &log_report.torn_tail {
            tracing::warn!(file = %torn.file.display(), offset = torn.offset, bytes = torn.bytes, "recovery cut a torn tail");
        }
        // Replay on a blocking thread: it reads the checkpoint and every segment after it.
        let (log, state) = tokio::task::spawn_blocking(move || {
            let state = replay(&log)?;
            Ok::<_, Error>((log, state))
        })
        .await
        .map_err(|error| Error::Replay(format!("replay task: {error}")))??;
        let (store, index_moved_aside, index_refolded) = match store {
            Some((store, moved_aside)) => {
                let refolded = refold_index(&store, &log, &state).await?;
                (Some(store), moved_aside, refolded)
            }
            None => (None, None, 0),
        };
        drop(hold);
        let checkpoint_lsn = log.checkpoint().map(|checkpoint| checkpoint.lsn);
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
            compaction: Mutex::new(CompactionStatus {
                checkpoint_lsn,
                ..CompactionStatus::default()
            }),
            compacting: AtomicBool::new(false),
            compaction_serial: tokio::sync::Mutex::new(()),
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
        let amount = amount_micros(&request.params);
        let _serial = inner.submit_locks[shard(&map_key)].lock().await;
        let now = inner.clock.now_ms();
        // The amount reserved in the spending window, if the connector has a guard.
        let reserved = {
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
            match (&entry.settings.guard, amount) {
                (Some(guard), Some(micros)) => {
                    // Check and reserve under one lock: concurrent submits with other keys
                    // see this amount at once, not only after its append is synced.
                    let window = state.windows.entry(request.connector.clone()).or_default();
                    window
                        .check(guard, now, micros)
                        .map_err(Error::SpendingLimit)?;
                    window.record(now, micros);
                    Some(micros)
                }
                _ => None,
            }
        };
        let spec = IntentSpec {
            id: IntentId::random(),
            connector: request.connector,
            operation: request.operation,
            params_json,
            idempotency_key: key,
            payload_sha256: payload,
            amount_micros: amount,
            submitted_at_ms: now,
        };
        let id = spec.id;
        let connector = spec.connector.clone();
        if let Err(error) = inner.log_and_apply(Record::Submitted(spec)).await {
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
    /// re-sent with the same key, a fresh attempt budget and a fresh retry deadline (both
    /// counted from now; never past the provider's key lifetime).
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

    /// Writes a checkpoint of what is still needed and deletes the log segments it covers
    /// (`engine/compaction.rs`). Runs by itself when the log passes `compact_log_bytes`;
    /// callable directly. A failure changes nothing and is visible in
    /// [`Engine::compaction_status`].
    pub async fn compact(&self) -> Result<CompactionReport> {
        self.inner.compact().await
    }

    /// How the log makes an append durable (`NoSyncBenchmarkOnly` breaks G1; `/healthz`
    /// says so).
    pub fn sync_mode(&self) -> intent_log::SyncMode {
        self.inner.config.log.sync_mode
    }

    /// How compaction has fared: counts, the last error, when it is retried.
    pub fn compaction_status(&self) -> CompactionStatus {
        lock(&self.inner.compaction).clone()
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

    /// Tests: (driver still running, intents in flight, timers set).
    #[cfg(test)]
    pub(crate) fn debug_driver(&self) -> (bool, usize, usize) {
        let alive = lock(&self.driver)
            .as_ref()
            .is_some_and(|driver| !driver.is_finished());
        let state = lock(&self.inner.state);
        (alive, state.in_flight.len(), state.timers.len())
    }

    /// Tests: the amounts the spending window of `connector` holds (reserved or applied).
    #[cfg(test)]
    pub(crate) fn window_micros(&self, connector: &str) -> u64 {
        lock(&self.inner.state)
            .windows
            .get(connector)
            .map_or(0, Window::total_micros)
    }

    /// Tests: workers started since open.
    #[cfg(test)]
    pub(crate) fn worker_starts(&self) -> u64 {
        lock(&self.inner.state).worker_starts
    }

    /// Stops at once, without draining, as `kill -9` would: the driver and workers are
    /// aborted where they are (their log appends fail once the log is closed), the log is
    /// closed and the index released unflushed. `serve` uses it after a poisoned engine
    /// does not shut down in time; tests use it as a crash. Recovery on the next open
    /// treats what was in flight as ambiguous (G3).
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

/// Replay: the newest checkpoint, then every record after it, through the same fold as
/// live operation. Blocking I/O.
fn replay(log: &Log) -> Result<EngineState> {
    let mut state = EngineState::default();
    let replay = log.replay()?;
    let checkpoint_lsn = replay.checkpoint.as_ref().map(|reader| reader.info().lsn);
    for entry in replay.checkpoint.into_iter().flatten() {
        let (kind, body) = entry?;
        if kind != RECORD_KIND {
            return Err(Error::Replay(format!(
                "checkpoint at LSN {checkpoint_lsn:?}: unknown entry kind {kind}"
            )));
        }
        let record = Record::decode(&body)
            .map_err(|error| Error::Replay(format!("checkpoint entry: {error}")))?;
        // A snapshot keeps the LSN of the last record it reflects.
        let lsn = match &record {
            Record::Snapshot(intent) => intent.last_lsn,
            _ => checkpoint_lsn.unwrap_or(0),
        };
        state.apply(lsn, record, false)?;
    }
    for entry in replay.records {
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
    Ok(state)
}

/// Opens the index in `<data_dir>/index/`: moved aside (and rebuilt from the log) only
/// when proven corrupt; an I/O error fails the open and leaves it alone. Returns where a
/// corrupt index was moved.
async fn open_store(config: &EngineConfig) -> Result<(Arc<dyn StateStore>, Option<PathBuf>)> {
    let dir = config.data_dir.join(INDEX_DIR);
    let (store, moved_aside) =
        tokio::task::spawn_blocking(move || SledStore::open_or_rebuild(&dir))
            .await
            .map_err(|error| Error::Index(format!("open task: {error}")))??;
    Ok((Arc::new(store), moved_aside))
}

/// Refuses a log that lost records the index saw (the log already refused to cut them;
/// this catches a log replaced from elsewhere), and re-folds into the index whatever it
/// is behind on.
async fn refold_index(
    store: &Arc<dyn StateStore>,
    log: &Log,
    state: &EngineState,
) -> Result<usize> {
    let applied = store.applied_lsn()?;
    let log_last = log.durable_lsn();
    if applied > log_last {
        return Err(Error::Index(format!(
            "the index has applied LSN {applied} but the log ends at LSN {log_last}: \
             the log lost records the index saw; refusing to open (restore the log, or \
             move the index directory aside to rebuild it from this log)"
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
        tracing::info!(refolded, "index re-folded from the log");
    }
    Ok(refolded)
}

/// See `EngineConfig::hold_paused_clock_during_io`: when `enabled`, a blocking task that
/// lives until the returned guard is dropped.
fn hold_paused_clock(enabled: bool) -> Option<std::sync::mpsc::Sender<()>> {
    if !enabled {
        return None;
    }
    let (release, held) = std::sync::mpsc::channel::<()>();
    tokio::task::spawn_blocking(move || {
        let _ = held.recv();
    });
    Some(release)
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

    /// `record` (about to move `current` on), with the large JSON of its next state (a
    /// provider's result or details, up to the 1 MiB response cap) cut to a marker when
    /// keeping it whole would make this record, or a later snapshot of the intent, larger
    /// than `record_bytes_max`: the transition must always be recorded.
    fn fit_record(&self, current: &Intent, mut record: Record) -> Record {
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
    fn hold_clock(&self) -> Option<std::sync::mpsc::Sender<()>> {
        hold_paused_clock(self.config.hold_paused_clock_during_io)
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
        maybe_compact(&inner, now);
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

/// Starts a compaction in the background when the log passed the threshold and doubled
/// since the last one (what compaction keeps can itself exceed the threshold), unless one
/// runs or a failed one is still backing off. The driver goes on driving meanwhile.
fn maybe_compact(inner: &Arc<Inner>, now: u64) {
    let log_bytes = inner.log.stats().log_bytes;
    let floor = inner
        .compacted_bytes
        .load(Ordering::Relaxed)
        .saturating_mul(2);
    if log_bytes <= inner.config.compact_log_bytes || log_bytes <= floor {
        return;
    }
    if lock(&inner.compaction)
        .retry_at_ms
        .is_some_and(|retry_at| retry_at > now)
    {
        return;
    }
    if inner.compacting.swap(true, Ordering::AcqRel) {
        return;
    }
    let task_inner = inner.clone();
    // Counted as a worker so `shutdown` waits for it (it holds the log's directory).
    inner.workers.fetch_add(1, Ordering::AcqRel);
    let handle = tokio::spawn(async move {
        // The outcome is recorded in `compaction` and logged there.
        if task_inner.compact().await.is_err() {
            task_inner.wake.notify_one();
        }
        task_inner.compacting.store(false, Ordering::Release);
        if task_inner.workers.fetch_sub(1, Ordering::AcqRel) == 1 {
            task_inner.workers_done.notify_waiters();
        }
    });
    lock(&inner.worker_handles).push(handle.abort_handle());
}

/// After a failed step, an intent is not tried again sooner than this.
const FAILED_STEP_DELAY_MS: u64 = 1_000;
/// An intent whose connector is not registered is looked at again this often (it waits,
/// visibly, for an engine opened with its connector).
const UNREGISTERED_RECHECK_MS: u64 = 60_000;
/// Longest provider resource id kept (longer ones are dropped: a cut id would name
/// another resource in status checks).
const RESOURCE_ID_BYTES_MAX: usize = 1024;
/// Room left in a record beyond an intent's encoded size (enum tags, the format byte,
/// varints that grow).
const RECORD_SLACK_BYTES: usize = 512;

// A default-sized record holds the largest params, a stored truncation marker and the
// capped reasons of a full attempt budget with room to spare; results too large for the
// record are cut to fit (`Inner::fit_record`).
const _: () = assert!(
    PARAMS_BYTES_MAX
        + crate::intent::TRUNCATED_JSON_BYTES_MAX
        + 24 * (crate::intent::REASON_MESSAGE_BYTES_MAX + crate::intent::REASON_DETAILS_BYTES_MAX)
        <= intent_log::RECORD_BYTES_MAX_DEFAULT
);

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
        {
            let mut state = lock(&inner.state);
            state.in_flight.remove(&self.id);
            // A poisoned log stops the engine (G7): nothing is retried until it is reopened.
            if !inner.log.is_poisoned() {
                if let Some(due) = state
                    .folded
                    .intents
                    .get(&self.id)
                    .and_then(|intent| intent.state.due_ms())
                {
                    state.timers.insert((due.max(self.not_before_ms), self.id));
                }
            }
        }
        inner.wake.notify_one();
        if inner.workers.fetch_sub(1, Ordering::AcqRel) == 1 {
            inner.workers_done.notify_waiters();
        }
    }
}

async fn work(inner: Arc<Inner>, id: IntentId) {
    lock(&inner.state).worker_starts += 1;
    // Until the step ends normally, it counts as failed (a panic unwinds through here).
    let mut guard = WorkerGuard {
        inner: inner.clone(),
        id,
        not_before_ms: inner.clock.now_ms().saturating_add(FAILED_STEP_DELAY_MS),
    };
    match work_on(&inner, id).await {
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
    let now = inner.clock.now_ms();
    let next = lock(&inner.state)
        .folded
        .intents
        .get(&id)
        .and_then(|intent| machine::recovered(intent, now));
    let Some(next) = next else {
        return;
    };
    tracing::warn!(intent = %id, "the outcome of an attempt could not be recorded: ambiguous until a status check decides");
    let record = Record::Recovered {
        id,
        at_ms: now,
        next,
    };
    if let Err(error) = inner.log_and_apply(record).await {
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

fn resource_id_of(outcome: &Outcome) -> Option<String> {
    let id = match outcome {
        Outcome::Success { result } => result.get("id").and_then(Value::as_str).map(str::to_string),
        _ => outcome
            .detail()
            .and_then(|detail| detail.details.as_ref())
            .and_then(|details| details.get("execution_id"))
            .and_then(Value::as_str)
            .map(str::to_string),
    };
    match id {
        Some(id) if id.len() > RESOURCE_ID_BYTES_MAX => {
            tracing::warn!(
                bytes = id.len(),
                "the provider's resource id is too long to keep; status checks use the key"
            );
            None
        }
        id => id,
    }
}

async fn work_on(inner: &Arc<Inner>, id: IntentId) -> Result<Step> {
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
    let retry = entry.settings.retry.clone();
    let key_lifetime_ms = entry.settings.key_lifetime_ms();
    let key_lifetime_margin_ms = entry.settings.key_lifetime_margin_ms();
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
            key_lifetime_ms,
            key_lifetime_margin_ms,
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
                    return Ok(Step::Done);
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
                // A panic after the request went out is as ambiguous as a timeout (G3).
                let outcome = catch_panic(connector.dispatch(&request))
                    .await
                    .unwrap_or_else(|()| {
                        tracing::error!("the connector panicked while sending; the attempt is ambiguous");
                        Outcome::Ambiguous {
                            reason: connector_panicked("dispatch"),
                        }
                    });
                let now = inner.clock.now_ms();
                let Some(current) = lock(&inner.state).folded.intents.get(&id).cloned() else {
                    return Ok(Step::Done);
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
                let record = inner.fit_record(
                    &current,
                    Record::AttemptFinished {
                        id,
                        attempt,
                        at_ms: now,
                        outcome: outcome.kind().to_string(),
                        detail: outcome.detail().map(crate::intent::Reason::from_detail),
                        resource_id: resource_id_of(&outcome),
                        next: decision.next,
                    },
                );
                inner.log_and_apply(record).await?;
            }
            State::Ambiguous { .. } => {
                let check = catch_panic(connector.check_status(&request))
                    .await
                    .unwrap_or_else(|()| {
                        tracing::error!("the connector panicked during a status check; counted as an unknown answer");
                        StatusCheck::Unknown {
                            reason: connector_panicked("a status check"),
                        }
                    });
                let now = inner.clock.now_ms();
                let decision = machine::after_status_check(&intent, &check, context(now));
                let (result, detail) = match &check {
                    StatusCheck::Found { .. } => ("found", None),
                    StatusCheck::NotFound => ("not_found", None),
                    StatusCheck::Unknown { reason } => {
                        ("unknown", Some(crate::intent::Reason::from_detail(reason)))
                    }
                };
                tracing::info!(
                    result,
                    next = decision.next.name().as_str(),
                    "status checked"
                );
                let record = inner.fit_record(
                    &intent,
                    Record::StatusChecked {
                        id,
                        at_ms: now,
                        result: result.to_string(),
                        detail,
                        next: decision.next,
                    },
                );
                inner.log_and_apply(record).await?;
            }
            _ => {}
        }
        Ok(Step::Done)
    }
    .instrument(span)
    .await
}
