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

/// Why a sled index could not be opened, and so what open may do about it. Only proof
/// that the files are damaged allows replacing them; anything that may pass leaves them
/// alone, because the index is the only copy of the history compaction removed from the
/// log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenFailure {
    /// Another handle holds sled's lock (still open in this process or another).
    Locked(String),
    /// Proven damage: sled read the files and found them corrupt or in a format it cannot
    /// read, or the index's own metadata does not decode. Reading again gives the same
    /// answer, so the directory is moved aside and the index rebuilt from the log.
    Corrupt(String),
    /// Anything that proves nothing about the files: an I/O error (disk full, EIO, a
    /// permission) or a sled bug report. Open fails and the directory is left as it is.
    Failed(String),
}

/// Classes a sled error met while opening the index (see [`OpenFailure`]). `Unsupported`
/// is sled refusing bytes it read (a config that does not parse, a format version it
/// does not know): a property of the files, not of the moment, so it counts as damage.
pub fn classify_open_error(error: &sled::Error) -> OpenFailure {
    let text = error.to_string();
    match error {
        // sled reports its lock as an `Other` I/O error with this text (config.rs).
        sled::Error::Io(io)
            if io.kind() == std::io::ErrorKind::Other
                && text.contains("could not acquire lock") =>
        {
            OpenFailure::Locked(text)
        }
        sled::Error::Corruption { .. } | sled::Error::Unsupported(_) => OpenFailure::Corrupt(text),
        _ => OpenFailure::Failed(text),
    }
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
        remove_unfinished_snapshots(dir)?;
        let db = sled::Config::new()
            .path(dir)
            .open()
            .map_err(|error| classify_open_error(&error))?;
        let tree = db
            .open_tree(TREE_NAME)
            .map_err(|error| classify_open_error(&error))?;
        let applied = tree
            .get(META_APPLIED_LSN)
            .map_err(|error| classify_open_error(&error))?;
        if let Some(bytes) = applied {
            decode_u64(&bytes).map_err(|error| OpenFailure::Corrupt(error.to_string()))?;
        }
        Ok(SledStore {
            db,
            tree,
            dir: dir.to_path_buf(),
            write: Mutex::new(()),
        })
    }

    /// Opens the index in `dir`. Proven damage ([`OpenFailure::Corrupt`]) moves the
    /// directory aside to `index.corrupt-<unix-seconds>` beside it (never deletes it: it
    /// may hold history the log no longer has) and starts an empty index, to be re-folded
    /// from the log; the moved path is returned. Any other failure is an `Error::Index`
    /// naming the cause, with the directory untouched.
    pub fn open_or_rebuild(dir: &Path) -> Result<(SledStore, Option<PathBuf>)> {
        let damage = match Self::open(dir) {
            Ok(store) => return Ok((store, None)),
            Err(OpenFailure::Locked(text)) => {
                return Err(Error::Index(format!(
                    "{} is in use by another engine: {text}",
                    dir.display()
                )))
            }
            Err(OpenFailure::Failed(text)) => {
                return Err(Error::Index(format!(
                    "opening the index in {}: {text} (not proof of damage: the directory \
                     is left as it is; fix the cause and open again)",
                    dir.display()
                )))
            }
            Err(OpenFailure::Corrupt(text)) => text,
        };
        let moved = move_aside(dir, unix_seconds())?;
        tracing::error!(
            dir = %dir.display(),
            moved_to = %moved.display(),
            error = %damage,
            "the index is corrupt: moved it aside and rebuilding it from the log; history \
             that compaction removed from the log is only in the moved copy"
        );
        match Self::open(dir) {
            Ok(store) => Ok((store, Some(moved))),
            Err(
                OpenFailure::Locked(text) | OpenFailure::Corrupt(text) | OpenFailure::Failed(text),
            ) => Err(Error::Index(format!(
                "creating a new index in {} (the corrupt one is in {}): {text}",
                dir.display(),
                moved.display()
            ))),
        }
    }

    /// How many entries the index holds (tests check that pruning leaves none behind).
    #[cfg(test)]
    pub(crate) fn entries(&self) -> usize {
        self.tree.len()
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

/// Removes sled's `snap.*.generating` files: snapshots it began but never renamed into
/// place (sled writes, syncs, then renames, and only then drops older snapshots, so a
/// complete one always remains). sled 0.34 would read such a file as its newest snapshot
/// and report corruption; a write cut short by a full disk leaves exactly that.
fn remove_unfinished_snapshots(dir: &Path) -> std::result::Result<(), OpenFailure> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => {
            return Err(OpenFailure::Failed(format!(
                "listing {}: {error}",
                dir.display()
            )))
        }
    };
    for entry in entries {
        let path = entry
            .map_err(|error| OpenFailure::Failed(format!("listing {}: {error}", dir.display())))?
            .path();
        let name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned());
        if name.is_some_and(|name| name.starts_with("snap.") && name.ends_with(".generating")) {
            tracing::warn!(file = %path.display(), "removing an unfinished sled snapshot");
            std::fs::remove_file(&path).map_err(|error| {
                OpenFailure::Failed(format!("removing {}: {error}", path.display()))
            })?;
        }
    }
    Ok(())
}

/// Seconds since the Unix epoch, for the name of a moved-aside index (0 if the clock is
/// before 1970: the name then still says which copy is the older by its suffix).
fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// Moves a damaged index directory to `index.corrupt-<seconds>` (with `-<n>` appended if
/// that name is taken) in the same parent, and syncs the parent so the rename is durable
/// before a new index is created in its place.
fn move_aside(dir: &Path, seconds: u64) -> Result<PathBuf> {
    let parent = dir
        .parent()
        .ok_or_else(|| Error::Index(format!("{} has no parent directory", dir.display())))?;
    let name = dir
        .file_name()
        .map_or_else(|| INDEX_DIR.into(), |name| name.to_string_lossy());
    let base = format!("{name}.corrupt-{seconds}");
    let target = (0..MOVE_ASIDE_NAMES_MAX)
        .map(|number| match number {
            0 => parent.join(&base),
            _ => parent.join(format!("{base}-{number}")),
        })
        .find(|path| !path.exists())
        .ok_or_else(|| {
            Error::Index(format!(
                "{MOVE_ASIDE_NAMES_MAX} directories named {base}* exist beside {}: \
                 refusing to move the corrupt index aside",
                dir.display()
            ))
        })?;
    std::fs::rename(dir, &target).map_err(|error| {
        index_error(
            &format!(
                "moving the corrupt index {} to {}",
                dir.display(),
                target.display()
            ),
            error,
        )
    })?;
    std::fs::File::open(parent)
        .and_then(|parent| parent.sync_all())
        .map_err(|error| index_error(&format!("syncing {}", parent.display()), error))?;
    Ok(target)
}

/// Pages through a store's listing so callers can filter without under-filling a page.
pub(crate) fn list_page_size() -> usize {
    LIST_PAGE
}
