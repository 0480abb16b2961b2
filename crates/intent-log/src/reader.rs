//! Streaming verified records back out of the segments, one segment in memory at a time.

use std::sync::Arc;

use crate::error::{Error, Result};
use std::collections::VecDeque;

use crate::format::{decode_batch, SegmentHeader, SEGMENT_HEADER_BYTES};
use crate::fs::FileSystem;
use crate::log::Entry;
use crate::recovery::is_zero_tail;
use crate::recovery::SegmentInfo;

/// An iterator over verified records, in LSN order, from a start LSN up to the LSN that
/// was durable when the reader was made. It stops at the first error.
pub struct LogReader {
    fs: Arc<dyn FileSystem>,
    segments: std::vec::IntoIter<SegmentInfo>,
    next_lsn: u64,
    last_lsn: u64,
    record_bytes_max: usize,
    current: Option<Current>,
    failed: bool,
}

struct Current {
    info: SegmentInfo,
    bytes: Vec<u8>,
    offset: usize,
    lsn: u64,
    seed: crc32fast::Hasher,
    /// The records of the batch being read.
    pending: VecDeque<Entry>,
}

impl LogReader {
    pub(crate) fn new(
        fs: Arc<dyn FileSystem>,
        segments: Vec<SegmentInfo>,
        from_lsn: u64,
        last_lsn: u64,
        record_bytes_max: usize,
    ) -> LogReader {
        // Skip the segments that end before `from_lsn`: the next segment starts at or
        // below it only if this one is still needed.
        let mut start = 0;
        while start + 1 < segments.len() && segments[start + 1].header.first_lsn <= from_lsn {
            start += 1;
        }
        let segments: Vec<SegmentInfo> = segments.into_iter().skip(start).collect();
        LogReader {
            fs,
            segments: segments.into_iter(),
            next_lsn: from_lsn,
            last_lsn,
            record_bytes_max,
            current: None,
            failed: false,
        }
    }

    fn load_next_segment(&mut self) -> Result<bool> {
        let Some(info) = self.segments.next() else {
            return Ok(false);
        };
        let bytes = self
            .fs
            .read(&info.path)
            .map_err(|error| Error::io("reading", &info.path, error))?;
        let header = SegmentHeader::decode(&bytes)
            .map_err(|reason| Error::corruption(&info.path, 0, reason))?;
        if header != info.header {
            return Err(Error::corruption(
                &info.path,
                0,
                "segment header changed since the log was opened",
            ));
        }
        let seed = header.frame_hasher();
        self.current = Some(Current {
            lsn: header.first_lsn,
            info,
            bytes,
            offset: SEGMENT_HEADER_BYTES,
            seed,
            pending: VecDeque::new(),
        });
        Ok(true)
    }

    fn next_entry(&mut self) -> Result<Option<Entry>> {
        loop {
            if self.next_lsn > self.last_lsn {
                return Ok(None);
            }
            if self.current.is_none() && !self.load_next_segment()? {
                return Ok(None);
            }
            let Some(current) = self.current.as_mut() else {
                return Ok(None);
            };
            let Some(entry) = current.pending.pop_front() else {
                // The end of the segment, or its preallocated zero tail (recovery checked
                // at open that the next segment starts right after its last record).
                if is_zero_tail(&current.bytes, current.offset) {
                    self.current = None;
                    continue;
                }
                let batch = decode_batch(
                    &current.bytes,
                    current.offset,
                    &current.seed,
                    current.lsn,
                    self.record_bytes_max,
                )
                .map_err(|error| {
                    Error::corruption(&current.info.path, current.offset as u64, error.to_string())
                })?;
                current.offset = batch.end;
                current.lsn += u64::from(batch.header.records);
                current.pending = batch
                    .frames
                    .into_iter()
                    .map(|frame| Entry {
                        lsn: frame.lsn,
                        kind: frame.kind,
                        body: frame.body.to_vec(),
                    })
                    .collect();
                continue;
            };
            let frame = entry;
            if frame.lsn < self.next_lsn {
                continue;
            }
            if frame.lsn > self.last_lsn {
                return Ok(None);
            }
            self.next_lsn = frame.lsn + 1;
            return Ok(Some(frame));
        }
    }
}

impl Iterator for LogReader {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        if self.failed {
            return None;
        }
        match self.next_entry() {
            Ok(Some(entry)) => Some(Ok(entry)),
            Ok(None) => None,
            Err(error) => {
                self.failed = true;
                Some(Err(error))
            }
        }
    }
}
