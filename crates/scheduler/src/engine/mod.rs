//! The engine: a library API for agent daemons (submit, wait, look up, attach payment,
//! operator actions on dead letters, shutdown) and the driver that performs what the pure
//! machine decides: log first, then act (G2).
//!
//! - `config.rs`: [`EngineConfig`], [`ConnectorSettings`], the checks that refuse unsafe ones.
//! - `open.rs`: opening: index, log recovery, replay, crash recovery of intents in flight.
//! - `submit.rs`: accepting an intent (G1, G4, spending guards).
//! - `queries.rs`: get, get by key, list, counts, wait.
//! - `operator.rs`: attach payment, and the dead-letter queue's retry and resolve.
//! - `driver.rs`: the loop that starts due work and compaction.
//! - `worker.rs`: one intent's steps: machine transitions interpreted (send, check, timers).
//! - `state.rs`: memory (the fold, keys, windows, timers, waiters) and log-then-apply.
//! - `compaction.rs`: checkpoint, evict, truncate, prune history; `checkpoint_entries.rs`
//!   streams a checkpoint's entries.
//! - `retire.rs`: finished intents leave memory for the index (issue 11).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use intent_log::Log;
use rand::rngs::SmallRng;
use tokio::sync::{Notify, Semaphore};

use crate::clock::Clock;
use crate::error::Result;
use crate::index::StateStore;

mod checkpoint_entries;
mod compaction;
mod config;
mod driver;
mod open;
mod operator;
mod queries;
mod retire;
mod retired_keys;
mod spool;
mod state;
mod submit;
mod worker;

pub use compaction::{CompactionReport, CompactionStatus};
pub use config::{ConnectorSettings, EngineConfig, HISTORY_RETENTION_MS_DEFAULT, PARAMS_BYTES_MAX};
pub use open::OpenReport;
pub use queries::ListFilter;
pub use submit::{SubmitRequest, Submitted};

use driver::drive;
use state::EngineState;

struct ConnectorEntry {
    settings: ConnectorSettings,
    permits: Arc<Semaphore>,
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
    /// A compaction is wanted now, whatever the log's size (the retired spool broke:
    /// retirement waits for the checkpoint that resets it).
    compaction_wanted: AtomicBool,
    /// One compaction at a time, whether the driver or a caller started it.
    compaction_serial: tokio::sync::Mutex<()>,
    /// The index (None when `config.index` is off, or once shut down or killed, so its
    /// files are released).
    store: Mutex<Option<Arc<dyn StateStore>>>,
    /// With the index on: the checkpoint entries of intents retired since the last
    /// checkpoint (`spool.rs`). Used only under `compaction_serial`.
    spool: Mutex<Option<spool::Spool>>,
}

/// The engine. Cheap to clone; all clones drive the same intents.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
    driver: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
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

impl Engine {
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
            .map_or(0, crate::guards::Window::total_micros)
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
