//! Damage on real files: every single-byte flip and every truncation point of a small
//! multi-segment log is detected (open refuses naming the file, or cuts a torn tail of the
//! last segment and keeps an exact prefix) and never returns a wrong record.
//!
//! These run on segments that grow as they are written (`preallocate_segments: false`, the
//! default, and the layout of logs written before preallocation): every byte of such a file is log data.
//! `preallocated.rs` runs the same damage on preallocated segments and their zero tails.
//!
//! Past 600 lines because the decision table and the sweeps share one reference log and
//! its helpers; a split would repeat them.

use std::fs;
use std::path::{Path, PathBuf};

use super::runtime;
use crate::format::{
    decode_batch, BatchHeader, SegmentHeader, BATCH_HEADER_BYTES, SEGMENT_HEADER_BYTES,
};
use crate::{verify, Log, Options};

const RECORDS: u32 = 30;

fn options() -> Options {
    Options {
        segment_bytes: 600,
        record_bytes_max: 64,
        batch_bytes_max: 200,
        preallocate_segments: false,
        ..Options::default()
    }
}

/// The default limits, on segments that grow as they are written.
fn growing() -> Options {
    Options {
        preallocate_segments: false,
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

/// (end offset, records so far) after each complete batch of a segment image.
fn batch_ends(bytes: &[u8], first_record: usize) -> Vec<(usize, usize)> {
    let header = SegmentHeader::decode(bytes).unwrap();
    let seed = header.frame_hasher();
    let mut offset = SEGMENT_HEADER_BYTES;
    let mut lsn = header.first_lsn;
    let mut records = first_record;
    let mut ends = Vec::new();
    while offset < bytes.len() {
        let batch = decode_batch(bytes, offset, &seed, lsn, 64).unwrap();
        offset = batch.end;
        lsn += u64::from(batch.header.records);
        records += batch.header.records as usize;
        ends.push((offset, records));
    }
    ends
}

/// Records in the segments before `index`.
fn records_before(paths: &[PathBuf], index: usize) -> usize {
    paths[..index]
        .iter()
        .map(|path| {
            let bytes = fs::read(path).unwrap();
            batch_ends(&bytes, 0)
                .last()
                .map_or(0, |(_, records)| *records)
        })
        .sum()
}

#[test]
fn every_single_byte_flip_in_a_sealed_log_is_refused_or_hits_only_the_seal() {
    let reference = tempfile::tempdir().unwrap();
    let paths = build(reference.path());
    assert!(paths.len() >= 3, "the reference log spans several segments");
    let mut flips = 0;
    let mut refused = 0;
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
                    refused += 1;
                    assert!(file_named, "the error names {}", target.display())
                }
                Opened::Opened { records, torn } => {
                    // Only the seal a clean close wrote (the last batch, holding no
                    // record) may be cut; every acknowledged record survives.
                    assert!(
                        is_last && torn && offset >= original.len() - BATCH_HEADER_BYTES,
                        "flip at {offset} of {} was not detected",
                        target.display()
                    );
                    assert_eq!(records.len(), RECORDS as usize);
                    assert_exact_prefix(&records);
                }
            }
        }
    }
    assert!(
        flips > 1000 && refused + 32 >= flips,
        "covered {flips} flips, {refused} refused"
    );
}

/// Issue 9, defect 2: the log a crash leaves, with its last batch written but never
/// acknowledged (no seal after it). A flip in any acknowledged record, including the last
/// acknowledged batches of the last segment, refuses the open; only the unacknowledged
/// final batch may be cut, and then exactly the acknowledged records survive.
#[test]
fn every_single_byte_flip_is_detected_and_only_the_unacknowledged_final_batch_is_cut() {
    let reference = tempfile::tempdir().unwrap();
    let rt = runtime();
    let (log, _) = Log::open(reference.path(), options()).unwrap();
    for i in 0..RECORDS {
        rt.block_on(log.append(1, body(i))).unwrap();
    }
    let unacknowledged: Vec<(u8, Vec<u8>)> = (RECORDS..RECORDS + 3).map(|i| (1, body(i))).collect();
    rt.block_on(log.append_batch(unacknowledged)).unwrap();
    drop(log);
    let paths = segments(reference.path());
    assert!(paths.len() >= 3);
    // Take the seal off, as if the process died right after writing the final batch.
    let last = paths.last().unwrap();
    let mut sealed = fs::read(last).unwrap();
    let seal_at = sealed.len() - BATCH_HEADER_BYTES;
    let seed = SegmentHeader::decode(&sealed).unwrap().frame_hasher();
    assert_eq!(
        BatchHeader::decode(&sealed[seal_at..], &seed)
            .unwrap()
            .records,
        0
    );
    sealed.truncate(seal_at);
    fs::write(last, &sealed).unwrap();
    let ends = batch_ends(&sealed, records_before(&paths, paths.len() - 1));
    let final_batch_start = ends[ends.len() - 2].0;
    assert_eq!(ends[ends.len() - 2].1, RECORDS as usize);
    let mut cut = 0;
    for (index, path) in paths.iter().enumerate() {
        let original = fs::read(path).unwrap();
        let is_last = index + 1 == paths.len();
        for offset in 0..original.len() {
            let work = tempfile::tempdir().unwrap();
            copy_log(reference.path(), work.path());
            let target = work.path().join(path.file_name().unwrap());
            let mut bytes = original.clone();
            bytes[offset] ^= 0x01;
            fs::write(&target, &bytes).unwrap();
            let in_final_batch = is_last && offset >= final_batch_start;
            match open_damaged(work.path(), &target) {
                Opened::Refused { file_named } => {
                    assert!(file_named, "the error names {}", target.display());
                }
                Opened::Opened { records, torn } => {
                    assert!(
                        in_final_batch && torn,
                        "flip at {offset} of {} (an acknowledged batch) was not refused",
                        target.display()
                    );
                    cut += 1;
                    assert_eq!(
                        records.len(),
                        RECORDS as usize,
                        "exactly the acknowledged records survive"
                    );
                    assert_exact_prefix(&records);
                }
            }
        }
    }
    assert!(cut > 0, "flips in the unacknowledged final batch are cut");
}

#[test]
fn every_truncation_point_keeps_exactly_the_complete_batches_of_the_last_segment() {
    let reference = tempfile::tempdir().unwrap();
    let paths = build(reference.path());
    for (index, path) in paths.iter().enumerate() {
        let original = fs::read(path).unwrap();
        let is_last = index + 1 == paths.len();
        let before = records_before(&paths, index);
        let ends = batch_ends(&original, before);
        for len in 0..original.len() {
            let work = tempfile::tempdir().unwrap();
            copy_log(reference.path(), work.path());
            let target = work.path().join(path.file_name().unwrap());
            fs::write(&target, &original[..len]).unwrap();
            match open_damaged(work.path(), &target) {
                Opened::Refused { file_named } => {
                    assert!(!is_last, "a cut last segment at {len} must open");
                    // Cut at a batch boundary, the damaged segment still verifies on its
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
                    let expected = ends
                        .iter()
                        .filter(|(end, _)| *end <= len)
                        .map(|(_, records)| *records)
                        .next_back()
                        .unwrap_or(before);
                    assert_eq!(records.len(), expected, "cut at {len}");
                    assert_exact_prefix(&records);
                }
            }
        }
    }
}

#[test]
fn a_torn_tail_is_moved_aside_and_garbage_before_a_complete_batch_is_corruption() {
    let reference = tempfile::tempdir().unwrap();
    let paths = build(reference.path());
    let last = paths.last().unwrap();
    let original = fs::read(last).unwrap();

    // Zeros after the last batch: the clean end (a preallocated tail, or a torn write
    // whose sectors were all lost: nothing of it was acknowledged). Nothing is cut.
    let work = tempfile::tempdir().unwrap();
    copy_log(reference.path(), work.path());
    let mut zero_tail = original.clone();
    zero_tail.extend_from_slice(&[0u8; 8192]);
    let target = work.path().join(last.file_name().unwrap());
    fs::write(&target, &zero_tail).unwrap();
    let (log, report) = Log::open(work.path(), options()).unwrap();
    assert!(report.torn_tail.is_none(), "{:?}", report.torn_tail);
    assert_eq!(super::read_all(&log).len(), RECORDS as usize);
    drop(log);
    let after = fs::read(&target).unwrap();
    assert_eq!(after.len(), zero_tail.len(), "nothing was cut");
    assert_eq!(
        after[..original.len()],
        original[..],
        "the records are as they were"
    );
    assert!(
        !work.path().join(crate::TORN_DIR).exists(),
        "nothing was moved aside"
    );

    // Garbage after the last batch: what a torn write leaves. Cut, kept aside.
    {
        let tail: Vec<u8> = (0..400u32).map(|i| (i * 7 + 1) as u8).collect();
        let work = tempfile::tempdir().unwrap();
        copy_log(reference.path(), work.path());
        let mut damaged = original.clone();
        damaged.extend_from_slice(&tail);
        fs::write(work.path().join(last.file_name().unwrap()), &damaged).unwrap();
        let (log, report) = Log::open(work.path(), options()).unwrap();
        let torn = report.torn_tail.expect("torn tail reported");
        assert_eq!(
            (torn.offset, torn.bytes),
            (original.len() as u64, tail.len() as u64)
        );
        assert!(!torn.zero_filled);
        assert_eq!(super::read_all(&log).len(), RECORDS as usize);
        drop(log);
        let aside: Vec<PathBuf> = fs::read_dir(work.path().join(crate::TORN_DIR))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(aside.len(), 1);
        assert_eq!(fs::read(&aside[0]).unwrap(), tail, "the cut bytes are kept");
    }

    // Damage with a complete batch after it, in the last segment: in synced bytes.
    let work = tempfile::tempdir().unwrap();
    let rt = runtime();
    let (log, _) = Log::open(work.path(), growing()).unwrap();
    for i in 0..10 {
        rt.block_on(log.append(1, body(i))).unwrap();
    }
    drop(log);
    let only = segments(work.path()).remove(0);
    let original = fs::read(&only).unwrap();
    let ends = batch_ends(&original, 0);
    let (middle, _) = ends[3];
    let mut damaged = original.clone();
    damaged[middle + 3] ^= 0x40; // inside a batch header, with batches after it
    fs::write(&only, &damaged).unwrap();
    let error = Log::open(work.path(), growing()).unwrap_err();
    assert!(
        error.is_corruption() && error.to_string().contains(&format!("offset {middle}")),
        "{error}"
    );
    assert_eq!(
        fs::read(&only).unwrap(),
        damaged,
        "a refused open changes nothing"
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
    let (log, _) = Log::open(dir.path(), growing()).unwrap();
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
    let error = Log::open(dir.path(), growing()).unwrap_err();
    assert!(error.is_corruption(), "{error}");
    assert_eq!(
        fs::read(&paths[0]).unwrap(),
        bytes,
        "a refused open changes nothing"
    );
}

/// A checkpoint is the only copy of what compaction deleted: every flip in it refuses the
/// open, naming the checkpoint file, and changes nothing.
#[test]
fn every_single_byte_flip_in_a_checkpoint_is_refused() {
    let reference = tempfile::tempdir().unwrap();
    let rt = runtime();
    let (log, _) = Log::open(reference.path(), options()).unwrap();
    for i in 0..RECORDS {
        rt.block_on(log.append(1, body(i))).unwrap();
    }
    let entries: Vec<(u8, Vec<u8>)> = (0..5).map(|i| (1, body(100 + i))).collect();
    let info = log
        .write_checkpoint(20, &mut entries.clone().into_iter())
        .unwrap();
    log.truncate_before(21).unwrap();
    drop(log);
    let (log, report) = Log::open(reference.path(), options()).unwrap();
    assert_eq!(report.checkpoint.as_ref(), Some(&info));
    let replay = log.replay().unwrap();
    let read: Vec<(u8, Vec<u8>)> = replay.checkpoint.unwrap().map(|e| e.unwrap()).collect();
    assert_eq!(read, entries);
    let records: Vec<u64> = replay.records.map(|e| e.unwrap().lsn).collect();
    assert_eq!(records, (21..=u64::from(RECORDS)).collect::<Vec<_>>());
    drop(log);
    let name = info.path.file_name().unwrap().to_owned();
    let original = fs::read(&info.path).unwrap();
    for offset in 0..original.len() {
        let work = tempfile::tempdir().unwrap();
        for entry in fs::read_dir(reference.path()).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() && path.file_name() != Some(std::ffi::OsStr::new("LOCK")) {
                fs::copy(&path, work.path().join(path.file_name().unwrap())).unwrap();
            }
        }
        let mut bytes = original.clone();
        bytes[offset] ^= 0x04;
        fs::write(work.path().join(&name), &bytes).unwrap();
        let error = Log::open(work.path(), options()).unwrap_err();
        assert!(
            error.is_corruption() && error.to_string().contains(name.to_str().unwrap()),
            "flip at {offset}: {error}"
        );
    }
}

/// Segments missing at the start are caught: with no checkpoint the log must start at
/// LSN 1, and with one it must reach back to the record after it.
#[test]
fn a_missing_first_segment_is_corruption() {
    let reference = tempfile::tempdir().unwrap();
    let paths = build(reference.path());
    fs::remove_file(&paths[0]).unwrap();
    let error = Log::open(reference.path(), options()).unwrap_err();
    assert!(
        error.is_corruption() && error.to_string().contains("missing"),
        "{error}"
    );
}

/// What opening a damaged log must do, in one recovery mode.
#[derive(Debug, PartialEq)]
enum Expect {
    /// Opens; exactly this many records survive; `torn/` holds the cut bytes when `cut`.
    Opens { records: usize, cut: bool },
    /// Refuses with a corruption error containing this text, changing nothing.
    Refuses(&'static str),
}

/// The recovery decision table of docs/wal-format.md, one row per line: how the log is
/// damaged, then what the default (tolerate-torn-tail) and absolute modes do.
#[test]
fn recovery_decision_table() {
    type Damage = fn(&Path, &[PathBuf]);
    let last_batch_torn: Damage = |_, paths| {
        let last = paths.last().unwrap();
        let bytes = fs::read(last).unwrap();
        // Drop the seal and half of the last record's batch: a crash mid-write.
        fs::write(last, &bytes[..bytes.len() - BATCH_HEADER_BYTES - 10]).unwrap();
    };
    let empty_last_segment: Damage = |dir, _| {
        fs::write(
            dir.join(crate::format::segment_file_name(u64::from(RECORDS) + 1)),
            [0u8; 40],
        )
        .unwrap();
    };
    let synced_batch_damaged: Damage = |_, paths| {
        let last = paths.last().unwrap();
        let mut bytes = fs::read(last).unwrap();
        bytes[SEGMENT_HEADER_BYTES + BATCH_HEADER_BYTES + 22] ^= 0x08;
        fs::write(last, &bytes).unwrap();
    };
    let wrong_lsn_in_a_verifying_header: Damage = |_, paths| {
        let last = paths.last().unwrap();
        let mut bytes = fs::read(last).unwrap();
        let header = SegmentHeader::decode(&bytes).unwrap();
        let seed = header.frame_hasher();
        let at = bytes.len() - BATCH_HEADER_BYTES; // the seal
        let mut seal = BatchHeader::decode(&bytes[at..], &seed).unwrap();
        seal.first_lsn += 5;
        bytes[at..].copy_from_slice(&seal.encode(&seed));
        fs::write(last, &bytes).unwrap();
    };
    let earlier_segment_damaged: Damage = |_, paths| {
        let mut bytes = fs::read(&paths[0]).unwrap();
        let at = bytes.len() - 3;
        bytes[at] ^= 0x01;
        fs::write(&paths[0], &bytes).unwrap();
    };
    let zero_tail: Damage = |_, paths| {
        // What a preallocated segment looks like: zeros after the last batch.
        let last = paths.last().unwrap();
        let mut bytes = fs::read(last).unwrap();
        bytes.extend_from_slice(&[0u8; 700]);
        fs::write(last, &bytes).unwrap();
    };
    let earlier_zero_tail_not_zero: Damage = |_, paths| {
        let mut bytes = fs::read(&paths[0]).unwrap();
        bytes.extend_from_slice(&[0u8; 300]);
        let at = bytes.len() - 100;
        bytes[at] = 0x01;
        fs::write(&paths[0], &bytes).unwrap();
    };
    let middle_segment_missing: Damage = |_, paths| fs::remove_file(&paths[1]).unwrap();
    let first_segment_missing: Damage = |_, paths| fs::remove_file(&paths[0]).unwrap();
    let rows: [(&str, Damage, Expect, Expect); 9] = [
        (
            "zeros from the last batch to the end of the file (a preallocated zero tail)",
            zero_tail,
            Expect::Opens {
                records: RECORDS as usize,
                cut: false,
            },
            Expect::Opens {
                records: RECORDS as usize,
                cut: false,
            },
        ),
        (
            "a non-zero byte in the zero tail of a segment that is not the last",
            earlier_zero_tail_not_zero,
            Expect::Refuses("not the last"),
            Expect::Refuses("not the last"),
        ),
        (
            "last batch torn",
            last_batch_torn,
            Expect::Opens {
                records: RECORDS as usize - 1,
                cut: true,
            },
            Expect::Refuses("absolute recovery refuses"),
        ),
        (
            "last segment no longer than its header",
            empty_last_segment,
            Expect::Opens {
                records: RECORDS as usize,
                cut: false,
            },
            Expect::Refuses("shorter than its"),
        ),
        (
            "damage before a verifying batch header",
            synced_batch_damaged,
            Expect::Refuses("synced bytes"),
            Expect::Refuses("synced bytes"),
        ),
        (
            "a verifying batch header with the wrong LSN",
            wrong_lsn_in_a_verifying_header,
            Expect::Refuses("LSN gap"),
            Expect::Refuses("LSN gap"),
        ),
        (
            "damage in a segment that is not the last",
            earlier_segment_damaged,
            Expect::Refuses("not the last"),
            Expect::Refuses("not the last"),
        ),
        (
            "a missing middle segment",
            middle_segment_missing,
            Expect::Refuses("missing"),
            Expect::Refuses("missing"),
        ),
        (
            "a missing first segment",
            first_segment_missing,
            Expect::Refuses("missing"),
            Expect::Refuses("missing"),
        ),
    ];
    let reference = tempfile::tempdir().unwrap();
    let paths = build(reference.path());
    for (what, damage, default_mode, absolute_mode) in rows {
        for (mode, expected) in [
            (crate::RecoveryMode::TolerateTornTail, default_mode),
            (crate::RecoveryMode::Absolute, absolute_mode),
        ] {
            let work = tempfile::tempdir().unwrap();
            copy_log(reference.path(), work.path());
            let copies: Vec<PathBuf> = paths
                .iter()
                .map(|path| work.path().join(path.file_name().unwrap()))
                .collect();
            damage(work.path(), &copies);
            let before: Vec<Vec<u8>> = segments(work.path())
                .iter()
                .map(|p| fs::read(p).unwrap())
                .collect();
            let options = Options {
                recovery_mode: mode,
                ..options()
            };
            let got = match Log::open(work.path(), options) {
                Ok((log, report)) => {
                    let records = super::read_all(&log).len();
                    Expect::Opens {
                        records,
                        cut: report.torn_tail.is_some(),
                    }
                }
                Err(error) => {
                    assert!(error.is_corruption(), "{what} ({mode:?}): {error}");
                    let after: Vec<Vec<u8>> = segments(work.path())
                        .iter()
                        .map(|p| fs::read(p).unwrap())
                        .collect();
                    assert_eq!(
                        before, after,
                        "{what} ({mode:?}): a refused open changed files"
                    );
                    match &expected {
                        Expect::Refuses(text) if error.to_string().contains(text) => {
                            Expect::Refuses(text)
                        }
                        _ => {
                            panic!("{what} ({mode:?}): refused with {error}, expected {expected:?}")
                        }
                    }
                }
            };
            assert_eq!(got, expected, "{what} ({mode:?})");
            if let Expect::Opens { cut: true, .. } = got {
                assert!(
                    work.path().join(crate::TORN_DIR).is_dir(),
                    "{what}: cut bytes kept"
                );
            }
        }
    }
}
