//! Retirement: with the index on, finished intents leave memory soon after they finish,
//! so memory holds live intents, not the whole key-retention window (issue 11).
//!
//! A finished intent (Succeeded, Reconciled, Failed, Resolved) takes no more records. A
//! batch of them is written to the index (`StateStore::put_many`) and its checkpoint
//! entries to the retired spool (`spool.rs`), and only then removed from memory; what
//! stays is a [`Retired`] entry (id, LSN, digest, spool offset: 40 bytes) until the next
//! checkpoint holds the intent, and its key in the filter of retired keys
//! (`retired_keys.rs`). From then on:
//!
//! - lookups (`get`, `get_by_key`, `list`, `wait`) and dedup of its key at submit (G4)
//!   read the index;
//! - the next compaction reads its entry back from the spool, checks it against the
//!   digest, and writes it into the checkpoint; a missing or changed entry fails that
//!   compaction (nothing is deleted) — a restart re-folds it from the log;
//! - later compactions copy it from the previous checkpoint while inside the window.
//!
//! The log stays the store of record: until a checkpoint holds the intent, its records are
//! in segments no compaction deletes, and after a crash replay folds it back into memory
//! (and the index). Retirement and compaction never overlap (`compaction_serial`).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::state::is_finished;
use super::{lock, Inner};
use crate::error::{Error, Result};
use crate::intent::{Intent, IntentId};
use crate::record::Record;

/// An intent retired from memory and not yet in a checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Retired {
    pub(super) id: IntentId,
    pub(super) last_lsn: u64,
    /// `spool::digest` of its checkpoint entry, made from the intent as memory held it.
    pub(super) digest: u64,
    /// Where the retired spool holds that entry.
    pub(super) spool_offset: u64,
}

impl Inner {
    /// Moves the finished intents in memory to the index and out of memory, in batches of
    /// at most `retire_batch`. Returns how many left. A failure leaves them in memory
    /// (retried with the next batch).
    pub(super) async fn retire(self: &Arc<Inner>) -> Result<usize> {
        if !self.config.index {
            return Ok(0);
        }
        let _serial = self.compaction_serial.lock().await;
        if lock(&self.spool)
            .as_ref()
            .is_some_and(|spool| spool.is_broken())
        {
            // Nothing can leave memory before a checkpoint resets the spool: ask for one
            // now rather than fail (and touch the index) on every turn.
            self.compaction_wanted.store(true, Ordering::Release);
            return Ok(0);
        }
        // The intents queued now, in batches: those that finish meanwhile wait for the
        // next call, so a compaction waiting for `compaction_serial` is not starved.
        let queued = lock(&self.state).finished.len();
        let rounds = queued.div_ceil(self.config.retire_batch.max(1)).max(1);
        let mut retired = 0;
        for _ in 0..rounds {
            match self.retire_batch().await? {
                Some(batch) => retired += batch,
                None => break,
            }
        }
        Ok(retired)
    }

    /// One batch of [`Inner::retire`]: at most `retire_batch` intents, so one sled batch
    /// stays small (after a long compaction, tens of thousands may have finished, and one
    /// sled batch of them all held a few hundred MiB at once: heaptrack, issue 11).
    /// `None` when no finished intent was waiting.
    async fn retire_batch(self: &Arc<Inner>) -> Result<Option<usize>> {
        let Some(store) = self.store() else {
            return Ok(None);
        };
        let batch: Vec<Intent> = {
            let mut state = lock(&self.state);
            if state.finished.is_empty() {
                return Ok(None);
            }
            let take = self.config.retire_batch.max(1).min(state.finished.len());
            let ids: Vec<IntentId> = state.finished.drain(..take).collect();
            ids.iter()
                .filter_map(|id| state.folded.intents.get(id))
                .filter(|intent| is_finished(&intent.state))
                .cloned()
                .collect()
        };
        if batch.is_empty() {
            // The ids taken had all left already; more may wait behind them.
            return Ok(Some(0));
        }
        let inner = self.clone();
        let written = tokio::task::spawn_blocking(move || {
            // One sled batch for all of them: a batch per intent cost sled two I/O buffer
            // rolls each (`StateStore::put_many`).
            store.put_many(&batch)?;
            let mut written = Vec::with_capacity(batch.len());
            let mut bodies = Vec::with_capacity(batch.len());
            for intent in batch {
                let (id, last_lsn) = (intent.spec.id, intent.last_lsn);
                let body = Record::Snapshot(Box::new(intent)).encode()?;
                written.push(Retired {
                    id,
                    last_lsn,
                    digest: super::spool::digest(&body),
                    spool_offset: 0,
                });
                bodies.push(body);
            }
            let offsets = match lock(&inner.spool).as_mut() {
                Some(spool) => spool.append(&bodies)?,
                None => return Err(Error::Index("the retired spool is closed".into())),
            };
            for (entry, offset) in written.iter_mut().zip(offsets) {
                entry.spool_offset = offset;
            }
            // Not for durability (the log holds these intents): sled keeps unflushed
            // pages in memory, and without a flush per batch its resident set grew by
            // ~3 KB per intent (tests/memory_bench.rs, `memory_bench_index_alone`).
            store.flush()?;
            Ok::<_, Error>(written)
        })
        .await
        .map_err(|error| Error::Index(format!("retirement task: {error}")));
        let written = match written.and_then(|inner| inner) {
            Ok(written) => written,
            Err(error) => {
                self.requeue_finished();
                return Err(error);
            }
        };
        let mut state = lock(&self.state);
        let mut retired = 0;
        for entry in written {
            // Finished intents take no records, so the copy is current; checked anyway.
            let current = state.folded.intents.get(&entry.id).map(|i| i.last_lsn);
            if current != Some(entry.last_lsn) {
                continue;
            }
            if let Some(intent) = state.forget(entry.id) {
                *state.retained.entry(intent.state.name()).or_insert(0) += 1;
                // Under the lock that removed it from memory: a submit sees the key in
                // one or the other.
                state
                    .retired_keys
                    .insert(&intent.spec.connector, &intent.spec.idempotency_key);
                state.retired.push(entry);
                retired += 1;
            }
        }
        Ok(Some(retired))
    }

    /// After a failed retirement: every finished intent still in memory is a candidate
    /// again.
    fn requeue_finished(&self) {
        let mut state = lock(&self.state);
        let ids: Vec<IntentId> = state
            .folded
            .intents
            .values()
            .filter(|intent| is_finished(&intent.state))
            .map(|intent| intent.spec.id)
            .collect();
        state.finished = ids;
    }
}

/// Starts a retirement in the background once `retire_batch` intents finished in memory,
/// unless one runs. Counted as a worker so `shutdown` waits for it.
pub(super) fn maybe_retire(inner: &Arc<Inner>) {
    let batch = inner.config.retire_batch;
    if batch == 0 || !inner.config.index {
        return;
    }
    {
        let mut state = lock(&inner.state);
        if state.retiring || state.finished.len() < batch {
            return;
        }
        state.retiring = true;
    }
    let task_inner = inner.clone();
    inner.workers.fetch_add(1, Ordering::AcqRel);
    let handle = tokio::spawn(async move {
        if let Err(error) = task_inner.retire().await {
            tracing::error!(%error, "retiring finished intents to the index failed; they stay in memory and are retried");
        }
        lock(&task_inner.state).retiring = false;
        if task_inner.workers.fetch_sub(1, Ordering::AcqRel) == 1 {
            task_inner.workers_done.notify_waiters();
        }
    });
    lock(&inner.worker_handles).push(handle.abort_handle());
}

impl super::Engine {
    /// Tests: retires the finished intents in memory now, whatever the batch size.
    #[cfg(test)]
    pub(crate) async fn retire_finished(&self) -> Result<usize> {
        self.inner.retire().await
    }
}

impl super::Engine {
    /// Tests: how many submits looked their key up in the index.
    #[cfg(test)]
    pub(crate) fn index_key_lookups(&self) -> u64 {
        lock(&self.inner.state).index_key_lookups
    }

    /// Tests: how many intents memory holds whole.
    #[cfg(test)]
    pub(crate) fn intents_in_memory(&self) -> usize {
        lock(&self.inner.state).folded.intents.len()
    }
}
