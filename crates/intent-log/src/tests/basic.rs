//! Behaviour of append, read, rotation, truncation, locking, poisoning and the recovery
//! modes, one scenario per test.

use std::path::Path;
use std::sync::Arc;

use super::{read_all, runtime, small_options};
use crate::sim_fs::{SimError, SimFault, SimFileSystem, SimOp};
use crate::{Error, Log, Options, RecoveryMode, SyncMode};

fn sim_open(fs: &SimFileSystem, options: Options) -> crate::Result<(Log, crate::RecoveryReport)> {
    Log::open_with(Arc::new(fs.clone()), Path::new("/wal"), options)
}

#[test]
fn append_read_reopen_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let (log, report) = Log::open(dir.path(), small_options()).unwrap();
    assert_eq!((report.records, report.next_lsn), (0, 1));
    let mut expected = Vec::new();
    for i in 0..40u32 {
        let body = format!("record {i}").into_bytes();
        let lsn = rt
            .block_on(log.append(1 + (i % 3) as u8, body.clone()))
            .unwrap();
        assert_eq!(lsn, u64::from(i) + 1);
        expected.push((lsn, 1 + (i % 3) as u8, body));
    }
    let first = rt
        .block_on(log.append_batch(vec![(7, b"a".to_vec()), (7, b"b".to_vec())]))
        .unwrap();
    assert_eq!(first, 41);
    expected.push((41, 7, b"a".to_vec()));
    expected.push((42, 7, b"b".to_vec()));
    assert!(log.stats().segments > 1, "small segments rotate");
    drop(log);
    let (log, report) = Log::open(dir.path(), small_options()).unwrap();
    assert_eq!(
        (report.records, report.next_lsn, report.torn_tail.clone()),
        (42, 43, None)
    );
    let got: Vec<_> = read_all(&log)
        .into_iter()
        .map(|e| (e.lsn, e.kind, e.body))
        .collect();
    assert_eq!(got, expected);
    let tail: Vec<u64> = log.read_from(40).unwrap().map(|e| e.unwrap().lsn).collect();
    assert_eq!(tail, vec![40, 41, 42]);
}

#[test]
fn typed_records_round_trip_through_the_codec() {
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Intent {
        key: String,
        amount_minor: u64,
    }
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let (log, _) = Log::open(dir.path(), Options::default()).unwrap();
    let intent = Intent {
        key: "bet-1".into(),
        amount_minor: 1000,
    };
    let lsn = rt.block_on(log.append_typed(3, &intent)).unwrap();
    let entry = log.read_from(lsn).unwrap().next().unwrap().unwrap();
    assert_eq!(crate::codec::decode::<Intent>(&entry.body).unwrap(), intent);
}

#[test]
fn concurrent_appenders_share_batches_and_get_distinct_lsns() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let (log, _) = Log::open(dir.path(), Options::default()).unwrap();
    let log = Arc::new(log);
    let lsns = rt.block_on(async {
        let mut tasks = Vec::new();
        for task in 0..64u32 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                let mut lsns = Vec::new();
                for n in 0..20u32 {
                    lsns.push(
                        log.append(1, format!("{task}/{n}").into_bytes())
                            .await
                            .unwrap(),
                    );
                }
                lsns
            }));
        }
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.unwrap());
        }
        all
    });
    let mut sorted = lsns.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted, (1..=1280).collect::<Vec<u64>>());
    let stats = log.stats();
    assert_eq!(stats.records, 1280);
    assert!(
        stats.batches < 1280,
        "64 concurrent appenders must share syncs, got {} batches",
        stats.batches
    );
}

#[test]
fn truncate_before_deletes_whole_segments_only() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let (log, _) = Log::open(dir.path(), small_options()).unwrap();
    for i in 0..100u32 {
        rt.block_on(log.append(1, vec![i as u8; 60])).unwrap();
    }
    let segments_before = log.stats().segments;
    // Nothing a checkpoint does not cover can be deleted.
    assert!(matches!(
        log.truncate_before(50),
        Err(Error::InvalidCheckpoint(_))
    ));
    assert_eq!(log.stats().segments, segments_before);
    log.write_checkpoint(49, &mut std::iter::once((1, b"state".to_vec())))
        .unwrap();
    let deleted = log.truncate_before(50).unwrap();
    assert!(deleted > 0 && log.stats().segments == segments_before - deleted);
    assert!(log.first_lsn() <= 50 && log.first_lsn() > 1);
    let entries = read_all(&log);
    assert_eq!(entries.first().map(|e| e.lsn), Some(log.first_lsn()));
    assert_eq!(entries.last().map(|e| e.lsn), Some(100));
    assert!(matches!(
        log.read_from(1),
        Err(Error::Truncated { requested: 1, .. })
    ));
    // Truncating everything the checkpoint covers keeps the active segment.
    log.write_checkpoint(100, &mut std::iter::empty()).unwrap();
    log.truncate_before(101).unwrap();
    assert_eq!(log.stats().segments, 1);
    drop(log);
    let (log, report) = Log::open(dir.path(), small_options()).unwrap();
    assert_eq!(report.next_lsn, 101);
    assert_eq!(rt.block_on(log.append(1, b"after".to_vec())).unwrap(), 101);
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = Log::open(dir.path(), Options::default()).unwrap();
    assert!(matches!(
        Log::open(dir.path(), Options::default()),
        Err(Error::Locked { .. })
    ));
    // A closed log releases the directory even while its handle is still alive.
    log.close();
    let (_reopened, _) = Log::open(dir.path(), Options::default()).unwrap();
}

#[test]
fn bad_appends_get_typed_errors_and_the_log_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let (log, _) = Log::open(dir.path(), small_options()).unwrap();
    let check = |records: Vec<(u8, Vec<u8>)>, expected: &str| {
        let error = rt.block_on(log.append_batch(records)).unwrap_err();
        assert!(format!("{error:?}").starts_with(expected), "{error:?}");
    };
    check(vec![], "InvalidAppend");
    check(vec![(0, b"x".to_vec())], "InvalidAppend");
    check(vec![(1, vec![0; 129])], "RecordTooLarge");
    check(vec![(1, vec![0; 100]); 5], "BatchTooLarge");
    assert_eq!(rt.block_on(log.append(1, b"fine".to_vec())).unwrap(), 1);
    assert!(matches!(
        Log::open(
            tempfile::tempdir().unwrap().path(),
            Options {
                batch_bytes_max: 10,
                ..Options::default()
            }
        ),
        Err(Error::InvalidOptions(_))
    ));
}

#[test]
fn a_failed_fsync_poisons_the_log_and_the_acknowledged_prefix_survives() {
    let fs = SimFileSystem::new(7);
    let rt = runtime();
    let (log, _) = sim_open(&fs, small_options()).unwrap();
    for i in 0..10u8 {
        rt.block_on(log.append(1, vec![i; 10])).unwrap();
    }
    fs.inject(SimFault {
        op: SimOp::Sync,
        skip: 0,
        error: SimError::Eio,
        repeat: false,
    });
    let error = rt.block_on(log.append(1, b"lost".to_vec())).unwrap_err();
    assert!(
        matches!(error, Error::Io { op: "syncing", .. }),
        "{error:?}"
    );
    assert_eq!(fs.faults_fired(), 1, "the fault happened");
    // Never retried: later appends are refused even though the disk would work again.
    let error = rt.block_on(log.append(1, b"after".to_vec())).unwrap_err();
    assert!(matches!(error, Error::Poisoned { .. }), "{error:?}");
    assert!(log.is_poisoned());
    drop(log);
    fs.crash();
    let (log, _) = sim_open(&fs, small_options()).unwrap();
    let entries = read_all(&log);
    assert!(
        entries.len() >= 10,
        "acknowledged records lost: {}",
        entries.len()
    );
    for (i, entry) in entries.iter().take(10).enumerate() {
        assert_eq!(entry.body, vec![i as u8; 10]);
    }
}

#[test]
fn enospc_on_write_poisons_and_space_returning_allows_a_reopen() {
    let fs = SimFileSystem::new(8);
    let rt = runtime();
    // Segments that grow as written: a write that grows the file meets ENOSPC mid-way.
    // (Preallocated segments meet it when the spare is prepared; the write then goes to a
    // growing segment and ends here too.)
    let options = Options {
        preallocate_segments: false,
        ..small_options()
    };
    let (log, _) = sim_open(&fs, options.clone()).unwrap();
    rt.block_on(log.append(1, vec![1; 50])).unwrap();
    fs.set_capacity_bytes(Some(200));
    let mut acked = 1;
    let error = loop {
        match rt.block_on(log.append(1, vec![2; 50])) {
            Ok(_) => acked += 1,
            Err(error) => break error,
        }
    };
    assert!(
        error.to_string().contains("No space left") || error.to_string().contains("os error 28"),
        "{error}"
    );
    assert!(matches!(
        rt.block_on(log.append(1, vec![3; 5])),
        Err(Error::Poisoned { .. })
    ));
    drop(log);
    fs.set_capacity_bytes(None);
    fs.kill_process();
    let (log, report) = sim_open(&fs, options).unwrap();
    assert!(
        report.torn_tail.is_some(),
        "the partial write is cut as a torn tail"
    );
    assert_eq!(read_all(&log).len(), acked);
    assert_eq!(
        rt.block_on(log.append(1, vec![4; 5])).unwrap(),
        acked as u64 + 1
    );
}

#[test]
fn recovery_makes_what_it_accepted_durable_before_returning() {
    // A killed process leaves unsynced bytes in the page cache. If recovery accepts them
    // it must sync them, or a power cut after restart would lose records it acted on.
    let fs = SimFileSystem::new(9);
    let rt = runtime();
    let options = Options {
        sync_mode: SyncMode::NoSyncBenchmarkOnly,
        ..small_options()
    };
    let (log, _) = sim_open(&fs, options.clone()).unwrap();
    for i in 0..5u8 {
        rt.block_on(log.append(1, vec![i; 20])).unwrap();
    }
    drop(log);
    fs.kill_process();
    let (log, report) = sim_open(&fs, small_options()).unwrap();
    assert_eq!(report.records, 5);
    drop(log);
    fs.crash(); // power cut after the restart
    let (log, report) = sim_open(&fs, small_options()).unwrap();
    assert_eq!((report.records, read_all(&log).len()), (5, 5));
}

#[test]
fn absolute_mode_refuses_a_torn_tail_and_salvage_moves_corruption_aside() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let (log, _) = Log::open(dir.path(), small_options()).unwrap();
    for i in 0..40u8 {
        rt.block_on(log.append(1, vec![i; 40])).unwrap();
    }
    drop(log);
    let mut segments: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    segments.sort();
    assert!(segments.len() >= 3);
    // A torn tail: a half record at the end of the last segment.
    let last = segments.last().unwrap().clone();
    let mut bytes = std::fs::read(&last).unwrap();
    bytes.extend_from_slice(&[9; 30]);
    std::fs::write(&last, &bytes).unwrap();
    let absolute = Options {
        recovery_mode: RecoveryMode::Absolute,
        ..small_options()
    };
    assert!(Log::open(dir.path(), absolute).unwrap_err().is_corruption());
    // Corruption in the middle segment: refused by default, salvaged on request.
    let middle = &segments[1];
    let mut bytes = std::fs::read(middle).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(middle, &bytes).unwrap();
    let error = Log::open(dir.path(), small_options()).unwrap_err();
    assert!(
        error.to_string().contains(&middle.display().to_string()),
        "{error}"
    );
    let salvage = Options {
        recovery_mode: RecoveryMode::Salvage,
        ..small_options()
    };
    let (log, report) = Log::open(dir.path(), salvage).unwrap();
    assert!(!report.salvaged.is_empty() && report.salvaged.iter().all(|p| p.exists()));
    let entries = read_all(&log);
    assert!(!entries.is_empty() && entries.len() < 40);
    for (i, entry) in entries.iter().enumerate() {
        assert_eq!(
            entry.body,
            vec![i as u8; 40],
            "salvage keeps an exact prefix"
        );
    }
}
