//! The crash model of the simulated file system: what a power cut keeps of the changes
//! not yet made durable (renames, creations and removals, un-synced bytes), drawn from
//! the file system's seeded random source in a fixed order, so a seed replays the same
//! crash.

use std::collections::BTreeMap;
use std::path::PathBuf;

use rand::rngs::SmallRng;
use rand::Rng;

use super::{SimFile, SECTOR_BYTES};

/// A crash settles each rename not yet made durable: either it happened (the target is
/// durable, the source gone) or it did not (the target gone, the source back).
pub(super) fn settle_renames(files: &mut BTreeMap<PathBuf, SimFile>, rng: &mut SmallRng) {
    let pending_renames: Vec<(PathBuf, PathBuf)> = files
        .iter()
        .filter(|(_, file)| file.entry_live != file.entry_durable)
        .filter_map(|(path, file)| file.renamed_from.clone().map(|from| (path.clone(), from)))
        .collect();
    for (to, from) in pending_renames {
        if rng.gen_bool(0.5) {
            if let Some(target) = files.get_mut(&to) {
                target.entry_durable = true;
                target.renamed_from = None;
            }
            files.remove(&from);
        } else {
            files.remove(&to);
            if let Some(source) = files.get_mut(&from) {
                source.entry_live = source.entry_durable;
            }
        }
    }
}

/// A crash keeps or loses a file's un-synced creation or removal, at random.
pub(super) fn settle_entry(file: &mut SimFile, rng: &mut SmallRng) {
    if file.entry_live == file.entry_durable {
        return;
    }
    let keep_change = rng.gen_bool(0.5);
    let exists = if keep_change {
        file.entry_live
    } else {
        file.entry_durable
    };
    file.entry_live = exists;
    file.entry_durable = exists;
}

/// A crash keeps a random prefix of a file's un-synced bytes, and tears the sectors they
/// were in; returns how many sectors it tore.
pub(super) fn lose_unsynced_bytes(file: &mut SimFile, rng: &mut SmallRng) -> u64 {
    let durable_len = file.durable_len.min(file.data.len());
    let pending = file.data.len() - durable_len;
    let kept = match rng.gen_range(0..4) {
        0 => 0,
        1 => pending,
        _ => rng.gen_range(0..=pending),
    };
    file.data.truncate(durable_len + kept);
    // Tear the sectors that were written but not synced: each may be lost (zeros) or,
    // rarely, garbage. A sector partly covered by durable bytes keeps them.
    let mut torn = 0;
    let mut sector_start = durable_len - durable_len % SECTOR_BYTES;
    while sector_start < file.data.len() {
        let from = sector_start.max(durable_len);
        let to = (sector_start + SECTOR_BYTES).min(file.data.len());
        let roll = rng.gen_range(0..100);
        if roll < 20 {
            file.data[from..to].fill(0);
            torn += 1;
        } else if roll < 24 {
            for byte in &mut file.data[from..to] {
                *byte = rng.gen();
            }
            torn += 1;
        }
        sector_start += SECTOR_BYTES;
    }
    file.durable_len = file.data.len();
    torn
}

/// A crash settles each sector overwritten in place since the last sync: most often the
/// new bytes reached the disk; otherwise the bytes written are the old ones again, or
/// zeros, or garbage. The sector's bytes outside what was written (durable) never change.
/// Returns how many sectors it did not keep as written.
pub(super) fn revert_overwrites(file: &mut SimFile, rng: &mut SmallRng) -> u64 {
    let mut torn = 0;
    for (sector, overwrite) in std::mem::take(&mut file.old_sectors) {
        let start = sector * SECTOR_BYTES;
        let (from, to) = (overwrite.from, overwrite.to);
        let Some(old) = overwrite.old.get(from - start..to - start) else {
            continue;
        };
        let Some(target) = file.data.get_mut(from..to) else {
            continue;
        };
        let roll = rng.gen_range(0..100);
        if roll < 50 {
            continue;
        }
        torn += 1;
        if roll < 80 {
            target.copy_from_slice(old);
        } else if roll < 95 {
            target.fill(0);
        } else {
            for byte in target.iter_mut() {
                *byte = rng.gen();
            }
        }
    }
    torn
}
