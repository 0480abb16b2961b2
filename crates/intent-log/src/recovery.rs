//! Opening a log directory: verify every segment, tell a torn tail from corruption, and
//! repair what the recovery mode allows. `docs/wal-format.md` has the decision table. This
//! file verifies and decides; `recovery/repair.rs` makes the changes decided.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::checkpoint::{self, CheckpointInfo, CheckpointReader};
use crate::error::{Error, Result};
use crate::format::{
    decode_batch, find_batch_header, parse_segment_file_name, BatchHeader, FrameError,
    SegmentHeader, SEGMENT_HEADER_BYTES,
};
use crate::fs::FileSystem;
use crate::options::RecoveryMode;
use crate::spare::is_spare_file_name;

mod repair;

use repair::make_repairs;

/// The folder beside the segments where cut torn tails are kept.
pub const TORN_DIR: &str = "torn";

/// One segment as recovery found it.
#[derive(Clone, Debug)]
pub struct SegmentInfo {
    pub path: PathBuf,
    pub header: SegmentHeader,
    /// Bytes of the segment that verified (header plus whole records).
    pub valid_bytes: u64,
    /// Records in the segment.
    pub records: u64,
}

/// A torn tail that recovery found (and, when opening, moved aside into `torn/` and cut).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    pub file: PathBuf,
    pub offset: u64,
    /// Bytes from `offset` to the last non-zero byte of the file (a preallocated segment's
    /// zero tail after them is cut too, but not counted or kept).
    pub bytes: u64,
    /// True when every one of those bytes was zero.
    pub zero_filled: bool,
    /// Why the first of them did not verify.
    pub reason: String,
}

/// What opening (or verifying) a log found and did.
#[derive(Clone, Debug, Default)]
pub struct RecoveryReport {
    pub segments: usize,
    pub records: u64,
    /// The oldest LSN still in the log (1 for a new log).
    pub first_lsn: u64,
    /// The LSN the next append gets.
    pub next_lsn: u64,
    /// Bytes of verified log, headers included.
    pub log_bytes: u64,
    pub torn_tail: Option<TornTail>,
    /// A last segment whose header never became durable (a crash during rotation).
    pub removed_empty_segment: Option<PathBuf>,
    /// Salvage mode only: where the bytes that were dropped were copied.
    pub salvaged: Vec<PathBuf>,
    /// The newest checkpoint: replay starts with it and continues at its LSN + 1.
    pub checkpoint: Option<CheckpointInfo>,
    pub elapsed: Duration,
}

/// Whether recovery may change the directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    Repair(RecoveryMode),
    VerifyOnly,
}

pub(crate) struct Recovered {
    pub report: RecoveryReport,
    pub segments: Vec<SegmentInfo>,
}

/// The segment files in `dir`, sorted by first LSN.
pub(crate) fn list_segments(fs: &dyn FileSystem, dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let names = fs
        .list_files(dir)
        .map_err(|error| Error::io("listing", dir, error))?;
    let mut segments: Vec<(u64, PathBuf)> = names
        .iter()
        .filter_map(|name| parse_segment_file_name(name).map(|lsn| (lsn, dir.join(name))))
        .collect();
    segments.sort_by_key(|(lsn, _)| *lsn);
    Ok(segments)
}

/// Spare segments left by an earlier process (never activated: they hold no record).
fn list_spares(fs: &dyn FileSystem, dir: &Path) -> Result<Vec<PathBuf>> {
    let names = fs
        .list_files(dir)
        .map_err(|error| Error::io("listing", dir, error))?;
    Ok(names
        .iter()
        .filter(|name| is_spare_file_name(name))
        .map(|name| dir.join(name))
        .collect())
}

/// What the verifying pass found wrong in one segment.
struct Damage {
    offset: u64,
    reason: String,
    /// Only the last batch of the log can be torn; anything else is corruption.
    torn: bool,
    zero_filled: bool,
}

/// A change to the directory that recovery decided on; all of them are decided (and every
/// check that could refuse the open has run) before the first is made.
enum Repair {
    /// Move the bytes from `TornTail::offset` aside, then cut the segment there.
    CutTornTail(TornTail),
    /// A last segment whose header never became durable (no record was ever in it).
    RemoveEmptySegment(PathBuf),
    /// Salvage mode: move everything from `offset` of `files[index]` on aside.
    Salvage { index: usize, offset: u64 },
}

/// What a caller knows that recovery must hold the log to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Expectations {
    /// Records up to this LSN were acknowledged and seen elsewhere (the engine's index):
    /// an open that would leave the log ending before it is refused before anything is cut.
    pub last_lsn_min: u64,
}

/// Scans and verifies every segment and the newest checkpoint of `dir`; then, if every
/// check passed and the action allows it, makes the repairs the mode allows.
pub(crate) fn recover(
    fs: &dyn FileSystem,
    dir: &Path,
    record_bytes_max: usize,
    action: Action,
    expectations: Expectations,
) -> Result<Recovered> {
    let started = Instant::now();
    let files = list_segments(fs, dir)?;
    let (checkpoints, mut leftovers) = checkpoint::list(fs, dir)?;
    leftovers.extend(list_spares(fs, dir)?);
    let Scan { segments, repair } = scan_segments(fs, &files, record_bytes_max, action)?;
    let mut report = summarize(&segments, repair.as_ref());
    report.checkpoint = check_checkpoint(fs, &checkpoints, &segments, &report)?;
    let salvage = action == Action::Repair(RecoveryMode::Salvage);
    if !salvage {
        check_expectations(dir, &report, expectations)?;
    }
    if let Action::Repair(_) = action {
        make_repairs(fs, dir, &files, &leftovers, repair, &mut report)?;
    }
    report.elapsed = started.elapsed();
    Ok(Recovered { report, segments })
}

/// What the verifying pass found: the segments that verified (the damaged one with its
/// verified prefix), and the repair the first damage calls for, if any.
struct Scan {
    segments: Vec<SegmentInfo>,
    repair: Option<Repair>,
}

/// Verifies the segments in order up to the first damage; `Err` when the damage is one
/// the action may not repair.
fn scan_segments(
    fs: &dyn FileSystem,
    files: &[(u64, PathBuf)],
    record_bytes_max: usize,
    action: Action,
) -> Result<Scan> {
    let salvage = action == Action::Repair(RecoveryMode::Salvage);
    let mut segments: Vec<SegmentInfo> = Vec::new();
    for (index, (name_lsn, path)) in files.iter().enumerate() {
        let is_last = index + 1 == files.len();
        let bytes = fs
            .read(path)
            .map_err(|error| Error::io("reading", path, error))?;
        let header = match SegmentHeader::decode(&bytes) {
            Ok(header) => header,
            Err(reason) => {
                let repair = unreadable_header(path, &bytes, reason, index, is_last, action)?;
                return Ok(Scan {
                    segments,
                    repair: Some(repair),
                });
            }
        };
        if let Err(error) = check_sequence(path, *name_lsn, &header, segments.last()) {
            if !salvage {
                return Err(error);
            }
            let repair = Repair::Salvage { index, offset: 0 };
            return Ok(Scan {
                segments,
                repair: Some(repair),
            });
        }
        let (info, damage) = scan_segment(path, &bytes, header, record_bytes_max, is_last);
        segments.push(info);
        if let Some(damage) = damage {
            let data_end = bytes
                .iter()
                .rposition(|&byte| byte != 0)
                .map_or(0, |at| at + 1);
            let repair = damaged_segment(path, data_end as u64, damage, index, action)?;
            return Ok(Scan {
                segments,
                repair: Some(repair),
            });
        }
    }
    Ok(Scan {
        segments,
        repair: None,
    })
}

/// The repair for a segment whose header does not verify, or `Err` if there is none.
fn unreadable_header(
    path: &Path,
    bytes: &[u8],
    reason: String,
    index: usize,
    is_last: bool,
    action: Action,
) -> Result<Repair> {
    // A crash while a new segment was being created can leave a last segment shorter than
    // its header, or with a header that never reached the disk: no record was ever written
    // there (records follow only a synced header).
    if is_last
        && bytes.len() <= SEGMENT_HEADER_BYTES
        && action != Action::Repair(RecoveryMode::Absolute)
    {
        return Ok(Repair::RemoveEmptySegment(path.to_path_buf()));
    }
    if action == Action::Repair(RecoveryMode::Salvage) {
        return Ok(Repair::Salvage { index, offset: 0 });
    }
    Err(Error::corruption(path, 0, reason))
}

/// The repair for damage found inside a segment whose last non-zero byte ends at
/// `file_bytes` (a preallocated zero tail after it is not counted): a torn tail is cut
/// (unless the mode is absolute), corruption is salvaged (in salvage mode) or refused.
fn damaged_segment(
    path: &Path,
    file_bytes: u64,
    damage: Damage,
    index: usize,
    action: Action,
) -> Result<Repair> {
    let absolute = action == Action::Repair(RecoveryMode::Absolute);
    if damage.torn && !absolute {
        return Ok(Repair::CutTornTail(TornTail {
            file: path.to_path_buf(),
            offset: damage.offset,
            bytes: file_bytes - damage.offset,
            zero_filled: damage.zero_filled,
            reason: damage.reason,
        }));
    }
    if damage.torn {
        return Err(Error::corruption(
            path,
            damage.offset,
            format!(
                "torn tail of {} bytes ({}); absolute recovery refuses to cut it",
                file_bytes - damage.offset,
                damage.reason
            ),
        ));
    }
    if action == Action::Repair(RecoveryMode::Salvage) {
        return Ok(Repair::Salvage {
            index,
            offset: damage.offset,
        });
    }
    Err(Error::corruption(path, damage.offset, damage.reason))
}

/// The report's counts and LSN range from the segments that verified, and the repairs
/// decided that it names (the checkpoint and the timing are filled in later).
fn summarize(segments: &[SegmentInfo], repair: Option<&Repair>) -> RecoveryReport {
    let mut report = RecoveryReport {
        segments: segments.len(),
        records: segments.iter().map(|segment| segment.records).sum(),
        log_bytes: segments.iter().map(|segment| segment.valid_bytes).sum(),
        first_lsn: segments.first().map_or(1, |first| first.header.first_lsn),
        next_lsn: segments
            .last()
            .map_or(1, |last| last.header.first_lsn + last.records),
        ..RecoveryReport::default()
    };
    match repair {
        Some(Repair::CutTornTail(torn)) => report.torn_tail = Some(torn.clone()),
        Some(Repair::RemoveEmptySegment(path)) => report.removed_empty_segment = Some(path.clone()),
        Some(Repair::Salvage { .. }) | None => {}
    }
    report
}

/// Refuses a log that would end before the records the caller has already seen, before
/// anything is cut.
fn check_expectations(
    dir: &Path,
    report: &RecoveryReport,
    expectations: Expectations,
) -> Result<()> {
    let last_lsn = report.next_lsn - 1;
    if last_lsn >= expectations.last_lsn_min {
        return Ok(());
    }
    let (file, offset) = match &report.torn_tail {
        Some(torn) => (torn.file.clone(), torn.offset),
        None => (dir.to_path_buf(), 0),
    };
    Err(Error::corruption(
        file,
        offset,
        format!(
            "the log would end at LSN {last_lsn}, but records up to LSN {} were acknowledged \
             and seen by the caller's index; refusing to open (nothing was cut)",
            expectations.last_lsn_min
        ),
    ))
}

fn check_sequence(
    path: &Path,
    name_lsn: u64,
    header: &SegmentHeader,
    previous: Option<&SegmentInfo>,
) -> Result<()> {
    if header.first_lsn != name_lsn {
        return Err(Error::corruption(
            path,
            0,
            format!(
                "segment header says first LSN {}, its name says {name_lsn}",
                header.first_lsn
            ),
        ));
    }
    let Some(previous) = previous else {
        return Ok(());
    };
    if header.log_id != previous.header.log_id {
        return Err(Error::corruption(
            path,
            0,
            "segment belongs to another log (log id differs)",
        ));
    }
    if header.segment_id != previous.header.segment_id.wrapping_add(1) {
        return Err(Error::corruption(
            path,
            0,
            format!(
                "segment id {} follows {}: a segment is missing",
                header.segment_id, previous.header.segment_id
            ),
        ));
    }
    let expected = previous.header.first_lsn + previous.records;
    if header.first_lsn != expected {
        return Err(Error::corruption(
            path,
            0,
            format!(
                "segment starts at LSN {}, the previous one ends before {expected}",
                header.first_lsn
            ),
        ));
    }
    Ok(())
}

/// Verifies one segment batch by batch; returns what verified and the first damage.
fn scan_segment(
    path: &Path,
    bytes: &[u8],
    header: SegmentHeader,
    record_bytes_max: usize,
    is_last: bool,
) -> (SegmentInfo, Option<Damage>) {
    let seed = header.frame_hasher();
    let mut offset = SEGMENT_HEADER_BYTES;
    let mut lsn = header.first_lsn;
    let mut damage = None;
    while offset < bytes.len() {
        match decode_batch(bytes, offset, &seed, lsn, record_bytes_max) {
            Ok(batch) => {
                offset = batch.end;
                lsn += u64::from(batch.header.records);
            }
            // Zeros to the end of the file after the last batch: the preallocated space
            // not written yet, the segment's clean end. (Zeros that replaced acknowledged
            // batches end this segment early; the next segment's first LSN, or the
            // caller's floor for the last one, then refuses the open.)
            Err(_) if is_zero_tail(bytes, offset) => break,
            Err(error) => {
                damage = Some(classify(bytes, offset, &seed, is_last, error));
                break;
            }
        }
    }
    let info = SegmentInfo {
        path: path.to_path_buf(),
        header,
        valid_bytes: offset as u64,
        records: lsn - header.first_lsn,
    };
    (info, damage)
}

/// True when every byte from `offset` to the end is zero.
pub(crate) fn is_zero_tail(bytes: &[u8], offset: usize) -> bool {
    bytes
        .get(offset..)
        .is_some_and(|rest| rest.iter().all(|&byte| byte == 0))
}

/// Decides whether the batch that failed at `offset` can be a torn tail. A batch is written
/// only after the one before it was synced, so only the last batch of the last segment can
/// be torn; if a batch header that verifies follows the damage, the damage hit bytes that
/// were synced (and acknowledged): corruption. A header that verifies but carries the
/// wrong LSN is never what a torn write leaves either.
fn classify(
    bytes: &[u8],
    offset: usize,
    seed: &crc32fast::Hasher,
    is_last: bool,
    error: FrameError,
) -> Damage {
    let zero_filled = is_zero_tail(bytes, offset);
    let header_verifies = BatchHeader::decode(&bytes[offset..], seed).is_ok();
    let later = find_batch_header(bytes, offset + 1, seed);
    let reason = error.to_string();
    let (torn, reason) = if !is_last {
        (false, format!("{reason} in a segment that is not the last"))
    } else if let Some(later) = later {
        (
            false,
            format!("{reason}; a complete batch follows at offset {later}, so the damage is in synced bytes, not a torn tail"),
        )
    } else if header_verifies && matches!(error, FrameError::LsnGap { .. }) {
        (false, reason)
    } else {
        (true, reason)
    };
    Damage {
        offset: offset as u64,
        reason,
        torn,
        zero_filled,
    }
}

/// The newest checkpoint, verified, and checked against the segments: the log must hold
/// every record after it (and, with no checkpoint, every record from LSN 1).
fn check_checkpoint(
    fs: &dyn FileSystem,
    checkpoints: &[(u64, PathBuf)],
    segments: &[SegmentInfo],
    report: &RecoveryReport,
) -> Result<Option<CheckpointInfo>> {
    let Some((lsn, path)) = checkpoints.last() else {
        if let Some(first) = segments.first() {
            if first.header.first_lsn != 1 {
                return Err(Error::corruption(
                    &first.path,
                    0,
                    format!(
                        "the log starts at LSN {} and there is no checkpoint: the segments before it are missing",
                        first.header.first_lsn
                    ),
                ));
            }
        }
        return Ok(None);
    };
    let reader = CheckpointReader::open(fs, path, *lsn)?;
    let Some(first) = segments.first() else {
        return Err(Error::corruption(
            path,
            0,
            "a checkpoint exists but every log segment is missing",
        ));
    };
    if reader.log_id() != first.header.log_id {
        return Err(Error::corruption(
            path,
            16,
            "the checkpoint belongs to another log (log id differs)",
        ));
    }
    if first.header.first_lsn > lsn + 1 {
        return Err(Error::corruption(
            &first.path,
            0,
            format!(
                "the log starts at LSN {}, but the checkpoint covers only up to LSN {lsn}: segments are missing",
                first.header.first_lsn
            ),
        ));
    }
    if report.next_lsn <= *lsn {
        return Err(Error::corruption(
            path,
            32,
            format!(
                "the checkpoint covers LSN {lsn}, but the log ends at LSN {}",
                report.next_lsn - 1
            ),
        ));
    }
    Ok(Some(reader.info().clone()))
}
