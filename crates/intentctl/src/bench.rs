//! `intentctl bench wal`: the log (with preallocated segments, as `intentctl serve` opens
//! it, and with growing ones) against baselines measured in the same run on the same disk:
//! raw write+fdatasync ceilings (appending, and overwriting a preallocated file), SQLite
//! (WAL, synchronous=FULL) and sled 0.34, at 1, 16 and 256 concurrent appenders; the time
//! to open a new log, acknowledge its first append and close it; then replay of a large
//! log from a cold cache.

mod log_cases;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use intent_log::{Log, Options, SyncMode};
use serde::Serialize;
use serde_json::json;

const RECORD_BYTES: usize = 256;

/// `intentctl bench ...`
#[derive(Subcommand)]
pub enum BenchCommand {
    /// The write-ahead log against raw fdatasync, SQLite and sled, plus replay speed.
    Wal(WalBenchArgs),
    /// Intents end to end against the simulator: embedded, sidecar, and a bare-HTTP ceiling.
    Engine(crate::bench_engine::EngineBenchArgs),
    /// (internal) Replays a log directory and prints JSON; run in a child process so its
    /// peak RSS is the replay's own.
    #[command(hide = true)]
    Replay { dir: PathBuf },
}

#[derive(Args)]
pub struct WalBenchArgs {
    /// Directory on the disk to measure (a temporary directory inside it is used).
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Seconds each case runs.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Concurrent appender counts.
    #[arg(long, value_delimiter = ',', default_value = "1,16,256")]
    concurrency: Vec<usize>,
    /// Size of the log replayed (MiB); 0 skips the replay.
    #[arg(long, default_value_t = 1024)]
    replay_mib: u64,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Row {
    system: String,
    concurrency: usize,
    records_per_s: f64,
    p50_us: Option<f64>,
    p99_us: Option<f64>,
}

pub fn run(command: BenchCommand) -> anyhow::Result<ExitCode> {
    match command {
        BenchCommand::Wal(args) => wal(args),
        BenchCommand::Engine(args) => crate::bench_engine::run(args),
        BenchCommand::Replay { dir } => {
            let result = replay(&dir)?;
            println!("{result}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn wal(args: WalBenchArgs) -> anyhow::Result<ExitCode> {
    let scratch = tempfile::Builder::new()
        .prefix("intents-bench-")
        .tempdir_in(&args.dir)?;
    let duration = Duration::from_secs_f64(args.seconds);
    let progress = |what: &str| {
        if !args.json {
            eprintln!("measuring {what} ...");
        }
    };
    let rows = measure_cases(&args, scratch.path(), duration, &progress)?;
    let ratios = ratios(&rows, &args.concurrency);
    progress("new logs: open, first append, close");
    let new_logs = log_cases::new_logs(scratch.path())?;
    let replay_result = if args.replay_mib > 0 {
        Some(replay_case(args.replay_mib, scratch.path(), &progress)?)
    } else {
        None
    };
    if args.json {
        let ratios: serde_json::Map<String, serde_json::Value> = ratios
            .iter()
            .map(|(name, ratio)| (name.clone(), json!(ratio)))
            .collect();
        println!(
            "{}",
            json!({"record_bytes": RECORD_BYTES, "seconds_per_case": args.seconds, "rows": rows, "ratios": ratios, "new_logs": new_logs, "replay": replay_result})
        );
    } else {
        print_table(args.seconds, &rows, &ratios, replay_result.as_ref());
        log_cases::print_new_logs(&new_logs);
    }
    Ok(ExitCode::SUCCESS)
}

/// The raw ceilings and the log (preallocated, then growing) at each concurrency, then
/// SQLite and sled.
fn measure_cases(
    args: &WalBenchArgs,
    scratch: &Path,
    duration: Duration,
    progress: &dyn Fn(&str),
) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for &concurrency in &args.concurrency {
        progress(&format!("raw write+fdatasync, batches of {concurrency}"));
        rows.push(raw_ceiling(
            &scratch.join(format!("raw-{concurrency}")),
            concurrency,
            duration,
        )?);
        progress(&format!("raw in place, batches of {concurrency}"));
        rows.push(log_cases::raw_in_place(
            &scratch.join(format!("raw-in-place-{concurrency}")),
            concurrency,
            duration,
        )?);
        for preallocate in [true, false] {
            let name = log_cases::log_system(preallocate);
            progress(&format!("{name}, {concurrency} appenders"));
            rows.push(log_cases::intent_log_case(
                &scratch.join(format!("log-{concurrency}-{preallocate}")),
                concurrency,
                duration,
                preallocate,
            )?);
        }
    }
    progress("SQLite");
    rows.push(sqlite_case(&scratch.join("sqlite-1.db"), 1, duration)?);
    rows.push(sqlite_case(&scratch.join("sqlite-256.db"), 256, duration)?);
    progress("sled");
    rows.push(sled_case(&scratch.join("sled-1"), 1, duration)?);
    rows.push(sled_case(&scratch.join("sled-256"), 256, duration)?);
    Ok(rows)
}

/// Each log against the raw ceilings at each concurrency, and against SQLite.
fn ratios(rows: &[Row], concurrencies: &[usize]) -> Vec<(String, f64)> {
    let find = |system: &str, concurrency: usize| {
        rows.iter()
            .find(|row| row.system == system && row.concurrency == concurrency)
            .map(|row| row.records_per_s)
    };
    let mut ratios = Vec::new();
    let mut push = |name: String, over: Option<f64>, under: Option<f64>| {
        if let (Some(over), Some(under)) = (over, under) {
            ratios.push((name, over / under));
        }
    };
    let sqlite = find("sqlite txn per record", 1);
    for preallocate in [true, false] {
        let log = log_cases::log_system(preallocate);
        for &concurrency in concurrencies {
            for raw in ["raw write+fdatasync", "raw in place"] {
                push(
                    format!("{log} / {raw} at {concurrency}"),
                    find(log, concurrency),
                    find(raw, concurrency),
                );
            }
        }
        push(
            format!("{log} at 1 / SQLite txn per record"),
            find(log, 1),
            sqlite,
        );
        push(
            format!("{log} at 256 / SQLite txn per record"),
            find(log, 256),
            sqlite,
        );
    }
    ratios
}

/// Writes a log of `mib` MiB and replays it in a child process (so the peak RSS is the
/// replay's own), with a cold cache when the caches can be dropped.
fn replay_case(
    mib: u64,
    scratch: &Path,
    progress: &dyn Fn(&str),
) -> anyhow::Result<serde_json::Value> {
    progress(&format!("writing a {mib} MiB log for replay"));
    let dir = scratch.join("replay");
    let written = write_replay_log(&dir, mib)?;
    let cold = drop_caches();
    progress(&format!("replaying (cold cache: {cold})"));
    let output = std::process::Command::new(std::env::current_exe()?)
        .args(["bench", "replay"])
        .arg(&dir)
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "replay child failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut value: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    value["cold_cache"] = json!(cold);
    value["written_records"] = json!(written);
    Ok(value)
}

fn print_table(
    seconds: f64,
    rows: &[Row],
    ratios: &[(String, f64)],
    replay: Option<&serde_json::Value>,
) {
    println!(
        "{RECORD_BYTES}-byte records, each durable before it is acknowledged; {seconds:.1} s per case"
    );
    println!(
        "{:<28} {:>11} {:>14} {:>10} {:>10}",
        "system", "concurrency", "records/s", "p50 us", "p99 us"
    );
    let micros = |value: Option<f64>| {
        value
            .map(|v| format!("{v:.0}"))
            .unwrap_or_else(|| "-".to_string())
    };
    for row in rows {
        println!(
            "{:<28} {:>11} {:>14.0} {:>10} {:>10}",
            row.system,
            row.concurrency,
            row.records_per_s,
            micros(row.p50_us),
            micros(row.p99_us)
        );
    }
    println!();
    for (name, ratio) in ratios {
        println!("{name:<56} {ratio:>8.2}x");
    }
    if let Some(replay) = replay {
        println!();
        println!(
            "replay of {:.0} MiB ({} records, cold cache: {}): open+verify {:.0} records/s; read {:.0} records/s, {:.0} MB/s; peak RSS {:.0} MiB",
            replay["bytes"].as_f64().unwrap_or(0.0) / 1048576.0,
            replay["records"],
            replay["cold_cache"],
            replay["open_records_per_s"].as_f64().unwrap_or(0.0),
            replay["read_records_per_s"].as_f64().unwrap_or(0.0),
            replay["read_mb_per_s"].as_f64().unwrap_or(0.0),
            replay["peak_rss_kib"].as_f64().unwrap_or(0.0) / 1024.0,
        );
    }
}

fn percentile(sorted: &[u32], fraction: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let index = ((sorted.len() - 1) as f64 * fraction).round() as usize;
    sorted.get(index).map(|&v| f64::from(v))
}

fn row(
    system: &str,
    concurrency: usize,
    records: u64,
    elapsed: Duration,
    mut latencies: Vec<u32>,
) -> Row {
    latencies.sort_unstable();
    Row {
        system: system.to_string(),
        concurrency,
        records_per_s: records as f64 / elapsed.as_secs_f64(),
        p50_us: percentile(&latencies, 0.50),
        p99_us: percentile(&latencies, 0.99),
    }
}

fn micros_since(started: Instant) -> u32 {
    started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32
}

/// The ceiling: one thread writing `concurrency` framed records per write, then fdatasync,
/// as a perfect group commit with no coordination cost would.
fn raw_ceiling(path: &Path, concurrency: usize, duration: Duration) -> anyhow::Result<Row> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let batch = vec![0x5au8; concurrency * (RECORD_BYTES + intent_log::format::FRAME_HEADER_BYTES)];
    let started = Instant::now();
    let mut records = 0u64;
    let mut latencies = Vec::new();
    while started.elapsed() < duration {
        let begun = Instant::now();
        file.write_all(&batch)?;
        file.sync_data()?;
        // Every record in the batch waited for the whole write + sync.
        let latency = micros_since(begun);
        latencies.extend(std::iter::repeat_n(latency, concurrency));
        records += concurrency as u64;
    }
    Ok(row(
        "raw write+fdatasync",
        concurrency,
        records,
        started.elapsed(),
        latencies,
    ))
}

/// SQLite in WAL mode with synchronous=FULL: one transaction per `per_txn` records.
fn sqlite_case(path: &Path, per_txn: usize, duration: Duration) -> anyhow::Result<Row> {
    let connection = rusqlite::Connection::open(path)?;
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.pragma_update(None, "synchronous", "FULL")?;
    connection.execute(
        "CREATE TABLE log (lsn INTEGER PRIMARY KEY, body BLOB NOT NULL)",
        [],
    )?;
    let body = vec![0x5au8; RECORD_BYTES];
    let started = Instant::now();
    let mut records = 0u64;
    let mut latencies = Vec::new();
    let mut connection = connection;
    while started.elapsed() < duration {
        let begun = Instant::now();
        let transaction = connection.transaction()?;
        {
            let mut statement = transaction.prepare_cached("INSERT INTO log (body) VALUES (?1)")?;
            for _ in 0..per_txn {
                statement.execute([&body])?;
            }
        }
        transaction.commit()?;
        latencies.extend(std::iter::repeat_n(micros_since(begun), per_txn));
        records += per_txn as u64;
    }
    let name = if per_txn == 1 {
        "sqlite txn per record".to_string()
    } else {
        format!("sqlite {per_txn} records per txn")
    };
    Ok(row(&name, per_txn, records, started.elapsed(), latencies))
}

/// sled 0.34: `per_flush` inserts, then `flush` (its durability call).
fn sled_case(path: &Path, per_flush: usize, duration: Duration) -> anyhow::Result<Row> {
    let db = sled::open(path)?;
    let body = vec![0x5au8; RECORD_BYTES];
    let started = Instant::now();
    let mut records = 0u64;
    let mut latencies = Vec::new();
    while started.elapsed() < duration {
        let begun = Instant::now();
        for _ in 0..per_flush {
            db.insert(records.to_be_bytes(), body.as_slice())?;
            records += 1;
        }
        db.flush()?;
        latencies.extend(std::iter::repeat_n(micros_since(begun), per_flush));
    }
    let name = if per_flush == 1 {
        "sled insert+flush".to_string()
    } else {
        format!("sled {per_flush} inserts per flush")
    };
    Ok(row(&name, per_flush, records, started.elapsed(), latencies))
}

/// Writes about `mib` MiB of 256-byte records without syncing each batch (the content is
/// what is measured here, not the write path), then syncs once.
fn write_replay_log(dir: &Path, mib: u64) -> anyhow::Result<u64> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let options = Options {
        sync_mode: SyncMode::NoSyncBenchmarkOnly,
        ..Options::default()
    };
    let (log, _) = Log::open(dir, options)?;
    let frame = (RECORD_BYTES + intent_log::format::FRAME_HEADER_BYTES) as u64;
    let target = mib * 1024 * 1024 / frame;
    let per_batch = 4096u64;
    let mut written = 0;
    while written < target {
        let count = per_batch.min(target - written);
        let batch = (0..count)
            .map(|_| (1u8, vec![0x5au8; RECORD_BYTES]))
            .collect();
        runtime.block_on(log.append_batch(batch))?;
        written += count;
    }
    log.close();
    for entry in std::fs::read_dir(dir)? {
        std::fs::File::open(entry?.path())?.sync_all()?;
    }
    Ok(written)
}

/// Asks the kernel to drop the page cache; true if it agreed (needs root, not in every
/// container).
fn drop_caches() -> bool {
    let synced = std::process::Command::new("sync")
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    synced && std::fs::write("/proc/sys/vm/drop_caches", "3\n").is_ok()
}

fn replay(dir: &Path) -> anyhow::Result<serde_json::Value> {
    let started = Instant::now();
    let (log, report) = Log::open(dir, Options::default())?;
    let open_seconds = started.elapsed().as_secs_f64();
    let read_started = Instant::now();
    let mut records = 0u64;
    let mut bytes = 0u64;
    for entry in log.read_from(log.first_lsn())? {
        let entry = entry?;
        records += 1;
        bytes += entry.body.len() as u64;
    }
    let read_seconds = read_started.elapsed().as_secs_f64();
    anyhow::ensure!(
        records == report.records,
        "read {records} records, recovery counted {}",
        report.records
    );
    Ok(json!({
        "records": records,
        "bytes": report.log_bytes,
        "body_bytes": bytes,
        "open_seconds": open_seconds,
        "open_records_per_s": report.records as f64 / open_seconds,
        "read_seconds": read_seconds,
        "read_records_per_s": records as f64 / read_seconds,
        "read_mb_per_s": report.log_bytes as f64 / 1e6 / read_seconds,
        "peak_rss_kib": peak_rss_kib(),
    }))
}

/// VmHWM of this process, from /proc.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
