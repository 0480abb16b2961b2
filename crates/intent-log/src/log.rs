//! The log handle: open (with recovery), append (group-committed), read, truncate, close.
//! `log/open.rs` holds the steps of opening: the lock, and the segment appended to.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot};

use crate::checkpoint::{self, CheckpointInfo, CheckpointReader};
use crate::error::{Error, Result};
use crate::fs::{FileSystem, LockGuard, StdFileSystem};
use crate::options::Options;
use crate::reader::LogReader;
use crate::recovery::{recover, Action, Expectations, Recovered, RecoveryReport, SegmentInfo};
use crate::stats::{LogStats, Stats};
use crate::writer::{request_bytes, AppendRequest, Request, Writer};

mod open;

use open::{lock_dir, reopen_last_segment, start_first_segment};

/// Name of the lock file that keeps a second process out of the directory.
pub const LOCK_FILE_NAME: &str = "LOCK";

/// One record as read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub lsn: u64,
    pub kind: u8,
    pub body: Vec<u8>,
}

pub(crate) struct Shared {
    pub fs: Arc<dyn FileSystem>,
    pub dir: PathBuf,
    pub options: Options,
    /// Segments in order; the last is the one being written.
    pub segments: Mutex<Vec<SegmentInfo>>,
    /// The highest LSN known durable (0 when the log is empty).
    pub durable_lsn: AtomicU64,
    pub poisoned: Mutex<Option<String>>,
    pub stats: Stats,
    /// The newest durable checkpoint; replay starts there.
    pub checkpoint: Mutex<Option<CheckpointInfo>>,
}

/// What replay reads, in order: the newest checkpoint's entries (if any), then every
/// record after it.
pub struct Replay {
    pub checkpoint: Option<CheckpointReader>,
    pub records: LogReader,
}

/// An open write-ahead log. Cheap to share behind an `Arc`; appends from many tasks are
/// group-committed.
pub struct Log {
    shared: Arc<Shared>,
    sender: Mutex<Option<mpsc::Sender<Request>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Released by `close`, so a closed log never keeps another open out.
    lock: Mutex<Option<Box<dyn LockGuard>>>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("dir", &self.shared.dir)
            .finish_non_exhaustive()
    }
}

impl Log {
    /// Opens (or creates) the log in `dir` on the real file system.
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<(Log, RecoveryReport)> {
        Log::open_with(Arc::new(StdFileSystem), dir, options)
    }

    /// Opens the log through the given file system (tests pass a simulated one).
    pub fn open_with(
        fs: Arc<dyn FileSystem>,
        dir: impl AsRef<Path>,
        options: Options,
    ) -> Result<(Log, RecoveryReport)> {
        options.validate()?;
        let dir = dir.as_ref().to_path_buf();
        fs.create_dir_all(&dir)
            .map_err(|error| Error::io("creating", &dir, error))?;
        let lock = lock_dir(fs.as_ref(), &dir)?;
        let recovered = recover(
            fs.as_ref(),
            &dir,
            options.record_bytes_max,
            Action::Repair(options.recovery_mode),
            Expectations {
                last_lsn_min: options.last_lsn_min,
            },
        )?;
        let mut report = recovered.report;
        let mut segments = recovered.segments;
        let tail = match segments.last() {
            Some(last) => reopen_last_segment(fs.as_ref(), &dir, last)?,
            None => {
                let (tail, first) =
                    start_first_segment(fs.clone(), &dir, &options, report.next_lsn)?;
                segments.push(first);
                report.segments = 1;
                tail
            }
        };
        let next_lsn = report.next_lsn;
        let (sender, receiver) = mpsc::channel(options.queue_depth_max);
        let shared = Arc::new(Shared {
            fs,
            dir,
            options,
            segments: Mutex::new(segments),
            durable_lsn: AtomicU64::new(next_lsn - 1),
            poisoned: Mutex::new(None),
            stats: Stats::default(),
            checkpoint: Mutex::new(report.checkpoint.clone()),
        });
        let writer = Writer {
            shared: shared.clone(),
            file: tail.file,
            header: tail.header,
            segment_bytes: tail.segment_bytes,
            next_lsn,
            receiver,
            in_place: tail.in_place,
            spare: tail.spare,
            spare_failed: false,
        };
        let handle = std::thread::Builder::new()
            .name("intent-log-writer".to_string())
            .spawn(move || writer.run())
            .map_err(|error| Error::io("spawning the writer thread for", &shared.dir, error))?;
        let log = Log {
            shared,
            sender: Mutex::new(Some(sender)),
            writer: Mutex::new(Some(handle)),
            lock: Mutex::new(Some(lock)),
        };
        Ok((log, report))
    }

    /// Appends one record; returns its LSN once it is durable.
    pub async fn append(&self, kind: u8, body: Vec<u8>) -> Result<u64> {
        self.append_batch(vec![(kind, body)]).await
    }

    /// Appends records with contiguous LSNs, all in the same batch; returns the first LSN
    /// once every one of them is durable.
    pub async fn append_batch(&self, records: Vec<(u8, Vec<u8>)>) -> Result<u64> {
        if records.is_empty() {
            return Err(Error::InvalidAppend("no records"));
        }
        let limit = self.shared.options.record_bytes_max;
        for (kind, body) in &records {
            if *kind == 0 {
                return Err(Error::InvalidAppend("record kind 0 is reserved"));
            }
            if body.len() > limit {
                return Err(Error::RecordTooLarge {
                    bytes: body.len(),
                    limit,
                });
            }
        }
        let bytes = request_bytes(&records);
        if bytes > self.shared.options.batch_bytes_max {
            return Err(Error::BatchTooLarge {
                bytes,
                limit: self.shared.options.batch_bytes_max,
            });
        }
        self.ask_writer(|reply| {
            Request::Append(AppendRequest {
                records,
                bytes,
                reply,
            })
        })
        .await
    }

    /// Starts a new segment: every record appended before this call is then in an older
    /// segment than every record after it. Returns the LSN the next record gets. A no-op
    /// when the active segment holds no record yet.
    pub async fn rotate(&self) -> Result<u64> {
        self.ask_writer(Request::Rotate).await
    }

    /// Sends the writer thread a request and waits for its answer.
    async fn ask_writer(
        &self,
        request: impl FnOnce(oneshot::Sender<Result<u64>>) -> Request,
    ) -> Result<u64> {
        self.check_poisoned()?;
        let sender = match self.sender.lock() {
            Ok(guard) => guard.clone(),
            Err(_) => None,
        }
        .ok_or(Error::Closed)?;
        let (reply, answer) = oneshot::channel();
        let sent = sender.send(request(reply)).await;
        // Hold no sender while waiting: `close` must be able to end the writer even while
        // appends are outstanding (they are answered or dropped, never left hanging).
        drop(sender);
        if sent.is_err() {
            return Err(self.closed_or_poisoned());
        }
        match answer.await {
            Ok(result) => result,
            Err(_) => Err(self.closed_or_poisoned()),
        }
    }

    /// Encodes `value` with [`crate::codec::encode`] and appends it.
    pub async fn append_typed<T: serde::Serialize>(&self, kind: u8, value: &T) -> Result<u64> {
        self.append(kind, crate::codec::encode(value)?).await
    }

    fn check_poisoned(&self) -> Result<()> {
        match self.shared.poisoned.lock() {
            Ok(guard) => match guard.as_ref() {
                Some(cause) => Err(Error::Poisoned {
                    cause: cause.clone(),
                }),
                None => Ok(()),
            },
            Err(_) => Err(Error::Poisoned {
                cause: "internal lock poisoned".to_string(),
            }),
        }
    }

    fn closed_or_poisoned(&self) -> Error {
        match self.check_poisoned() {
            Err(error) => error,
            Ok(()) => Error::Closed,
        }
    }

    /// True once a write or sync failed; the log then refuses every append (G7).
    pub fn is_poisoned(&self) -> bool {
        self.check_poisoned().is_err()
    }

    /// The highest durable LSN (0 for an empty log).
    pub fn durable_lsn(&self) -> u64 {
        self.shared.durable_lsn.load(Ordering::Acquire)
    }

    /// The oldest LSN still stored.
    pub fn first_lsn(&self) -> u64 {
        self.segments_snapshot()
            .first()
            .map(|segment| segment.header.first_lsn)
            .unwrap_or(1)
    }

    /// Reads verified records from `lsn` up to the durable end as of this call. Blocking
    /// I/O: call it from a blocking context (e.g. `spawn_blocking`) in async code.
    pub fn read_from(&self, lsn: u64) -> Result<LogReader> {
        let segments = self.segments_snapshot();
        let first_available = segments
            .first()
            .map(|segment| segment.header.first_lsn)
            .unwrap_or(1);
        if lsn < first_available {
            return Err(Error::Truncated {
                requested: lsn,
                first_available,
            });
        }
        Ok(LogReader::new(
            self.shared.fs.clone(),
            segments,
            lsn,
            self.durable_lsn(),
            self.shared.options.record_bytes_max,
        ))
    }

    /// The newest durable checkpoint, if any.
    pub fn checkpoint(&self) -> Option<CheckpointInfo> {
        match self.shared.checkpoint.lock() {
            Ok(checkpoint) => checkpoint.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// What replay reads: the newest checkpoint, then the records after it up to the
    /// durable end as of this call. Blocking I/O (the checkpoint is read and verified).
    pub fn replay(&self) -> Result<Replay> {
        let checkpoint = match self.checkpoint() {
            Some(info) => Some(CheckpointReader::open(
                self.shared.fs.as_ref(),
                &info.path,
                info.lsn,
            )?),
            None => None,
        };
        let from = checkpoint
            .as_ref()
            .map(|reader| reader.info().lsn + 1)
            .unwrap_or_else(|| self.first_lsn());
        Ok(Replay {
            checkpoint,
            records: self.read_from(from)?,
        })
    }

    /// Writes a checkpoint covering every record up to and including `lsn` (which must be
    /// durable): `entries` are the state the caller needs to rebuild everything at or below
    /// it. Written to a temporary file, synced, renamed into place and the directory
    /// synced; only then does it become the checkpoint replay starts from. A failure leaves
    /// the previous checkpoint in force (the log itself is untouched: appends go on).
    /// Blocking I/O.
    pub fn write_checkpoint(
        &self,
        lsn: u64,
        entries: &mut dyn Iterator<Item = (u8, Vec<u8>)>,
    ) -> Result<CheckpointInfo> {
        // Holding the lock's slot keeps `close` (which releases the directory to other
        // processes) from returning while a checkpoint is being written.
        let held = self.lock.lock().map_err(|_| Error::Closed)?;
        if held.is_none() {
            return Err(Error::Closed);
        }
        let durable = self.durable_lsn();
        if lsn > durable {
            return Err(Error::InvalidCheckpoint(format!(
                "a checkpoint at LSN {lsn} would cover records that are not durable (durable up to {durable})"
            )));
        }
        if let Some(current) = self.checkpoint() {
            if lsn <= current.lsn {
                return Err(Error::InvalidCheckpoint(format!(
                    "a checkpoint at LSN {lsn} is not newer than the current one at LSN {}",
                    current.lsn
                )));
            }
        }
        let log_id = self
            .segments_snapshot()
            .first()
            .map(|segment| segment.header.log_id)
            .ok_or(Error::Closed)?;
        let info = checkpoint::write(
            self.shared.fs.as_ref(),
            &self.shared.dir,
            &log_id,
            lsn,
            entries,
        )?;
        match self.shared.checkpoint.lock() {
            Ok(mut checkpoint) => *checkpoint = Some(info.clone()),
            Err(poisoned) => *poisoned.into_inner() = Some(info.clone()),
        }
        Ok(info)
    }

    fn segments_snapshot(&self) -> Vec<SegmentInfo> {
        match self.shared.segments.lock() {
            Ok(segments) => segments.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Deletes every segment whose records are all below `lsn` (never the active one),
    /// oldest first, syncing the directory after each removal so the survivors always form
    /// a contiguous run; then the checkpoints older than the newest. Only what a durable
    /// checkpoint covers can go: `lsn` may be at most the checkpoint's LSN + 1 (with no
    /// checkpoint, nothing can be deleted). Returns how many segments were deleted.
    pub fn truncate_before(&self, lsn: u64) -> Result<usize> {
        let held = self.lock.lock().map_err(|_| Error::Closed)?;
        if held.is_none() {
            return Err(Error::Closed);
        }
        let covered = self
            .checkpoint()
            .map(|checkpoint| checkpoint.lsn)
            .unwrap_or(0);
        if lsn > covered + 1 {
            return Err(Error::InvalidCheckpoint(format!(
                "cannot delete records below LSN {lsn}: the newest checkpoint covers only up to LSN {covered}"
            )));
        }
        let doomed: Vec<PathBuf> = {
            let mut segments = self.shared.segments.lock().map_err(|_| Error::Poisoned {
                cause: "internal lock poisoned".to_string(),
            })?;
            let mut count = 0;
            while count + 1 < segments.len() && segments[count + 1].header.first_lsn <= lsn {
                count += 1;
            }
            segments
                .drain(..count)
                .map(|segment| segment.path)
                .collect()
        };
        for path in &doomed {
            self.shared
                .fs
                .remove(path)
                .map_err(|error| Error::io("removing", path, error))?;
            self.shared
                .fs
                .sync_dir(&self.shared.dir)
                .map_err(|error| Error::io("syncing", &self.shared.dir, error))?;
        }
        // Older checkpoints go only after the segments: until then a crash still finds
        // the newest checkpoint and the log after it.
        let fs = self.shared.fs.as_ref();
        let (checkpoints, _) = checkpoint::list(fs, &self.shared.dir)?;
        let mut removed_checkpoint = false;
        for (checkpoint_lsn, path) in checkpoints {
            if checkpoint_lsn < covered {
                fs.remove(&path)
                    .map_err(|error| Error::io("removing", &path, error))?;
                removed_checkpoint = true;
            }
        }
        if removed_checkpoint {
            fs.sync_dir(&self.shared.dir)
                .map_err(|error| Error::io("syncing", &self.shared.dir, error))?;
        }
        Ok(doomed.len())
    }

    /// Counters and latency histograms of the writer.
    pub fn stats(&self) -> LogStats {
        let segments = self.segments_snapshot();
        self.shared.stats.snapshot(
            segments.len(),
            segments.iter().map(|segment| segment.valid_bytes).sum(),
        )
    }

    /// The directory of this log.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Stops accepting appends, lets the writer finish what is queued, and waits for it.
    pub fn close(&self) {
        if let Ok(mut sender) = self.sender.lock() {
            sender.take();
        }
        let handle = match self.writer.lock() {
            Ok(mut writer) => writer.take(),
            Err(_) => None,
        };
        if let Some(handle) = handle {
            let _ = handle.join();
        }
        // The writer is gone: nothing more can be written through this handle.
        if let Ok(mut lock) = self.lock.lock() {
            lock.take();
        }
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        self.close();
    }
}

/// Verifies a log directory without changing anything (no lock taken, nothing cut).
/// A torn tail is reported in the result; corruption is an error naming file and offset.
pub fn verify(dir: impl AsRef<Path>, record_bytes_max: usize) -> Result<RecoveryReport> {
    verify_with(&StdFileSystem, dir.as_ref(), record_bytes_max)
}

/// [`verify`] through the given file system.
pub fn verify_with(
    fs: &dyn FileSystem,
    dir: &Path,
    record_bytes_max: usize,
) -> Result<RecoveryReport> {
    verify_only(fs, dir, record_bytes_max).map(|recovered| recovered.report)
}

/// Recovery's verifying pass: changes nothing, expects nothing of the caller.
fn verify_only(fs: &dyn FileSystem, dir: &Path, record_bytes_max: usize) -> Result<Recovered> {
    recover(
        fs,
        dir,
        record_bytes_max,
        Action::VerifyOnly,
        Expectations::default(),
    )
}

/// Reads a log directory without opening it for writing (for `wal dump` and tools): every
/// verified record from `from_lsn`, stopping before a torn tail; corruption is an error.
pub fn read_dir(
    fs: Arc<dyn FileSystem>,
    dir: &Path,
    from_lsn: u64,
    record_bytes_max: usize,
) -> Result<LogReader> {
    let recovered = verify_only(fs.as_ref(), dir, record_bytes_max)?;
    let last = recovered.report.next_lsn.saturating_sub(1);
    Ok(LogReader::new(
        fs,
        recovered.segments,
        from_lsn,
        last,
        record_bytes_max,
    ))
}

/// What replay of a log directory reads, without opening it for writing (offline tools):
/// the directory is verified first (corruption is an error), then the newest checkpoint
/// and every verified record after it, stopping before a torn tail.
pub fn replay_dir(
    fs: Arc<dyn FileSystem>,
    dir: &Path,
    record_bytes_max: usize,
) -> Result<(RecoveryReport, Replay)> {
    let recovered = verify_only(fs.as_ref(), dir, record_bytes_max)?;
    let report = recovered.report;
    let checkpoint = match &report.checkpoint {
        Some(info) => Some(CheckpointReader::open(fs.as_ref(), &info.path, info.lsn)?),
        None => None,
    };
    let from = report
        .checkpoint
        .as_ref()
        .map(|info| info.lsn + 1)
        .unwrap_or(report.first_lsn);
    let records = LogReader::new(
        fs,
        recovered.segments,
        from,
        report.next_lsn.saturating_sub(1),
        record_bytes_max,
    );
    Ok((
        report,
        Replay {
            checkpoint,
            records,
        },
    ))
}
