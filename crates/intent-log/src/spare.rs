//! Spare segments: a segment's file, created at its full size with zeros physically
//! written and synced before it holds a record, so that appends overwrite allocated,
//! written blocks. An `fdatasync` then flushes data only: no file size and no extent
//! conversion for the file system to journal (on ext4 either makes the sync commit the
//! journal too; issue 11: SQLite, which reuses its WAL file in place, committed one record
//! twice as fast as the growing log).
//!
//! Nothing waits for a spare. A helper thread writes it (spares under
//! `BACKGROUND_BYTES_MIN` are written by the asking thread: cheaper than a thread) while
//! the writer appends: the writer asks for the next one once the active segment is half
//! full, or at once when the active segment grows as it is written (a new log's first
//! segment, a segment from an earlier build or cut at a torn tail, or one started by a
//! rotation that came before its spare was ready). A rotation uses the spare if it is
//! ready and otherwise starts a growing segment; the writer moves into the spare after
//! the first batch that finds it ready. So `open` and the first append never wait for
//! zeros to be written, and a closing log stops its spare between two writes.
//!
//! A spare is never a recycled segment: its bytes are zeros, never stale records, and its
//! name (`<segment id>.spare`) is not a segment's, so recovery ignores it and open removes
//! a leftover one (a crash while it was being prepared, or a log closed before it was
//! used). `writer::create_segment` gives it its header and its segment name.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::fs::FileSystem;
use crate::options::Options;

const SPARE_SUFFIX: &str = ".spare";

/// Spares smaller than this are written by the thread that asks (a thread costs more than
/// writing them); larger ones on a helper thread.
const BACKGROUND_BYTES_MIN: u64 = 1 << 20;

/// Segments larger than this are never preallocated (they grow as written): a spare is
/// written whole before it is used, and a mistyped `segment_bytes` must not fill the disk
/// with zeros.
pub(crate) const SPARE_BYTES_MAX: u64 = 1 << 30;

/// Whether segments of these options are preallocated.
pub(crate) fn wanted(options: &Options) -> bool {
    options.preallocate_segments && options.segment_bytes <= SPARE_BYTES_MAX
}

/// The spare file's name for the segment with this id.
pub(crate) fn spare_file_name(segment_id: u64) -> String {
    format!("{segment_id:020}{SPARE_SUFFIX}")
}

/// True for a spare's file name (a leftover that open removes).
pub(crate) fn is_spare_file_name(name: &str) -> bool {
    name.strip_suffix(SPARE_SUFFIX)
        .is_some_and(|digits| digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
}

/// A spare being prepared, or ready.
pub(crate) struct Spare {
    path: PathBuf,
    preparing: Option<JoinHandle<std::io::Result<()>>>,
    /// Set when the preparation finished on the asking thread (small spares).
    done: Option<std::io::Result<()>>,
    /// Set on drop: the helper thread stops between two writes and removes the file.
    cancel: Arc<AtomicBool>,
}

impl Spare {
    /// Starts preparing a spare named for segment `segment_id`, `len` bytes.
    pub(crate) fn prepare(fs: Arc<dyn FileSystem>, dir: &Path, segment_id: u64, len: u64) -> Spare {
        let path = dir.join(spare_file_name(segment_id));
        let cancel = Arc::new(AtomicBool::new(false));
        if len < BACKGROUND_BYTES_MIN {
            let done = Some(fs.create_zeroed(&path, len, &cancel));
            return Spare {
                path,
                preparing: None,
                done,
                cancel,
            };
        }
        let target = path.clone();
        let stop = cancel.clone();
        let spawned = std::thread::Builder::new()
            .name("intent-log-spare".to_string())
            .spawn(move || fs.create_zeroed(&target, len, &stop));
        let (preparing, done) = match spawned {
            Ok(handle) => (Some(handle), None),
            Err(error) => (None, Some(Err(error))),
        };
        Spare {
            path,
            preparing,
            done,
            cancel,
        }
    }

    /// True once the preparation has finished (well or not): `take` then does not wait.
    pub(crate) fn is_ready(&self) -> bool {
        self.done.is_some()
            || self
                .preparing
                .as_ref()
                .is_none_or(|handle| handle.is_finished())
    }

    /// Waits for the preparation; the spare's path if it is ready, `None` (with a warning:
    /// the next segment is then created empty and grows as it is written) if it failed.
    pub(crate) fn take(mut self) -> Option<PathBuf> {
        let result = self.wait();
        match result {
            Ok(()) => Some(self.path.clone()),
            Err(error) => {
                tracing::warn!(%error, spare = %self.path.display(), "could not prepare a spare segment; segments grow as they are written until the next rotation (slower syncs, nothing lost)");
                None
            }
        }
    }

    fn wait(&mut self) -> std::io::Result<()> {
        if let Some(done) = self.done.take() {
            return done;
        }
        match self.preparing.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(std::io::Error::other("the spare's thread panicked")),
            None => Err(std::io::Error::other("the spare was already taken")),
        }
    }
}

impl Drop for Spare {
    /// A spare's thread never outlives the writer that asked for it (a crash test's next
    /// "process" must not see a file appear from the previous one); it is told to stop
    /// first, so a log closed (or a short-lived process ending) while 64 MiB of zeros are
    /// being written waits for one write of `ZERO_CHUNK_BYTES`, not for all of them.
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
        if let Some(handle) = self.preparing.take() {
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spare_names_are_not_segment_names() {
        let name = spare_file_name(7);
        assert_eq!(name, "00000000000000000007.spare");
        assert!(is_spare_file_name(&name));
        assert!(crate::format::parse_segment_file_name(&name).is_none());
        assert!(!is_spare_file_name("00000000000000000007.wal"));
        assert!(!is_spare_file_name("7.spare"));
    }

    #[test]
    fn a_huge_segment_size_is_never_preallocated() {
        let options = |segment_bytes| Options {
            segment_bytes,
            preallocate_segments: true,
            ..Options::default()
        };
        assert!(wanted(&options(SPARE_BYTES_MAX)));
        assert!(!wanted(&options(SPARE_BYTES_MAX + 1)));
        assert!(!wanted(&options(1 << 40)));
        assert!(!wanted(&Options::default()), "off by default");
    }
}
