//! Opening the index: waiting for sled's file lock, removing snapshots sled never
//! finished, and telling proven damage (the directory is moved aside and the index
//! rebuilt from the log) from a failure that proves nothing (open fails, files untouched).

use std::path::{Path, PathBuf};
use std::time::Duration;

use std::sync::Mutex;

use super::*;
use crate::error::{Error, Result};

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
            .cache_capacity(INDEX_CACHE_BYTES)
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
