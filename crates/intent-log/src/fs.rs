//! All file I/O of the log goes through [`FileSystem`], so tests can swap in
//! [`crate::sim_fs::SimFileSystem`] and inject torn writes, lost directory entries and
//! EIO/ENOSPC. [`StdFileSystem`] is the real one.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// A file the log writes to, at a position that each write advances (a handle from
/// `create_new` starts at 0, one from `open_at` where it was asked to).
pub trait WritableFile: Send {
    /// Writes all of `bytes` at the handle's position (over existing bytes, or past the end).
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// `fdatasync`: data and the metadata needed to read it back.
    fn sync_data(&mut self) -> io::Result<()>;
    /// `fsync`: everything.
    fn sync_all(&mut self) -> io::Result<()>;
    /// The file's length now (zeros preallocated past the data included).
    fn file_len(&self) -> io::Result<u64>;
}

/// A held lock; dropping it releases the lock.
pub trait LockGuard: Send + Sync {}

/// The file-system operations the log needs, and nothing more.
pub trait FileSystem: Send + Sync + 'static {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Names (not paths) of the regular files directly in `dir`.
    fn list_files(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// The whole content of a file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Opens a file to read it from the start, a piece at a time (a checkpoint can be
    /// larger than memory should hold); returns it and its length. The default reads the
    /// whole file through [`FileSystem::read`], which test file systems inherit.
    fn open_read(&self, path: &Path) -> io::Result<(Box<dyn Read + Send>, u64)> {
        let bytes = self.read(path)?;
        let len = bytes.len() as u64;
        Ok((Box::new(io::Cursor::new(bytes)), len))
    }
    /// Creates a new file for writing from offset 0; fails if it exists.
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn WritableFile>>;
    /// Opens an existing file for writing at `offset` (over what is there, then past it).
    fn open_at(&self, path: &Path, offset: u64) -> io::Result<Box<dyn WritableFile>>;
    /// Creates a new file of `len` zero bytes, physically written and their data synced
    /// (the directory is not): a spare segment, so that the appends into it later overwrite
    /// allocated, written blocks and an `fdatasync` has no size or extent change to journal.
    /// The log calls it from a helper thread, off the append path; it stops between two
    /// writes once `cancel` is set (the log is closing), with `ErrorKind::Interrupted`.
    /// A failed or cancelled one is removed (best effort: a full disk keeps no half-written
    /// spare).
    fn create_zeroed(&self, path: &Path, len: u64, cancel: &AtomicBool) -> io::Result<()> {
        let mut file = self.create_new(path)?;
        let chunk = vec![0u8; ZERO_CHUNK_BYTES];
        let mut left = len;
        let mut written = Ok(());
        while left > 0 && written.is_ok() {
            if cancel.load(Ordering::Relaxed) {
                written = Err(io::Error::new(
                    io::ErrorKind::Interrupted,
                    "the log closed while its spare segment was being written",
                ));
                break;
            }
            let step = left.min(ZERO_CHUNK_BYTES as u64) as usize;
            written = file.write_all(&chunk[..step]);
            left -= step as u64;
        }
        let result = written.and_then(|()| file.sync_data());
        if result.is_err() {
            drop(file);
            let _ = self.remove(path);
        }
        result
    }
    /// Gives a prepared spare its segment name: a rename, made durable by the caller's
    /// directory sync. Apart from `rename` so that the simulated file system can tell it
    /// from a checkpoint's rename when it injects faults.
    fn rename_spare(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.rename(from, to)
    }
    /// Cuts a file to `len` bytes and syncs it.
    fn truncate_and_sync(&self, path: &Path, len: u64) -> io::Result<()>;
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Renames a file atomically (replacing nothing: the log never renames over a file).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// fsyncs a directory, making creations and removals in it durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Takes an exclusive lock on `path` (creating it), or fails with `WouldBlock`.
    fn lock(&self, path: &Path) -> io::Result<Box<dyn LockGuard>>;
}

/// Zeros are written to a spare in writes of this size.
const ZERO_CHUNK_BYTES: usize = 1 << 20;

/// The operating system's file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct StdFileSystem;

struct StdFile(File);

impl WritableFile for StdFile {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.0.write_all(bytes)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn sync_all(&mut self) -> io::Result<()> {
        self.0.sync_all()
    }
    fn file_len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
}

struct StdLock(#[allow(dead_code)] File);
impl LockGuard for StdLock {}

impl FileSystem for StdFileSystem {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn list_files(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                if let Some(name) = entry.file_name().to_str() {
                    names.push(name.to_string());
                }
            }
        }
        Ok(names)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn open_read(&self, path: &Path) -> io::Result<(Box<dyn Read + Send>, u64)> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        Ok((Box::new(file), len))
    }

    fn create_new(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let file = OpenOptions::new().write(true).create_new(true).open(path)?;
        Ok(Box::new(StdFile(file)))
    }

    fn open_at(&self, path: &Path, offset: u64) -> io::Result<Box<dyn WritableFile>> {
        let mut file = OpenOptions::new().write(true).open(path)?;
        file.seek(SeekFrom::Start(offset))?;
        Ok(Box::new(StdFile(file)))
    }

    fn truncate_and_sync(&self, path: &Path, len: u64) -> io::Result<()> {
        let file = OpenOptions::new().write(true).open(path)?;
        file.set_len(len)?;
        file.sync_all()
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn LockGuard>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Box::new(StdLock(file))),
            Err(std::fs::TryLockError::WouldBlock) => Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "lock held by another process",
            )),
            Err(std::fs::TryLockError::Error(error)) => Err(error),
        }
    }
}
