//! `GET /healthz`: whether the sidecar accepts changes, how the log syncs, how compaction fares.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::error::LOG_REFUSED_MESSAGE;
use super::App;
use crate::api::{CompactionState, CompactionView, HealthStatus, HealthView, LogHealth, SyncName};

/// 200 `{"status":"ok"}`; 200 `{"status":"warning"}` while compaction keeps failing (money
/// still moves, but the log grows until it succeeds) or the log is never synced (`"sync":
/// "none_unsafe"`, benchmarks only); 503 `{"status":"degraded"}` while the
/// log is poisoned (reads still answer; changes are refused until the engine is reopened).
/// Every answer carries the compaction status.
pub async fn healthz(State(app): State<App>) -> Response {
    let engine = app.engine();
    let compaction = CompactionView::from(&engine.compaction_status());
    let sync = SyncName::from(engine.sync_mode());
    if engine.is_log_poisoned() {
        let view = HealthView {
            compaction,
            log: LogHealth::Poisoned,
            message: Some(LOG_REFUSED_MESSAGE.to_string()),
            status: HealthStatus::Degraded,
            sync,
        };
        return (StatusCode::SERVICE_UNAVAILABLE, Json(view)).into_response();
    }
    // Unsynced acknowledgements (benchmarks only) are a warning every probe shows.
    let status = if compaction.state == CompactionState::Failing || sync == SyncName::NoneUnsafe {
        HealthStatus::Warning
    } else {
        HealthStatus::Ok
    };
    let view = HealthView {
        compaction,
        log: LogHealth::Ok,
        message: None,
        status,
        sync,
    };
    Json(view).into_response()
}
