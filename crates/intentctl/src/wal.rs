//! `intentctl wal verify|dump|fill`: look at (and, for tests, write to) a log directory.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Subcommand};
use intent_log::{Log, Options, StdFileSystem, RECORD_BYTES_MAX_LIMIT};
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
}

pub fn run(command: WalCommand) -> anyhow::Result<ExitCode> {
    match command {
        WalCommand::Verify(args) => verify(args),
        WalCommand::Dump(args) => dump(args),
        WalCommand::Fill(args) => fill(args),
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
                println!("log        {}", args.dir.display());
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
                    println!("note       {} has no complete header (a crash during rotation); opening removes it", path.display());
                }
                println!("verdict    ok");
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
    let (log, report) = Log::open(&args.dir, Options::default())?;
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
