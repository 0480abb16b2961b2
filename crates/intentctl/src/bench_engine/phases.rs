//! One phase = one row: a mode at a submitter count. Set up (engine, sidecar child, or
//! nothing for the ceiling), warm up, read the counters, run the measured closed loop,
//! read the counters again, tear down.

use std::path::Path;

use indicatif::ProgressBar;
use scheduler::Engine;
use serde::Serialize;

use super::cases::{ceiling_op, embedded_op, http_client, open_engine, sidecar_op, sidecar_stats};
use super::children::start_sidecar;
use super::load::{closed_loop, LoopResult, Op};
use super::procfs::{cpu_seconds, peak_rss_kib, reset_peak, Process};
use super::report::Row;

/// What a row measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// `scheduler::Engine` in this process.
    Embedded,
    /// `intentctl serve` as a child process, over HTTP.
    Sidecar,
    /// The bare provider call, no durability.
    Ceiling,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::Embedded, Mode::Sidecar, Mode::Ceiling];

    pub fn name(self) -> &'static str {
        match self {
            Mode::Embedded => "embedded",
            Mode::Sidecar => "sidecar",
            Mode::Ceiling => "ceiling",
        }
    }

    /// Whose CPU and RSS the row shows.
    pub fn measured_process(self) -> &'static str {
        match self {
            Mode::Embedded => "bench process: engine + its HTTP client + submitter tasks",
            Mode::Sidecar => "sidecar process only (not the bench's HTTP clients)",
            Mode::Ceiling => "bench process: bare HTTP client + submitter tasks",
        }
    }
}

/// One phase to run.
pub struct PhaseSpec<'a> {
    pub mode: Mode,
    pub submitters: usize,
    pub ops: u64,
    pub warmup_ops: u64,
    /// A fresh directory for this phase's data.
    pub data_dir: &'a Path,
    pub purple_flea_url: &'a str,
    /// The simulator's process, whose CPU per intent is shown beside the row's own.
    pub simulator_pid: u32,
    /// Unique to the run, so keys never repeat against one simulator.
    pub key_prefix: String,
}

/// The log's counters at one moment.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogCounters {
    pub records: u64,
    /// One write and one fdatasync each.
    pub batches: u64,
    pub sync_micros: u64,
}

impl LogCounters {
    pub fn of_engine(engine: &Engine) -> LogCounters {
        let stats = engine.log_stats();
        LogCounters {
            records: stats.records,
            batches: stats.batches,
            sync_micros: stats.sync_micros_total,
        }
    }
}

/// Where the counters of a phase come from.
enum Source {
    Engine(Engine),
    Sidecar(reqwest::Client, String),
    Nothing,
}

impl Source {
    async fn counters(&self) -> anyhow::Result<Option<LogCounters>> {
        Ok(match self {
            Source::Engine(engine) => Some(LogCounters::of_engine(engine)),
            Source::Sidecar(client, base_url) => {
                let log = sidecar_stats(client, base_url).await?.log;
                Some(LogCounters {
                    records: log.records_total,
                    batches: log.batches_total,
                    sync_micros: log.sync_micros_total,
                })
            }
            Source::Nothing => None,
        })
    }
}

/// Runs one phase and returns its row.
pub async fn run_phase(spec: &PhaseSpec<'_>, progress: &ProgressBar) -> anyhow::Result<Row> {
    let client = http_client()?;
    match spec.mode {
        Mode::Embedded => {
            let engine = open_engine(spec.data_dir, spec.purple_flea_url, true).await?;
            let op = embedded_op(engine.clone(), spec.key_prefix.clone());
            let source = Source::Engine(engine.clone());
            let row = measure(spec, op, Process::This, &source, progress).await;
            engine.shutdown().await;
            row
        }
        Mode::Sidecar => {
            let sidecar = start_sidecar(spec.data_dir, spec.purple_flea_url).await?;
            let base_url = sidecar.base_url.clone();
            let op = sidecar_op(client.clone(), base_url.clone(), spec.key_prefix.clone());
            let source = Source::Sidecar(client, base_url);
            let row = measure(spec, op, Process::Child(sidecar.pid()?), &source, progress).await;
            sidecar.stop().await?;
            row
        }
        Mode::Ceiling => {
            let url = spec.purple_flea_url.to_string();
            let op = ceiling_op(client, url, spec.key_prefix.clone());
            measure(spec, op, Process::This, &Source::Nothing, progress).await
        }
    }
}

/// Warm-up, then the measured loop between two readings of CPU, peak RSS and counters.
async fn measure(
    spec: &PhaseSpec<'_>,
    op: Op,
    process: Process,
    source: &Source,
    progress: &ProgressBar,
) -> anyhow::Result<Row> {
    let warmup = closed_loop(
        op.clone(),
        spec.submitters,
        spec.warmup_ops,
        0,
        &ProgressBar::hidden(),
    )
    .await?;
    anyhow::ensure!(
        warmup.succeeded == spec.warmup_ops,
        "{} warm-up: {} of {} ops succeeded; failures: {:?}",
        spec.mode.name(),
        warmup.succeeded,
        spec.warmup_ops,
        warmup.failures
    );
    let peak_was_reset = reset_peak(process);
    let counters_before = source.counters().await?;
    let cpu_before = cpu_seconds(process)?;
    let simulator = Process::Child(spec.simulator_pid);
    let simulator_cpu_before = cpu_seconds(simulator)?;
    progress.reset();
    progress.set_length(spec.ops);
    progress.set_message(format!("{} x{}", spec.mode.name(), spec.submitters));
    let result = closed_loop(op, spec.submitters, spec.ops, spec.warmup_ops, progress).await?;
    let cpu_seconds_used = cpu_seconds(process)? - cpu_before;
    let simulator_cpu_used = cpu_seconds(simulator)? - simulator_cpu_before;
    let peak_kib = peak_rss_kib(process)?;
    let counters_after = source.counters().await?;
    let log = match (counters_before, counters_after) {
        (Some(before), Some(after)) => Some(LogCounters {
            records: after.records.saturating_sub(before.records),
            batches: after.batches.saturating_sub(before.batches),
            sync_micros: after.sync_micros.saturating_sub(before.sync_micros),
        }),
        _ => None,
    };
    let readings = Readings {
        log,
        cpu_seconds: cpu_seconds_used,
        simulator_cpu_seconds: simulator_cpu_used,
        peak_kib,
        peak_was_reset,
    };
    Ok(row(spec, &result, &readings))
}

/// What changed during the measured loop.
struct Readings {
    /// Counter deltas; none for the ceiling.
    log: Option<LogCounters>,
    /// CPU of the measured process, and of the simulator.
    cpu_seconds: f64,
    simulator_cpu_seconds: f64,
    peak_kib: u64,
    peak_was_reset: bool,
}

fn row(spec: &PhaseSpec<'_>, result: &LoopResult, readings: &Readings) -> Row {
    let per_intent = |value: f64| value / result.ops.max(1) as f64;
    let log = readings.log;
    Row {
        mode: spec.mode,
        submitters: spec.submitters,
        ops: result.ops,
        succeeded: result.succeeded,
        failures: result.failures.clone(),
        intents_per_s: result.ops_per_second(),
        p50_ms: result.percentile_ms(0.50),
        p99_ms: result.percentile_ms(0.99),
        fdatasyncs_per_intent: log.map(|log| per_intent(log.batches as f64)),
        records_per_intent: log.map(|log| per_intent(log.records as f64)),
        sync_ms_mean: log.map(|log| log.sync_micros as f64 / 1000.0 / log.batches.max(1) as f64),
        cpu_ms_per_intent: per_intent(readings.cpu_seconds * 1000.0),
        simulator_cpu_ms_per_intent: per_intent(readings.simulator_cpu_seconds * 1000.0),
        peak_rss_mib: readings.peak_kib as f64 / 1024.0,
        peak_rss_reset: readings.peak_was_reset,
        seconds: result.elapsed.as_secs_f64(),
    }
}
