//! `intent-log`: an append-only, checksummed, group-committed write-ahead log of typed
//! records, with crash recovery that tells a torn tail from corruption.
//!
//! The log stores records (a kind byte and an opaque body) under contiguous LSNs; it does
//! not interpret them. `append` returns only once the record is durable (write + fdatasync
//! by default); concurrent appenders share one write and one sync. All file I/O goes
//! through [`FileSystem`], so tests swap in [`sim_fs::SimFileSystem`] and crash it anywhere.
//!
//! ```no_run
//! # async fn example() -> intent_log::Result<()> {
//! use intent_log::{Log, Options};
//! let (log, report) = Log::open("/var/lib/agent/wal", Options::default())?;
//! println!("recovered {} records, next LSN {}", report.records, report.next_lsn);
//! let lsn = log.append(1, b"an intent, encoded".to_vec()).await?; // durable now
//! for entry in log.read_from(lsn)? {
//!     let entry = entry?;
//!     assert_eq!(entry.lsn, lsn);
//! }
//! # Ok(()) }
//! ```
//!
//! `docs/wal-format.md` documents the bytes on disk and the recovery decision table.

mod checkpoint;
pub mod codec;
mod error;
pub mod format;
mod fs;
/// Entry points for the fuzz targets (`fuzz/`): only with the `testing` feature.
#[cfg(any(test, feature = "testing"))]
pub mod fuzzing;
mod log;
mod options;
mod reader;
mod recovery;
/// A simulated file system for crash tests: only with the `testing` feature.
#[cfg(any(test, feature = "testing"))]
pub mod sim_fs;
mod spare;
mod stats;
mod writer;

// One path per public type: private modules are re-exported here; `codec` (the body
// encoding of typed records) and `format` (the bytes on disk) are public namespaces whose
// items are not repeated at the root.
pub use checkpoint::{CheckpointInfo, CheckpointReader};
pub use error::{Error, Result};
pub use fs::{FileSystem, LockGuard, StdFileSystem, WritableFile};
pub use log::{read_dir, replay_dir, verify, verify_with, Entry, Log, Replay, LOCK_FILE_NAME};
pub use options::{
    Options, RecoveryMode, SyncMode, BATCH_BYTES_MAX_DEFAULT, QUEUE_DEPTH_MAX_DEFAULT,
    RECORD_BYTES_MAX_DEFAULT, RECORD_BYTES_MAX_LIMIT, SEGMENT_BYTES_DEFAULT,
};
pub use reader::LogReader;
pub use recovery::{RecoveryReport, SegmentInfo, TornTail, TORN_DIR};
pub use stats::{LogStats, HISTOGRAM_BUCKETS};

#[cfg(test)]
mod tests;
