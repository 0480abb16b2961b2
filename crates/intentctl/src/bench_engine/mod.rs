//! `intentctl bench engine`: intents end to end against the Purple Flea simulator (a child
//! process, no faults), at several counts of concurrent submitters, in three modes:
//! (a) the embedded library (`Engine::submit` + `wait`), (b) the sidecar over HTTP, and
//! (c) the same provider call from a bare HTTP client with no durability (the ceiling).
//! `--long` runs one large embedded run to the end and samples RSS and throughput.
//!
//! - `children.rs`: the simulator and sidecar child processes.
//! - `cases.rs`: one op in each mode. `load.rs`: the closed loop of submitters.
//! - `phases.rs`: one row (set up, warm up, measure, tear down). `procfs.rs`: CPU and RSS.
//! - `report.rs`: rows, ratios and targets. `long.rs`: the long mode.

mod cases;
mod children;
mod load;
mod long;
mod phases;
mod procfs;
mod report;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use children::{start_simulator, ChildServer};
use long::{run_long, Sample};
use phases::{run_phase, Mode, PhaseSpec};
use report::Row;

/// Arguments of `intentctl bench engine`.
#[derive(Args)]
pub struct EngineBenchArgs {
    /// Directory on the disk to measure (a temporary directory inside it holds the data).
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Concurrent submitter counts.
    #[arg(long, value_delimiter = ',', default_value = "1,64,256")]
    concurrency: Vec<usize>,
    /// Measured ops per phase: one per concurrency, or one for all.
    #[arg(long, value_delimiter = ',', default_value = "2000,20000,40000")]
    ops: Vec<u64>,
    /// Unmeasured ops before each phase; default max(100, 2 per submitter).
    #[arg(long)]
    warmup: Option<u64>,
    /// Modes to run (embedded, sidecar, ceiling).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "embedded,sidecar,ceiling"
    )]
    modes: Vec<String>,
    /// The long mode: one embedded run of --intents intents, RSS sampled.
    #[arg(long)]
    long: bool,
    /// Intents of the long mode.
    #[arg(long, default_value_t = 1_000_000)]
    intents: u64,
    /// Submitters of the long mode.
    #[arg(long, default_value_t = 64)]
    submitters: usize,
    /// Sample every this many finished intents in the long mode (at most a tenth of --intents).
    #[arg(long, default_value_t = 100_000)]
    sample_every: u64,
    /// Print one JSON document on stdout instead of tables (progress stays on stderr).
    #[arg(long)]
    json: bool,
}

fn parse_modes(names: &[String]) -> anyhow::Result<Vec<Mode>> {
    names
        .iter()
        .map(|name| {
            Mode::ALL
                .into_iter()
                .find(|mode| mode.name() == name.trim())
                .with_context(|| format!("unknown mode {name:?}: embedded, sidecar or ceiling"))
        })
        .collect()
}

fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::new(0);
    let style =
        ProgressStyle::with_template("{msg:>14} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
            .map(|style| style.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

/// The machine's load averages (1, 5, 15 minutes), to judge how quiet a run was.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".to_string())
}

/// Runs the bench (its own tokio runtime).
pub fn run(args: EngineBenchArgs) -> anyhow::Result<ExitCode> {
    if args.concurrency.is_empty() || args.concurrency.contains(&0) {
        bail!("--concurrency needs counts of at least 1");
    }
    if args.ops.len() != 1 && args.ops.len() != args.concurrency.len() {
        bail!("--ops takes one count, or one per --concurrency entry");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let scratch = tempfile::Builder::new()
            .prefix("intents-bench-engine-")
            .tempdir_in(&args.dir)
            .with_context(|| format!("making a directory in {}", args.dir.display()))?;
        let simulator = start_simulator().await?;
        let key_prefix = format!("b{:08x}", rand::random::<u32>());
        let result = if args.long {
            long_mode(&args, scratch.path(), &simulator.base_url, key_prefix).await
        } else {
            rows_mode(&args, scratch.path(), &simulator, key_prefix).await
        };
        simulator.stop().await?;
        result
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn rows_mode(
    args: &EngineBenchArgs,
    scratch: &std::path::Path,
    simulator: &ChildServer,
    key_prefix: String,
) -> anyhow::Result<()> {
    let (purple_flea_url, simulator_pid) = (simulator.base_url.as_str(), simulator.pid()?);
    let load_before = load_average();
    let modes = parse_modes(&args.modes)?;
    let progress = progress_bar();
    let mut rows: Vec<Row> = Vec::new();
    for (index, &submitters) in args.concurrency.iter().enumerate() {
        let ops = args
            .ops
            .get(index)
            .or(args.ops.first())
            .copied()
            .unwrap_or(0);
        for &mode in &modes {
            if !args.json {
                eprintln!(
                    "measuring {} with {submitters} submitters, {ops} ops ...",
                    mode.name()
                );
            }
            let data_dir = scratch.join(format!("{}-{submitters}", mode.name()));
            let spec = PhaseSpec {
                mode,
                submitters,
                ops,
                warmup_ops: args.warmup.unwrap_or((2 * submitters as u64).max(100)),
                data_dir: &data_dir,
                purple_flea_url,
                simulator_pid,
                key_prefix: format!("{key_prefix}-{}{submitters}", mode.name()),
            };
            rows.push(run_phase(&spec, &progress).await?);
            // Each phase starts on an empty directory; free the disk of the last one.
            let _ = std::fs::remove_dir_all(&data_dir);
        }
    }
    progress.finish_and_clear();
    let ratios = report::ratios(&rows, &args.concurrency);
    let targets = report::targets(&rows, &ratios);
    let load = format!("{load_before} at the start, {} at the end", load_average());
    if args.json {
        let measured: serde_json::Map<String, serde_json::Value> = Mode::ALL
            .iter()
            .map(|mode| (mode.name().to_string(), json!(mode.measured_process())))
            .collect();
        println!(
            "{}",
            json!({"load_average": load, "rows": rows, "ratios": ratios, "targets": targets, "cpu_and_rss_of": measured, "bet_amount": cases::BET_AMOUNT})
        );
    } else {
        println!("load average (1, 5, 15 min): {load}");
        report::print_rows(&rows);
        report::print_ratios_and_targets(&ratios, &targets);
        report::print_legend();
    }
    Ok(())
}

async fn long_mode(
    args: &EngineBenchArgs,
    scratch: &std::path::Path,
    purple_flea_url: &str,
    key_prefix: String,
) -> anyhow::Result<()> {
    if args.intents == 0 || args.submitters == 0 {
        bail!("--intents and --submitters must be at least 1");
    }
    let sample_every = args.sample_every.min(args.intents / 10).max(1);
    let json_output = args.json;
    let on_sample = move |sample: &Sample| {
        let line = format!(
            "finished {:>9}  RSS {:>8.1} MiB  window {:>8.0} intents/s  counted {:>9}  log {:>8.1} MiB in {} segments",
            sample.finished,
            sample.rss_mib,
            sample.window_intents_per_s,
            sample.intents_counted,
            sample.log_mib,
            sample.log_segments
        );
        if json_output {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    };
    let load_before = load_average();
    let progress = progress_bar();
    progress.set_message(format!("long x{}", args.submitters));
    let report = run_long(
        &scratch.join("long"),
        purple_flea_url,
        format!("{key_prefix}-long"),
        (args.intents, args.submitters, sample_every),
        &on_sample,
        &progress,
    )
    .await?;
    progress.finish_and_clear();
    let load = format!("{load_before} at the start, {} at the end", load_average());
    if args.json {
        let mut value = serde_json::to_value(&report)?;
        value["load_average"] = json!(load);
        println!("{value}");
        return Ok(());
    }
    println!();
    println!("load average (1, 5, 15 min): {load}");
    println!(
        "{} intents, {} submitters: {} succeeded",
        report.intents, report.submitters, report.succeeded
    );
    for (what, count) in &report.failures {
        println!("    not succeeded: {count} x {what}");
    }
    report::print_ratios_and_targets(&Default::default(), &report.targets);
    Ok(())
}
