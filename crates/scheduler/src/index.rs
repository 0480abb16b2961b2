//! The queryable index behind the engine (DESIGN.md §3): intents by id, by (connector,
//! key) and by state, with the last applied LSN, folded from the log. It is an index, not
//! a store of record: the log decides, the index is re-folded from it where it is behind,
//! and no log segment is ever deleted on the strength of the index alone.
//!
//! `StateStore` is the seam; `SledStore` (sled 0.34.7 in `<data_dir>/index/`) is the one
//! implementation.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::intent::{Intent, IntentId, StateName};

/// Where an index listing resumes: strictly after this (submitted_at_ms, id).
pub type ListCursor = (u64, IntentId);

/// A queryable index of intents, folded from the log.
pub trait StateStore: Send + Sync {
    /// Stores `intent` as of log record `lsn` (its `last_lsn`), with its key and state
    /// entries, and raises the applied LSN to `lsn`, in one atomic step. A stored copy at
    /// the same or a later LSN is kept (writes may arrive out of order). Returns whether
    /// the intent itself was written.
    fn put(&self, intent: &Intent, lsn: u64) -> Result<bool>;
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
}

/// The directory of the index under a data directory.
pub const INDEX_DIR: &str = "index";
/// The one sled tree the index lives in (keys are prefixed by kind).
const TREE_NAME: &str = "intents_v1";
const PREFIX_INTENT: u8 = b'i';
const PREFIX_KEY: u8 = b'k';
const PREFIX_STATE: u8 = b's';
const PREFIX_TIME: u8 = b't';
const META_APPLIED_LSN: &[u8] = b"m/applied_lsn";
/// How long open waits for another handle in this process to release sled's file lock.
const LOCK_WAIT_MS_MAX: u64 = 5_000;
const LOCK_RETRY_MS: u64 = 50;
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

/// Why a sled index could not be opened.
#[derive(Debug)]
pub enum OpenFailure {
    /// Another handle holds sled's lock (still open in this process or another).
    Locked(String),
    /// The files are unreadable: delete and rebuild from the log.
    Unreadable(String),
}

/// The sled-backed index in `<data_dir>/index/`.
pub struct SledStore {
    db: sled::Db,
    tree: sled::Tree,
    dir: PathBuf,
    /// Serialises read-modify-write of `put` (compare LSNs, move state entries).
    write: Mutex<()>,
}

impl SledStore {
    /// Opens (or creates) the index in `dir`, waiting a while for sled's file lock.
    pub fn open(dir: &Path) -> std::result::Result<SledStore, OpenFailure> {
        let mut waited_ms = 0;
        loop {
            match Self::try_open(dir) {
                Err(OpenFailure::Locked(_)) if waited_ms < LOCK_WAIT_MS_MAX => {
                    std::thread::sleep(Duration::from_millis(LOCK_RETRY_MS));
                    waited_ms += LOCK_RETRY_MS;
                }
                other => return other,
            }
        }
    }

    fn try_open(dir: &Path) -> std::result::Result<SledStore, OpenFailure> {
        let db = sled::Config::new().path(dir).open().map_err(|error| {
            let text = error.to_string();
            if text.contains("could not acquire lock") {
                OpenFailure::Locked(text)
            } else {
                OpenFailure::Unreadable(text)
            }
        })?;
        let tree = db
            .open_tree(TREE_NAME)
            .map_err(|error| OpenFailure::Unreadable(error.to_string()))?;
        let store = SledStore {
            db,
            tree,
            dir: dir.to_path_buf(),
            write: Mutex::new(()),
        };
        store
            .applied_lsn()
            .map_err(|error| OpenFailure::Unreadable(error.to_string()))?;
        Ok(store)
    }

    /// Opens the index in `dir`; if it is unreadable, deletes it and starts an empty one
    /// (to be re-folded from the log) with a warning. Returns whether it was rebuilt.
    pub fn open_or_rebuild(dir: &Path) -> Result<(SledStore, bool)> {
        match Self::open(dir) {
            Ok(store) => Ok((store, false)),
            Err(OpenFailure::Locked(text)) => Err(Error::Index(format!(
                "{} is in use by another engine: {text}",
                dir.display()
            ))),
            Err(OpenFailure::Unreadable(text)) => {
                tracing::warn!(dir = %dir.display(), error = %text, "the index is unreadable: deleting it and rebuilding it from the log");
                std::fs::remove_dir_all(dir)
                    .map_err(|error| index_error(&format!("removing {}", dir.display()), error))?;
                match Self::open(dir) {
                    Ok(store) => Ok((store, true)),
                    Err(OpenFailure::Locked(text) | OpenFailure::Unreadable(text)) => {
                        Err(Error::Index(format!("creating {}: {text}", dir.display())))
                    }
                }
            }
        }
    }

    /// The directory the index lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn decode_intent(bytes: &[u8]) -> Result<Intent> {
        intent_log::codec::decode(bytes).map_err(|error| index_error("decoding an intent", error))
    }

    fn applied_in(tree: &sled::Tree) -> Result<u64> {
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
        let _serial = match self.write.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let id_key = intent_key(intent.spec.id);
        let old = match self
            .tree
            .get(&id_key)
            .map_err(|error| index_error("reading an intent", error))?
        {
            // An unreadable old copy is overwritten (its stale entries are skipped on read).
            Some(bytes) => Self::decode_intent(&bytes).ok(),
            None => None,
        };
        let applied = Self::applied_in(&self.tree)?;
        let mut batch = sled::Batch::default();
        let newer = old
            .as_ref()
            .is_none_or(|old| old.last_lsn < intent.last_lsn);
        if newer {
            let new_state_key = state_key(intent);
            if let Some(old) = &old {
                let old_state_key = state_key(old);
                if old_state_key != new_state_key {
                    batch.remove(old_state_key);
                }
            }
            batch.insert(new_state_key, &[][..]);
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
        }
        if lsn > applied {
            batch.insert(META_APPLIED_LSN, &lsn.to_be_bytes()[..]);
        }
        self.tree
            .apply_batch(batch)
            .map_err(|error| index_error("writing an intent", error))?;
        Ok(newer)
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
}

/// Pages through a store's listing so callers can filter without under-filling a page.
pub(crate) fn list_page_size() -> usize {
    LIST_PAGE
}
