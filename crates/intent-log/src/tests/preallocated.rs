//! Preallocated segments (`preallocate_segments`, the default): each segment file is
//! created at `segment_bytes` of synced zeros before it holds a record. Their zero tail is
//! the clean end of the log, damage anywhere else is still refused, a crash at any point
//! of a segment's life (spare prepared, activated, partly written, rotated away) loses no
//! acknowledged record, and the log's size counts data, not preallocated space.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::runtime;
use crate::format::{BatchHeader, SegmentHeader, BATCH_HEADER_BYTES};
use crate::sim_fs::SimFileSystem;
use crate::{verify, Log, Options};

const RECORDS: u32 = 30;
const SEGMENT_BYTES: u64 = 600;

fn options() -> Options {
    Options {
        segment_bytes: SEGMENT_BYTES,
        record_bytes_max: 64,
        batch_bytes_max: 200,
        preallocate_segments: true,
        ..Options::default()
    }
}

fn body(i: u32) -> Vec<u8> {
    format!("record-{i:03}-{}", "y".repeat((i % 13) as usize)).into_bytes()
}

fn files_with(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == extension))
        .collect();
    paths.sort();
    paths
}

/// Writes RECORDS records one append at a time, closes; returns the segments.
fn build(dir: &Path) -> Vec<PathBuf> {
    let rt = runtime();
    let (log, _) = Log::open(dir, options()).unwrap();
    for i in 0..RECORDS {
        rt.block_on(log.append(1, body(i))).unwrap();
    }
    drop(log);
    files_with(dir, "wal")
}

fn copy_segments(from: &Path, to: &Path) {
    for path in files_with(from, "wal") {
        fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
    }
}

/// The offset after the last non-zero byte.
fn data_end(bytes: &[u8]) -> usize {
    bytes.iter().rposition(|&b| b != 0).map_or(0, |at| at + 1)
}

fn read_bodies(log: &Log) -> Vec<Vec<u8>> {
    super::read_all(log).into_iter().map(|e| e.body).collect()
}

fn expected(records: u32) -> Vec<Vec<u8>> {
    (0..records).map(body).collect()
}

#[test]
fn segments_are_full_size_and_the_log_counts_only_data() {
    let dir = tempfile::tempdir().unwrap();
    let paths = build(dir.path());
    assert!(paths.len() >= 3, "the log spans several segments");
    let mut data = 0;
    for path in &paths {
        let bytes = fs::read(path).unwrap();
        assert_eq!(
            bytes.len() as u64,
            SEGMENT_BYTES,
            "{} is preallocated",
            path.display()
        );
        data += data_end(&bytes) as u64;
    }
    assert!(
        files_with(dir.path(), "spare").len() <= 1,
        "at most the next spare"
    );
    let (log, report) = Log::open(dir.path(), options()).unwrap();
    assert!(report.torn_tail.is_none(), "a zero tail is the clean end");
    assert_eq!(report.records, u64::from(RECORDS));
    assert_eq!(
        report.log_bytes, data,
        "log_bytes counts data, not preallocated zeros"
    );
    assert!(report.log_bytes < SEGMENT_BYTES * paths.len() as u64);
    assert_eq!(read_bodies(&log), expected(RECORDS));
    drop(log);
    let verified = verify(dir.path(), 64).unwrap();
    assert_eq!(
        (verified.records, verified.torn_tail),
        (u64::from(RECORDS), None)
    );
}

/// Every single-byte flip anywhere in a closed (sealed) preallocated log, zero tails
/// included: refused naming the file, or (only in the seal or the zero tail after it, in
/// the last segment) cut as a torn tail with every record intact.
#[test]
fn every_single_byte_flip_in_a_preallocated_log_is_refused_or_loses_nothing() {
    let reference = tempfile::tempdir().unwrap();
    let paths = build(reference.path());
    let mut refused = 0;
    let mut flips = 0;
    for (index, path) in paths.iter().enumerate() {
        let original = fs::read(path).unwrap();
        let is_last = index + 1 == paths.len();
        let seal_at = data_end(&original) - BATCH_HEADER_BYTES;
        for offset in 0..original.len() {
            let work = tempfile::tempdir().unwrap();
            copy_segments(reference.path(), work.path());
            let target = work.path().join(path.file_name().unwrap());
            let mut bytes = original.clone();
            bytes[offset] ^= 0x10;
            fs::write(&target, &bytes).unwrap();
            flips += 1;
            match Log::open(work.path(), options()) {
                Err(error) => {
                    refused += 1;
                    assert!(error.is_corruption(), "{error}");
                    let name = target.file_name().unwrap().to_str().unwrap();
                    assert!(error.to_string().contains(name), "{error}");
                }
                Ok((log, report)) => {
                    assert!(
                        is_last && offset >= seal_at && report.torn_tail.is_some(),
                        "flip at {offset} of {} was not detected",
                        target.display()
                    );
                    assert_eq!(read_bodies(&log), expected(RECORDS));
                }
            }
        }
    }
    assert!(
        flips > 1500 && refused > 1000,
        "{flips} flips, {refused} refused"
    );
}

/// A crash's log: the seal never written, so the last batch is followed by zeros. A flip
/// inside any acknowledged batch with a batch after it is refused; a zero tail is not cut.
#[test]
fn a_flip_inside_an_acknowledged_batch_before_a_zero_tail_is_refused() {
    let reference = tempfile::tempdir().unwrap();
    let rt = runtime();
    // One segment holds every record (one batch each), so batches follow the flipped one.
    let options = || Options {
        segment_bytes: 8192,
        ..options()
    };
    let (log, _) = Log::open(reference.path(), options()).unwrap();
    for i in 0..RECORDS {
        rt.block_on(log.append(1, body(i))).unwrap();
    }
    drop(log);
    let paths = files_with(reference.path(), "wal");
    assert_eq!(paths.len(), 1);
    let name = paths.last().unwrap().file_name().unwrap();
    let mut unsealed = fs::read(paths.last().unwrap()).unwrap();
    let seal_at = data_end(&unsealed) - BATCH_HEADER_BYTES;
    let seed = SegmentHeader::decode(&unsealed).unwrap().frame_hasher();
    assert_eq!(
        BatchHeader::decode(&unsealed[seal_at..], &seed)
            .unwrap()
            .records,
        0
    );
    unsealed[seal_at..seal_at + BATCH_HEADER_BYTES].fill(0);

    let work = tempfile::tempdir().unwrap();
    copy_segments(reference.path(), work.path());
    fs::write(work.path().join(name), &unsealed).unwrap();
    let (log, report) = Log::open(work.path(), options()).unwrap();
    assert!(report.torn_tail.is_none(), "a zero tail is not a torn tail");
    assert_eq!(read_bodies(&log), expected(RECORDS));
    drop(log);

    let work = tempfile::tempdir().unwrap();
    copy_segments(reference.path(), work.path());
    let first_batch = crate::format::SEGMENT_HEADER_BYTES;
    let first_end = crate::format::decode_batch(
        &unsealed,
        first_batch,
        &seed,
        SegmentHeader::decode(&unsealed).unwrap().first_lsn,
        64,
    )
    .unwrap()
    .end;
    assert!(first_end < seal_at, "a batch follows the first one");
    let mut damaged = unsealed.clone();
    damaged[first_batch + BATCH_HEADER_BYTES + 5] ^= 0x01;
    let target = work.path().join(name);
    fs::write(&target, &damaged).unwrap();
    let error = Log::open(work.path(), options()).unwrap_err();
    assert!(
        error.is_corruption() && error.to_string().contains("synced bytes"),
        "{error}"
    );
    assert_eq!(
        fs::read(&target).unwrap(),
        damaged,
        "a refused open changes nothing"
    );
}

/// A spare left half-written by a crash (or whole, never activated) is removed at open,
/// and the log loses nothing.
#[test]
fn a_leftover_spare_is_removed_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let paths = build(dir.path());
    for spare in files_with(dir.path(), "spare") {
        fs::remove_file(spare).unwrap();
    }
    let next_id = paths.len() as u64 + 1;
    let leftover = dir.path().join(crate::spare::spare_file_name(next_id));
    fs::write(&leftover, vec![0u8; 100]).unwrap();
    let (log, report) = Log::open(dir.path(), options()).unwrap();
    assert_eq!(report.records, u64::from(RECORDS));
    assert_eq!(read_bodies(&log), expected(RECORDS));
    let rt = runtime();
    // Enough to rotate into the freshly prepared spare.
    for i in RECORDS..RECORDS + 12 {
        rt.block_on(log.append(1, body(i))).unwrap();
    }
    drop(log);
    let (log, _) = Log::open(dir.path(), options()).unwrap();
    assert_eq!(read_bodies(&log), expected(RECORDS + 12));
    assert!(
        files_with(dir.path(), "wal").len() > paths.len(),
        "it rotated"
    );
}

/// On the simulated file system, a crash (power cut) after every single operation of a
/// run that creates, fills and rotates preallocated segments: every acknowledged record
/// survives, the log opens, and appends go on.
#[test]
fn a_crash_at_every_point_of_a_segments_life_loses_nothing() {
    let rt = runtime();
    let mut crashed_with_spare = 0;
    for crash_after in 0..160u64 {
        let fs = SimFileSystem::new(crash_after);
        let dir = Path::new("/wal");
        let (log, _) = Log::open_with(Arc::new(fs.clone()), dir, options()).unwrap();
        fs.crash_after_ops(crash_after);
        let mut acknowledged = 0u32;
        for i in 0..RECORDS {
            match rt.block_on(log.append(1, body(i))) {
                Ok(lsn) => {
                    assert_eq!(lsn, u64::from(i) + 1);
                    acknowledged += 1;
                }
                Err(_) => break,
            }
        }
        drop(log);
        fs.crash();
        if fs_names(&fs, dir).iter().any(|n| n.ends_with(".spare")) {
            crashed_with_spare += 1;
        }
        let (log, _) = Log::open_with(Arc::new(fs.clone()), dir, options())
            .unwrap_or_else(|error| panic!("crash after {crash_after} ops: {error}"));
        let bodies = read_bodies(&log);
        assert!(
            bodies.len() >= acknowledged as usize,
            "crash after {crash_after} ops: {} of {acknowledged} acknowledged records",
            bodies.len()
        );
        assert_eq!(
            bodies,
            expected(bodies.len() as u32),
            "crash after {crash_after} ops"
        );
        let next = bodies.len() as u32;
        let lsn = rt.block_on(log.append(1, body(next))).unwrap();
        assert_eq!(lsn, u64::from(next) + 1);
        drop(log);
        let (log, _) = Log::open_with(Arc::new(fs.clone()), dir, options()).unwrap();
        assert_eq!(read_bodies(&log), expected(next + 1));
    }
    assert!(crashed_with_spare > 0, "some crashes left a spare behind");
}

fn fs_names(fs: &SimFileSystem, dir: &Path) -> Vec<String> {
    crate::FileSystem::list_files(fs, dir).unwrap()
}
