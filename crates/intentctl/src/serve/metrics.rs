//! What the engine counts: `GET /metrics` as Prometheus text for scrapers, and the same
//! figures as JSON at `GET /v1/stats` for programs (the CLI never parses `/metrics`).

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use scheduler::{Engine, StateName};

use super::App;
use crate::api::{CompactionView, LogStatsView, StatsView};

pub async fn metrics(State(app): State<App>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics_text(&app.engine()),
    )
        .into_response()
}

pub async fn stats(State(app): State<App>) -> Json<StatsView> {
    Json(stats_view(&app.engine()))
}

/// Counts by state (every state, 0 when none), log figures, compaction status.
pub fn stats_view(engine: &Engine) -> StatsView {
    let counts = engine.counts();
    let counts = StateName::ALL
        .iter()
        .map(|name| {
            let count = counts.get(name).copied().unwrap_or(0);
            (name.as_str().to_string(), count as u64)
        })
        .collect();
    StatsView {
        compaction: CompactionView::from(&engine.compaction_status()),
        counts,
        log: LogStatsView::from(&engine.log_stats()),
    }
}

// Writing to a String cannot fail, so the results of `writeln!` below are ignored.

/// Prometheus text: intents by state, log sync latency and batch size histograms.
pub fn metrics_text(engine: &Engine) -> String {
    let mut text = String::new();
    let counts = engine.counts();
    let _ = writeln!(
        text,
        "# HELP intents Intents known to the engine, by state."
    );
    let _ = writeln!(text, "# TYPE intents gauge");
    for name in StateName::ALL {
        let count = counts.get(&name).copied().unwrap_or(0);
        let _ = writeln!(text, "intents{{state=\"{}\"}} {count}", name.as_str());
    }
    let stats = engine.log_stats();
    let _ = writeln!(
        text,
        "# HELP intents_log_records_total Records made durable."
    );
    let _ = writeln!(text, "# TYPE intents_log_records_total counter");
    let _ = writeln!(text, "intents_log_records_total {}", stats.records);
    let _ = writeln!(text, "# TYPE intents_log_bytes gauge");
    let _ = writeln!(text, "intents_log_bytes {}", stats.log_bytes);
    let _ = writeln!(text, "# TYPE intents_log_segments gauge");
    let _ = writeln!(text, "intents_log_segments {}", stats.segments);
    compaction_lines(&mut text, engine);
    histogram(
        &mut text,
        "intents_log_sync_micros",
        "Log sync (fsync) latency in microseconds.",
        &stats.sync_micros_histogram,
        stats.sync_micros_total,
    );
    histogram(
        &mut text,
        "intents_log_batch_records",
        "Records per log batch (group commit).",
        &stats.batch_records_histogram,
        stats.records,
    );
    text
}

fn compaction_lines(text: &mut String, engine: &Engine) {
    let compaction = engine.compaction_status();
    for (name, kind, help, value) in [
        (
            "intents_compactions_total",
            "counter",
            "Compactions that completed (checkpoint written, covered segments deleted).",
            compaction.compactions_total,
        ),
        (
            "intents_compaction_failures_total",
            "counter",
            "Compactions that failed (nothing changed; retried with backoff).",
            compaction.failures_total,
        ),
        (
            "intents_compaction_consecutive_failures",
            "gauge",
            "Compaction failures since the last success (0 when healthy).",
            u64::from(compaction.consecutive_failures),
        ),
        (
            "intents_checkpoint_lsn",
            "gauge",
            "The LSN the newest checkpoint covers (0 with none).",
            compaction.checkpoint_lsn.unwrap_or(0),
        ),
    ] {
        let _ = writeln!(text, "# HELP {name} {help}");
        let _ = writeln!(text, "# TYPE {name} {kind}");
        let _ = writeln!(text, "{name} {value}");
    }
}

/// Writes a log2-bucketed histogram (bucket i holds values below 2^(i+1)) cumulatively.
fn histogram(text: &mut String, name: &str, help: &str, buckets: &[u64], sum: u64) {
    let _ = writeln!(text, "# HELP {name} {help}");
    let _ = writeln!(text, "# TYPE {name} histogram");
    let mut cumulative = 0u64;
    for (index, count) in buckets.iter().enumerate() {
        cumulative = cumulative.saturating_add(*count);
        let upper = 1u128 << (index + 1);
        let _ = writeln!(text, "{name}_bucket{{le=\"{upper}\"}} {cumulative}");
    }
    let _ = writeln!(text, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
    let _ = writeln!(text, "{name}_sum {sum}");
    let _ = writeln!(text, "{name}_count {cumulative}");
}
