//! The long mode: the embedded engine with the default configuration (24 h key retention)
//! runs a large number of intents to the end while RSS is sampled, to show whether memory
//! stays flat once the engine holds a steady state, and whether throughput holds.
//!
//! The run is cut into windows at fixed counts of finished intents (the first 10,000, then
//! every `sample_every`); each window is a closed loop of its own, so its throughput is
//! exact (the submitters drain at each boundary, a negligible dip at 100,000 per window).

use std::collections::BTreeMap;
use std::path::Path;

use indicatif::ProgressBar;
use serde::Serialize;

use super::cases::{embedded_op, open_engine};
use super::load::closed_loop;
use super::phases::LogCounters;
use super::procfs::{rss_kib, Process};
use super::report::Target;

/// Throughput is compared against the first this many intents (or the first window).
const EARLY_INTENTS: u64 = 10_000;

/// The state after one window.
#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    pub finished: u64,
    pub rss_mib: f64,
    pub window_intents_per_s: f64,
    /// Intents the engine counts: live, and finished inside the key-retention window (in
    /// memory or retired to the index).
    pub intents_counted: usize,
    pub log_mib: f64,
    pub log_segments: usize,
    pub records_total: u64,
}

/// What the long mode found.
#[derive(Clone, Debug, Serialize)]
pub struct LongReport {
    pub intents: u64,
    pub submitters: usize,
    pub succeeded: u64,
    pub failures: BTreeMap<String, u64>,
    pub samples: Vec<Sample>,
    /// RSS at the end / RSS at the first sample at or past a tenth of the run.
    pub rss_ratio: f64,
    pub rss_ratio_from: u64,
    /// Throughput of the last window / of the first.
    pub throughput_ratio: f64,
    pub targets: Vec<Target>,
}

/// Window ends: the early mark, then every `sample_every`, and the total.
pub fn boundaries(intents: u64, sample_every: u64) -> Vec<u64> {
    let sample_every = sample_every.max(1);
    let mut ends = vec![EARLY_INTENTS.min(sample_every).min(intents)];
    let mut next = sample_every;
    while next < intents {
        if next > ends[ends.len() - 1] {
            ends.push(next);
        }
        next += sample_every;
    }
    if ends[ends.len() - 1] < intents {
        ends.push(intents);
    }
    ends
}

/// Runs `intents` intents on `submitters` tasks against a fresh engine in `data_dir`.
pub async fn run_long(
    data_dir: &Path,
    purple_flea_url: &str,
    key_prefix: String,
    (intents, submitters, sample_every): (u64, usize, u64),
    on_sample: &dyn Fn(&Sample),
    progress: &ProgressBar,
) -> anyhow::Result<LongReport> {
    let engine = open_engine(data_dir, purple_flea_url, true).await?;
    let op = embedded_op(engine.clone(), key_prefix);
    let warmup_ops = (intents / 10).min(1_000);
    closed_loop(
        op.clone(),
        submitters,
        warmup_ops,
        0,
        &ProgressBar::hidden(),
    )
    .await?;
    progress.set_length(intents);
    let (mut samples, mut failures, mut succeeded, mut start) = (Vec::new(), BTreeMap::new(), 0, 0);
    for end in boundaries(intents, sample_every) {
        let window = closed_loop(
            op.clone(),
            submitters,
            end - start,
            warmup_ops + start,
            progress,
        )
        .await?;
        succeeded += window.succeeded;
        for (what, count) in window.failures.iter() {
            *failures.entry(what.clone()).or_insert(0) += count;
        }
        let stats = engine.log_stats();
        let sample = Sample {
            finished: end,
            rss_mib: rss_kib(Process::This)? as f64 / 1024.0,
            window_intents_per_s: window.ops_per_second(),
            intents_counted: engine.counts().values().sum(),
            log_mib: stats.log_bytes as f64 / 1_048_576.0,
            log_segments: stats.segments,
            records_total: LogCounters::of_engine(&engine).records,
        };
        on_sample(&sample);
        samples.push(sample);
        start = end;
    }
    engine.shutdown().await;
    Ok(report(intents, submitters, succeeded, failures, samples))
}

fn report(
    intents: u64,
    submitters: usize,
    succeeded: u64,
    failures: BTreeMap<String, u64>,
    samples: Vec<Sample>,
) -> LongReport {
    let tenth = intents / 10;
    let from = samples.iter().find(|sample| sample.finished >= tenth);
    let (first, last) = (samples.first(), samples.last());
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => a / b,
        _ => 0.0,
    };
    let rss_ratio = ratio(last.map(|s| s.rss_mib), from.map(|s| s.rss_mib));
    let throughput_ratio = ratio(
        last.map(|s| s.window_intents_per_s),
        first.map(|s| s.window_intents_per_s),
    );
    let rss_ratio_from = from.map_or(0, |sample| sample.finished);
    let targets = vec![
        Target::at_most(
            format!("RSS at {intents} / RSS at {rss_ratio_from} (flat: <= 1.10)"),
            rss_ratio,
            1.10,
        ),
        Target::at_least(
            format!(
                "throughput of the last window / of the first {} (>= 0.90)",
                first.map_or(0, |sample| sample.finished)
            ),
            throughput_ratio,
            0.90,
        ),
    ];
    LongReport {
        intents,
        submitters,
        succeeded,
        failures,
        samples,
        rss_ratio,
        rss_ratio_from,
        throughput_ratio,
        targets,
    }
}

#[cfg(test)]
mod tests {
    use super::boundaries;

    #[test]
    fn windows_table() {
        let check = |intents: u64, every: u64, expected: &[u64]| {
            assert_eq!(
                boundaries(intents, every),
                expected,
                "{intents} every {every}"
            );
        };
        check(
            1_000_000,
            100_000,
            &[
                10_000, 100_000, 200_000, 300_000, 400_000, 500_000, 600_000, 700_000, 800_000,
                900_000, 1_000_000,
            ],
        );
        check(
            50_000,
            5_000,
            &[
                5_000, 10_000, 15_000, 20_000, 25_000, 30_000, 35_000, 40_000, 45_000, 50_000,
            ],
        );
        check(
            2_000,
            200,
            &[200, 400, 600, 800, 1_000, 1_200, 1_400, 1_600, 1_800, 2_000],
        );
        check(250_000, 100_000, &[10_000, 100_000, 200_000, 250_000]);
        check(5, 100_000, &[5]);
    }
}
