//! Opening a log directory: verify every segment, tell a torn tail from corruption, and
//! repair what the recovery mode allows. `docs/wal-format.md` has the decision table.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::format::{decode_frame, parse_segment_file_name, SegmentHeader, SEGMENT_HEADER_BYTES};
use crate::fs::FileSystem;
use crate::options::RecoveryMode;

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

/// A torn tail that recovery found (and, when opening, cut).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    pub file: PathBuf,
    pub offset: u64,
    /// Bytes from `offset` to the end of the file.
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

enum Damage {
    /// The invalid suffix may be cut (torn tail).
    Torn(TornTail),
    Corrupt(Error),
}

/// Scans and verifies every segment of `dir`.
pub(crate) fn recover(
    fs: &dyn FileSystem,
    dir: &Path,
    record_bytes_max: usize,
    action: Action,
) -> Result<Recovered> {
    let started = Instant::now();
    let files = list_segments(fs, dir)?;
    let mut report = RecoveryReport {
        first_lsn: 1,
        next_lsn: 1,
        ..RecoveryReport::default()
    };
    let mut segments: Vec<SegmentInfo> = Vec::new();
    let count = files.len();
    let mut index = 0;
    while index < count {
        let (name_lsn, path) = &files[index];
        let is_last = index + 1 == count;
        let bytes = fs
            .read(path)
            .map_err(|error| Error::io("reading", path, error))?;
        let header = match SegmentHeader::decode(&bytes) {
            Ok(header) => header,
            Err(reason) => {
                // A crash while a new segment was being created can leave a last segment
                // shorter than its header, or with a header that never reached the disk:
                // no record was ever written there (records follow only a synced header).
                if is_last
                    && bytes.len() <= SEGMENT_HEADER_BYTES
                    && action != Action::Repair(RecoveryMode::Absolute)
                {
                    if let Action::Repair(_) = action {
                        fs.remove(path)
                            .map_err(|error| Error::io("removing", path, error))?;
                        fs.sync_dir(dir)
                            .map_err(|error| Error::io("syncing", dir, error))?;
                    }
                    report.removed_empty_segment = Some(path.clone());
                    break;
                }
                let error = Error::corruption(path, 0, reason);
                if action == Action::Repair(RecoveryMode::Salvage) {
                    salvage(fs, dir, &files[index..], 0, &mut report)?;
                    break;
                }
                return Err(error);
            }
        };
        if let Err(error) = check_sequence(path, *name_lsn, &header, segments.last()) {
            if action == Action::Repair(RecoveryMode::Salvage) {
                salvage(fs, dir, &files[index..], 0, &mut report)?;
                break;
            }
            return Err(error);
        }
        let seed = header.frame_hasher();
        let mut offset = SEGMENT_HEADER_BYTES;
        let mut lsn = header.first_lsn;
        let mut damage = None;
        while offset < bytes.len() {
            match decode_frame(&bytes[offset..], &seed, lsn, record_bytes_max) {
                Ok((_, used)) => {
                    offset += used;
                    lsn += 1;
                }
                Err(frame_error) => {
                    damage = Some(classify_damage(
                        path,
                        &bytes,
                        offset,
                        is_last,
                        &header,
                        frame_error.to_string(),
                    ));
                    break;
                }
            }
        }
        let info = SegmentInfo {
            path: path.clone(),
            header,
            valid_bytes: offset as u64,
            records: lsn - header.first_lsn,
        };
        match damage {
            None => {}
            Some(Damage::Torn(torn)) => match action {
                Action::VerifyOnly => report.torn_tail = Some(torn),
                Action::Repair(RecoveryMode::Absolute) => {
                    return Err(Error::corruption(
                        &torn.file,
                        torn.offset,
                        format!(
                            "torn tail of {} bytes ({}); absolute recovery refuses to cut it",
                            torn.bytes, torn.reason
                        ),
                    ))
                }
                Action::Repair(_) => {
                    fs.truncate_and_sync(path, offset as u64)
                        .map_err(|error| Error::io("cutting the torn tail of", path, error))?;
                    tracing::warn!(
                        file = %torn.file.display(),
                        offset = torn.offset,
                        bytes = torn.bytes,
                        zero_filled = torn.zero_filled,
                        reason = %torn.reason,
                        "cut a torn tail from the log (a batch that was never acknowledged)"
                    );
                    report.torn_tail = Some(torn);
                }
            },
            Some(Damage::Corrupt(error)) => {
                if action == Action::Repair(RecoveryMode::Salvage) {
                    salvage(fs, dir, &files[index..], offset as u64, &mut report)?;
                    fs.truncate_and_sync(path, offset as u64)
                        .map_err(|error| Error::io("truncating", path, error))?;
                    segments.push(info);
                    break;
                }
                return Err(error);
            }
        }
        segments.push(info);
        index += 1;
    }
    report.segments = segments.len();
    report.records = segments.iter().map(|segment| segment.records).sum();
    report.log_bytes = segments.iter().map(|segment| segment.valid_bytes).sum();
    if let Some(first) = segments.first() {
        report.first_lsn = first.header.first_lsn;
    }
    if let Some(last) = segments.last() {
        report.next_lsn = last.header.first_lsn + last.records;
    }
    report.elapsed = started.elapsed();
    Ok(Recovered { report, segments })
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

/// Decides whether the invalid bytes from `offset` on are a torn tail or corruption.
fn classify_damage(
    path: &Path,
    bytes: &[u8],
    offset: usize,
    is_last: bool,
    header: &SegmentHeader,
    reason: String,
) -> Damage {
    let rest = &bytes[offset..];
    let zero_filled = rest.iter().all(|&byte| byte == 0);
    // Only the last batch of the last segment can be unsynced when the process dies, and
    // a batch is never larger than the window the writer recorded in the header.
    if is_last && (zero_filled || rest.len() as u64 <= u64::from(header.torn_window_bytes)) {
        return Damage::Torn(TornTail {
            file: path.to_path_buf(),
            offset: offset as u64,
            bytes: rest.len() as u64,
            zero_filled,
            reason,
        });
    }
    let why = if is_last {
        format!(
            "{reason}, with {} bytes after it: more than one batch ({} bytes) can tear",
            rest.len(),
            header.torn_window_bytes
        )
    } else {
        format!("{reason} in a segment that is not the last")
    };
    Damage::Corrupt(Error::corruption(path, offset as u64, why))
}

/// Copies everything from `offset` of the first of `files` onwards into a salvage folder,
/// and removes the later files.
fn salvage(
    fs: &dyn FileSystem,
    dir: &Path,
    files: &[(u64, PathBuf)],
    offset: u64,
    report: &mut RecoveryReport,
) -> Result<()> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or(0);
    let salvage_dir = dir.join(format!("salvage-{stamp}"));
    fs.create_dir_all(&salvage_dir)
        .map_err(|error| Error::io("creating", &salvage_dir, error))?;
    for (position, (_, path)) in files.iter().enumerate() {
        let bytes = fs
            .read(path)
            .map_err(|error| Error::io("reading", path, error))?;
        let from = if position == 0 {
            (offset as usize).min(bytes.len())
        } else {
            0
        };
        let file_name = path
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or("segment");
        let target = salvage_dir.join(format!("{file_name}.from-{from}"));
        let mut file = fs
            .create_new(&target)
            .map_err(|error| Error::io("creating", &target, error))?;
        file.write_all(&bytes[from..])
            .map_err(|error| Error::io("writing", &target, error))?;
        file.sync_all()
            .map_err(|error| Error::io("syncing", &target, error))?;
        tracing::warn!(from = %path.display(), to = %target.display(), offset = from, "salvage: moved unverifiable bytes out of the log");
        report.salvaged.push(target);
        if position > 0 || from == 0 {
            fs.remove(path)
                .map_err(|error| Error::io("removing", path, error))?;
        }
    }
    fs.sync_dir(&salvage_dir)
        .map_err(|error| Error::io("syncing", &salvage_dir, error))?;
    fs.sync_dir(dir)
        .map_err(|error| Error::io("syncing", dir, error))?;
    Ok(())
}
