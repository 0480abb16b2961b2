//! The entries of a new checkpoint, produced lazily so that finished intents are never
//! all in memory at once (issue 11): connector pauses and the intents in memory, then the
//! intents retired since the last checkpoint read back from the retired spool (each
//! checked against the digest memory took), then the finished intents of the previous
//! checkpoint still inside the retention window, copied as they are.
//!
//! `Log::write_checkpoint` takes an infallible iterator; a failure here (an entry that
//! does not decode, a retired intent missing from the spool or changed) is kept in
//! `error` and ends the iteration with an entry of the reserved kind 0, which the log
//! refuses before renaming the checkpoint into place: the previous checkpoint stays in
//! force and nothing is deleted.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use intent_log::CheckpointReader;

use super::retire::Retired;
use super::retired_keys::RetiredKeys;
use super::spool::{digest, SpoolReader};
use super::state::is_finished;
use crate::error::{Error, Result};
use crate::index::StateStore;
use crate::intent::{Intent, IntentId, StateName};
use crate::record::{Record, RECORD_KIND};

/// When a finished intent may be forgotten: past the key-retention window (G4 holds
/// within it) and past the longest spending-guard window.
#[derive(Clone, Copy, Debug)]
pub(super) struct Expiry {
    pub(super) now_ms: u64,
    pub(super) retention_ms: u64,
    pub(super) guard_window_ms: u64,
}

impl Expiry {
    pub(super) fn expired(&self, intent: &Intent) -> bool {
        intent.updated_at_ms.saturating_add(self.retention_ms) <= self.now_ms
            && intent
                .spec
                .submitted_at_ms
                .saturating_add(self.guard_window_ms)
                <= self.now_ms
    }
}

/// Where the retired intents are read back: the spool, and the index when the spool
/// fails (a damaged or lost spool must not stop compaction until a restart).
pub(super) struct RetiredSources {
    pub(super) spool: Option<SpoolReader>,
    pub(super) store: Option<Arc<dyn StateStore>>,
}

/// The lazily produced entries of one checkpoint.
pub(super) struct CheckpointEntries {
    /// Pauses and the intents in memory, already encoded.
    head: std::vec::IntoIter<(u8, Vec<u8>)>,
    sources: RetiredSources,
    retired: std::vec::IntoIter<Retired>,
    previous: Option<CheckpointReader>,
    /// Intents written from memory or from `retired`: not copied again from `previous`.
    written: HashSet<IntentId>,
    expiry: Expiry,
    pub(super) error: Option<Error>,
    /// Intents written (from every source).
    pub(super) kept: usize,
    /// Finished intents dropped as expired (retired ones, or the previous checkpoint's).
    pub(super) expired: usize,
    /// Retired intents read from the index because the spool failed.
    pub(super) from_index: usize,
    /// Finished intents written from the spool, the index or the previous checkpoint, by
    /// state.
    pub(super) retained: HashMap<StateName, usize>,
    /// Their keys: the filter that replaces the engine's once this checkpoint is in
    /// force (keys past the window leave it).
    pub(super) keys: RetiredKeys,
}

impl CheckpointEntries {
    /// `written`: the ids of the intents in `head` (pauses aside).
    pub(super) fn new(
        head: Vec<(u8, Vec<u8>)>,
        written: HashSet<IntentId>,
        retired: Vec<Retired>,
        sources: RetiredSources,
        previous: Option<CheckpointReader>,
        expiry: Expiry,
        keys_expected: usize,
    ) -> CheckpointEntries {
        let head_intents = written.len();
        let mut written = written;
        written.extend(retired.iter().map(|entry| entry.id));
        CheckpointEntries {
            head: head.into_iter(),
            sources,
            retired: retired.into_iter(),
            previous,
            written,
            expiry,
            error: None,
            kept: head_intents,
            expired: 0,
            from_index: 0,
            retained: HashMap::new(),
            keys: RetiredKeys::with_capacity(keys_expected),
        }
    }

    /// The next retired intent inside the window, read back from the retired spool, or
    /// from the index once the spool failed (each copy checked against the digest memory
    /// took; both failing fails the compaction, and nothing is deleted).
    fn next_retired(&mut self) -> Result<Option<(u8, Vec<u8>)>> {
        while let Some(entry) = self.retired.next() {
            let from_spool = match self.sources.spool.as_mut() {
                Some(spool) => from_spool(spool, entry),
                None => Err(missing(entry, "the retired spool is closed")),
            };
            let (intent, body) = match from_spool {
                Ok(found) => found,
                Err(error) => {
                    if self.sources.spool.take().is_some() {
                        tracing::warn!(%error, "the retired spool failed: compaction reads the retired intents from the index");
                    }
                    self.read_from_index(entry)?
                }
            };
            if self.keep(&intent) {
                return Ok(Some((RECORD_KIND, body)));
            }
        }
        Ok(None)
    }

    /// A retired intent read from the index (the spool failed), as its checkpoint entry.
    fn read_from_index(&mut self, entry: Retired) -> Result<(Box<Intent>, Vec<u8>)> {
        let Some(store) = self.sources.store.as_ref() else {
            return Err(missing(entry, "the spool failed and the index is closed"));
        };
        let intent = store
            .get(entry.id)?
            .ok_or_else(|| missing(entry, "the spool failed and the index does not hold it"))?;
        let body = Record::Snapshot(Box::new(intent.clone())).encode()?;
        if intent.last_lsn != entry.last_lsn || digest(&body) != entry.digest {
            return Err(missing(
                entry,
                "the spool failed and the index holds another copy",
            ));
        }
        self.from_index += 1;
        Ok((Box::new(intent), body))
    }

    /// Counts a finished intent out of memory: written (true; its key goes into the new
    /// filter) or expired (false).
    fn keep(&mut self, intent: &Intent) -> bool {
        if self.expiry.expired(intent) {
            self.expired += 1;
            return false;
        }
        self.kept += 1;
        *self.retained.entry(intent.state.name()).or_insert(0) += 1;
        self.keys
            .insert(&intent.spec.connector, &intent.spec.idempotency_key);
        true
    }

    /// The next finished intent of the previous checkpoint inside the window, as it is.
    fn next_previous(&mut self) -> Result<Option<(u8, Vec<u8>)>> {
        let Some(mut reader) = self.previous.take() else {
            return Ok(None);
        };
        let next = self.next_from(&mut reader);
        self.previous = Some(reader);
        next
    }

    fn next_from(&mut self, reader: &mut CheckpointReader) -> Result<Option<(u8, Vec<u8>)>> {
        for entry in reader.by_ref() {
            let (kind, body) = entry?;
            if kind != RECORD_KIND {
                return Err(Error::Replay(format!(
                    "previous checkpoint: unknown entry kind {kind}"
                )));
            }
            let record = Record::decode(&body)
                .map_err(|error| Error::Replay(format!("previous checkpoint entry: {error}")))?;
            // Pauses and live intents are in memory: written from there.
            let Record::Snapshot(intent) = record else {
                continue;
            };
            if !is_finished(&intent.state) || self.written.contains(&intent.spec.id) {
                continue;
            }
            if self.keep(&intent) {
                return Ok(Some((kind, body)));
            }
        }
        Ok(None)
    }
}

/// A retired intent read from the spool, checked against its entry.
fn from_spool(spool: &mut SpoolReader, entry: Retired) -> Result<(Box<Intent>, Vec<u8>)> {
    let body = spool
        .read_at(entry.spool_offset)
        .map_err(|error| missing(entry, &error.to_string()))?;
    if digest(&body) != entry.digest {
        return Err(missing(entry, "the retired spool holds another entry"));
    }
    let intent = match Record::decode(&body) {
        Ok(Record::Snapshot(intent)) => intent,
        _ => return Err(missing(entry, "its spool entry is not its snapshot")),
    };
    if intent.spec.id != entry.id || intent.last_lsn != entry.last_lsn {
        return Err(missing(entry, "the retired spool holds another intent"));
    }
    Ok((intent, body))
}

fn missing(entry: Retired, why: &str) -> Error {
    Error::Index(format!(
        "intent {} left memory for the index but {why}: not compacting (its records stay in \
         the log; a restart folds it back)",
        entry.id
    ))
}

impl Iterator for CheckpointEntries {
    type Item = (u8, Vec<u8>);

    fn next(&mut self) -> Option<(u8, Vec<u8>)> {
        if self.error.is_some() {
            return None;
        }
        if let Some(entry) = self.head.next() {
            return Some(entry);
        }
        let next = match self.next_retired() {
            Ok(None) => self.next_previous(),
            other => other,
        };
        match next {
            Ok(entry) => entry,
            Err(error) => {
                self.error = Some(error);
                // Kind 0 is reserved: the log refuses it before the checkpoint is renamed
                // into place.
                Some((0, Vec::new()))
            }
        }
    }
}
