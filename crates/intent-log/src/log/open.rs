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
    Ok(Tail {
        file,
        header: last.header,
        segment_bytes: last.valid_bytes,
    })
}

/// Creates the first segment of a new log (a new log id), starting at `first_lsn`:
/// preallocated like every later one (its spare is written here, before `open` returns).
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
    let spare = if crate::spare::wanted(options) {
        Spare::prepare(fs.clone(), dir, header.segment_id, options.segment_bytes).take()
    } else {
        None
    };
    let (file, path) = create_segment(fs.as_ref(), dir, &header, spare.as_deref())?;
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
    };
    Ok((tail, info))
}
