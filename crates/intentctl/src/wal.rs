//! `intentctl wal verify|dump|fill|salvage`: look at a log directory, write test records
//! to it, or (operator only) move its damaged part aside so it opens again.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};
use intent_log::{
    Log, Options, RecoveryMode, StdFileSystem, BATCH_BYTES_MAX_DEFAULT, RECORD_BYTES_MAX_LIMIT,
    SEGMENT_BYTES_DEFAULT,
};
use serde_json::json;

/// `intentctl wal ...`
#[derive(Subcommand)]
pub enum WalCommand {
    /// Check every segment and record without changing anything. Exit 0 when clean (a torn
    /// tail is reported but left alone: opening the log cuts it), 1 on corruption.
    Verify(VerifyArgs),
    /// Print the verified records of a log.
    Dump(DumpArgs),
    /// Append test records until done or until the log fails (for fault-injection tests).
    Fill(FillArgs),
    /// Operator only, with the engine stopped: move everything from the first damaged byte
    /// onwards into `salvage-<time>/` inside the log directory, so the log opens again.
    /// The moved records are no longer replayed. Needs --yes; exit 0 when done or clean.
    Salvage(SalvageArgs),
}

#[derive(Args)]
pub struct SalvageArgs {
    /// The log directory (`<data>/wal` for `intentctl serve --data <data>`).
    dir: PathBuf,
    /// Move the damaged records aside. Without it, salvage only says what it would do.
    #[arg(long)]
    yes: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct VerifyArgs {
    /// The log directory.
    dir: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct DumpArgs {
    /// The log directory.
    dir: PathBuf,
    /// First LSN to print.
    #[arg(long, default_value_t = 1)]
    from: u64,
    /// At most this many records.
    #[arg(long)]
    limit: Option<usize>,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct FillArgs {
    /// The log directory.
    dir: PathBuf,
    /// Records to append, one at a time, each durable before the next.
    #[arg(long, default_value_t = 100)]
    records: u64,
    /// Body size of each record.
    #[arg(long, default_value_t = 256)]
    body_bytes: usize,
    /// Rotate segments at this size (small values make many segments for tests; the
    /// largest record and batch shrink to fit).
    #[arg(long, default_value_t = SEGMENT_BYTES_DEFAULT)]
    segment_bytes: u64,
}

pub fn run(command: WalCommand) -> anyhow::Result<ExitCode> {
    match command {
        WalCommand::Verify(args) => verify(args),
        WalCommand::Dump(args) => dump(args),
        WalCommand::Fill(args) => fill(args),
        WalCommand::Salvage(args) => salvage(args),
    }
}

fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.dir.is_dir(),
        "{} is not a directory",
        args.dir.display()
    );
    match intent_log::verify(&args.dir, RECORD_BYTES_MAX_LIMIT) {
        Ok(report) => {
            let torn = report.torn_tail.as_ref();
            if args.json {
                let value = json!({
                    "ok": true,
                    "segments": report.segments,
                    "records": report.records,
                    "first_lsn": report.first_lsn,
                    "next_lsn": report.next_lsn,
                    "log_bytes": report.log_bytes,
                    "torn_tail": torn.map(|t| json!({"file": t.file, "offset": t.offset, "bytes": t.bytes, "zero_filled": t.zero_filled, "reason": t.reason})),
                    "empty_segment_to_remove": report.removed_empty_segment,
                    "checkpoint": report.checkpoint.as_ref().map(|c| json!({"file": c.path, "lsn": c.lsn, "entries": c.entries, "bytes": c.bytes})),
                    "elapsed_ms": report.elapsed.as_secs_f64() * 1e3,
                });
                println!("{value}");
            } else {
                print_verify_report(&args.dir, &report);
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(error @ intent_log::Error::Corruption { .. }) => {
            if let intent_log::Error::Corruption {
                file,
                offset,
                reason,
            } = &error
            {
                if args.json {
                    println!(
                        "{}",
                        json!({"ok": false, "file": file, "offset": offset, "reason": reason})
                    );
                } else {
                    println!(
                        "verdict    CORRUPT: {} at offset {offset}: {reason}",
                        file.display()
                    );
                }
            }
            Ok(ExitCode::from(1))
        }
        Err(error) => Err(error.into()),
    }
}

/// The table `wal verify` prints for a sound log.
fn print_verify_report(dir: &Path, report: &intent_log::RecoveryReport) {
    let torn = report.torn_tail.as_ref();
    println!("log        {}", dir.display());
    println!("segments   {}", report.segments);
    println!(
        "records    {} (LSN {} to {})",
        report.records,
        report.first_lsn,
        report.next_lsn.saturating_sub(1)
    );
    println!("bytes      {}", report.log_bytes);
    match &report.checkpoint {
        Some(c) => println!(
            "checkpoint {} (covers LSN 1 to {}, {} entries, {} bytes)",
            c.path.display(),
            c.lsn,
            c.entries,
            c.bytes
        ),
        None => println!("checkpoint none"),
    }
    match torn {
            Some(t) => println!(
                "torn tail  {} bytes at offset {} of {} ({}{}); left as is: opening the log moves them into torn/ and cuts them",
                t.bytes,
                t.offset,
                t.file.display(),
                t.reason,
                if t.zero_filled { ", all zeros" } else { "" }
            ),
            None => println!("torn tail  none"),
        }
    if let Some(path) = &report.removed_empty_segment {
        println!(
            "note       {} has no complete header (a crash during rotation); opening removes it",
            path.display()
        );
    }
    println!("verdict    ok");
}

fn dump(args: DumpArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.dir.is_dir(),
        "{} is not a directory",
        args.dir.display()
    );
    let reader = intent_log::read_dir(
        Arc::new(StdFileSystem),
        &args.dir,
        args.from,
        RECORD_BYTES_MAX_LIMIT,
    )?;
    if !args.json {
        println!("{:>10}  {:>4}  {:>7}  body", "lsn", "kind", "bytes");
    }
    for entry in reader.take(args.limit.unwrap_or(usize::MAX)) {
        let entry = entry?;
        if args.json {
            println!(
                "{}",
                json!({"lsn": entry.lsn, "kind": entry.kind, "bytes": entry.body.len(), "body_hex": hex(&entry.body)})
            );
        } else {
            println!(
                "{:>10}  {:>4}  {:>7}  {}",
                entry.lsn,
                entry.kind,
                entry.body.len(),
                preview(&entry.body)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Printable ASCII as is, everything else escaped; at most 60 characters.
fn preview(bytes: &[u8]) -> String {
    let text: String = bytes
        .iter()
        .flat_map(|&byte| std::ascii::escape_default(byte))
        .map(char::from)
        .collect();
    if text.len() > 60 {
        format!("{}...", &text[..60])
    } else {
        text
    }
}

fn fill(args: FillArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (log, report) = Log::open(&args.dir, fill_options(args.segment_bytes))?;
    let mut acked = 0u64;
    let mut last_lsn = None;
    let mut first_error = None;
    for n in 0..args.records {
        let mut body = format!("fill-{n}-").into_bytes();
        body.resize(args.body_bytes.max(body.len()), b'.');
        match runtime.block_on(log.append(1, body)) {
            Ok(lsn) => {
                acked += 1;
                last_lsn = Some(lsn);
            }
            Err(error) => {
                first_error = Some(error.to_string());
                break;
            }
        }
    }
    // After a failure the log must refuse further appends (G7); show what it says.
    let after_error =
        first_error.as_ref().map(
            |_| match runtime.block_on(log.append(1, b"after".to_vec())) {
                Ok(lsn) => format!("ACCEPTED at LSN {lsn}"),
                Err(error) => error.to_string(),
            },
        );
    println!(
        "{}",
        json!({
            "recovered_records": report.records,
            "first_lsn_this_run": report.next_lsn,
            "acked": acked,
            "last_acked_lsn": last_lsn,
            "error": first_error,
            "append_after_error": after_error,
            "poisoned": log.is_poisoned(),
        })
    );
    Ok(if first_error.is_some() {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

/// Options whose segments rotate at `segment_bytes`: below the default, a batch may take
/// half a segment and a record half a batch, so `Options` accepts them.
fn fill_options(segment_bytes: u64) -> Options {
    let mut options = Options {
        segment_bytes,
        ..Options::default()
    };
    if segment_bytes < SEGMENT_BYTES_DEFAULT {
        let batch_bytes_max = usize::try_from(segment_bytes / 2)
            .unwrap_or(BATCH_BYTES_MAX_DEFAULT)
            .min(BATCH_BYTES_MAX_DEFAULT);
        options.batch_bytes_max = batch_bytes_max;
        options.record_bytes_max = (batch_bytes_max / 2).max(1);
    }
    options
}

/// What an operator is told before anything is moved.
const SALVAGE_WARNING: &str = "salvage moves every record from the first damaged byte onwards (the rest of that segment and every later segment) into salvage-<time>/ inside the log directory. The moved records are no longer replayed: intents they record vanish from the engine or go back to an earlier state, and an intent that was in flight may be sent again by a later retry. Stop the engine, copy the directory, and run salvage only when the damaged bytes cannot be restored from a backup. Re-run with --yes to proceed.";

fn salvage(args: SalvageArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.dir.is_dir(),
        "{} is not a directory",
        args.dir.display()
    );
    // Look before touching: a clean log needs nothing, and the operator sees where the
    // damage is before agreeing to lose what follows it.
    let (file, offset, reason) = match intent_log::verify(&args.dir, RECORD_BYTES_MAX_LIMIT) {
        Ok(report) => {
            if args.json {
                println!(
                    "{}",
                    json!({"ok": true, "salvaged": [], "records_kept": report.records, "message": "the log verifies; nothing to salvage"})
                );
            } else {
                println!("log        {}", args.dir.display());
                println!("verdict    ok: the log verifies; nothing to salvage");
            }
            return Ok(ExitCode::SUCCESS);
        }
        Err(intent_log::Error::Corruption {
            file,
            offset,
            reason,
        }) => (file, offset, reason),
        Err(error) => return Err(error.into()),
    };
    let damage = format!("{} at offset {offset}: {reason}", file.display());
    if !args.yes {
        println!("log        {}", args.dir.display());
        println!("damage     {damage}");
        println!("refused    {SALVAGE_WARNING}");
        return Ok(ExitCode::from(2));
    }
    // Records up to the verifier's ceiling count as valid, as in `wal verify`, so salvage
    // never moves a large but intact record aside. Nothing is appended through this handle.
    let options = Options {
        recovery_mode: RecoveryMode::Salvage,
        record_bytes_max: RECORD_BYTES_MAX_LIMIT,
        batch_bytes_max: RECORD_BYTES_MAX_LIMIT + intent_log::format::FRAME_HEADER_BYTES,
        segment_bytes: SEGMENT_BYTES_DEFAULT.max(
            (RECORD_BYTES_MAX_LIMIT
                + intent_log::format::FRAME_HEADER_BYTES
                + intent_log::format::SEGMENT_HEADER_BYTES) as u64,
        ),
        ..Options::default()
    };
    let (log, report) = Log::open(&args.dir, options)?;
    log.close();
    let moved: Vec<(PathBuf, u64)> = report
        .salvaged
        .iter()
        .map(|path| {
            let bytes = std::fs::metadata(path)
                .map(|metadata| metadata.len())
                .with_context(|| format!("reading the size of {}", path.display()))?;
            Ok((path.clone(), bytes))
        })
        .collect::<anyhow::Result<_>>()?;
    print_salvage(&args, &damage, &report, &moved);
    Ok(ExitCode::SUCCESS)
}

fn print_salvage(
    args: &SalvageArgs,
    damage: &str,
    report: &intent_log::RecoveryReport,
    moved: &[(PathBuf, u64)],
) {
    let moved_bytes: u64 = moved.iter().map(|(_, bytes)| bytes).sum();
    let salvage_dir = moved
        .first()
        .and_then(|(path, _)| path.parent())
        .map(Path::to_path_buf);
    let last_lsn = report.next_lsn.saturating_sub(1);
    if args.json {
        let files: Vec<_> = moved
            .iter()
            .map(|(path, bytes)| json!({"path": path, "bytes": bytes}))
            .collect();
        println!(
            "{}",
            json!({
                "ok": true,
                "damage": damage,
                "salvage_dir": salvage_dir,
                "salvaged": files,
                "moved_bytes": moved_bytes,
                "records_kept": report.records,
                "first_lsn": report.first_lsn,
                "next_lsn": report.next_lsn,
            })
        );
        return;
    }
    println!("log        {}", args.dir.display());
    println!("damage     {damage}");
    match &salvage_dir {
        Some(dir) => println!(
            "moved      {moved_bytes} bytes in {} files to {}",
            moved.len(),
            dir.display()
        ),
        None => println!("moved      nothing"),
    }
    for (path, bytes) in moved {
        println!("           {:>12}  {}", bytes, path.display());
    }
    println!(
        "kept       {} records (LSN {} to {last_lsn})",
        report.records, report.first_lsn
    );
    println!("verdict    salvaged: the log opens again; the moved records are no longer replayed. Keep the salvage folder for review");
}
