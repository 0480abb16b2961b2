//! Opening a log: the directory's lock, and the segment the writer appends to (the last
//! one recovery kept, or the first of a new log). Recovery itself is `recovery.rs`.

use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format::{SegmentHeader, SEGMENT_HEADER_BYTES};
use crate::fs::{FileSystem, LockGuard, WritableFile};
use crate::options::Options;
use crate::recovery::SegmentInfo;
use crate::spare::Spare;
use crate::writer::create_segment;

use super::LOCK_FILE_NAME;

/// Takes the directory's lock file, so a second process cannot open the same log.
pub(super) fn lock_dir(fs: &dyn FileSystem, dir: &Path) -> Result<Box<dyn LockGuard>> {
    let lock_path = dir.join(LOCK_FILE_NAME);
    fs.lock(&lock_path).map_err(|error| {
        if error.kind() == std::io::ErrorKind::WouldBlock {
            Error::Locked {
                dir: dir.to_path_buf(),
            }
        } else {
            Error::io("locking", &lock_path, error)
        }
    })
}

/// The segment the writer appends to, open, and where it stands.
pub(super) struct Tail {
    pub(super) file: Box<dyn WritableFile>,
    pub(super) header: SegmentHeader,
    pub(super) segment_bytes: u64,
    /// The segment is preallocated (zeros past `segment_bytes`), not growing.
    pub(super) in_place: bool,
    /// A spare still being written when the segment was created (a new log's).
    pub(super) spare: Option<Spare>,
}

/// Opens the last segment recovery kept for writing after its last verified batch (what
/// follows is a preallocated zero tail, or nothing), after making what it holds durable.
pub(super) fn reopen_last_segment(
    fs: &dyn FileSystem,
    dir: &Path,
    last: &SegmentInfo,
) -> Result<Tail> {
    let mut file = fs
        .open_at(&last.path, last.valid_bytes)
        .map_err(|error| Error::io("opening", &last.path, error))?;
    // What recovery accepted may still sit only in the page cache if the previous process
    // was killed before its sync: make it durable before anyone acts on it.
    file.sync_data()
        .map_err(|error| Error::io("syncing", &last.path, error))?;
    fs.sync_dir(dir)
        .map_err(|error| Error::io("syncing", dir, error))?;
    // Zeros past the last batch: a preallocated segment. A segment written by an earlier
    // build, or cut at a torn tail, ends at its last batch and grows.
    let file_bytes = file
        .file_len()
        .map_err(|error| Error::io("reading the length of", &last.path, error))?;
    Ok(Tail {
        file,
        header: last.header,
        segment_bytes: last.valid_bytes,
        in_place: file_bytes > last.valid_bytes,
        spare: None,
    })
}

/// Creates the first segment of a new log (a new log id), starting at `first_lsn`. When
/// segments are preallocated, a small spare is written here and becomes the segment; a
/// large one (64 MiB by default) is left to a helper thread: `open` does not wait for it,
/// the first segment grows as it is written, and the writer moves into the spare after the
/// first batch that finds it ready.
pub(super) fn start_first_segment(
    fs: Arc<dyn FileSystem>,
    dir: &Path,
    options: &Options,
    first_lsn: u64,
) -> Result<(Tail, SegmentInfo)> {
    let header = SegmentHeader {
        log_id: *uuid::Uuid::new_v4().as_bytes(),
        segment_id: 1,
        first_lsn,
    };
    let mut spare = crate::spare::wanted(options)
        .then(|| Spare::prepare(fs.clone(), dir, header.segment_id, options.segment_bytes));
    let ready = spare
        .take_if(|spare| spare.is_ready())
        .and_then(Spare::take);
    let (file, path) = create_segment(fs.as_ref(), dir, &header, ready.as_deref())?;
    let info = SegmentInfo {
        path,
        header,
        valid_bytes: SEGMENT_HEADER_BYTES as u64,
        records: 0,
    };
    let tail = Tail {
        file,
        header,
        segment_bytes: SEGMENT_HEADER_BYTES as u64,
        in_place: ready.is_some(),
        spare,
    };
    Ok((tail, info))
}
