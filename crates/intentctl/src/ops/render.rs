//! The tables the operator commands print without `--json`.

use std::time::{Duration, UNIX_EPOCH};

use scheduler::StateName;

use super::inspect::InspectReport;
use crate::api::{IntentPage, IntentView, ReasonView};

/// Plain aligned columns, two spaces apart, no trailing spaces.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers
        .iter()
        .map(|header| header.chars().count())
        .collect();
    for row in rows {
        for (index, cell) in row.iter().enumerate() {
            if let Some(width) = widths.get_mut(index) {
                *width = (*width).max(cell.chars().count());
            }
        }
    }
    let mut text = String::new();
    let header_row: Vec<String> = headers.iter().map(|header| header.to_string()).collect();
    for row in std::iter::once(&header_row).chain(rows) {
        let mut line = String::new();
        for (index, cell) in row.iter().enumerate() {
            let width = widths.get(index).copied().unwrap_or(0);
            line.push_str(cell);
            if index + 1 < row.len() {
                line.push_str(&" ".repeat(width.saturating_sub(cell.chars().count()) + 2));
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// Optional text as table text ("-" when absent).
fn cell(value: Option<&str>) -> String {
    value.unwrap_or("-").to_string()
}

/// Milliseconds since the epoch as `YYYY-MM-DD HH:MM:SS` UTC (proleptic Gregorian).
/// Instants past the year 9999, which RFC 3339 cannot write, print as their milliseconds.
pub fn utc(ms: u64) -> String {
    // humantime writes years up to 9999 only (and fails the formatter beyond).
    const SECONDS_MAX: u64 = 253_402_300_799;
    if ms / 1000 > SECONDS_MAX {
        return format!("{ms} ms");
    }
    let instant = UNIX_EPOCH + Duration::from_secs(ms / 1000);
    // `2000-02-29T00:00:00Z` -> `2000-02-29 00:00:00`.
    humantime::format_rfc3339_seconds(instant)
        .to_string()
        .replacen('T', " ", 1)
        .trim_end_matches('Z')
        .to_string()
}

/// The code that explains an intent: its reason, else its last error.
fn reason_code(view: &IntentView) -> String {
    let reason = view.reason.as_ref().or(view.last_error.as_ref());
    cell(reason.map(|reason| reason.code.as_str()))
}

pub fn render_listing(listing: &IntentPage) -> String {
    let rows: Vec<Vec<String>> = listing
        .intents
        .iter()
        .map(|view| {
            vec![
                view.id.clone(),
                view.state.clone(),
                view.connector.clone(),
                view.operation.clone(),
                view.attempts.to_string(),
                reason_code(view),
                utc(view.submitted_at_ms),
            ]
        })
        .collect();
    let mut text = table(
        &[
            "ID",
            "STATE",
            "CONNECTOR",
            "OPERATION",
            "ATTEMPTS",
            "REASON",
            "SUBMITTED (UTC)",
        ],
        &rows,
    );
    text.push_str(&format!("{} intent(s)\n", listing.intents.len()));
    if let Some(cursor) = &listing.next_cursor {
        text.push_str(&format!("more: --cursor {cursor}\n"));
    }
    text
}

fn reason_text(reason: Option<&ReasonView>) -> String {
    let Some(reason) = reason else {
        return "-".to_string();
    };
    let mut text = format!("{}: {}", reason.code, reason.message);
    if let Some(status) = reason.http_status {
        text.push_str(&format!(" (HTTP {status})"));
    }
    if let Some(details) = reason.details.as_ref().filter(|details| !details.is_null()) {
        text.push_str(&format!(" details {details}"));
    }
    text
}

pub fn render_intent(view: &IntentView) -> String {
    let mut rows: Vec<(&str, String)> = vec![
        ("id", view.id.clone()),
        ("state", view.state.clone()),
        ("connector", view.connector.clone()),
        ("operation", view.operation.clone()),
        ("idempotency_key", view.idempotency_key.clone()),
        ("params", view.params.to_string()),
        ("attempts", view.attempts.to_string()),
        ("status_checks", view.status_checks.to_string()),
        ("resource_id", cell(view.resource_id.as_deref())),
        ("reason", reason_text(view.reason.as_ref())),
        ("last_error", reason_text(view.last_error.as_ref())),
    ];
    if let Some(result) = view.result.as_ref().filter(|result| !result.is_null()) {
        rows.push(("result", result.to_string()));
    }
    if let Some(note) = &view.note {
        rows.push(("note", note.clone()));
        rows.push(("evidence", cell(view.evidence.clone().flatten().as_deref())));
    }
    rows.push(("submitted", utc(view.submitted_at_ms)));
    rows.push(("updated", utc(view.updated_at_ms)));
    let width = rows.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(name, value)| format!("{name:width$}  {value}\n"))
        .collect()
}

pub fn render_inspect(report: &InspectReport) -> String {
    let mut rows: Vec<Vec<String>> = StateName::ALL
        .iter()
        .map(|name| {
            let count = report.counts.get(name.as_str()).copied().unwrap_or(0);
            vec![name.as_str().to_string(), count.to_string()]
        })
        .collect();
    rows.push(vec!["total".to_string(), report.total.to_string()]);
    let mut text = table(&["STATE", "INTENTS"], &rows);
    text.push('\n');
    text.push_str(&format!("dlq depth       {}\n", report.dlq_depth));
    match &report.oldest_waiting {
        None => text.push_str("oldest waiting  none\n"),
        Some(oldest) => text.push_str(&format!(
            "oldest waiting  {} {} {}/{} submitted {} ({} s ago)\n",
            oldest.id,
            oldest.state,
            oldest.connector,
            oldest.operation,
            utc(oldest.submitted_at_ms),
            oldest.age_ms / 1000
        )),
    }
    let log = &report.log;
    text.push_str(&format!(
        "log             {} bytes in {} segment(s)",
        log.bytes, log.segments
    ));
    if let Some(records) = log.records {
        text.push_str(&format!(
            ", {records} records (LSN {} to {})",
            log.first_lsn.map_or("-".to_string(), |lsn| lsn.to_string()),
            log.next_lsn.unwrap_or(1).saturating_sub(1)
        ));
    }
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::{json, Value};

    use super::*;
    use crate::api::{CompactionState, CompactionView, LogStatsView, StatsView};
    use crate::ops::inspect::{counts_of, inspect_report, LogSummary};

    #[test]
    fn table_aligns_columns() {
        let rows = vec![
            vec!["a".to_string(), "long value".to_string(), "x".to_string()],
            vec!["bbbb".to_string(), "v".to_string(), "-".to_string()],
        ];
        let text = table(&["K", "VALUE", "Z"], &rows);
        assert_eq!(
            text,
            "K     VALUE       Z\na     long value  x\nbbbb  v           -\n"
        );
    }

    #[test]
    fn utc_formats_known_instants() {
        for (ms, expected) in [
            (0, "1970-01-01 00:00:00"),
            (951_782_400_000, "2000-02-29 00:00:00"),
            (1_709_164_799_999, "2024-02-28 23:59:59"),
            (1_709_210_096_000, "2024-02-29 12:34:56"),
            (1_709_251_199_999, "2024-02-29 23:59:59"),
            (1_798_761_600_000, "2027-01-01 00:00:00"),
            (253_402_300_799_999, "9999-12-31 23:59:59"),
            (253_402_300_800_000, "253402300800000 ms"),
            (u64::MAX, "18446744073709551615 ms"),
        ] {
            assert_eq!(utc(ms), expected, "{ms}");
        }
    }

    #[test]
    fn inspect_counts_come_from_the_stats_view() {
        let counts: BTreeMap<String, u64> =
            BTreeMap::from([("pending".to_string(), 3), ("dead_lettered".to_string(), 2)]);
        let stats = StatsView {
            compaction: CompactionView {
                checkpoint_lsn: None,
                compactions_total: 0,
                consecutive_failures: 0,
                failures_total: 0,
                last_error: None,
                last_success_at_ms: None,
                retry_at_ms: None,
                state: CompactionState::Ok,
            },
            counts,
            log: LogStatsView {
                batches_total: 1,
                bytes: 4096,
                bytes_written_total: 4096,
                records_total: 1,
                segments: 1,
                sync_micros_total: 5,
            },
        };
        let counts = counts_of(&stats);
        assert_eq!(counts[&StateName::Pending], 3);
        assert_eq!(counts[&StateName::DeadLettered], 2);
        assert_eq!(counts[&StateName::Succeeded], 0);
        assert_eq!(counts.len(), StateName::ALL.len());
    }

    fn sample_view(state: &str, reason: Value) -> IntentView {
        serde_json::from_value(json!({
            "id": "0b8e4f5c-1d2a-4a39-9d0e-3f1f2c3d4e5f", "state": state, "connector": "aeeron",
            "operation": "execute", "params": {"action": "compute.gpu_hours"}, "idempotency_key": "k-1",
            "attempts": 1, "status_checks": 2, "last_error": null, "result": null, "reason": reason,
            "resource_id": null, "submitted_at_ms": 0u64, "updated_at_ms": 1000u64,
        }))
        .expect("an intent view")
    }

    #[test]
    fn listing_shows_reason_and_cursor() {
        let dead = sample_view(
            "dead_lettered",
            json!({"code": "execution_failed", "message": "m", "details": null, "http_status": 502}),
        );
        let listing: IntentPage =
            serde_json::from_value(json!({"intents": [dead], "next_cursor": "c1"})).expect("page");
        let text = render_listing(&listing);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("ID "), "{text}");
        assert!(lines[1].contains("dead_lettered  aeeron"), "{text}");
        assert!(lines[1].contains("execution_failed"), "{text}");
        assert!(lines[1].ends_with("1970-01-01 00:00:00"), "{text}");
        assert_eq!(lines[2], "1 intent(s)");
        assert_eq!(lines[3], "more: --cursor c1");
    }

    #[test]
    fn intent_render_table() {
        for (view, expected_line) in [
            (sample_view("dead_lettered", json!({"code": "undecidable", "message": "no answer", "details": null, "http_status": null})), "reason           undecidable: no answer"),
            (sample_view("pending", Value::Null), "reason           -"),
            (sample_view("dead_lettered", json!({"code": "execution_failed", "message": "m", "details": {"execution_id": "ex_1"}, "http_status": 502})), "reason           execution_failed: m (HTTP 502) details {\"execution_id\":\"ex_1\"}"),
        ] {
            let text = render_intent(&view);
            assert!(text.lines().any(|line| line == expected_line), "{text}");
        }
    }

    #[test]
    fn inspect_value_and_render() {
        let mut counts: BTreeMap<StateName, u64> =
            StateName::ALL.iter().map(|name| (*name, 0)).collect();
        counts.insert(StateName::DeadLettered, 2);
        counts.insert(StateName::Pending, 1);
        let oldest = sample_view("pending", Value::Null);
        let report = inspect_report(&counts, Some(&oldest), LogSummary::size(10, 1), 5_000);
        let value = serde_json::to_value(&report).expect("json");
        assert_eq!(value["dlq_depth"], 2);
        assert_eq!(value["total"], 3);
        assert_eq!(value["oldest_waiting"]["age_ms"], 5_000);
        assert_eq!(value["counts"]["resolved"], 0);
        let text = render_inspect(&report);
        assert!(text.contains("dlq depth       2\n"), "{text}");
        assert!(text.contains("dead_lettered     2\n"), "{text}");
        assert!(text.contains("(5 s ago)"), "{text}");
        assert!(
            text.contains("log             10 bytes in 1 segment(s)\n"),
            "{text}"
        );
        let empty = inspect_report(&counts, None, LogSummary::size(0, 0), 0);
        assert!(render_inspect(&empty).contains("oldest waiting  none"));
    }
}
