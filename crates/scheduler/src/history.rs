//! History retention: finished intents leave the index `history_retention_ms` after their
//! last update, so the index does not grow with all history (issue 9, defect 10).
//!
//! Why this never removes an intent the engine still holds in memory: only finished,
//! non-dead-lettered intents are pruned (`index::PRUNABLE_STATES`), and compaction evicts
//! exactly those from memory once `updated_at_ms + key_retention_ms` and
//! `submitted_at_ms + guard window` have passed. `Engine::open` refuses a history retention
//! shorter than either, so a prunable intent has been evictable for a while; the caller
//! (compaction) prunes after it evicts. Should one still be in memory (no compaction ran
//! since), nothing is lost: lookups answer from memory first, and compaction writes an
//! evicted intent to the index again before the next prune removes it.

use crate::error::Result;
use crate::index::StateStore;

/// Intents removed per store call: bounds one sled batch and the time the index's write
/// lock is held.
pub(crate) const PRUNE_BATCH_INTENTS: usize = 512;

/// Removes from `store` every prunable intent last updated more than `retention_ms` before
/// `now_ms`, in batches of `PRUNE_BATCH_INTENTS`. Returns how many it removed. The loop
/// ends because each full batch removes intents from a finite set and a short batch ends it.
pub(crate) fn prune_history(
    store: &dyn StateStore,
    now_ms: u64,
    retention_ms: u64,
) -> Result<usize> {
    let cutoff_ms = now_ms.saturating_sub(retention_ms);
    if cutoff_ms == 0 {
        return Ok(0);
    }
    let mut removed_total = 0;
    loop {
        let removed = store.prune_finished_before(cutoff_ms, PRUNE_BATCH_INTENTS)?;
        removed_total += removed;
        if removed < PRUNE_BATCH_INTENTS {
            return Ok(removed_total);
        }
    }
}
