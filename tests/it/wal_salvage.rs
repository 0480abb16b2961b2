//! `intentctl wal salvage`: refuses without `--yes`; with it, moves everything from the
//! first damaged byte of an older segment onwards into `salvage-<time>/`, after which the
//! log verifies and the salvage folder holds exactly the bytes that left the log.

use std::path::Path;

use crate::support::{run, segments, stdout};

fn file_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().metadata().unwrap().len())
        .sum()
}

#[test]
fn salvage_moves_the_damaged_suffix_aside_and_the_log_verifies_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();
    // Small segments, so the damage lands in one that is not the last.
    let fill = run(&[
        "wal",
        "fill",
        path,
        "--records",
        "1500",
        "--body-bytes",
        "64",
        "--segment-bytes",
        "32768",
    ]);
    assert!(
        fill.status.success(),
        "{}",
        String::from_utf8_lossy(&fill.stderr)
    );
    let before = segments(dir.path());
    assert!(before.len() >= 3, "expected several segments: {before:?}");
    let log_bytes_before: u64 = before
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();

    // Flip one byte in the middle of the first segment: corruption, not a torn tail.
    let first = &before[0];
    let mut bytes = std::fs::read(first).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(first, &bytes).unwrap();
    let corrupt = run(&["wal", "verify", path, "--json"]);
    assert_eq!(corrupt.status.code(), Some(1), "{}", stdout(&corrupt));
    let damage: serde_json::Value = serde_json::from_str(stdout(&corrupt).trim()).unwrap();
    let damage_offset = damage["offset"].as_u64().unwrap();
    assert!(
        damage_offset > 64 && damage_offset <= middle as u64,
        "{damage}"
    );

    // Without --yes: refused, explained, nothing changed.
    let refused = run(&["wal", "salvage", path]);
    assert_eq!(refused.status.code(), Some(2));
    let text = format!(
        "{}{}",
        stdout(&refused),
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(
        text.contains("no longer replayed") && text.contains("--yes"),
        "{text}"
    );
    assert_eq!(segments(dir.path()), before);
    assert_eq!(
        std::fs::read(first).unwrap(),
        bytes,
        "a refused salvage changes nothing"
    );

    let salvaged = run(&["wal", "salvage", path, "--yes", "--json"]);
    assert_eq!(
        salvaged.status.code(),
        Some(0),
        "{}{}",
        stdout(&salvaged),
        String::from_utf8_lossy(&salvaged.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(stdout(&salvaged).trim()).unwrap();
    let salvage_dir = Path::new(report["salvage_dir"].as_str().unwrap());
    assert!(
        salvage_dir.starts_with(dir.path())
            && salvage_dir
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("salvage-"),
        "{report}"
    );

    // Exactly the bytes from the damage onwards left the log, and all of them are in the
    // salvage folder: the rest of the first segment and every later segment, whole.
    let after = segments(dir.path());
    assert_eq!(after, vec![first.clone()], "later segments moved aside");
    // The log keeps the verified prefix untouched; opening it may then append its own
    // (empty) batch marker, so the file can be a little longer than the prefix.
    let kept_bytes = std::fs::read(first).unwrap();
    assert!(kept_bytes.len() as u64 >= damage_offset);
    assert_eq!(
        kept_bytes[..damage_offset as usize],
        bytes[..damage_offset as usize]
    );
    let moved_bytes = log_bytes_before - damage_offset;
    assert_eq!(file_bytes(salvage_dir), moved_bytes);
    assert_eq!(
        report["moved_bytes"].as_u64(),
        Some(moved_bytes),
        "{report}"
    );
    assert_eq!(report["salvaged"].as_array().unwrap().len(), before.len());
    let moved_first = std::fs::read(report["salvaged"][0]["path"].as_str().unwrap()).unwrap();
    assert_eq!(
        moved_first,
        bytes[damage_offset as usize..],
        "the damaged bytes, as they were"
    );

    let clean = run(&["wal", "verify", path, "--json"]);
    assert_eq!(clean.status.code(), Some(0), "{}", stdout(&clean));
    let verified: serde_json::Value = serde_json::from_str(stdout(&clean).trim()).unwrap();
    let kept = verified["records"].as_u64().unwrap();
    assert!(kept > 0 && kept < 1500, "{verified}");
    assert_eq!(report["records_kept"].as_u64(), Some(kept), "{report}");

    // A clean log: nothing to salvage, nothing changed, exit 0 even without --yes.
    let again = run(&["wal", "salvage", path]);
    assert_eq!(again.status.code(), Some(0), "{}", stdout(&again));
    assert!(
        stdout(&again).contains("nothing to salvage"),
        "{}",
        stdout(&again)
    );
}
