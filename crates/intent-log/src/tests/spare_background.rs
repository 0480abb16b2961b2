//! Large spares are written by a helper thread and nothing waits for them: a new log opens
//! and acknowledges its first appends while its spare is still being written, moves into
//! the spare once it is ready, and a log closed meanwhile stops the spare and removes it.
//! A gate in front of `create_zeroed` holds the spare back, so the order of events is set
//! by the test, not by the disk's speed.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::runtime;
use crate::fs::{FileSystem, LockGuard, StdFileSystem, WritableFile};
use crate::{Log, Options};

/// Above the size under which spares are written by the asking thread.
const SEGMENT_BYTES: u64 = 2 << 20;
/// A gate never opened by the test lets the spare through after this (the test then
/// fails on what it observed, instead of hanging).
const GATE_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    changed: Condvar,
    /// `create_zeroed` has been called.
    entered: AtomicBool,
    /// It saw the log's cancel flag set before the timeout.
    saw_cancel: AtomicBool,
    /// It returned (whatever the result).
    finished: AtomicBool,
}

impl Gate {
    fn release(&self) {
        *self.open.lock().unwrap() = true;
        self.changed.notify_all();
    }

    /// Waits until the test opens the gate, the log sets `cancel`, or the timeout.
    fn wait(&self, cancel: &AtomicBool) {
        let deadline = Instant::now() + GATE_TIMEOUT;
        let mut open = self.open.lock().unwrap();
        while !*open && Instant::now() < deadline {
            if cancel.load(Ordering::Relaxed) {
                self.saw_cancel.store(true, Ordering::Relaxed);
                return;
            }
            open = self
                .changed
                .wait_timeout(open, Duration::from_millis(5))
                .unwrap()
                .0;
        }
    }
}

/// The real file system, with spares held at the gate.
struct GatedFs {
    gate: Arc<Gate>,
}

impl FileSystem for GatedFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        StdFileSystem.create_dir_all(dir)
    }
    fn list_files(&self, dir: &Path) -> io::Result<Vec<String>> {
        StdFileSystem.list_files(dir)
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        StdFileSystem.read(path)
    }
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        StdFileSystem.create_new(path)
    }
    fn open_at(&self, path: &Path, offset: u64) -> io::Result<Box<dyn WritableFile>> {
        StdFileSystem.open_at(path, offset)
    }
    fn create_zeroed(&self, path: &Path, len: u64, cancel: &AtomicBool) -> io::Result<()> {
        self.gate.entered.store(true, Ordering::Relaxed);
        self.gate.wait(cancel);
        // The trait's own body (`StdFileSystem` does not override it).
        let result = StdFileSystem.create_zeroed(path, len, cancel);
        self.gate.finished.store(true, Ordering::Relaxed);
        result
    }
    fn truncate_and_sync(&self, path: &Path, len: u64) -> io::Result<()> {
        StdFileSystem.truncate_and_sync(path, len)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        StdFileSystem.remove(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        StdFileSystem.rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        StdFileSystem.sync_dir(dir)
    }
    fn lock(&self, path: &Path) -> io::Result<Box<dyn LockGuard>> {
        StdFileSystem.lock(path)
    }
}

fn options() -> Options {
    Options {
        segment_bytes: SEGMENT_BYTES,
        record_bytes_max: 1024,
        batch_bytes_max: 64 * 1024,
        preallocate_segments: true,
        ..Options::default()
    }
}

fn files_with(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == extension))
        .collect();
    paths.sort();
    paths
}

fn body(i: u32) -> Vec<u8> {
    format!("record-{i}").into_bytes()
}

fn gated(gate: &Arc<Gate>) -> Arc<dyn FileSystem> {
    Arc::new(GatedFs { gate: gate.clone() })
}

/// Open and the first appends are acknowledged while the spare is held back (the first
/// segment grows), and so is a rotation asked for meanwhile (compaction's: it starts
/// another growing segment instead of waiting); once the spare is written, the next batch
/// moves the log into it; every record is there after a reopen.
#[test]
fn a_new_log_opens_appends_and_rotates_before_its_spare_is_written_then_moves_into_it() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let gate = Arc::new(Gate::default());
    let (log, _) = Log::open_with(gated(&gate), dir.path(), options()).unwrap();
    for i in 0..3 {
        rt.block_on(log.append(1, body(i))).unwrap();
    }
    rt.block_on(log.rotate()).unwrap();
    rt.block_on(log.append(1, body(3))).unwrap();
    assert!(
        gate.entered.load(Ordering::Relaxed),
        "a spare was asked for"
    );
    assert!(
        !gate.finished.load(Ordering::Relaxed),
        "open, four appends and a rotation were done before the spare was written"
    );
    let growing = files_with(dir.path(), "wal");
    assert_eq!(growing.len(), 2, "the rotation started a segment");
    for path in &growing {
        assert!(
            std::fs::metadata(path).unwrap().len() < SEGMENT_BYTES,
            "{} grows while the spare is being written",
            path.display()
        );
    }
    gate.release();
    let deadline = Instant::now() + GATE_TIMEOUT;
    let mut next = 4;
    while files_with(dir.path(), "wal").len() < 3 {
        assert!(
            Instant::now() < deadline,
            "the log never moved into its spare"
        );
        rt.block_on(log.append(1, body(next))).unwrap();
        next += 1;
    }
    let segments = files_with(dir.path(), "wal");
    assert_eq!(
        std::fs::metadata(&segments[2]).unwrap().len(),
        SEGMENT_BYTES,
        "the third segment is the preallocated spare"
    );
    rt.block_on(log.append(1, body(next))).unwrap();
    drop(log);
    let (log, report) = Log::open(dir.path(), options()).unwrap();
    assert!(report.torn_tail.is_none());
    let bodies: Vec<Vec<u8>> = super::read_all(&log).into_iter().map(|e| e.body).collect();
    assert_eq!(bodies, (0..=next).map(body).collect::<Vec<_>>());
}

/// A log closed while its spare is being written tells the helper thread to stop; the
/// thread stops, the half-written spare is removed, and close does not wait for it to be
/// written whole.
#[test]
fn closing_a_log_stops_its_spare_and_removes_it() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let gate = Arc::new(Gate::default());
    let (log, _) = Log::open_with(gated(&gate), dir.path(), options()).unwrap();
    rt.block_on(log.append(1, body(0))).unwrap();
    assert!(
        gate.entered.load(Ordering::Relaxed),
        "a spare was asked for"
    );
    drop(log);
    assert!(
        gate.saw_cancel.load(Ordering::Relaxed),
        "close told the spare's thread to stop"
    );
    assert!(
        gate.finished.load(Ordering::Relaxed),
        "close joined the thread"
    );
    assert!(
        files_with(dir.path(), "spare").is_empty(),
        "the stopped spare was removed"
    );
    let (log, report) = Log::open(dir.path(), options()).unwrap();
    assert_eq!(report.records, 1);
    drop(log);
}

/// A last segment that grows (written without preallocation) is left for a spare after
/// the first batch; a preallocated last segment is written in place, with no rotation.
#[test]
fn a_growing_last_segment_is_left_for_a_spare_and_a_preallocated_one_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let small = |preallocate_segments| Options {
        segment_bytes: 4096,
        record_bytes_max: 64,
        batch_bytes_max: 512,
        preallocate_segments,
        ..Options::default()
    };
    let (log, _) = Log::open(dir.path(), small(false)).unwrap();
    rt.block_on(log.append(1, body(0))).unwrap();
    drop(log);
    assert_eq!(files_with(dir.path(), "wal").len(), 1);
    let (log, _) = Log::open(dir.path(), small(true)).unwrap();
    rt.block_on(log.append(1, body(1))).unwrap();
    drop(log);
    let segments = files_with(dir.path(), "wal");
    assert_eq!(segments.len(), 2, "moved out of the growing segment");
    assert_eq!(std::fs::metadata(&segments[1]).unwrap().len(), 4096);
    let (log, _) = Log::open(dir.path(), small(true)).unwrap();
    rt.block_on(log.append(1, body(2))).unwrap();
    let bodies: Vec<Vec<u8>> = super::read_all(&log).into_iter().map(|e| e.body).collect();
    drop(log);
    assert_eq!(files_with(dir.path(), "wal").len(), 2, "written in place");
    assert_eq!(bodies, (0..3).map(body).collect::<Vec<_>>());
}
