//! An in-memory, deterministic file system for crash testing, behind the same
//! [`FileSystem`] trait as the real one.
//!
//! Each file keeps its bytes and how many of them are durable (synced). Each directory
//! entry is live (visible now) and durable (survives a crash) separately. [`SimFileSystem::crash`]
//! is a power cut followed by a reboot: un-synced bytes survive as a random prefix whose
//! 512-byte sectors may each be zeroed or garbled (torn writes), and un-synced directory
//! changes are randomly kept or lost (the crash model is `sim_fs/crash.rs`). Faults (EIO,
//! ENOSPC) can be injected on writes, syncs and directory syncs, and
//! [`SimFileSystem::crash_after_ops`] kills the "process" at an exact operation so a test
//! can crash anywhere: mid-batch, between a write and its sync, during rotation or
//! truncation, during recovery itself.
//!
//! Not modelled: directories themselves are always durable; re-creating a file whose
//! removal was never synced is refused (the log never does it).

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};

use rand::rngs::SmallRng;
use rand::SeedableRng;

use crate::fs::{FileSystem, LockGuard, WritableFile};

mod crash;
mod handle;

use crash::{lose_unsynced_bytes, revert_overwrites, settle_entry, settle_renames};
use handle::SimHandle;

/// Sector size used for torn writes.
pub const SECTOR_BYTES: usize = 512;

/// The operations a fault can target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimOp {
    Write,
    Sync,
    SyncDir,
    Create,
    Remove,
    Rename,
    /// The rename that gives a prepared spare its segment name (`rename_spare`).
    RenameSpare,
}

/// The error an injected fault returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimError {
    /// EIO. On a write nothing is written.
    Eio,
    /// ENOSPC. On a write the bytes that fit are written first.
    Enospc,
}

/// A fault: the `skip`+1-th matching operation from now fails; with `repeat` every one
/// after it fails too.
#[derive(Clone, Copy, Debug)]
pub struct SimFault {
    pub op: SimOp,
    pub skip: u64,
    pub error: SimError,
    pub repeat: bool,
}

/// The durable bytes of a sector before it was overwritten in place, and which of them
/// (`from..to`, offsets in the file) the overwrites since the last sync covered.
#[derive(Debug, Clone)]
struct Overwrite {
    from: usize,
    to: usize,
    old: Vec<u8>,
}

#[derive(Debug)]
struct SimFile {
    data: Vec<u8>,
    durable_len: usize,
    /// Sectors (by index) overwritten in place since the last sync: the range of the
    /// sector written, and the durable bytes it replaced. A crash keeps, reverts, zeroes or
    /// garbles each range; the sector's other bytes stay as they were.
    old_sectors: BTreeMap<usize, Overwrite>,
    entry_live: bool,
    entry_durable: bool,
    /// Set by a rename whose directory change is not durable yet: a crash either keeps
    /// the whole rename or undoes it (rename is atomic), never keeps both names or none.
    renamed_from: Option<PathBuf>,
}

struct SimState {
    files: BTreeMap<PathBuf, SimFile>,
    dirs: BTreeSet<PathBuf>,
    locks: BTreeSet<PathBuf>,
    generation: u64,
    rng: SmallRng,
    ops: u64,
    crash_after_ops: Option<u64>,
    dead: bool,
    faults: Vec<SimFault>,
    faults_fired: u64,
    capacity_bytes: Option<u64>,
    crashes: u64,
    torn_sectors: u64,
}

/// The simulated file system. Clones share the same state.
#[derive(Clone)]
pub struct SimFileSystem {
    state: Arc<Mutex<SimState>>,
}

impl std::fmt::Debug for SimFileSystem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimFileSystem").finish_non_exhaustive()
    }
}

fn error_of(kind: SimError) -> io::Error {
    match kind {
        SimError::Eio => io::Error::from_raw_os_error(5),
        SimError::Enospc => io::Error::from_raw_os_error(28),
    }
}

fn dead_process() -> io::Error {
    io::Error::other("simulated crash: the process is dead")
}

impl SimState {
    /// Counts a mutating operation and applies the crash point and the faults.
    fn begin(&mut self, op: SimOp) -> io::Result<()> {
        if self.dead {
            return Err(dead_process());
        }
        self.ops += 1;
        if let Some(limit) = self.crash_after_ops {
            if self.ops > limit {
                self.dead = true;
                return Err(dead_process());
            }
        }
        let mut fired = None;
        for (index, fault) in self.faults.iter_mut().enumerate() {
            if fault.op != op {
                continue;
            }
            if fault.skip > 0 {
                fault.skip -= 1;
                continue;
            }
            fired = Some((index, fault.error, fault.repeat));
            break;
        }
        if let Some((index, error, repeat)) = fired {
            if !repeat {
                self.faults.remove(index);
            }
            self.faults_fired += 1;
            return Err(error_of(error));
        }
        Ok(())
    }

    fn live_bytes(&self) -> u64 {
        self.files
            .values()
            .filter(|file| file.entry_live)
            .map(|file| file.data.len() as u64)
            .sum()
    }
}

impl SimFileSystem {
    /// A new, empty file system whose crashes are driven by `seed`.
    pub fn new(seed: u64) -> SimFileSystem {
        SimFileSystem {
            state: Arc::new(Mutex::new(SimState {
                files: BTreeMap::new(),
                dirs: BTreeSet::new(),
                locks: BTreeSet::new(),
                generation: 0,
                rng: SmallRng::seed_from_u64(seed),
                ops: 0,
                crash_after_ops: None,
                dead: false,
                faults: Vec::new(),
                faults_fired: 0,
                capacity_bytes: None,
                crashes: 0,
                torn_sectors: 0,
            })),
        }
    }

    fn state(&self) -> MutexGuard<'_, SimState> {
        // A panic while holding the lock can only come from a bug in this file; the state
        // is still consistent enough for the test that panicked to report it.
        match self.state.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Adds a fault.
    pub fn inject(&self, fault: SimFault) {
        self.state().faults.push(fault);
    }

    /// Removes every pending fault.
    pub fn clear_faults(&self) {
        self.state().faults.clear();
    }

    /// How many injected faults have fired so far (tests show their fault happened).
    pub fn faults_fired(&self) -> u64 {
        self.state().faults_fired
    }

    /// After `ops` more mutating operations, every operation fails as if the process died.
    pub fn crash_after_ops(&self, ops: u64) {
        let mut state = self.state();
        state.crash_after_ops = Some(state.ops + ops);
    }

    /// True once a crash point was reached (the "process" is dead until [`Self::crash`]).
    pub fn is_dead(&self) -> bool {
        self.state().dead
    }

    /// Mutating operations so far.
    pub fn ops(&self) -> u64 {
        self.state().ops
    }

    /// Limits the total bytes of all files; writes beyond it fail with ENOSPC.
    pub fn set_capacity_bytes(&self, capacity_bytes: Option<u64>) {
        self.state().capacity_bytes = capacity_bytes;
    }

    /// Crashes (all handles and locks die) and reboots: un-synced bytes are kept as a random
    /// prefix with torn sectors, un-synced directory changes are randomly kept or lost.
    pub fn crash(&self) {
        let mut guard = self.state();
        let state = &mut *guard;
        state.generation += 1;
        state.crashes += 1;
        state.dead = false;
        state.crash_after_ops = None;
        state.locks.clear();
        settle_renames(&mut state.files, &mut state.rng);
        let rng = &mut state.rng;
        let mut torn = 0;
        state.files.retain(|_, file| {
            settle_entry(file, rng);
            if !file.entry_live {
                return false;
            }
            torn += revert_overwrites(file, rng);
            torn += lose_unsynced_bytes(file, rng);
            true
        });
        state.torn_sectors += torn;
    }

    /// Crashes and reboots without losing anything un-synced (a process kill, not a power
    /// cut: the page cache survives).
    pub fn kill_process(&self) {
        let mut state = self.state();
        state.generation += 1;
        state.dead = false;
        state.crash_after_ops = None;
        state.locks.clear();
    }

    /// Crashes so far, and sectors torn by them.
    pub fn crash_counts(&self) -> (u64, u64) {
        let state = self.state();
        (state.crashes, state.torn_sectors)
    }

    /// A copy of a visible file's bytes.
    pub fn file_bytes(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.state();
        state
            .files
            .get(path)
            .filter(|file| file.entry_live)
            .map(|file| file.data.clone())
    }

    /// Overwrites bytes of a file in place, durably (simulated media corruption).
    pub fn overwrite_durable(&self, path: &Path, offset: usize, bytes: &[u8]) -> bool {
        let mut state = self.state();
        let Some(file) = state.files.get_mut(path) else {
            return false;
        };
        let Some(target) = file.data.get_mut(offset..offset + bytes.len()) else {
            return false;
        };
        target.copy_from_slice(bytes);
        true
    }
}

struct SimLock {
    fs: SimFileSystem,
    path: PathBuf,
    generation: u64,
}

impl LockGuard for SimLock {}

impl Drop for SimLock {
    fn drop(&mut self) {
        let mut state = self.fs.state();
        if state.generation == self.generation {
            state.locks.remove(&self.path);
        }
    }
}

fn parent(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

impl FileSystem for SimFileSystem {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state();
        if state.dead {
            return Err(dead_process());
        }
        state.dirs.insert(dir.to_path_buf());
        Ok(())
    }

    fn list_files(&self, dir: &Path) -> io::Result<Vec<String>> {
        let state = self.state();
        if state.dead {
            return Err(dead_process());
        }
        if !state.dirs.contains(dir) {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no such directory"));
        }
        Ok(state
            .files
            .iter()
            .filter(|(path, file)| file.entry_live && parent(path) == dir)
            .filter_map(|(path, _)| {
                path.file_name()
                    .and_then(|name| name.to_str())
                    .map(str::to_string)
            })
            .collect())
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let state = self.state();
        if state.dead {
            return Err(dead_process());
        }
        match state.files.get(path) {
            Some(file) if file.entry_live => Ok(file.data.clone()),
            _ => Err(io::Error::new(io::ErrorKind::NotFound, "no such file")),
        }
    }

    fn create_new(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let mut state = self.state();
        state.begin(SimOp::Create)?;
        if !state.dirs.contains(&parent(path)) {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no such directory"));
        }
        match state.files.get(path) {
            Some(file) if file.entry_live => {
                return Err(io::Error::new(io::ErrorKind::AlreadyExists, "file exists"))
            }
            Some(_) => {
                return Err(io::Error::other(
                    "sim: re-creating a file whose removal is not durable is not modelled",
                ))
            }
            None => {}
        }
        state.files.insert(
            path.to_path_buf(),
            SimFile {
                data: Vec::new(),
                durable_len: 0,
                old_sectors: BTreeMap::new(),
                entry_live: true,
                entry_durable: false,
                renamed_from: None,
            },
        );
        let generation = state.generation;
        Ok(Box::new(SimHandle {
            fs: self.clone(),
            path: path.to_path_buf(),
            generation,
            position: 0,
        }))
    }

    fn open_at(&self, path: &Path, offset: u64) -> io::Result<Box<dyn WritableFile>> {
        let state = self.state();
        if state.dead {
            return Err(dead_process());
        }
        match state.files.get(path) {
            Some(file) if file.entry_live => Ok(Box::new(SimHandle {
                fs: self.clone(),
                path: path.to_path_buf(),
                generation: state.generation,
                position: offset as usize,
            })),
            _ => Err(io::Error::new(io::ErrorKind::NotFound, "no such file")),
        }
    }

    /// Modelled as one step that is not counted as an operation and is never a fault
    /// target (the log prepares spares on a helper thread, whose timing is not
    /// deterministic; a failed spare only means the next segment is not preallocated).
    /// The bytes are durable, the directory entry is not, as on a real disk. It respects
    /// the capacity limit (ENOSPC: preallocation is where a full disk shows first).
    fn create_zeroed(&self, path: &Path, len: u64, _cancel: &AtomicBool) -> io::Result<()> {
        let mut state = self.state();
        if state.dead {
            return Err(dead_process());
        }
        if state.files.contains_key(path) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, "file exists"));
        }
        if !state.dirs.contains(&parent(path)) {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no such directory"));
        }
        if let Some(capacity) = state.capacity_bytes {
            if state.live_bytes() + len > capacity {
                return Err(error_of(SimError::Enospc));
            }
        }
        let len = len as usize;
        state.files.insert(
            path.to_path_buf(),
            SimFile {
                data: vec![0; len],
                durable_len: len,
                old_sectors: BTreeMap::new(),
                entry_live: true,
                entry_durable: false,
                renamed_from: None,
            },
        );
        Ok(())
    }

    fn rename_spare(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.rename_counted(SimOp::RenameSpare, from, to)
    }

    fn truncate_and_sync(&self, path: &Path, len: u64) -> io::Result<()> {
        let mut state = self.state();
        state.begin(SimOp::Sync)?;
        match state.files.get_mut(path) {
            Some(file) if file.entry_live => {
                file.data.resize(len as usize, 0);
                file.durable_len = file.data.len();
                file.old_sectors.clear();
                Ok(())
            }
            _ => Err(io::Error::new(io::ErrorKind::NotFound, "no such file")),
        }
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state();
        state.begin(SimOp::Remove)?;
        match state.files.get_mut(path) {
            Some(file) if file.entry_live => {
                file.entry_live = false;
                if !file.entry_durable {
                    state.files.remove(path);
                }
                Ok(())
            }
            _ => Err(io::Error::new(io::ErrorKind::NotFound, "no such file")),
        }
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.rename_counted(SimOp::Rename, from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state();
        state.begin(SimOp::SyncDir)?;
        state.files.retain(|path, file| {
            if parent(path) != dir {
                return true;
            }
            file.entry_durable = file.entry_live;
            file.renamed_from = None;
            file.entry_live
        });
        Ok(())
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn LockGuard>> {
        let mut state = self.state();
        if state.dead {
            return Err(dead_process());
        }
        if !state.locks.insert(path.to_path_buf()) {
            return Err(io::Error::new(io::ErrorKind::WouldBlock, "lock held"));
        }
        let generation = state.generation;
        Ok(Box::new(SimLock {
            fs: self.clone(),
            path: path.to_path_buf(),
            generation,
        }))
    }
}

impl SimFileSystem {
    fn rename_counted(&self, op: SimOp, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.state();
        state.begin(op)?;
        if state.files.contains_key(to) {
            return Err(io::Error::other(
                "sim: renaming over an existing name is not modelled",
            ));
        }
        let Some(source) = state.files.get_mut(from).filter(|file| file.entry_live) else {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no such file"));
        };
        source.entry_live = false;
        let target = SimFile {
            data: source.data.clone(),
            durable_len: source.durable_len,
            old_sectors: source.old_sectors.clone(),
            entry_live: true,
            entry_durable: false,
            renamed_from: Some(from.to_path_buf()),
        };
        if !source.entry_durable {
            state.files.remove(from);
        }
        state.files.insert(to.to_path_buf(), target);
        Ok(())
    }
}
