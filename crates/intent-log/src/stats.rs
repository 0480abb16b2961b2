//! Counters and histograms the writer keeps (fsync latency, group-commit batch sizes), for
//! `/metrics` and the benchmarks. Lock-free: the writer only does relaxed atomic adds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Histogram buckets: bucket `i` counts values in `[2^i, 2^(i+1))` (bucket 0 also holds 0).
pub const HISTOGRAM_BUCKETS: usize = 32;

#[derive(Default)]
pub(crate) struct Stats {
    pub bytes: AtomicU64,
    records: AtomicU64,
    batches: AtomicU64,
    sync_micros_total: AtomicU64,
    sync_micros: [AtomicU64; HISTOGRAM_BUCKETS],
    batch_records: [AtomicU64; HISTOGRAM_BUCKETS],
}

fn bucket(value: u64) -> usize {
    (63 - value.max(1).leading_zeros() as usize).min(HISTOGRAM_BUCKETS - 1)
}

impl Stats {
    pub(crate) fn record_sync(&self, elapsed: Duration, records: u64) {
        let micros = elapsed.as_micros().min(u128::from(u64::MAX)) as u64;
        self.records.fetch_add(records, Ordering::Relaxed);
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.sync_micros_total.fetch_add(micros, Ordering::Relaxed);
        self.sync_micros[bucket(micros)].fetch_add(1, Ordering::Relaxed);
        self.batch_records[bucket(records)].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self, segments: usize, log_bytes: u64) -> LogStats {
        let load = |buckets: &[AtomicU64; HISTOGRAM_BUCKETS]| {
            let mut out = [0u64; HISTOGRAM_BUCKETS];
            for (slot, counter) in out.iter_mut().zip(buckets) {
                *slot = counter.load(Ordering::Relaxed);
            }
            out
        };
        LogStats {
            records: self.records.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            bytes_written: self.bytes.load(Ordering::Relaxed),
            sync_micros_total: self.sync_micros_total.load(Ordering::Relaxed),
            sync_micros_histogram: load(&self.sync_micros),
            batch_records_histogram: load(&self.batch_records),
            segments,
            log_bytes,
        }
    }
}

/// A snapshot of the writer's counters since the log was opened.
#[derive(Clone, Debug)]
pub struct LogStats {
    /// Records made durable.
    pub records: u64,
    /// Batches written (each one write and one sync).
    pub batches: u64,
    pub bytes_written: u64,
    pub sync_micros_total: u64,
    /// Sync latency in microseconds, log2 buckets (see [`HISTOGRAM_BUCKETS`]).
    pub sync_micros_histogram: [u64; HISTOGRAM_BUCKETS],
    /// Records per batch, log2 buckets.
    pub batch_records_histogram: [u64; HISTOGRAM_BUCKETS],
    /// Segments in the log now.
    pub segments: usize,
    /// Bytes of the log on disk now, headers included.
    pub log_bytes: u64,
}

#[cfg(test)]
mod tests {
    #[test]
    fn buckets_table() {
        let check =
            |value: u64, expected: usize| assert_eq!(super::bucket(value), expected, "{value}");
        check(0, 0);
        check(1, 0);
        check(2, 1);
        check(3, 1);
        check(1024, 10);
        check(u64::MAX, super::HISTOGRAM_BUCKETS - 1);
    }
}
