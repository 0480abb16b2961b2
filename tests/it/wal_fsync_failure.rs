//! G7 in the real binary: fdatasync fails under Debian's libfiu (`fiu-run`, package
//! fiu-utils), the log refuses every further append, and on reopen the acknowledged prefix
//! is intact.

use std::process::Command;

use crate::support::{intentctl, run, stdout};

#[test]
fn a_failed_fdatasync_poisons_the_log_and_the_acknowledged_prefix_survives() {
    assert!(
        Command::new("fiu-run").arg("-h").output().is_ok(),
        "fiu-run not found: install Debian's fiu-utils (.ci/run does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();
    let before = run(&["wal", "fill", path, "--records", "20"]);
    assert!(before.status.success());

    // Each fdatasync fails with probability 1/4; opening itself syncs once, so retry until
    // the fault hits during appends (almost always on the first try).
    let mut report = None;
    for _ in 0..20 {
        let output = Command::new("fiu-run")
            .args([
                "-x",
                "-c",
                "enable_random name=posix/io/sync/fdatasync,probability=0.25",
            ])
            .arg(intentctl())
            .args(["wal", "fill", path, "--records", "400"])
            .env("RUST_BACKTRACE", "0")
            .output()
            .unwrap();
        if output.status.code() == Some(3) {
            report =
                Some(serde_json::from_str::<serde_json::Value>(stdout(&output).trim()).unwrap());
            break;
        }
    }
    let report = report.expect("the injected fdatasync failure never hit an append");
    let error = report["error"].as_str().unwrap();
    assert!(
        error.contains("syncing"),
        "the fault happened, as a sync error: {error}"
    );
    assert!(report["poisoned"].as_bool().unwrap());
    let after = report["append_after_error"].as_str().unwrap();
    assert!(
        after.contains("poisoned"),
        "the append after the failure must be refused: {after}"
    );
    let acked = report["acked"].as_u64().unwrap();
    let first_lsn = report["first_lsn_this_run"].as_u64().unwrap();
    assert_eq!(first_lsn, 21);

    // Reopen without faults: verify passes and every acknowledged record is there.
    assert_eq!(run(&["wal", "verify", path]).status.code(), Some(0));
    let dump = run(&["wal", "dump", path, "--json"]);
    let records: Vec<serde_json::Value> = stdout(&dump)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert!(records.len() as u64 >= 20 + acked);
    let body = |lsn: u64| {
        records[(lsn - 1) as usize]["body_hex"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let hex = |text: String| text.bytes().map(|b| format!("{b:02x}")).collect::<String>();
    for lsn in 1..=20 {
        assert!(body(lsn).starts_with(&hex(format!("fill-{}-", lsn - 1))));
    }
    for n in 0..acked {
        assert!(
            body(21 + n).starts_with(&hex(format!("fill-{n}-"))),
            "acknowledged LSN {} lost",
            21 + n
        );
    }
}
