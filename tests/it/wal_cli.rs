//! `intentctl wal verify|dump` on clean, torn and corrupt logs: exit codes and what they say.

use crate::support::{run, segments, stdout};

fn fill(dir: &std::path::Path, records: &str) {
    let output = run(&[
        "wal",
        "fill",
        dir.to_str().unwrap(),
        "--records",
        records,
        "--body-bytes",
        "64",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn verify_reports_clean_torn_and_corrupt_logs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();
    fill(dir.path(), "50");

    let clean = run(&["wal", "verify", path, "--json"]);
    assert_eq!(clean.status.code(), Some(0));
    let report: serde_json::Value = serde_json::from_str(stdout(&clean).trim()).unwrap();
    assert_eq!(
        (report["records"].as_u64(), report["torn_tail"].is_null()),
        (Some(50), true)
    );

    // A torn tail: reported, exit 0, and the file is left unchanged.
    let last = segments(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&last).unwrap();
    let clean_len = bytes.len();
    bytes.extend_from_slice(&[0xab; 40]);
    std::fs::write(&last, &bytes).unwrap();
    let torn = run(&["wal", "verify", path]);
    assert_eq!(torn.status.code(), Some(0));
    assert!(
        stdout(&torn).contains(&format!("torn tail  40 bytes at offset {clean_len}")),
        "{}",
        stdout(&torn)
    );
    assert_eq!(
        std::fs::read(&last).unwrap().len(),
        clean_len + 40,
        "verify changes nothing"
    );

    // Corruption inside the first record (segment header 64 bytes, batch header 32, frame
    // header 20), with complete batches after it: exit 1 naming file and the batch's offset.
    let mut bytes = std::fs::read(&last).unwrap();
    bytes[64 + 32 + 20 + 3] ^= 0x01;
    bytes.truncate(clean_len);
    std::fs::write(&last, &bytes).unwrap();
    let corrupt = run(&["wal", "verify", path]);
    assert_eq!(corrupt.status.code(), Some(1));
    let text = stdout(&corrupt);
    assert!(
        text.contains("CORRUPT")
            && text.contains(last.file_name().unwrap().to_str().unwrap())
            && text.contains("offset 64: record checksum mismatch"),
        "{text}"
    );
}

#[test]
fn dump_prints_records_from_an_lsn() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();
    fill(dir.path(), "10");
    let output = run(&["wal", "dump", path, "--from", "8", "--json"]);
    assert!(output.status.success());
    let lines: Vec<serde_json::Value> = stdout(&output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let lsns: Vec<u64> = lines
        .iter()
        .map(|line| line["lsn"].as_u64().unwrap())
        .collect();
    assert_eq!(lsns, vec![8, 9, 10]);
    assert_eq!(lines[0]["bytes"].as_u64(), Some(64));
    let table = stdout(&run(&["wal", "dump", path, "--limit", "2"]));
    assert!(
        table.contains("fill-0-") && table.contains("fill-1-") && !table.contains("fill-2-"),
        "{table}"
    );
}
