//! Checkpoints larger than one read: a checkpoint holds every finished intent inside the
//! key-retention window (issue 11: a million intents made a gigabyte), so it is verified
//! and then read a piece at a time, never whole. These tests use real files (the
//! simulated file system reads a file whole).

use std::fs;

use super::runtime;
use crate::{Error, Log, Options};

/// Entries of many sizes (1 byte to 9 KiB) so that frames straddle every read boundary.
fn entries(count: u64) -> Vec<(u8, Vec<u8>)> {
    (0..count)
        .map(|i| {
            let len = 1 + ((i * 7919) % 9000) as usize;
            let body: Vec<u8> = (0..len).map(|j| (i as usize * 31 + j) as u8).collect();
            (1 + (i % 3) as u8, body)
        })
        .collect()
}

/// A log with 30 records and a checkpoint at LSN 20 holding `written`.
fn log_with_checkpoint(dir: &std::path::Path, written: &[(u8, Vec<u8>)]) -> crate::CheckpointInfo {
    let rt = runtime();
    let (log, _) = Log::open(dir, Options::default()).expect("open");
    for i in 0..30u32 {
        rt.block_on(log.append(1, i.to_le_bytes().to_vec()))
            .expect("append");
    }
    let info = log
        .write_checkpoint(20, &mut written.iter().cloned())
        .expect("checkpoint");
    log.close();
    info
}

/// Reopens the log and returns it with the reader of its checkpoint (which must be `info`).
fn reopen_with_checkpoint(
    dir: &std::path::Path,
    info: &crate::CheckpointInfo,
) -> (Log, crate::CheckpointReader) {
    let (log, report) = Log::open(dir, Options::default()).expect("reopen");
    assert_eq!(report.checkpoint.as_ref(), Some(info));
    let reader = log
        .replay()
        .expect("replay")
        .checkpoint
        .expect("checkpoint");
    (log, reader)
}

#[test]
fn a_checkpoint_larger_than_a_read_comes_back_entry_for_entry_without_being_read_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let written = entries(1500);
    let info = log_with_checkpoint(dir.path(), &written);
    assert!(
        info.bytes > 6 << 20,
        "the checkpoint must span several reads: {} bytes",
        info.bytes
    );
    let (_log, mut reader) = reopen_with_checkpoint(dir.path(), &info);
    assert_eq!(reader.info().entries, 1500);
    let mut read = Vec::new();
    let mut buffered_max = 0;
    // Not a `for` loop: the reader is looked at between entries.
    #[allow(clippy::while_let_on_iterator)]
    while let Some(entry) = reader.next() {
        read.push(entry.expect("every entry verifies"));
        buffered_max = buffered_max.max(reader.buffered_bytes());
    }
    assert_eq!(read, written);
    assert!(
        buffered_max < 3 << 20,
        "the reader held {buffered_max} bytes of a {}-byte checkpoint",
        info.bytes
    );
}

/// Compaction reads the previous checkpoint while it writes the next and deletes the old
/// one after: a reader opened before the file is deleted reads it to the end.
#[test]
fn a_reader_opened_before_its_file_is_deleted_reads_it_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let written = entries(900);
    let info = log_with_checkpoint(dir.path(), &written);
    let (_log, reader) = reopen_with_checkpoint(dir.path(), &info);
    fs::remove_file(&info.path).expect("delete the checkpoint under the reader");
    assert!(!info.path.exists());
    let read: Vec<(u8, Vec<u8>)> = reader
        .map(|entry| entry.expect("every entry verifies"))
        .collect();
    assert_eq!(read, written);
}

/// A flip deep inside a large checkpoint (past the first reads) refuses the open, at the
/// offset of the frame that holds it.
#[test]
fn a_flip_deep_in_a_large_checkpoint_refuses_the_open_at_its_frame() {
    let dir = tempfile::tempdir().expect("tempdir");
    let written = entries(1500);
    let info = log_with_checkpoint(dir.path(), &written);
    let mut bytes = fs::read(&info.path).expect("read");
    let flipped = (info.bytes as usize) * 2 / 3;
    bytes[flipped] ^= 0x10;
    fs::write(&info.path, &bytes).expect("write");
    let error = Log::open(dir.path(), Options::default()).expect_err("a flipped checkpoint");
    match &error {
        Error::Corruption { file, offset, .. } => {
            assert_eq!(file, &info.path);
            let offset = *offset as usize;
            assert!(
                offset <= flipped && flipped < offset + 20 + 9000,
                "the flip at {flipped} is not in the frame at {offset}"
            );
            assert!(offset > 3 << 20, "the frame at {offset} is not deep");
        }
        other => panic!("a flip must be corruption, got {other}"),
    }
    assert_eq!(
        fs::read(&info.path).expect("read"),
        bytes,
        "a refused open changes nothing"
    );
}

/// A checkpoint cut short after it was verified (changed while being read) ends the
/// iteration with corruption, after exactly the entries still whole.
#[test]
fn a_checkpoint_cut_while_being_read_ends_with_corruption_after_the_whole_entries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let written = entries(1500);
    let info = log_with_checkpoint(dir.path(), &written);
    let (_log, reader) = reopen_with_checkpoint(dir.path(), &info);
    let cut = info.bytes / 2;
    fs::OpenOptions::new()
        .write(true)
        .open(&info.path)
        .and_then(|file| file.set_len(cut))
        .expect("cut the checkpoint");
    let mut read = Vec::new();
    let mut failure = None;
    for entry in reader {
        match entry {
            Ok(entry) => read.push(entry),
            Err(error) => {
                assert!(failure.is_none(), "the reader stops at the first failure");
                failure = Some(error);
            }
        }
    }
    let failure = failure.expect("a cut checkpoint must not read as complete");
    assert!(failure.is_corruption(), "{failure}");
    // Exactly the entries that lie whole below the cut come back.
    let mut end = 64u64;
    let whole = written
        .iter()
        .take_while(|(_, body)| {
            end += 20 + body.len() as u64;
            end <= cut
        })
        .count();
    assert_eq!(read.len(), whole);
    assert_eq!(read, written[..whole]);
}
