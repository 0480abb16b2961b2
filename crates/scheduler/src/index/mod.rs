//! The queryable index behind the engine (DESIGN.md §3): intents by id, by (connector,
//! key) and by state, with the last applied LSN, folded from the log. It is an index, not
//! a store of record: the log decides, the index is re-folded from it where it is behind,
//! and no log segment is ever deleted on the strength of the index alone.
//!
//! `StateStore` is the seam; `SledStore` (sled 0.34.7 in `<data_dir>/index/`) is the one
//! implementation: `sled_store.rs` reads and writes it, `open.rs` opens it and tells
//! damage (move aside, rebuild from the log) from a passing failure (refuse to open).

use crate::error::{Error, Result};
use crate::intent::{Intent, IntentId, StateName};

mod open;
mod sled_store;

#[cfg(test)]
pub use open::{classify_open_error, OpenFailure};
pub use sled_store::SledStore;

/// Where an index listing resumes: strictly after this (submitted_at_ms, id).
pub type ListCursor = (u64, IntentId);

/// A queryable index of intents, folded from the log.
pub trait StateStore: Send + Sync {
    /// Stores `intent` as of log record `lsn` (its `last_lsn`), with its key and state
    /// entries, and raises the applied LSN to `lsn`, in one atomic step. A stored copy at
    /// the same or a later LSN is kept (writes may arrive out of order). Returns whether
    /// the intent itself was written.
    fn put(&self, intent: &Intent, lsn: u64) -> Result<bool>;
    /// Stores each intent as of its `last_lsn`, as `put` would, in one atomic step (one
    /// sled batch: sled rolls its I/O buffer twice per batch, so a put per intent costs
    /// far more than one batch of many; docs/benchmarks.md). Returns how many were
    /// written (not kept older).
    fn put_many(&self, intents: &[Intent]) -> Result<usize> {
        let mut written = 0;
        for intent in intents {
            if self.put(intent, intent.last_lsn)? {
                written += 1;
            }
        }
        Ok(written)
    }
    fn get(&self, id: IntentId) -> Result<Option<Intent>>;
    /// The intent the index last saw with this key on this connector.
    fn get_by_key(&self, connector: &str, key: &str) -> Result<Option<Intent>>;
    /// Intents in (submitted_at_ms, id) order, in one state or all, after `after`, at
    /// most `limit` of them.
    fn list(
        &self,
        state: Option<StateName>,
        after: Option<ListCursor>,
        limit: usize,
    ) -> Result<Vec<Intent>>;
    /// The highest LSN the index has applied (0 when empty).
    fn applied_lsn(&self) -> Result<u64>;
    /// Raises the applied LSN (after a re-fold covered everything up to `lsn`).
    fn mark_applied(&self, lsn: u64) -> Result<()>;
    /// Asks the index to write what it holds to disk (sled: best effort, see DESIGN.md §3).
    fn flush(&self) -> Result<()>;
    /// Removes at most `limit` finished intents (Succeeded, Reconciled, Failed, Resolved;
    /// never dead letters, never live ones) last updated before `cutoff_ms`, with their
    /// key, state and time entries. Returns how many intents it removed; fewer than
    /// `limit` means none is left to remove.
    fn prune_finished_before(&self, cutoff_ms: u64, limit: usize) -> Result<usize>;
}

/// The states history retention may remove from the index: finished for good. Dead
/// letters wait for an operator, so they stay however old they are.
pub const PRUNABLE_STATES: [StateName; 4] = [
    StateName::Succeeded,
    StateName::Reconciled,
    StateName::Failed,
    StateName::Resolved,
];

/// sled's page cache. Its default of 1 GiB turns a growing index into resident memory,
/// and sled 0.34 holds far more than the figure it is given: with 64 MiB, an index of
/// 320,000 intents (flushed every 10,000) held 286 MB resident and still grew ~0.9 KB per
/// intent; with 1 MiB, 200,000 held 58 MB, growing ~0.05 KB per intent
/// (`tests/memory_bench.rs`, `memory_bench_index_alone`). 8 MiB keeps the hot pages of
/// recent keys (dedup reads them) without growing with the index.
pub const INDEX_CACHE_BYTES: u64 = 8 << 20;
/// The directory of the index under a data directory.
pub const INDEX_DIR: &str = "index";
/// The one sled tree the index lives in (keys are prefixed by kind).
/// Versioned with the encoding of `Intent`: an index written by a build whose `Intent`
/// differs is not read (the tree is re-folded from the log).
pub(crate) const TREE_NAME: &str = "intents_v2";
const PREFIX_INTENT: u8 = b'i';
const PREFIX_KEY: u8 = b'k';
const PREFIX_STATE: u8 = b's';
const PREFIX_TIME: u8 = b't';
const META_APPLIED_LSN: &[u8] = b"m/applied_lsn";
/// How long open waits for another handle in this process to release sled's file lock.
const LOCK_WAIT_MS_MAX: u64 = 5_000;
const LOCK_RETRY_MS: u64 = 50;
/// Names tried for a moved-aside index in one second before open gives up.
const MOVE_ASIDE_NAMES_MAX: usize = 100;
/// Index entries read per step of a listing.
const LIST_PAGE: usize = 256;

fn index_error(context: &str, error: impl std::fmt::Display) -> Error {
    Error::Index(format!("{context}: {error}"))
}

fn intent_key(id: IntentId) -> Vec<u8> {
    let mut key = Vec::with_capacity(17);
    key.push(PREFIX_INTENT);
    key.extend_from_slice(&id.0);
    key
}

fn key_index_key(connector: &str, key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + connector.len() + key.len());
    out.push(PREFIX_KEY);
    out.extend_from_slice(connector.as_bytes());
    out.push(0);
    out.extend_from_slice(key.as_bytes());
    out
}

fn state_prefix(state: Option<StateName>) -> Vec<u8> {
    match state {
        Some(state) => {
            let mut out = vec![PREFIX_STATE];
            out.extend_from_slice(state.as_str().as_bytes());
            out.push(0);
            out
        }
        None => vec![PREFIX_TIME],
    }
}

fn ordered_key(prefix: &[u8], submitted_at_ms: u64, id: IntentId) -> Vec<u8> {
    let mut out = Vec::with_capacity(prefix.len() + 24);
    out.extend_from_slice(prefix);
    out.extend_from_slice(&submitted_at_ms.to_be_bytes());
    out.extend_from_slice(&id.0);
    out
}

fn state_key(intent: &Intent) -> Vec<u8> {
    ordered_key(
        &state_prefix(Some(intent.state.name())),
        intent.spec.submitted_at_ms,
        intent.spec.id,
    )
}

fn decode_u64(bytes: &[u8]) -> Result<u64> {
    let array: [u8; 8] = bytes
        .try_into()
        .map_err(|_| Error::Index(format!("a stored LSN is {} bytes, not 8", bytes.len())))?;
    Ok(u64::from_be_bytes(array))
}

/// Pages through a store's listing so callers can filter without under-filling a page.
pub(crate) fn list_page_size() -> usize {
    LIST_PAGE
}
