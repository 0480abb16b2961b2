//! `SledStore`: the index in sled, one tree with intents by id, keys, state entries in
//! submit order, and the applied LSN; history pruning walks the state entries.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::*;
use crate::error::{Error, Result};
use crate::intent::{Intent, IntentId, StateName};

/// The sled-backed index in `<data_dir>/index/`.
pub struct SledStore {
    pub(super) db: sled::Db,
    pub(super) tree: sled::Tree,
    pub(super) dir: PathBuf,
    /// Serialises read-modify-write of `put` (compare LSNs, move state entries).
    pub(super) write: Mutex<()>,
}

impl SledStore {
    /// How many entries the index holds (tests check that pruning leaves none behind).
    #[cfg(test)]
    pub(crate) fn entries(&self) -> usize {
        self.tree.len()
    }

    /// The directory the index lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub(super) fn decode_intent(bytes: &[u8]) -> Result<Intent> {
        intent_log::codec::decode(bytes).map_err(|error| index_error("decoding an intent", error))
    }

    fn serial(&self) -> std::sync::MutexGuard<'_, ()> {
        match self.write.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Adds `intent`'s entries to `batch` unless the index (or, for an intent this batch
    /// already holds, `earlier`: its LSN and state key) has it at the same or a later LSN.
    /// Returns the state key written, or `None` when the stored copy was kept.
    fn stage(
        &self,
        batch: &mut sled::Batch,
        intent: &Intent,
        earlier: Option<(u64, Vec<u8>)>,
    ) -> Result<Option<Vec<u8>>> {
        let id_key = intent_key(intent.spec.id);
        let old = match earlier {
            Some(earlier) => Some(earlier),
            None => match self
                .tree
                .get(&id_key)
                .map_err(|error| index_error("reading an intent", error))?
            {
                // An unreadable old copy is overwritten (its stale entries are skipped on
                // read).
                Some(bytes) => Self::decode_intent(&bytes)
                    .ok()
                    .map(|old| (old.last_lsn, state_key(&old))),
                None => None,
            },
        };
        if old
            .as_ref()
            .is_some_and(|(old_lsn, _)| *old_lsn >= intent.last_lsn)
        {
            return Ok(None);
        }
        let new_state_key = state_key(intent);
        if let Some((_, old_state_key)) = old {
            if old_state_key != new_state_key {
                batch.remove(old_state_key);
            }
        }
        batch.insert(new_state_key.clone(), &[][..]);
        batch.insert(
            ordered_key(
                &state_prefix(None),
                intent.spec.submitted_at_ms,
                intent.spec.id,
            ),
            &[][..],
        );
        batch.insert(
            key_index_key(&intent.spec.connector, &intent.spec.idempotency_key),
            &intent.spec.id.0[..],
        );
        let bytes = intent_log::codec::encode(intent)
            .map_err(|error| index_error("encoding an intent", error))?;
        batch.insert(id_key, bytes);
        Ok(Some(new_state_key))
    }

    pub(super) fn applied_in(tree: &sled::Tree) -> Result<u64> {
        match tree
            .get(META_APPLIED_LSN)
            .map_err(|error| index_error("reading the applied LSN", error))?
        {
            Some(bytes) => decode_u64(&bytes),
            None => Ok(0),
        }
    }
}

impl StateStore for SledStore {
    fn put(&self, intent: &Intent, lsn: u64) -> Result<bool> {
        let _serial = self.serial();
        let applied = Self::applied_in(&self.tree)?;
        let mut batch = sled::Batch::default();
        let newer = self.stage(&mut batch, intent, None)?.is_some();
        if lsn > applied {
            batch.insert(META_APPLIED_LSN, &lsn.to_be_bytes()[..]);
        }
        self.tree
            .apply_batch(batch)
            .map_err(|error| index_error("writing an intent", error))?;
        Ok(newer)
    }

    fn put_many(&self, intents: &[Intent]) -> Result<usize> {
        let _serial = self.serial();
        let applied = Self::applied_in(&self.tree)?;
        let mut batch = sled::Batch::default();
        // What this batch already holds of an intent listed twice (the later copy wins
        // only if newer, as across calls).
        let mut staged: HashMap<IntentId, (u64, Vec<u8>)> = HashMap::new();
        let mut written = 0;
        let mut lsn = applied;
        for intent in intents {
            let earlier = staged.get(&intent.spec.id).cloned();
            if let Some(state_key) = self.stage(&mut batch, intent, earlier)? {
                staged.insert(intent.spec.id, (intent.last_lsn, state_key));
                written += 1;
            }
            lsn = lsn.max(intent.last_lsn);
        }
        if lsn > applied {
            batch.insert(META_APPLIED_LSN, &lsn.to_be_bytes()[..]);
        }
        self.tree
            .apply_batch(batch)
            .map_err(|error| index_error("writing intents", error))?;
        Ok(written)
    }

    fn get(&self, id: IntentId) -> Result<Option<Intent>> {
        match self
            .tree
            .get(intent_key(id))
            .map_err(|error| index_error("reading an intent", error))?
        {
            Some(bytes) => Self::decode_intent(&bytes).map(Some),
            None => Ok(None),
        }
    }

    fn get_by_key(&self, connector: &str, key: &str) -> Result<Option<Intent>> {
        let Some(bytes) = self
            .tree
            .get(key_index_key(connector, key))
            .map_err(|error| index_error("reading the key index", error))?
        else {
            return Ok(None);
        };
        let id: [u8; 16] = bytes.as_ref().try_into().map_err(|_| {
            Error::Index(format!(
                "a key index entry is {} bytes, not 16",
                bytes.len()
            ))
        })?;
        self.get(IntentId(id))
    }

    fn list(
        &self,
        state: Option<StateName>,
        after: Option<ListCursor>,
        limit: usize,
    ) -> Result<Vec<Intent>> {
        let prefix = state_prefix(state);
        let start = match after {
            Some((submitted_at_ms, id)) => ordered_key(&prefix, submitted_at_ms, id),
            None => prefix.clone(),
        };
        let mut intents = Vec::new();
        for entry in self.tree.range(start.clone()..) {
            if intents.len() >= limit {
                break;
            }
            let (key, _) = entry.map_err(|error| index_error("listing", error))?;
            if !key.starts_with(&prefix) {
                break;
            }
            if after.is_some() && key.as_ref() == start.as_slice() {
                continue;
            }
            let Some(id_bytes) = key.get(key.len().saturating_sub(16)..) else {
                continue;
            };
            let Ok(id) = <[u8; 16]>::try_from(id_bytes) else {
                continue;
            };
            let Some(intent) = self.get(IntentId(id))? else {
                continue;
            };
            // A state entry left behind by an unreadable older copy is skipped.
            if state.is_some_and(|state| intent.state.name() != state) {
                continue;
            }
            intents.push(intent);
        }
        Ok(intents)
    }

    fn applied_lsn(&self) -> Result<u64> {
        Self::applied_in(&self.tree)
    }

    fn mark_applied(&self, lsn: u64) -> Result<()> {
        let _serial = match self.write.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if lsn > Self::applied_in(&self.tree)? {
            self.tree
                .insert(META_APPLIED_LSN, &lsn.to_be_bytes()[..])
                .map_err(|error| index_error("writing the applied LSN", error))?;
        }
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        self.db
            .flush()
            .map_err(|error| index_error("flushing", error))?;
        Ok(())
    }

    fn prune_finished_before(&self, cutoff_ms: u64, limit: usize) -> Result<usize> {
        let _serial = match self.write.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut batch = sled::Batch::default();
        let mut removed = 0;
        for state in PRUNABLE_STATES {
            if removed >= limit {
                break;
            }
            removed += self.prune_state(state, cutoff_ms, limit - removed, &mut batch)?;
        }
        self.tree
            .apply_batch(batch)
            .map_err(|error| index_error("pruning history", error))?;
        Ok(removed)
    }
}

impl SledStore {
    /// Adds to `batch` the removal of at most `limit` intents in `state` last updated
    /// before `cutoff_ms`. The state entries are in submit order and an intent is updated
    /// no earlier than it is submitted, so the scan stops at the first one submitted at or
    /// after the cutoff. State entries whose intent is gone are removed too.
    fn prune_state(
        &self,
        state: StateName,
        cutoff_ms: u64,
        limit: usize,
        batch: &mut sled::Batch,
    ) -> Result<usize> {
        let prefix = state_prefix(Some(state));
        let mut removed = 0;
        for entry in self.tree.range(prefix.clone()..) {
            if removed >= limit {
                break;
            }
            let (key, _) = entry.map_err(|error| index_error("pruning history", error))?;
            if !key.starts_with(&prefix) {
                break;
            }
            let Some(rest) = key.get(prefix.len()..) else {
                continue;
            };
            let (Some(time), Some(id)) = (rest.get(..8), rest.get(8..)) else {
                continue;
            };
            let (Ok(time), Ok(id)) = (<[u8; 8]>::try_from(time), <[u8; 16]>::try_from(id)) else {
                continue;
            };
            if u64::from_be_bytes(time) >= cutoff_ms {
                break;
            }
            let id = IntentId(id);
            let stored = self
                .tree
                .get(intent_key(id))
                .map_err(|error| index_error("pruning history", error))?;
            let Some(bytes) = stored else {
                batch.remove(key);
                continue;
            };
            // An unreadable copy is left for an operator; a stale entry (the intent has
            // moved on) is skipped, as listings skip it.
            let Ok(intent) = Self::decode_intent(&bytes) else {
                continue;
            };
            if intent.state.name() != state || intent.updated_at_ms >= cutoff_ms {
                continue;
            }
            self.remove_intent(&intent, batch)?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Adds the removal of one intent and its entries to `batch`. Its key entry goes only
    /// if it still names this intent (a key submitted again later names the newer one).
    fn remove_intent(&self, intent: &Intent, batch: &mut sled::Batch) -> Result<()> {
        let spec = &intent.spec;
        batch.remove(state_key(intent));
        batch.remove(ordered_key(
            &state_prefix(None),
            spec.submitted_at_ms,
            spec.id,
        ));
        batch.remove(intent_key(spec.id));
        let key_entry = key_index_key(&spec.connector, &spec.idempotency_key);
        let named = self
            .tree
            .get(&key_entry)
            .map_err(|error| index_error("pruning history", error))?;
        if named.is_some_and(|named| named.as_ref() == spec.id.0.as_slice()) {
            batch.remove(key_entry);
        }
        Ok(())
    }
}
