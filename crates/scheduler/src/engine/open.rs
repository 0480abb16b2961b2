//! Opening an engine: the index first, then the log (recovery), replay of the newest
//! checkpoint and the records after it, the index brought up to the log, and crash
//! recovery: intents caught in flight become ambiguous (G3) before anything is driven.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex};

use intent_log::{FileSystem, Log, StdFileSystem};
use rand::rngs::SmallRng;
use rand::SeedableRng;
use tokio::sync::Notify;

use super::spool::{Spool, SPOOL_DIR};
use super::state::{is_finished, EngineState};
use super::submit::SUBMIT_LOCKS;
use super::{
    config, drive, hold_paused_clock, lock, CompactionStatus, ConnectorEntry, ConnectorSettings,
    Engine, EngineConfig, Inner,
};
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::index::{SledStore, StateStore, INDEX_DIR};
use crate::intent::{Intent, IntentId, State};
use crate::machine::Event;
use crate::record::{Record, RECORD_KIND};

/// What opening found.
#[derive(Clone, Debug)]
pub struct OpenReport {
    pub log: intent_log::RecoveryReport,
    /// Intents in memory after replay: the live ones, and the finished ones no checkpoint
    /// holds yet (with the index on, the checkpoint's finished intents go to the index,
    /// not memory; with it off, every finished intent inside the window is counted).
    pub intents: usize,
    /// Intents found in flight and made ambiguous (G3).
    pub recovered_in_flight: usize,
    /// The index was corrupt: it was moved aside (see `index_moved_aside`) and rebuilt
    /// from the log.
    pub index_rebuilt: bool,
    /// Where the corrupt index was moved (`<data_dir>/index.corrupt-<unix-seconds>`). It
    /// still holds the history compaction removed from the log; the rebuilt index does not.
    pub index_moved_aside: Option<PathBuf>,
    /// Intents written to the index on open because it was behind the log (from the
    /// checkpoint or the records after it).
    pub index_refolded: usize,
}

impl Engine {
    /// Opens the engine on `config.data_dir`: recovers the log, replays it, makes intents
    /// caught in flight ambiguous, and starts driving. Needs no operator after a crash.
    pub async fn open(
        config: EngineConfig,
        connectors: Vec<ConnectorSettings>,
    ) -> Result<(Engine, OpenReport)> {
        let connectors = config::register(&config, connectors)?;
        let hold = hold_paused_clock(config.hold_paused_clock_during_io);
        let opened = open_storage(&config).await?;
        drop(hold);
        let inner = Arc::new(Inner::new(
            config,
            connectors,
            opened.log,
            opened.state,
            opened.store,
            opened.spool,
        ));
        let recovered_in_flight = recover_in_flight(&inner).await?;
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
        let report = OpenReport {
            log: opened.log_report,
            intents,
            recovered_in_flight,
            index_rebuilt: opened.index_moved_aside.is_some(),
            index_moved_aside: opened.index_moved_aside,
            index_refolded: opened.index_refolded,
        };
        Ok((engine, report))
    }
}

/// The log and index opened, and what replay made of them.
struct Opened {
    log: Log,
    log_report: intent_log::RecoveryReport,
    state: EngineState,
    store: Option<Arc<dyn StateStore>>,
    index_moved_aside: Option<PathBuf>,
    index_refolded: usize,
    spool: Option<Spool>,
}

/// Opens the index, then the log (recovery), replays the log, and brings the index up to
/// it. The index comes first: the log must not cut what the index saw acknowledged, and it
/// refuses before changing anything if recovery would.
async fn open_storage(config: &EngineConfig) -> Result<Opened> {
    let fs: Arc<dyn FileSystem> = config.fs.clone().unwrap_or_else(|| Arc::new(StdFileSystem));
    let wal_dir = config.data_dir.join("wal");
    let store = if config.index {
        Some(open_store(config).await?)
    } else {
        None
    };
    let mut log_options = config.log.clone();
    if let Some((store, _)) = &store {
        log_options.last_lsn_min = log_options.last_lsn_min.max(store.applied_lsn()?);
    }
    let log_fs = fs.clone();
    let (log, log_report) =
        tokio::task::spawn_blocking(move || Log::open_with(log_fs, wal_dir, log_options))
            .await
            .map_err(|error| Error::Replay(format!("open task: {error}")))??;
    if let Some(torn) = &log_report.torn_tail {
        tracing::warn!(file = %torn.file.display(), offset = torn.offset, bytes = torn.bytes, "recovery cut a torn tail");
    }
    if let Some((store, _)) = &store {
        check_index_behind_log(store, &log)?;
    }
    // Replay on a blocking thread: it reads the checkpoint and every segment after it.
    let replay_store = store.as_ref().map(|(store, _)| store.clone());
    let (log, state) = tokio::task::spawn_blocking(move || {
        let state = replay(&log, replay_store.as_ref())?;
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
    let spool = match &store {
        Some(_) => Some(Spool::open(fs, &config.data_dir.join(SPOOL_DIR))?),
        None => None,
    };
    Ok(Opened {
        log,
        log_report,
        state,
        store,
        index_moved_aside,
        index_refolded,
        spool,
    })
}

impl Inner {
    fn new(
        config: EngineConfig,
        connectors: HashMap<String, ConnectorEntry>,
        log: Log,
        state: EngineState,
        store: Option<Arc<dyn StateStore>>,
        spool: Option<Spool>,
    ) -> Inner {
        let checkpoint_lsn = log.checkpoint().map(|checkpoint| checkpoint.lsn);
        let max_guard_window_ms = connectors
            .values()
            .filter_map(|entry| entry.settings.guard.as_ref().map(|guard| guard.window_ms))
            .max()
            .unwrap_or(0);
        let seed = config.seed.unwrap_or_else(rand::random);
        Inner {
            log,
            connectors,
            clock: config.clock.unwrap_or_else(Clock::system),
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
            compaction_wanted: AtomicBool::new(false),
            compaction_serial: tokio::sync::Mutex::new(()),
            worker_handles: Mutex::new(Vec::new()),
            store: Mutex::new(store),
            spool: Mutex::new(spool),
            config,
        }
    }
}

/// Crash recovery (G3): whatever was on the wire when the process died may have executed,
/// so every intent found `Sent` becomes ambiguous (the machine's `InFlightLost`) before
/// the driver starts. Returns how many.
async fn recover_in_flight(inner: &Inner) -> Result<usize> {
    let in_flight: Vec<IntentId> = lock(&inner.state)
        .folded
        .intents
        .values()
        .filter(|intent| matches!(intent.state, State::Sent { .. }))
        .map(|intent| intent.spec.id)
        .collect();
    for id in &in_flight {
        tracing::warn!(intent = %id, "found in flight after a restart: ambiguous until a status check decides");
        inner.step(*id, Event::InFlightLost).await?;
    }
    Ok(in_flight.len())
}

/// Replay: the newest checkpoint, then every record after it, through the same fold as
/// live operation. With the index on (`store`), the checkpoint's finished intents do not
/// enter memory: each is written to the index if it is behind (so dedup of its key, G4,
/// and lookups find it there), and its amount counts in the spending window. Blocking I/O.
fn replay(log: &Log, store: Option<&Arc<dyn StateStore>>) -> Result<EngineState> {
    let mut state = EngineState::default();
    let replay = log.replay()?;
    let checkpoint_lsn = replay.checkpoint.as_ref().map(|reader| reader.info().lsn);
    // The checkpoint's finished intents go to the index in sled batches, not one by one.
    let mut to_index: Vec<Intent> = Vec::new();
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
        if let (Record::Snapshot(intent), Some(store)) = (&record, store) {
            if is_finished(&intent.state) && !state.folded.intents.contains_key(&intent.spec.id) {
                state.note_retired_snapshot(intent);
                if let Record::Snapshot(intent) = record {
                    to_index.push(*intent);
                }
                if to_index.len() >= REFOLD_CHUNK {
                    state.refolded_from_checkpoint += store.put_many(&to_index)?;
                    to_index.clear();
                }
                continue;
            }
        }
        state.apply(lsn, record, false)?;
    }
    if let (Some(store), false) = (store, to_index.is_empty()) {
        state.refolded_from_checkpoint += store.put_many(&to_index)?;
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

/// Intents written to the index per sled batch when it is re-folded on open.
const REFOLD_CHUNK: usize = 4096;

/// Refuses a log that lost records the index saw (the log already refused to cut them;
/// this catches a log replaced from elsewhere). Checked before replay writes to the index.
fn check_index_behind_log(store: &Arc<dyn StateStore>, log: &Log) -> Result<()> {
    let applied = store.applied_lsn()?;
    let log_last = log.durable_lsn();
    if applied > log_last {
        return Err(Error::Index(format!(
            "the index has applied LSN {applied} but the log ends at LSN {log_last}: \
             the log lost records the index saw; refusing to open (restore the log, or \
             move the index directory aside to rebuild it from this log)"
        )));
    }
    Ok(())
}

/// Refuses a log that lost records the index saw (the log already refused to cut them;
/// this catches a log replaced from elsewhere), and re-folds into the index whatever it
/// is behind on.
async fn refold_index(
    store: &Arc<dyn StateStore>,
    log: &Log,
    state: &EngineState,
) -> Result<usize> {
    check_index_behind_log(store, log)?;
    let log_last = log.durable_lsn();
    // `put` keeps a stored copy at the same or a later LSN, so writing every intent in
    // memory re-folds exactly those the index is behind on (including any written out of
    // LSN order before a crash).
    let intents: Vec<_> = state.folded.intents.values().cloned().collect();
    let mut refolded = state.refolded_from_checkpoint;
    for chunk in intents.chunks(REFOLD_CHUNK) {
        refolded += store.put_many(chunk)?;
    }
    store.mark_applied(log_last)?;
    if refolded > 0 {
        store.flush()?;
        tracing::info!(refolded, "index re-folded from the log");
    }
    Ok(refolded)
}
