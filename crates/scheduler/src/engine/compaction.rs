//! Compaction: the checkpoint protocol that keeps the log bounded (docs/wal-format.md,
//! "Checkpoints and compaction").
//!
//! 1. Rotate the log, so every record so far is in an older segment than every later one.
//! 2. Under the append barrier (held only while memory is copied): take the LSN `C` of the
//!    last record, which every intent in memory reflects, and copy what is still needed:
//!    live intents, finished ones inside the key-retention (or spending-guard) window,
//!    dead letters, connector pauses. Finished intents past the window are to be evicted.
//! 3. Put the evicted intents into the index and flush it (their history lives there).
//! 4. Write the checkpoint covering `C` (temporary file, sync, rename, directory sync).
//! 5. Only now change memory: evict what the checkpoint left out.
//! 6. Delete the segments wholly at or below `C`, then older checkpoints.
//! 7. Prune from the index the finished intents older than the history retention.
//!
//! A crash at any step leaves a log that opens: before step 4 completes, the previous
//! checkpoint and every segment after it are intact; after it, replay starts at the new
//! checkpoint and reads the records after `C`, which no deletion touches. A failure at any
//! step leaves memory as it was, is logged and counted, and is retried with backoff.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use std::collections::{HashMap, HashSet};

use super::checkpoint_entries::{CheckpointEntries, Expiry, RetiredSources};
use super::retire::Retired;
use super::retired_keys::RetiredKeys;
use super::state::{is_finished, EngineState};
use super::{lock, Inner};
use crate::error::{Error, Result};
use crate::index::StateStore;
use crate::intent::{Intent, IntentId, StateName};
use crate::record::{Record, RECORD_KIND};

/// The first retry after a failed compaction waits this long, doubling up to the cap.
const RETRY_DELAY_MS_BASE: u64 = 1_000;
const RETRY_DELAY_MS_MAX: u64 = 600_000;

/// How compaction has fared, for `/healthz` and `/metrics`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactionStatus {
    pub compactions_total: u64,
    pub failures_total: u64,
    /// Failures since the last success; 0 when the last compaction succeeded.
    pub consecutive_failures: u32,
    pub last_error: Option<String>,
    pub last_success_at_ms: Option<u64>,
    /// No compaction starts before this after a failure.
    pub retry_at_ms: Option<u64>,
    /// The LSN the newest checkpoint covers.
    pub checkpoint_lsn: Option<u64>,
}

/// What one compaction did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompactionReport {
    /// The checkpoint covers every record up to this LSN.
    pub checkpoint_lsn: u64,
    /// Intents written into the checkpoint.
    pub kept: usize,
    /// Finished intents past the key-retention (and guard) window that the checkpoint
    /// left out (still in the index, when it is on, until history retention).
    pub evicted: usize,
    /// Finished intents inside the window that left memory because the checkpoint now
    /// holds them (index on; the index answers for them).
    pub retired: usize,
    pub deleted_segments: usize,
    /// History the index dropped (older than the history retention).
    pub pruned: usize,
}

struct Captured {
    lsn: u64,
    /// Intents written into the checkpoint from memory.
    keep: Vec<Intent>,
    /// Finished intents in `keep` that leave memory once the checkpoint holds them (the
    /// index on).
    retire: Vec<IntentId>,
    /// Finished intents past the window: in the index, then out of memory and the log.
    evict: Vec<Intent>,
    /// Intents retired since the last checkpoint (in the index, not in memory).
    retired: Vec<Retired>,
    pauses: Vec<(String, u64)>,
    expiry: Expiry,
}

/// Intents per sled batch when compaction writes the index.
const PUT_CHUNK: usize = 4096;

/// Step 3: the intents that leave memory are in the index (flushed) before the log
/// forgets them (the evicted ones' history lives there; the retired ones are looked up
/// there).
async fn put_in_index(store: Arc<dyn StateStore>, intents: Vec<Intent>) -> Result<()> {
    tokio::task::spawn_blocking(move || -> Result<()> {
        // In sled batches of a bounded size (one batch of everything held it all at once).
        for chunk in intents.chunks(PUT_CHUNK) {
            store.put_many(chunk)?;
        }
        store.flush()
    })
    .await
    .map_err(task_error)?
}

fn task_error(error: tokio::task::JoinError) -> Error {
    Error::Replay(format!("compaction task: {error}"))
}

impl Inner {
    /// Runs one compaction and records how it went.
    pub(super) async fn compact(self: &Arc<Inner>) -> Result<CompactionReport> {
        let _serial = self.compaction_serial.lock().await;
        let outcome = self.compact_steps().await;
        let now = self.clock.now_ms();
        let mut status = lock(&self.compaction);
        match &outcome {
            Ok(report) => {
                status.compactions_total += 1;
                status.consecutive_failures = 0;
                status.last_error = None;
                status.last_success_at_ms = Some(now);
                status.retry_at_ms = None;
                status.checkpoint_lsn = Some(report.checkpoint_lsn);
                tracing::info!(
                    checkpoint_lsn = report.checkpoint_lsn,
                    kept = report.kept,
                    evicted = report.evicted,
                    deleted_segments = report.deleted_segments,
                    pruned = report.pruned,
                    "compacted the log"
                );
            }
            Err(error) => {
                status.failures_total += 1;
                status.consecutive_failures = status.consecutive_failures.saturating_add(1);
                let shift = status.consecutive_failures.saturating_sub(1).min(20);
                let delay = (RETRY_DELAY_MS_BASE << shift).min(RETRY_DELAY_MS_MAX);
                status.retry_at_ms = Some(now.saturating_add(delay));
                status.last_error = Some(error.to_string());
                tracing::error!(%error, retry_in_ms = delay, failures = status.consecutive_failures, "compaction failed; memory and log are as they were, it is retried later");
            }
        }
        outcome
    }

    async fn compact_steps(self: &Arc<Inner>) -> Result<CompactionReport> {
        // Tests on a paused clock: simulated time must not jump while real I/O runs.
        let _hold = self.hold_clock();
        self.log.rotate().await?;
        let captured = self.capture().await;
        if let Some(current) = self.log.checkpoint().filter(|c| c.lsn >= captured.lsn) {
            // Nothing was logged since the newest checkpoint: it is still exact. Finish
            // whatever deletion a crash may have interrupted, and change nothing else.
            let inner = self.clone();
            let deleted_segments =
                tokio::task::spawn_blocking(move || inner.log.truncate_before(current.lsn + 1))
                    .await
                    .map_err(task_error)??;
            return Ok(CompactionReport {
                checkpoint_lsn: current.lsn,
                kept: 0,
                evicted: 0,
                retired: 0,
                deleted_segments,
                pruned: 0,
            });
        }
        let store = self.store();
        if self.config.index && store.is_none() {
            // The intents leaving memory must be in the index first (step 3), and it is
            // the fallback for a failed spool.
            return Err(Error::Index(
                "the index is closed (shut down or killed): not compacting".into(),
            ));
        }
        if let Some(store) = store.clone() {
            let leaving: Vec<Intent> = captured
                .evict
                .iter()
                .chain(captured.keep.iter().filter(|i| is_finished(&i.state)))
                .cloned()
                .collect();
            put_in_index(store, leaving).await?;
        }
        let (kept, expired, retained, keys) = self.write_checkpoint(&captured).await?;
        let lsn = captured.lsn;
        if self.evict(&captured, retained, keys) {
            self.reset_spool().await?;
        }
        let inner = self.clone();
        let deleted_segments =
            tokio::task::spawn_blocking(move || inner.log.truncate_before(lsn + 1))
                .await
                .map_err(task_error)??;
        self.compacted_bytes.store(
            self.log.stats().log_bytes,
            std::sync::atomic::Ordering::Relaxed,
        );
        // Step 7: history older than the history retention leaves the index.
        let pruned = match store {
            Some(store) => self.prune_history(store).await?,
            None => 0,
        };
        Ok(CompactionReport {
            checkpoint_lsn: lsn,
            kept,
            evicted: captured.evict.len() + expired,
            retired: captured.retire.len(),
            deleted_segments,
            pruned,
        })
    }

    /// Step 4: the checkpoint of what is kept (connector pauses, the intents in memory,
    /// and with the index on the retired intents and the previous checkpoint's finished
    /// ones inside the window), durable when this returns (temporary file, fsync, rename,
    /// directory fsync). Returns (intents written, finished intents dropped as expired
    /// that memory did not hold, finished intents written that memory does not hold by
    /// state, the filter of their keys).
    async fn write_checkpoint(
        self: &Arc<Inner>,
        captured: &Captured,
    ) -> Result<(usize, usize, HashMap<StateName, usize>, RetiredKeys)> {
        let mut head = Vec::with_capacity(captured.pauses.len() + captured.keep.len());
        for (connector, until_ms) in &captured.pauses {
            let record = Record::ConnectorPaused {
                connector: connector.clone(),
                until_ms: *until_ms,
            };
            head.push((RECORD_KIND, record.encode()?));
        }
        for intent in &captured.keep {
            let record = Record::Snapshot(Box::new(intent.clone()));
            head.push((RECORD_KIND, record.encode()?));
        }
        let written: HashSet<IntentId> = captured.keep.iter().map(|i| i.spec.id).collect();
        let index = self.config.index;
        let (retired, expiry) = (captured.retired.clone(), captured.expiry);
        let keys_expected = lock(&self.state).retired_keys.inserted();
        let store = self.store();
        let inner = self.clone();
        let lsn = captured.lsn;
        tokio::task::spawn_blocking(move || {
            // With the index on, the previous checkpoint's finished intents are not in
            // memory: they are copied from it; the retired ones from the spool.
            let previous = match index {
                true => inner.log.replay()?.checkpoint,
                false => None,
            };
            // A spool that cannot be opened is replaced by the index (CheckpointEntries).
            let spool = match lock(&inner.spool).as_ref().map(|spool| spool.reader()) {
                Some(Ok(reader)) => Some(reader),
                Some(Err(error)) => {
                    tracing::warn!(%error, "the retired spool cannot be read: compaction reads the retired intents from the index");
                    None
                }
                None => None,
            };
            let sources = RetiredSources { spool, store };
            let mut entries = CheckpointEntries::new(
                head,
                written,
                retired,
                sources,
                previous,
                expiry,
                keys_expected,
            );
            let outcome = inner.log.write_checkpoint(lsn, &mut entries);
            if let Some(error) = entries.error.take() {
                return Err(error);
            }
            outcome?;
            if entries.from_index > 0 {
                tracing::warn!(
                    from_index = entries.from_index,
                    "retired intents copied into the checkpoint from the index (the spool failed)"
                );
            }
            Ok((
                entries.kept,
                entries.expired,
                entries.retained,
                entries.keys,
            ))
        })
        .await
        .map_err(task_error)?
    }

    /// Step 7: history older than the history retention leaves the index.
    async fn prune_history(&self, store: Arc<dyn StateStore>) -> Result<usize> {
        let now = self.clock.now_ms();
        let retention = self.config.history_retention_ms;
        tokio::task::spawn_blocking(move || {
            crate::history::prune_history(store.as_ref(), now, retention)
        })
        .await
        .map_err(task_error)?
    }

    /// Step 2: under the append barrier, the state as of the last logged record.
    async fn capture(&self) -> Captured {
        let _exclusive = self.barrier.write().await;
        let expiry = Expiry {
            now_ms: self.clock.now_ms(),
            retention_ms: self.config.key_retention_ms,
            guard_window_ms: self.max_guard_window_ms,
        };
        let lsn = self.log.durable_lsn();
        let state = lock(&self.state);
        let mut keep = Vec::new();
        let mut retire = Vec::new();
        let mut evict = Vec::new();
        for intent in state.folded.intents.values() {
            let finished = is_finished(&intent.state);
            if finished && expiry.expired(intent) {
                evict.push(intent.clone());
                continue;
            }
            if finished && self.config.index {
                retire.push(intent.spec.id);
            }
            keep.push(intent.clone());
        }
        keep.sort_by_key(|intent| intent.last_lsn);
        let pauses = state
            .folded
            .paused_until_ms
            .iter()
            .filter(|(_, until)| **until > expiry.now_ms)
            .map(|(name, until)| (name.clone(), *until))
            .collect();
        Captured {
            lsn,
            keep,
            retire,
            evict,
            retired: state.retired.clone(),
            pauses,
            expiry,
        }
    }

    /// Step 5: the checkpoint is durable; the evicted intents leave memory, so do the
    /// finished ones it holds (with the index on), and the retired entries it covers.
    fn evict(
        &self,
        captured: &Captured,
        mut retained: HashMap<StateName, usize>,
        mut keys: RetiredKeys,
    ) -> bool {
        let mut state = lock(&self.state);
        // With the index on, what this checkpoint holds of finished intents is what is
        // retained out of memory from now on.
        if self.config.index {
            for intent in captured.keep.iter().filter(|i| is_finished(&i.state)) {
                *retained.entry(intent.state.name()).or_insert(0) += 1;
            }
            state.retained = retained;
        }
        for intent in &captured.evict {
            // Finished intents take no more records, so the copy is still current.
            state.forget(intent.spec.id);
        }
        for id in &captured.retire {
            if let Some(intent) = state.forget(*id) {
                keys.insert(&intent.spec.connector, &intent.spec.idempotency_key);
            }
        }
        // With the index on, the keys out of memory are now those this checkpoint holds
        // and those just retired: the filter is rebuilt from them (under the lock the
        // submit checks it with). Without the index nothing leaves memory but expired
        // intents, whose keys are new again.
        if self.config.index {
            state.retired_keys = keys;
        }
        let covered: HashSet<IntentId> = captured.retired.iter().map(|entry| entry.id).collect();
        state.retired.retain(|entry| !covered.contains(&entry.id));
        // The checkpoint holds every entry of the spool (retirement waits for compaction,
        // so none came after the capture): it starts over (`compact_steps` resets it).
        let spool_done = state.retired.is_empty();
        let EngineState {
            finished, folded, ..
        } = &mut *state;
        finished.retain(|id| folded.intents.contains_key(id));
        spool_done
    }

    /// Starts the spool over and deletes its used file, off the async threads.
    async fn reset_spool(&self) -> Result<()> {
        let used = lock(&self.spool)
            .as_mut()
            .and_then(|spool| spool.reset().map(|path| (spool.fs(), path)));
        if let Some((fs, path)) = used {
            tokio::task::spawn_blocking(move || super::spool::Spool::delete(fs.as_ref(), &path))
                .await
                .map_err(task_error)?;
        }
        Ok(())
    }
}

/// Starts a compaction in the background when the log passed the threshold and doubled
/// since the last one (what compaction keeps can itself exceed the threshold), unless one
/// runs or a failed one is still backing off. The driver goes on driving meanwhile.
pub(super) fn maybe_compact(inner: &Arc<Inner>, now: u64) {
    // The driver calls this on every turn: finished intents leave memory from here too.
    super::retire::maybe_retire(inner);
    let log_bytes = inner.log.stats().log_bytes;
    let floor = inner
        .compacted_bytes
        .load(Ordering::Relaxed)
        .saturating_mul(2);
    let wanted = inner.compaction_wanted.load(Ordering::Acquire);
    if !wanted && (log_bytes <= inner.config.compact_log_bytes || log_bytes <= floor) {
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
    inner.compaction_wanted.store(false, Ordering::Release);
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
