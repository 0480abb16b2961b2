//! The group-commit writer: one thread owns the active segment. Appenders queue their
//! records; the writer takes everything queued (up to `batch_bytes_max`), writes it with one
//! `write` and makes it durable with one sync, then answers every waiter. There is no
//! artificial delay: while one sync runs, the next batch fills by itself.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};
use crate::format::{
    encode_frame, frame_bytes, segment_file_name, BatchHeader, SegmentHeader, BATCH_HEADER_BYTES,
    SEGMENT_HEADER_BYTES,
};
use crate::fs::{FileSystem, WritableFile};
use crate::log::Shared;
use crate::options::SyncMode;
use crate::recovery::SegmentInfo;
use crate::spare::Spare;

/// After answering a batch, the writer spins this long for the next request before it
/// blocks (and needs a wake-up).
const IDLE_SPIN: Duration = Duration::from_micros(60);
/// The regather wait is at most this fraction of the last sync...
const REGATHER_FRACTION: u32 = 4;
/// ...and never more than this.
const REGATHER_MAX: Duration = Duration::from_micros(250);

/// One append call: its records and where to send the first LSN.
pub(crate) struct AppendRequest {
    pub records: Vec<(u8, Vec<u8>)>,
    pub bytes: usize,
    pub reply: oneshot::Sender<Result<u64>>,
}

/// What the writer thread is asked to do.
pub(crate) enum Request {
    Append(AppendRequest),
    /// Start a new segment before the next record (compaction's checkpoint then covers
    /// every older segment whole). Answered with the LSN the next record gets.
    Rotate(oneshot::Sender<Result<u64>>),
}

pub(crate) struct Writer {
    pub shared: Arc<Shared>,
    pub file: Box<dyn WritableFile>,
    pub header: SegmentHeader,
    pub segment_bytes: u64,
    pub next_lsn: u64,
    pub receiver: mpsc::Receiver<Request>,
    /// True when the active segment is preallocated (its zeros are overwritten in place);
    /// false when it grows as it is written.
    pub in_place: bool,
    /// A segment's file, being prepared or ready (`None` when segments are not
    /// preallocated, or none was asked for yet).
    pub spare: Option<Spare>,
    /// Preparing the last spare failed: none is asked for again before the next rotation
    /// (a full disk must not start a helper thread and log a warning per batch).
    pub spare_failed: bool,
}

impl Writer {
    pub(crate) fn run(mut self) {
        self.prepare_spare_when_due();
        let mut buffer: Vec<u8> = Vec::with_capacity(64 * 1024);
        let mut batch: Vec<AppendRequest> = Vec::new();
        let mut carried: Option<Request> = None;
        // How many append calls the last batch answered: they are likely to come back.
        let mut expected = 1usize;
        let mut last_sync = Duration::ZERO;
        loop {
            let first = match carried.take() {
                Some(request) => request,
                None => match self.next_request(IDLE_SPIN) {
                    Some(request) => request,
                    None => {
                        // Every sender is gone: the log was closed.
                        self.seal();
                        return;
                    }
                },
            };
            let first = match first {
                Request::Append(first) => first,
                Request::Rotate(reply) => {
                    if self.rotate_on_request(reply, &mut batch).is_break() {
                        return;
                    }
                    continue;
                }
            };
            let regather = (last_sync / REGATHER_FRACTION).min(REGATHER_MAX);
            let (batch_bytes, next) = self.gather(first, &mut batch, expected, regather);
            carried = next;
            let sync_started = Instant::now();
            if let Err(error) = self.commit(&mut buffer, &batch, batch_bytes) {
                self.poison(error, &mut batch, carried.take());
                return;
            }
            last_sync = sync_started.elapsed();
            expected = batch.len();
            self.acknowledge(&mut batch);
            if let Err(error) = self.move_into_spare_when_ready() {
                self.poison(error, &mut batch, carried.take());
                return;
            }
            self.prepare_spare_when_due();
        }
    }

    /// A rotation asked for by compaction: a new segment unless the current one is still
    /// empty. `Break` when it failed and the log is poisoned.
    fn rotate_on_request(
        &mut self,
        reply: oneshot::Sender<Result<u64>>,
        batch: &mut Vec<AppendRequest>,
    ) -> ControlFlow<()> {
        let rotated = if self.next_lsn > self.header.first_lsn {
            self.rotate()
        } else {
            Ok(())
        };
        match rotated {
            Ok(()) => {
                let _ = reply.send(Ok(self.next_lsn));
                ControlFlow::Continue(())
            }
            Err(error) => {
                let cause = error.to_string();
                let _ = reply.send(Err(error));
                self.poison(Error::Poisoned { cause }, batch, None);
                ControlFlow::Break(())
            }
        }
    }

    /// Fills `batch` after `first` with what is queued, up to `batch_bytes_max`; returns
    /// its bytes and the request that did not fit (or a rotation), to go first next time.
    fn gather(
        &mut self,
        first: AppendRequest,
        batch: &mut Vec<AppendRequest>,
        expected: usize,
        regather: Duration,
    ) -> (usize, Option<Request>) {
        let batch_bytes_max = self.shared.options.batch_bytes_max;
        let mut batch_bytes = first.bytes;
        batch.push(first);
        // Regather: the appenders answered last time are being woken right now. Give them
        // a moment (a fraction of one sync, never more than REGATHER_MAX) to come back, so
        // one sync carries all of them instead of one sync for the first and another for
        // the rest. With a single appender `expected` is 1 and nothing waits; with a full
        // queue everything is already there.
        let started = Instant::now();
        while batch_bytes < batch_bytes_max {
            match self.receiver.try_recv() {
                Ok(Request::Append(request)) => {
                    if batch_bytes + request.bytes > batch_bytes_max {
                        return (batch_bytes, Some(Request::Append(request)));
                    }
                    batch_bytes += request.bytes;
                    batch.push(request);
                }
                Ok(rotate @ Request::Rotate(_)) => return (batch_bytes, Some(rotate)),
                Err(_) if batch.len() < expected && started.elapsed() < regather => {
                    std::thread::yield_now()
                }
                Err(_) => break,
            }
        }
        (batch_bytes, None)
    }

    /// Answers every request of a durable batch with its first LSN.
    fn acknowledge(&mut self, batch: &mut Vec<AppendRequest>) {
        let mut lsn = self.next_lsn;
        for request in batch.drain(..) {
            let count = request.records.len() as u64;
            // The appender may have given up waiting; the records are durable anyway.
            let _ = request.reply.send(Ok(lsn));
            lsn += count;
        }
        self.next_lsn = lsn;
    }

    /// The next request: spin briefly (an appender answered a moment ago is likely to send
    /// again within microseconds, and catching it here saves a thread wake-up), then block.
    fn next_request(&mut self, spin: Duration) -> Option<Request> {
        let started = Instant::now();
        while started.elapsed() < spin {
            match self.receiver.try_recv() {
                Ok(request) => return Some(request),
                Err(mpsc::error::TryRecvError::Disconnected) => return None,
                Err(mpsc::error::TryRecvError::Empty) => std::thread::yield_now(),
            }
        }
        self.receiver.blocking_recv()
    }

    /// Writes and syncs one batch. On success every record in it is durable.
    fn commit(
        &mut self,
        buffer: &mut Vec<u8>,
        batch: &[AppendRequest],
        batch_bytes: usize,
    ) -> Result<()> {
        let framed_bytes = (BATCH_HEADER_BYTES + batch_bytes) as u64;
        if self.segment_bytes + framed_bytes > self.shared.options.segment_bytes
            && self.segment_bytes > SEGMENT_HEADER_BYTES as u64
        {
            self.rotate()?;
        }
        buffer.clear();
        buffer.extend_from_slice(&[0u8; BATCH_HEADER_BYTES]);
        let seed = self.header.frame_hasher();
        let mut lsn = self.next_lsn;
        let mut records = 0u64;
        for request in batch {
            for (kind, body) in &request.records {
                encode_frame(buffer, &seed, lsn, *kind, body);
                lsn += 1;
                records += 1;
            }
        }
        // The batch header says exactly what follows, so recovery knows where the last
        // complete batch ends (only the last batch of the log can be torn).
        let header = BatchHeader {
            payload_bytes: (buffer.len() - BATCH_HEADER_BYTES) as u32,
            first_lsn: self.next_lsn,
            records: records as u32,
        };
        buffer[..BATCH_HEADER_BYTES].copy_from_slice(&header.encode(&seed));
        let path = self
            .shared
            .dir
            .join(segment_file_name(self.header.first_lsn));
        self.file
            .write_all(buffer)
            .map_err(|error| Error::io("writing", &path, error))?;
        let sync_started = Instant::now();
        sync(self.file.as_mut(), self.shared.options.sync_mode, &path)?;
        let stats = &self.shared.stats;
        stats.record_sync(sync_started.elapsed(), records);
        stats
            .bytes
            .fetch_add(buffer.len() as u64, Ordering::Relaxed);
        self.segment_bytes += buffer.len() as u64;
        self.shared.durable_lsn.store(lsn - 1, Ordering::Release);
        if let Ok(mut segments) = self.shared.segments.lock() {
            if let Some(last) = segments.last_mut() {
                last.valid_bytes = self.segment_bytes;
                last.records += records;
            }
        }
        Ok(())
    }

    /// At a clean close: an empty batch after the last one, synced, so a later flip in
    /// what was the last batch reads as corruption rather than as a torn tail. Best effort:
    /// the records are durable without it.
    fn seal(&mut self) {
        let path = self
            .shared
            .dir
            .join(segment_file_name(self.header.first_lsn));
        let seal = BatchHeader {
            payload_bytes: 0,
            first_lsn: self.next_lsn,
            records: 0,
        }
        .encode(&self.header.frame_hasher());
        let written = self
            .file
            .write_all(&seal)
            .map_err(|error| Error::io("writing the closing seal of", &path, error))
            .and_then(|()| sync(self.file.as_mut(), self.shared.options.sync_mode, &path));
        match written {
            Ok(()) => {
                self.segment_bytes += seal.len() as u64;
                if let Ok(mut segments) = self.shared.segments.lock() {
                    if let Some(last) = segments.last_mut() {
                        last.valid_bytes = self.segment_bytes;
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%error, "could not seal the log at close; the records are durable, the last batch stays unsealed")
            }
        }
    }

    /// Starts preparing a spare when none is there (if the options ask for preallocated
    /// segments): once the active segment is half full, early enough to be ready at
    /// rotation without writing zeros (that compete with the log's own syncs for the disk)
    /// long before they are needed; at once when the active segment grows as it is
    /// written, so the writer can move into a preallocated one soon.
    fn prepare_spare_when_due(&mut self) {
        let options = &self.shared.options;
        let due = if self.in_place {
            self.segment_bytes >= options.segment_bytes / 2
        } else {
            !self.spare_failed
        };
        if crate::spare::wanted(options) && self.spare.is_none() && due {
            self.spare = Some(Spare::prepare(
                self.shared.fs.clone(),
                &self.shared.dir,
                self.header.segment_id + 1,
                self.shared.options.segment_bytes,
            ));
        }
    }

    /// After a batch, when the active segment grows as it is written and a spare is ready:
    /// rotate into the spare now rather than when the segment is full (a new log's first
    /// segment, or one a rotation started before its spare was ready). An empty active
    /// segment is left alone: the next segment would take its name (its first LSN).
    fn move_into_spare_when_ready(&mut self) -> Result<()> {
        if self.in_place || self.next_lsn == self.header.first_lsn {
            return Ok(());
        }
        let Some(spare) = self.spare.take_if(|spare| spare.is_ready()) else {
            return Ok(());
        };
        match spare.take() {
            Some(path) => self.rotate_into(Some(&path)),
            None => {
                self.spare_failed = true;
                Ok(())
            }
        }
    }

    /// Starts the next segment: in the spare if it is ready (never waiting for one still
    /// being written: that one is moved into after a later batch), else a growing file.
    fn rotate(&mut self) -> Result<()> {
        let spare = match self.spare.take_if(|spare| spare.is_ready()) {
            Some(spare) => {
                let path = spare.take();
                self.spare_failed = path.is_none();
                path
            }
            None => {
                self.spare_failed = false;
                None
            }
        };
        self.rotate_into(spare.as_deref())
    }

    fn rotate_into(&mut self, spare: Option<&Path>) -> Result<()> {
        let header = SegmentHeader {
            log_id: self.header.log_id,
            segment_id: self.header.segment_id + 1,
            first_lsn: self.next_lsn,
        };
        let (file, path) =
            create_segment(self.shared.fs.as_ref(), &self.shared.dir, &header, spare)?;
        self.file = file;
        self.header = header;
        self.in_place = spare.is_some();
        self.segment_bytes = SEGMENT_HEADER_BYTES as u64;
        if let Ok(mut segments) = self.shared.segments.lock() {
            segments.push(SegmentInfo {
                path,
                header,
                valid_bytes: SEGMENT_HEADER_BYTES as u64,
                records: 0,
            });
        }
        Ok(())
    }

    /// G7: after a failed write or sync nothing more is acknowledged. Every waiter gets the
    /// error; the queue is closed and drained so later appends fail at once.
    fn poison(&mut self, error: Error, batch: &mut Vec<AppendRequest>, carried: Option<Request>) {
        let cause = error.to_string();
        tracing::error!(%cause, "the intent log is poisoned: a write or sync failed; no further append will be acknowledged");
        if let Ok(mut poisoned) = self.shared.poisoned.lock() {
            *poisoned = Some(cause.clone());
        }
        let mut error = Some(error);
        let carried = match carried {
            Some(Request::Append(request)) => Some(request),
            Some(Request::Rotate(reply)) => {
                let _ = reply.send(Err(Error::Poisoned {
                    cause: cause.clone(),
                }));
                None
            }
            None => None,
        };
        for request in batch.drain(..).chain(carried) {
            let reply = match error.take() {
                Some(first) => first,
                None => Error::Poisoned {
                    cause: cause.clone(),
                },
            };
            let _ = request.reply.send(Err(reply));
        }
        self.receiver.close();
        while let Ok(request) = self.receiver.try_recv() {
            let poisoned = Err(Error::Poisoned {
                cause: cause.clone(),
            });
            let _ = match request {
                Request::Append(request) => request.reply.send(poisoned),
                Request::Rotate(reply) => reply.send(poisoned),
            };
        }
    }
}

fn sync(file: &mut dyn WritableFile, mode: SyncMode, path: &Path) -> Result<()> {
    let result = match mode {
        SyncMode::Data => file.sync_data(),
        SyncMode::All => file.sync_all(),
        SyncMode::NoSyncBenchmarkOnly => Ok(()),
    };
    result.map_err(|error| Error::io("syncing", path, error))
}

/// Creates a segment: header written and synced, then the directory synced, so a record is
/// never written into a segment whose header or directory entry could still vanish. With a
/// prepared spare (zeros, synced), the header is written over its first bytes and synced
/// before the spare is renamed to the segment's name: the segment never exists without
/// its durable header. Without one, a new empty file is created.
pub(crate) fn create_segment(
    fs: &dyn FileSystem,
    dir: &Path,
    header: &SegmentHeader,
    spare: Option<&Path>,
) -> Result<(Box<dyn WritableFile>, PathBuf)> {
    let path = dir.join(segment_file_name(header.first_lsn));
    if let Some(spare) = spare {
        let mut file = fs
            .open_at(spare, 0)
            .map_err(|error| Error::io("opening the spare segment", spare, error))?;
        file.write_all(&header.encode())
            .map_err(|error| Error::io("writing the header of", spare, error))?;
        file.sync_data()
            .map_err(|error| Error::io("syncing", spare, error))?;
        drop(file);
        fs.rename_spare(spare, &path)
            .map_err(|error| Error::io("renaming the spare segment to", &path, error))?;
        fs.sync_dir(dir)
            .map_err(|error| Error::io("syncing", dir, error))?;
        let file = fs
            .open_at(&path, SEGMENT_HEADER_BYTES as u64)
            .map_err(|error| Error::io("opening", &path, error))?;
        return Ok((file, path));
    }
    let mut file = fs
        .create_new(&path)
        .map_err(|error| Error::io("creating", &path, error))?;
    file.write_all(&header.encode())
        .map_err(|error| Error::io("writing the header of", &path, error))?;
    file.sync_data()
        .map_err(|error| Error::io("syncing", &path, error))?;
    fs.sync_dir(dir)
        .map_err(|error| Error::io("syncing", dir, error))?;
    Ok((file, path))
}

/// The bytes an append of `records` takes in a batch.
pub(crate) fn request_bytes(records: &[(u8, Vec<u8>)]) -> usize {
    records
        .iter()
        .map(|(_, body)| frame_bytes(body.len()))
        .sum()
}
