//! `intentctl demo` as a real process: simulators, a sidecar child killed with SIGKILL and
//! restarted, agents over HTTP; the audit must show no key executed twice and no loss.

use crate::support;

#[test]
fn demo_survives_crashes_without_duplicates_or_loss() {
    let output = support::run(&["demo", "--intents", "40", "--crashes", "2", "--json"]);
    let stdout = support::stdout(&output);
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {stdout}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["executed_twice"], 0, "{report}");
    assert_eq!(report["lost"], 0, "{report}");
    assert_eq!(report["crashes_survived"], 3, "{report}");
    assert!(report["submitted"].as_u64().unwrap() >= 40, "{report}");
    assert_eq!(report["submitted"], report["known_to_engine"], "{report}");
}
