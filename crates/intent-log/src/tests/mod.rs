//! Tests of the log beside the code: behaviour, a model-based crash property test on the
//! simulated file system, and byte-level damage on real files.

mod basic;
mod byte_level;
mod checkpoint_stream;
mod fuzz_corpus;
mod model;
mod preallocated;
mod spare_background;

use crate::Options;

/// Small limits so a few records rotate segments and fill batches; preallocated segments
/// (the crash model then covers spares, activation and in-place overwrites).
pub(crate) fn small_options() -> Options {
    Options {
        segment_bytes: 1024,
        record_bytes_max: 128,
        batch_bytes_max: 512,
        preallocate_segments: true,
        ..Options::default()
    }
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

pub(crate) fn read_all(log: &crate::Log) -> Vec<crate::Entry> {
    log.read_from(log.first_lsn())
        .expect("reader")
        .collect::<crate::Result<Vec<_>>>()
        .expect("every record verifies")
}
