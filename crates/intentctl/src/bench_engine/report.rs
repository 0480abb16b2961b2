//! The rows, the ratios against the ceiling measured in the same run, the targets
//! marked ✓/✗ (never a failure of the command), as a table or as JSON.

use std::collections::BTreeMap;

use serde::Serialize;

use super::phases::Mode;

/// One mode at one submitter count.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub mode: Mode,
    pub submitters: usize,
    /// Ops that ended in the measured loop (succeeded or not).
    pub ops: u64,
    pub succeeded: u64,
    /// Ops that did not end `succeeded`, by final state or error.
    pub failures: BTreeMap<String, u64>,
    pub intents_per_s: f64,
    /// Submit→settled of the succeeded ops.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Log batches (one write + one fdatasync each) per op; none for the ceiling.
    pub fdatasyncs_per_intent: Option<f64>,
    pub records_per_intent: Option<f64>,
    /// Mean time of one log sync in this phase.
    pub sync_ms_mean: Option<f64>,
    /// CPU (user + system) of the measured process per op; see `Mode::measured_process`.
    pub cpu_ms_per_intent: f64,
    /// CPU of the simulator (the provider) per op: what the provider takes of the cores.
    pub simulator_cpu_ms_per_intent: f64,
    /// Peak RSS of the measured process during the loop (since start when not reset).
    pub peak_rss_mib: f64,
    pub peak_rss_reset: bool,
    pub seconds: f64,
}

/// A target of the issue, and whether this run meets it.
#[derive(Clone, Debug, Serialize)]
pub struct Target {
    pub what: String,
    pub measured: f64,
    pub limit: f64,
    /// True when `measured` must be at most `limit` (false: at least).
    pub at_most: bool,
    pub met: bool,
}

impl Target {
    pub fn at_least(what: impl Into<String>, measured: f64, limit: f64) -> Target {
        Target {
            what: what.into(),
            measured,
            limit,
            at_most: false,
            met: measured >= limit,
        }
    }

    pub fn at_most(what: impl Into<String>, measured: f64, limit: f64) -> Target {
        Target {
            what: what.into(),
            measured,
            limit,
            at_most: true,
            met: measured <= limit,
        }
    }

    pub fn mark(&self) -> &'static str {
        if self.met {
            "✓"
        } else {
            "✗"
        }
    }
}

fn find(rows: &[Row], mode: Mode, submitters: usize) -> Option<&Row> {
    rows.iter()
        .find(|row| row.mode == mode && row.submitters == submitters)
}

/// embedded/ceiling and sidecar/ceiling throughput at each submitter count.
pub fn ratios(rows: &[Row], submitter_counts: &[usize]) -> BTreeMap<String, f64> {
    let mut ratios = BTreeMap::new();
    for &submitters in submitter_counts {
        let Some(ceiling) = find(rows, Mode::Ceiling, submitters) else {
            continue;
        };
        for mode in [Mode::Embedded, Mode::Sidecar] {
            if let Some(row) = find(rows, mode, submitters) {
                ratios.insert(
                    format!("{}/ceiling at {submitters}", mode.name()),
                    row.intents_per_s / ceiling.intents_per_s.max(f64::MIN_POSITIVE),
                );
            }
        }
    }
    ratios
}

/// The targets that the rows of this run can check.
pub fn targets(rows: &[Row], ratios: &BTreeMap<String, f64>) -> Vec<Target> {
    let mut targets = Vec::new();
    if let Some(row) = find(rows, Mode::Embedded, 256) {
        targets.push(Target::at_least(
            "embedded intents/s at 256",
            row.intents_per_s,
            10_000.0,
        ));
        targets.push(Target::at_most(
            "embedded CPU ms per intent at 256 (includes the submitter tasks)",
            row.cpu_ms_per_intent,
            0.15,
        ));
    }
    for submitters in [64, 256] {
        let name = format!("embedded/ceiling at {submitters}");
        if let Some(&ratio) = ratios.get(&name) {
            targets.push(Target::at_least(name, ratio, 0.5));
        }
    }
    if let Some(row) = find(rows, Mode::Sidecar, 256) {
        targets.push(Target::at_least(
            "sidecar intents/s at 256",
            row.intents_per_s,
            5_000.0,
        ));
    }
    let sidecar = find(rows, Mode::Sidecar, 1);
    let ceiling = find(rows, Mode::Ceiling, 1);
    if let (Some(sidecar), Some(ceiling)) = (sidecar, ceiling) {
        if let (Some(p50), Some(sync), Some(round_trip)) =
            (sidecar.p50_ms, sidecar.sync_ms_mean, ceiling.p50_ms)
        {
            targets.push(Target::at_most(
                format!(
                    "sidecar p50 ms at 1 (limit = 2 x {sync:.3} ms sync + {round_trip:.3} ms provider round trip + 0.3 ms)"
                ),
                p50,
                2.0 * sync + round_trip + 0.3,
            ));
        }
    }
    targets
}

fn optional(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "-".to_string(), |value| format!("{value:.decimals$}"))
}

pub fn print_rows(rows: &[Row]) {
    println!(
        "{:<9} {:>5} {:>8} {:>10} {:>8} {:>8} {:>7} {:>8} {:>8} {:>7} {:>8}",
        "mode",
        "subs",
        "ops",
        "intents/s",
        "p50 ms",
        "p99 ms",
        "syncs/i",
        "recs/i",
        "sync ms",
        "cpu ms/i",
        "peak MiB"
    );
    for row in rows {
        println!(
            "{:<9} {:>5} {:>8} {:>10.0} {:>8} {:>8} {:>7} {:>8} {:>8} {:>8.3} {:>8.1} {:>8.3}{}",
            row.mode.name(),
            row.submitters,
            row.ops,
            row.intents_per_s,
            optional(row.p50_ms, 2),
            optional(row.p99_ms, 2),
            optional(row.fdatasyncs_per_intent, 2),
            optional(row.records_per_intent, 2),
            optional(row.sync_ms_mean, 3),
            row.cpu_ms_per_intent,
            row.peak_rss_mib,
            row.simulator_cpu_ms_per_intent,
            if row.peak_rss_reset {
                ""
            } else {
                " (cumulative)"
            },
        );
        for (what, count) in &row.failures {
            println!("    not succeeded: {count} x {what}");
        }
    }
}

pub fn print_ratios_and_targets(ratios: &BTreeMap<String, f64>, targets: &[Target]) {
    if !ratios.is_empty() {
        println!();
    }
    for (name, ratio) in ratios {
        println!("{name:<28} {ratio:>6.2}x");
    }
    if !targets.is_empty() {
        println!();
    }
    for target in targets {
        let relation = if target.at_most { "<=" } else { ">=" };
        println!(
            "{} {}: {:.3} (target {relation} {:.3})",
            target.mark(),
            target.what,
            target.measured,
            target.limit
        );
    }
}

pub fn print_legend() {
    println!();
    for mode in Mode::ALL {
        println!(
            "cpu and peak RSS of {}: {}",
            mode.name(),
            mode.measured_process()
        );
    }
}
