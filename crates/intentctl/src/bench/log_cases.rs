//! The log's own cases of `intentctl bench wal`: appenders on a log with preallocated
//! segments (as `intentctl serve` opens it) or growing ones, the in-place raw ceiling the
//! preallocated log is to be held against, and what a new log costs a short-lived
//! process (open, first append, close).

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use intent_log::{Log, Options};
use serde::Serialize;

use super::{micros_since, row, Row, RECORD_BYTES};

/// The in-place ceiling's file (the log's default segment size).
const IN_PLACE_FILE_BYTES: u64 = intent_log::SEGMENT_BYTES_DEFAULT;
/// How long the preallocated case waits for its log to move into its first spare.
const WARM_UP_MAX: Duration = Duration::from_secs(120);
/// New logs opened per variant for the open/append/close timings (the median is shown).
const NEW_LOG_RUNS: usize = 5;

/// The row name of the log with or without preallocated segments.
pub(super) fn log_system(preallocate: bool) -> &'static str {
    if preallocate {
        "intent-log preallocated"
    } else {
        "intent-log growing"
    }
}

fn log_options(preallocate: bool) -> Options {
    Options {
        preallocate_segments: preallocate,
        ..Options::default()
    }
}

/// The ceiling a preallocated log is held against: one thread overwriting a file of
/// synced zeros with `concurrency` framed records per write, then fdatasync (no file size
/// or extent to journal), wrapping around at its end.
pub(super) fn raw_in_place(
    path: &Path,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<Row> {
    let file = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(path)?;
    let zeros = vec![0u8; 1 << 20];
    for chunk in 0..IN_PLACE_FILE_BYTES / zeros.len() as u64 {
        file.write_all_at(&zeros, chunk * zeros.len() as u64)?;
    }
    file.sync_data()?;
    let batch = vec![0x5au8; concurrency * (RECORD_BYTES + intent_log::format::FRAME_HEADER_BYTES)];
    let started = Instant::now();
    let mut offset = 0u64;
    let mut records = 0u64;
    let mut latencies = Vec::new();
    while started.elapsed() < duration {
        if offset + batch.len() as u64 > IN_PLACE_FILE_BYTES {
            offset = 0;
        }
        let begun = Instant::now();
        file.write_all_at(&batch, offset)?;
        file.sync_data()?;
        latencies.extend(std::iter::repeat_n(micros_since(begun), concurrency));
        offset += batch.len() as u64;
        records += concurrency as u64;
    }
    Ok(row(
        "raw in place",
        concurrency,
        records,
        started.elapsed(),
        latencies,
    ))
}

fn segment_files(dir: &Path) -> anyhow::Result<usize> {
    let mut count = 0;
    for entry in std::fs::read_dir(dir)? {
        if entry?.path().extension().is_some_and(|ext| ext == "wal") {
            count += 1;
        }
    }
    Ok(count)
}

/// A new log's first segment grows until its spare (written by a helper thread) is ready:
/// append one record at a time until the log has moved into it, so the timed window
/// measures the steady state a long-running `serve` is in.
fn warm_up(runtime: &tokio::runtime::Runtime, log: &Log, dir: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    while segment_files(dir)? < 2 {
        anyhow::ensure!(
            started.elapsed() < WARM_UP_MAX,
            "the log did not move into its preallocated spare within {WARM_UP_MAX:?}"
        );
        runtime.block_on(log.append(1, vec![0x5a; RECORD_BYTES]))?;
    }
    Ok(())
}

pub(super) fn intent_log_case(
    dir: &Path,
    concurrency: usize,
    duration: Duration,
    preallocate: bool,
) -> anyhow::Result<Row> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (log, _) = Log::open(dir, log_options(preallocate))?;
    if preallocate {
        warm_up(&runtime, &log, dir)?;
    }
    let log = Arc::new(log);
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let results = runtime.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let log = log.clone();
            let stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let begun = Instant::now();
                    log.append(1, vec![0x5a; RECORD_BYTES]).await?;
                    latencies.push(micros_since(begun));
                }
                Ok::<_, intent_log::Error>(latencies)
            }));
        }
        tokio::time::sleep(duration).await;
        stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for task in tasks {
            all.push(task.await);
        }
        all
    });
    let elapsed = started.elapsed();
    let mut latencies = Vec::new();
    for result in results {
        latencies.extend(result??);
    }
    let records = latencies.len() as u64;
    let system = log_system(preallocate);
    Ok(row(system, concurrency, records, elapsed, latencies))
}

/// What a new log costs a process that opens it, appends once and closes (medians of
/// `NEW_LOG_RUNS` new logs), in milliseconds.
#[derive(Serialize)]
pub(super) struct NewLog {
    system: &'static str,
    open_ms: f64,
    first_append_ms: f64,
    close_ms: f64,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Opens new logs (with and without preallocation), appends one record to each and closes
/// it, timing each step: the spare's zeros must cost none of them.
pub(super) fn new_logs(scratch: &Path) -> anyhow::Result<Vec<NewLog>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut results = Vec::new();
    for preallocate in [true, false] {
        let (mut open, mut append, mut close) = (Vec::new(), Vec::new(), Vec::new());
        for run in 0..NEW_LOG_RUNS {
            let dir = scratch.join(format!("new-{preallocate}-{run}"));
            let started = Instant::now();
            let (log, _) = Log::open(&dir, log_options(preallocate))?;
            open.push(started.elapsed().as_secs_f64() * 1e3);
            let started = Instant::now();
            runtime.block_on(log.append(1, vec![0x5a; RECORD_BYTES]))?;
            append.push(started.elapsed().as_secs_f64() * 1e3);
            let started = Instant::now();
            log.close();
            close.push(started.elapsed().as_secs_f64() * 1e3);
        }
        results.push(NewLog {
            system: log_system(preallocate),
            open_ms: median(open),
            first_append_ms: median(append),
            close_ms: median(close),
        });
    }
    Ok(results)
}

pub(super) fn print_new_logs(new_logs: &[NewLog]) {
    println!();
    println!("a new log, medians of {NEW_LOG_RUNS}: open, first append acknowledged, close (ms)");
    for new_log in new_logs {
        println!(
            "{:<28} open {:>8.2}  first append {:>8.2}  close {:>8.2}",
            new_log.system, new_log.open_ms, new_log.first_append_ms, new_log.close_ms
        );
    }
}
