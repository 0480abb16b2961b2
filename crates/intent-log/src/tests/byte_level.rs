//! Damage on real files: every single-byte flip and every truncation point of a small
//! multi-segment log is detected (open refuses naming the file, or cuts a torn tail of the
//! last segment and keeps an exact prefix) and never returns a wrong record.

use std::fs;
use std::path::{Path, PathBuf};

use super::runtime;
use crate::{verify, Log, Options};

const RECORDS: u32 = 30;

fn options() -> Options {
    Options {
        segment_bytes: 600,
        record_bytes_max: 64,
        batch_bytes_max: 200,
        ..Options::default()
    }
}

fn body(i: u32) -> Vec<u8> {
    format!("record-{i:03}-{}", "x".repeat((i % 17) as usize)).into_bytes()
}

/// Builds the reference log; returns its segment paths in order.
fn build(dir: &Path) -> Vec<PathBuf> {
    let rt = runtime();
    let (log, _) = Log::open(dir, options()).unwrap();
    for i in 0..RECORDS {
        rt.block_on(log.append(1, body(i))).unwrap();
    }
    drop(log);
    segments(dir)
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    paths.sort();
    paths
}

fn copy_log(from: &Path, to: &Path) {
    for path in segments(from) {
        fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
    }
}

/// The outcome of opening a damaged copy.
enum Opened {
    Refused { file_named: bool },
    Opened { records: Vec<Vec<u8>>, torn: bool },
}

fn open_damaged(dir: &Path, damaged: &Path) -> Opened {
    let verified = verify(dir, 64);
    let opened = match Log::open(dir, options()) {
        Err(error) => {
            assert!(
                error.is_corruption(),
                "damage must be reported as corruption: {error}"
            );
            assert!(
                verified.as_ref().is_err_and(|e| e.is_corruption()),
                "verify agrees with open"
            );
            let name = damaged.file_name().unwrap().to_str().unwrap();
            Opened::Refused {
                file_named: error.to_string().contains(name),
            }
        }
        Ok((log, report)) => {
            let verified = verified.expect("verify agrees with open");
            assert_eq!(
                verified.torn_tail.is_some() || verified.removed_empty_segment.is_some(),
                report.torn_tail.is_some() || report.removed_empty_segment.is_some()
            );
            let records = super::read_all(&log).into_iter().map(|e| e.body).collect();
            Opened::Opened {
                records,
                torn: report.torn_tail.is_some() || report.removed_empty_segment.is_some(),
            }
        }
    };
    opened
}

fn assert_exact_prefix(records: &[Vec<u8>]) {
    for (i, record) in records.iter().enumerate() {
        assert_eq!(
            record,
            &body(i as u32),
            "record {i} differs from what was written"
        );
    }
}

#[test]
fn every_single_byte_flip_is_detected() {
    let reference = tempfile::tempdir().unwrap();
    let paths = build(reference.path());
    assert!(paths.len() >= 3, "the reference log spans several segments");
    let mut flips = 0;
    for (index, path) in paths.iter().enumerate() {
        let original = fs::read(path).unwrap();
        let is_last = index + 1 == paths.len();
        for offset in 0..original.len() {
            let work = tempfile::tempdir().unwrap();
            copy_log(reference.path(), work.path());
            let target = work.path().join(path.file_name().unwrap());
            let mut bytes = original.clone();
            bytes[offset] ^= 0xff;
            fs::write(&target, &bytes).unwrap();
            flips += 1;
            match open_damaged(work.path(), &target) {
                Opened::Refused { file_named } => {
                    assert!(file_named, "the error names {}", target.display())
                }
                Opened::Opened { records, torn } => {
                    // Only the last segment's last batch window may be cut, and what
                    // remains is an exact prefix that lost at least the flipped record.
                    assert!(
                        is_last && torn,
                        "flip at {offset} of {} was not detected",
                        target.display()
                    );
                    assert!(records.len() < RECORDS as usize);
                    assert_exact_prefix(&records);
                }
            }
        }
    }
    assert!(flips > 1000, "covered {flips} flips");
}

#[test]
fn every_truncation_point_is_a_torn_tail_in_the_last_segment_and_corruption_elsewhere() {
    let reference = tempfile::tempdir().unwrap();
    let paths = build(reference.path());
    for (index, path) in paths.iter().enumerate() {
        let original = fs::read(path).unwrap();
        let is_last = index + 1 == paths.len();
        for len in 0..original.len() {
            let work = tempfile::tempdir().unwrap();
            copy_log(reference.path(), work.path());
            let target = work.path().join(path.file_name().unwrap());
            fs::write(&target, &original[..len]).unwrap();
            match open_damaged(work.path(), &target) {
                Opened::Refused { file_named } => {
                    assert!(!is_last, "a cut last segment at {len} must open");
                    // Cut at a record boundary, the damaged segment still verifies on its
                    // own: the gap shows at the next one, which the error names instead.
                    let next = paths[index + 1].file_name().unwrap().to_str().unwrap();
                    let error = Log::open(work.path(), options()).unwrap_err().to_string();
                    assert!(file_named || error.contains(next), "{error}");
                }
                Opened::Opened { records, .. } => {
                    assert!(
                        is_last,
                        "truncating {} (not the last) at {len} was not detected",
                        target.display()
                    );
                    assert_exact_prefix(&records);
                }
            }
        }
    }
}

#[test]
fn a_zero_filled_tail_is_cut_and_garbage_beyond_the_window_is_corruption() {
    let reference = tempfile::tempdir().unwrap();
    let paths = build(reference.path());
    let last = paths.last().unwrap();
    let original = fs::read(last).unwrap();

    let work = tempfile::tempdir().unwrap();
    copy_log(reference.path(), work.path());
    let mut zeros = original.clone();
    zeros.extend_from_slice(&[0; 8192]); // far larger than the 200-byte window
    fs::write(work.path().join(last.file_name().unwrap()), &zeros).unwrap();
    let (log, report) = Log::open(work.path(), options()).unwrap();
    let torn = report.torn_tail.expect("zero tail reported");
    assert!(torn.zero_filled && torn.bytes == 8192);
    assert_eq!(super::read_all(&log).len(), RECORDS as usize);
    drop(log);

    let work = tempfile::tempdir().unwrap();
    copy_log(reference.path(), work.path());
    let mut garbage = original.clone();
    garbage.extend((0..400u32).map(|i| (i * 7 + 1) as u8)); // 400 > 200-byte window
    fs::write(work.path().join(last.file_name().unwrap()), &garbage).unwrap();
    let error = Log::open(work.path(), options()).unwrap_err();
    assert!(
        error.is_corruption()
            && error
                .to_string()
                .contains(&format!("offset {}", original.len())),
        "{error}"
    );
}

#[test]
fn a_missing_middle_segment_and_a_foreign_segment_are_corruption() {
    let reference = tempfile::tempdir().unwrap();
    let paths = build(reference.path());
    assert!(paths.len() >= 3);

    let work = tempfile::tempdir().unwrap();
    copy_log(reference.path(), work.path());
    fs::remove_file(work.path().join(paths[1].file_name().unwrap())).unwrap();
    let error = Log::open(work.path(), options()).unwrap_err();
    assert!(
        error.is_corruption() && error.to_string().contains("missing"),
        "{error}"
    );

    // The same records written by another log: same names, same LSNs, another log id.
    let other = tempfile::tempdir().unwrap();
    let other_paths = build(other.path());
    let work = tempfile::tempdir().unwrap();
    copy_log(reference.path(), work.path());
    fs::copy(
        &other_paths[1],
        work.path().join(paths[1].file_name().unwrap()),
    )
    .unwrap();
    let error = Log::open(work.path(), options()).unwrap_err();
    assert!(
        error.is_corruption() && error.to_string().contains("another log"),
        "{error}"
    );
}

/// Issue 9, defect 2: with the default limits, a flip in the middle of a young log (one
/// segment, every record acknowledged one by one) was inside the 4 MiB "torn window" and
/// cut ~1,500 acknowledged records as a torn tail.
#[test]
fn one_bit_flip_in_an_acknowledged_batch_is_corruption_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let (log, _) = Log::open(dir.path(), Options::default()).unwrap();
    for i in 0..3000u32 {
        rt.block_on(log.append(1, body(i))).unwrap();
    }
    drop(log);
    let paths = segments(dir.path());
    assert_eq!(paths.len(), 1, "a young log is one segment");
    let mut bytes = fs::read(&paths[0]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    fs::write(&paths[0], &bytes).unwrap();
    let verified = verify(dir.path(), Options::default().record_bytes_max);
    assert!(
        verified.as_ref().is_err_and(|error| error.is_corruption()),
        "verify must call a flip in an acknowledged batch corruption: {verified:?}"
    );
    let error = Log::open(dir.path(), Options::default()).unwrap_err();
    assert!(error.is_corruption(), "{error}");
    assert_eq!(
        fs::read(&paths[0]).unwrap(),
        bytes,
        "a refused open changes nothing"
    );
}
