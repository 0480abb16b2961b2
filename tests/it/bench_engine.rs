//! `intentctl bench engine` as a real process, small: every op asked is counted and
//! settled, and the figures come from the engine (syncs, records), not from thin air.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support;

/// A small run takes a few seconds; past this it is hung, not slow.
const RUN_SECONDS_MAX: u64 = 120;

/// Runs `intentctl bench engine ARGS --json` in `dir` and returns its JSON.
fn bench(dir: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let mut child = Command::new(support::intentctl())
        .args(["bench", "engine", "--json", "--dir"])
        .arg(dir)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(RUN_SECONDS_MAX) {
            child.kill().unwrap();
            panic!("bench engine {args:?} ran past {RUN_SECONDS_MAX} s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {stdout}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap()
}

#[test]
fn rows_count_every_op_and_read_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let report = bench(
        dir.path(),
        &["--concurrency", "1,4", "--ops", "50", "--warmup", "10"],
    );
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 6, "{report}");
    for row in rows {
        let mode = row["mode"].as_str().unwrap();
        assert_eq!(row["ops"], 50, "{row}");
        assert_eq!(row["succeeded"], 50, "{row}");
        assert_eq!(row["failures"], serde_json::json!({}), "{row}");
        assert!(row["intents_per_s"].as_f64().unwrap() > 0.0, "{row}");
        let (p50, p99) = (
            row["p50_ms"].as_f64().unwrap(),
            row["p99_ms"].as_f64().unwrap(),
        );
        assert!(p50 > 0.0 && p99 >= p50, "{row}");
        assert!(row["peak_rss_mib"].as_f64().unwrap() > 1.0, "{row}");
        if mode == "ceiling" {
            assert!(row["fdatasyncs_per_intent"].is_null(), "{row}");
            continue;
        }
        // Every intent is durable before it is acknowledged, and needs a submit record,
        // an attempt record and an outcome record at least.
        assert!(
            row["fdatasyncs_per_intent"].as_f64().unwrap() > 0.0,
            "{row}"
        );
        assert!(row["records_per_intent"].as_f64().unwrap() >= 2.0, "{row}");
        assert!(row["cpu_ms_per_intent"].as_f64().unwrap() > 0.0, "{row}");
    }
    for name in ["embedded/ceiling at 1", "sidecar/ceiling at 4"] {
        assert!(report["ratios"][name].as_f64().unwrap() > 0.0, "{report}");
    }
}

#[test]
fn long_mode_runs_every_intent_and_samples_rss() {
    let dir = tempfile::tempdir().unwrap();
    let report = bench(
        dir.path(),
        &["--long", "--intents", "2000", "--submitters", "8"],
    );
    assert_eq!(report["intents"], 2000, "{report}");
    assert_eq!(report["succeeded"], 2000, "{report}");
    assert_eq!(report["failures"], serde_json::json!({}), "{report}");
    let samples = report["samples"].as_array().unwrap();
    // Windows end at 200, 400, ..., 2000 (a tenth of the run each).
    assert_eq!(samples.len(), 10, "{report}");
    assert_eq!(samples.last().unwrap()["finished"], 2000, "{report}");
    for sample in samples {
        assert!(sample["rss_mib"].as_f64().unwrap() > 1.0, "{sample}");
        assert!(
            sample["window_intents_per_s"].as_f64().unwrap() > 0.0,
            "{sample}"
        );
    }
    // The warm-up (200) and the 2,000 measured intents each logged several records.
    assert!(
        samples.last().unwrap()["records_total"].as_u64().unwrap() >= 2 * 2200,
        "{report}"
    );
    assert!(report["rss_ratio"].as_f64().unwrap() > 0.0, "{report}");
    assert!(
        report["throughput_ratio"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    assert_eq!(report["targets"].as_array().unwrap().len(), 2, "{report}");
}
