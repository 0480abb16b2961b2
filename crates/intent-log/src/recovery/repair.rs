//! The changes recovery makes once every check has passed: a compaction's leftover files
//! removed, a torn tail moved into `torn/` and cut, an empty last segment removed, or (in
//! salvage mode) everything from the first damage moved into `salvage-<time>/`.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::fs::FileSystem;

use super::{RecoveryReport, Repair, TornTail, TORN_DIR};

/// Makes the decided changes: removes a compaction's leftover files, then the repair.
pub(super) fn make_repairs(
    fs: &dyn FileSystem,
    dir: &Path,
    files: &[(u64, PathBuf)],
    leftovers: &[PathBuf],
    repair: Option<Repair>,
    report: &mut RecoveryReport,
) -> Result<()> {
    for leftover in leftovers {
        fs.remove(leftover)
            .map_err(|error| Error::io("removing", leftover, error))?;
    }
    if !leftovers.is_empty() {
        // Durable before a spare of the same name is prepared again.
        fs.sync_dir(dir)
            .map_err(|error| Error::io("syncing", dir, error))?;
    }
    match repair {
        None => {}
        Some(Repair::CutTornTail(torn)) => cut_torn_tail(fs, dir, &torn)?,
        Some(Repair::RemoveEmptySegment(path)) => {
            fs.remove(&path)
                .map_err(|error| Error::io("removing", &path, error))?;
            fs.sync_dir(dir)
                .map_err(|error| Error::io("syncing", dir, error))?;
        }
        Some(Repair::Salvage { index, offset }) => {
            salvage_files(fs, dir, &files[index..], offset, report)?;
            if offset > 0 {
                let path = &files[index].1;
                fs.truncate_and_sync(path, offset)
                    .map_err(|error| Error::io("truncating", path, error))?;
            }
        }
    }
    Ok(())
}

/// Moves the torn bytes aside (into `torn/` beside the segments), then cuts them.
fn cut_torn_tail(fs: &dyn FileSystem, dir: &Path, torn: &TornTail) -> Result<()> {
    let bytes = fs
        .read(&torn.file)
        .map_err(|error| Error::io("reading", &torn.file, error))?;
    let aside_dir = dir.join(TORN_DIR);
    fs.create_dir_all(&aside_dir)
        .map_err(|error| Error::io("creating", &aside_dir, error))?;
    let name = torn
        .file
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or("segment");
    let target = aside_dir.join(format!("{name}.at-{}.{}", torn.offset, unix_nanos()));
    let from = (torn.offset as usize).min(bytes.len());
    let to = from.saturating_add(torn.bytes as usize).min(bytes.len());
    copy_aside(fs, &target, &bytes[from..to])?;
    fs.sync_dir(&aside_dir)
        .map_err(|error| Error::io("syncing", &aside_dir, error))?;
    fs.truncate_and_sync(&torn.file, torn.offset)
        .map_err(|error| Error::io("cutting the torn tail of", &torn.file, error))?;
    tracing::warn!(
        file = %torn.file.display(),
        offset = torn.offset,
        bytes = torn.bytes,
        zero_filled = torn.zero_filled,
        reason = %torn.reason,
        moved_to = %target.display(),
        "cut a torn tail from the log (the last batch, never acknowledged); its bytes were moved aside"
    );
    Ok(())
}

fn unix_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or(0)
}

fn copy_aside(fs: &dyn FileSystem, target: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = fs
        .create_new(target)
        .map_err(|error| Error::io("creating", target, error))?;
    file.write_all(bytes)
        .map_err(|error| Error::io("writing", target, error))?;
    file.sync_all()
        .map_err(|error| Error::io("syncing", target, error))
}

/// Copies everything from `offset` of the first of `files` onwards into a salvage folder,
/// and removes the later files (the caller cuts the first one at `offset`).
fn salvage_files(
    fs: &dyn FileSystem,
    dir: &Path,
    files: &[(u64, PathBuf)],
    offset: u64,
    report: &mut RecoveryReport,
) -> Result<()> {
    let salvage_dir = dir.join(format!("salvage-{}", unix_nanos()));
    fs.create_dir_all(&salvage_dir)
        .map_err(|error| Error::io("creating", &salvage_dir, error))?;
    for (position, (_, path)) in files.iter().enumerate() {
        let bytes = fs
            .read(path)
            .map_err(|error| Error::io("reading", path, error))?;
        let from = if position == 0 {
            (offset as usize).min(bytes.len())
        } else {
            0
        };
        let file_name = path
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or("segment");
        let target = salvage_dir.join(format!("{file_name}.from-{from}"));
        copy_aside(fs, &target, &bytes[from..])?;
        tracing::warn!(from = %path.display(), to = %target.display(), offset = from, "salvage: moved unverifiable bytes out of the log");
        report.salvaged.push(target);
        if position > 0 || from == 0 {
            fs.remove(path)
                .map_err(|error| Error::io("removing", path, error))?;
        }
    }
    fs.sync_dir(&salvage_dir)
        .map_err(|error| Error::io("syncing", &salvage_dir, error))?;
    fs.sync_dir(dir)
        .map_err(|error| Error::io("syncing", dir, error))?;
    Ok(())
}
