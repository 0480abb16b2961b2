//! What a caller chooses when opening a log: durability, recovery strictness and limits.

use crate::error::{Error, Result};
use crate::format::{BATCH_HEADER_BYTES, FRAME_HEADER_BYTES, SEGMENT_HEADER_BYTES};

/// The largest record body the log accepts by default (1 MiB).
pub const RECORD_BYTES_MAX_DEFAULT: usize = 1 << 20;
/// The hard ceiling for `record_bytes_max` (16 MiB): the frame's length field is checked
/// against it before anything is allocated.
pub const RECORD_BYTES_MAX_LIMIT: usize = 16 << 20;
/// The largest batch (one write and one sync) by default (4 MiB).
pub const BATCH_BYTES_MAX_DEFAULT: usize = 4 << 20;
/// Segments rotate when the next batch would take them past this size (64 MiB).
pub const SEGMENT_BYTES_DEFAULT: u64 = 64 << 20;
/// How many append calls may wait for the writer before appenders are slowed down.
pub const QUEUE_DEPTH_MAX_DEFAULT: usize = 64 * 1024;

const _: () = assert!(RECORD_BYTES_MAX_DEFAULT <= RECORD_BYTES_MAX_LIMIT);
const _: () = assert!(RECORD_BYTES_MAX_DEFAULT + FRAME_HEADER_BYTES <= BATCH_BYTES_MAX_DEFAULT);
const _: () = assert!(
    (BATCH_BYTES_MAX_DEFAULT + BATCH_HEADER_BYTES + SEGMENT_HEADER_BYTES) as u64
        <= SEGMENT_BYTES_DEFAULT
);
const _: () = assert!(BATCH_BYTES_MAX_DEFAULT <= u32::MAX as usize);

/// How an append is made durable before it is acknowledged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SyncMode {
    /// `fdatasync` after every batch: data and the metadata needed to read it back.
    #[default]
    Data,
    /// `fsync` after every batch: also flushes metadata such as timestamps. Slower.
    All,
    /// No sync at all. **For benchmarks only**: an acknowledged record can be lost on a
    /// crash, which breaks the contract (G1). Never use it where money moves.
    NoSyncBenchmarkOnly,
}

/// What `open` does with bytes that do not verify.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RecoveryMode {
    /// Cut the last batch of the log if it does not verify (a torn tail from a crash: the
    /// only batch no appender can have been told is durable), after moving its bytes into
    /// `torn/`; sync, and report it. Any other damage is corruption.
    #[default]
    TolerateTornTail,
    /// Refuse to open if any byte does not verify, even a torn tail.
    Absolute,
    /// Operator-only: keep the valid prefix and move everything from the first bad byte on
    /// into `salvage-<unix time>/` beside the log, then open. Loses the moved records.
    Salvage,
}

/// Options for [`crate::Log::open`].
#[derive(Clone, Debug)]
pub struct Options {
    pub sync_mode: SyncMode,
    pub recovery_mode: RecoveryMode,
    /// Segments rotate before the next batch would take them past this size.
    pub segment_bytes: u64,
    /// Largest body of one record.
    pub record_bytes_max: usize,
    /// Largest batch (its records' frames) written and synced at once.
    pub batch_bytes_max: usize,
    /// Append calls waiting for the writer before `append` waits for room.
    pub queue_depth_max: usize,
    /// The caller knows records up to this LSN were acknowledged (the engine passes its
    /// index's applied LSN): open refuses, before it changes anything, a log that would end
    /// before it. 0 when the caller knows nothing.
    pub last_lsn_min: u64,
    /// Create each segment at `segment_bytes` with zeros written and synced before it holds
    /// a record (prepared on a helper thread while the previous segment fills), so an
    /// append's `fdatasync` changes no file size or extent map (`docs/wal-format.md`,
    /// "Preallocated segments"). Off by default in the library, so that a log's files stay
    /// byte for byte what earlier builds wrote (the scheduler's v1 fixture test compares
    /// them); `intentctl` turns it on. Off, or with `segment_bytes` above 1 GiB, a segment
    /// grows as it is written.
    pub preallocate_segments: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            sync_mode: SyncMode::default(),
            recovery_mode: RecoveryMode::default(),
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            record_bytes_max: RECORD_BYTES_MAX_DEFAULT,
            batch_bytes_max: BATCH_BYTES_MAX_DEFAULT,
            queue_depth_max: QUEUE_DEPTH_MAX_DEFAULT,
            last_lsn_min: 0,
            preallocate_segments: false,
        }
    }
}

impl Options {
    pub(crate) fn validate(&self) -> Result<()> {
        let fail = |why: String| Err(Error::InvalidOptions(why));
        if self.record_bytes_max == 0 || self.record_bytes_max > RECORD_BYTES_MAX_LIMIT {
            return fail(format!(
                "record_bytes_max must be in 1..={RECORD_BYTES_MAX_LIMIT}, got {}",
                self.record_bytes_max
            ));
        }
        if self.batch_bytes_max < self.record_bytes_max + FRAME_HEADER_BYTES
            || self.batch_bytes_max > u32::MAX as usize
        {
            return fail(format!(
                "batch_bytes_max ({}) must hold one largest record ({} + {FRAME_HEADER_BYTES} header bytes) and fit in 32 bits",
                self.batch_bytes_max, self.record_bytes_max
            ));
        }
        if self.segment_bytes
            < (self.batch_bytes_max + BATCH_HEADER_BYTES + SEGMENT_HEADER_BYTES) as u64
        {
            return fail(format!(
                "segment_bytes ({}) must hold one largest batch ({}) plus the batch and segment headers",
                self.segment_bytes, self.batch_bytes_max
            ));
        }
        if self.queue_depth_max == 0 {
            return fail("queue_depth_max must be at least 1".to_string());
        }
        Ok(())
    }
}
