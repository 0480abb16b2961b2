//! The JSON bodies of the sidecar's API as types.
//!
//! Fields are declared in alphabetical order on purpose: these types replaced `json!`
//! maps, which serde_json (without `preserve_order`) writes with sorted keys, so the same
//! order keeps every answer byte for byte what clients already parse.

use std::collections::BTreeMap;

use scheduler::{CompactionStatus, Intent, Reason, State};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// Every error answer: `{"error":"<code>","message":"<text>"}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A machine-readable code (`not_found`, `invalid_input`, ...).
    pub error: String,
    pub message: String,
}

/// Why an intent failed, was dead-lettered or waits for payment, or how an attempt ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReasonView {
    pub code: String,
    /// The provider's details, as JSON when they were JSON.
    pub details: Option<Value>,
    pub http_status: Option<u16>,
    pub message: String,
}

impl From<&Reason> for ReasonView {
    fn from(reason: &Reason) -> ReasonView {
        ReasonView {
            code: reason.code.clone(),
            details: reason.details_json.as_deref().map(json_or_text),
            http_status: reason.http_status,
            message: reason.message.clone(),
        }
    }
}

/// An intent as the API shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IntentView {
    pub attempts: usize,
    pub connector: String,
    /// Present only when resolved (then `null` when no evidence was given).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub evidence: Option<Option<String>>,
    pub id: String,
    pub idempotency_key: String,
    pub last_error: Option<ReasonView>,
    /// Present only when resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub operation: String,
    pub params: Value,
    /// Why failed, dead-lettered or awaiting payment.
    pub reason: Option<ReasonView>,
    pub resource_id: Option<String>,
    /// The provider's result once succeeded or reconciled.
    pub result: Option<Value>,
    /// A state name (`pending`, ..., `resolved`).
    pub state: String,
    pub status_checks: u32,
    pub submitted_at_ms: u64,
    pub updated_at_ms: u64,
}

impl From<&Intent> for IntentView {
    fn from(intent: &Intent) -> IntentView {
        let (result, reason) = match &intent.state {
            State::Succeeded { result_json } | State::Reconciled { result_json } => {
                (Some(json_or_text(result_json)), None)
            }
            State::Failed { reason }
            | State::DeadLettered { reason }
            | State::AwaitingPayment { reason } => (None, Some(ReasonView::from(reason))),
            _ => (None, None),
        };
        let (note, evidence) = match &intent.state {
            State::Resolved { note, evidence } => (Some(note.clone()), Some(evidence.clone())),
            _ => (None, None),
        };
        IntentView {
            attempts: intent.attempts.len(),
            connector: intent.spec.connector.clone(),
            evidence,
            id: intent.spec.id.to_string(),
            idempotency_key: intent.spec.idempotency_key.clone(),
            last_error: intent.last_error.as_ref().map(ReasonView::from),
            note,
            operation: intent.spec.operation.clone(),
            params: json_or_text(&intent.spec.params_json),
            reason,
            resource_id: intent.resource_id.clone(),
            result,
            state: intent.state.name().as_str().to_string(),
            status_checks: intent.status_checks,
            submitted_at_ms: intent.spec.submitted_at_ms,
            updated_at_ms: intent.updated_at_ms,
        }
    }
}

/// One page of a listing; `next_cursor` is the id to pass as `cursor` for the next page.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IntentPage {
    pub intents: Vec<IntentView>,
    pub next_cursor: Option<String>,
}

/// Whether compaction is keeping up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompactionState {
    Ok,
    Failing,
}

/// How compaction fares, in `/healthz` and `/v1/stats`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompactionView {
    pub checkpoint_lsn: Option<u64>,
    pub compactions_total: u64,
    pub consecutive_failures: u32,
    pub failures_total: u64,
    pub last_error: Option<String>,
    pub last_success_at_ms: Option<u64>,
    pub retry_at_ms: Option<u64>,
    pub state: CompactionState,
}

impl From<&CompactionStatus> for CompactionView {
    fn from(status: &CompactionStatus) -> CompactionView {
        let state = if status.consecutive_failures > 0 {
            CompactionState::Failing
        } else {
            CompactionState::Ok
        };
        CompactionView {
            checkpoint_lsn: status.checkpoint_lsn,
            compactions_total: status.compactions_total,
            consecutive_failures: status.consecutive_failures,
            failures_total: status.failures_total,
            last_error: status.last_error.clone(),
            last_success_at_ms: status.last_success_at_ms,
            retry_at_ms: status.retry_at_ms,
            state,
        }
    }
}

/// The overall verdict of `/healthz`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    Ok,
    /// Serving, but compaction keeps failing or the log is never synced.
    Warning,
    /// The log is poisoned: reads answer, changes are refused (503).
    Degraded,
}

/// Whether the log accepts writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogHealth {
    Ok,
    Poisoned,
}

/// How the log syncs (`none_unsafe` is the benchmark-only opt-in).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncName {
    Data,
    All,
    NoneUnsafe,
}

impl From<intent_log::SyncMode> for SyncName {
    fn from(mode: intent_log::SyncMode) -> SyncName {
        match mode {
            intent_log::SyncMode::Data => SyncName::Data,
            intent_log::SyncMode::All => SyncName::All,
            intent_log::SyncMode::NoSyncBenchmarkOnly => SyncName::NoneUnsafe,
        }
    }
}

/// The body of `/healthz`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HealthView {
    pub compaction: CompactionView,
    pub log: LogHealth,
    /// Only when degraded: what is refused and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub status: HealthStatus,
    pub sync: SyncName,
}

/// The log's counters since it was opened, and its size now.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogStatsView {
    pub batches_total: u64,
    /// Bytes of the log on disk now, headers included.
    pub bytes: u64,
    pub bytes_written_total: u64,
    /// Records made durable since the log was opened.
    pub records_total: u64,
    pub segments: usize,
    pub sync_micros_total: u64,
}

impl From<&intent_log::LogStats> for LogStatsView {
    fn from(stats: &intent_log::LogStats) -> LogStatsView {
        LogStatsView {
            batches_total: stats.batches,
            bytes: stats.log_bytes,
            bytes_written_total: stats.bytes_written,
            records_total: stats.records,
            segments: stats.segments,
            sync_micros_total: stats.sync_micros_total,
        }
    }
}

/// The body of `GET /v1/stats`: what `/metrics` says, as JSON for programs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatsView {
    pub compaction: CompactionView,
    /// Intents by state name; every state is present, 0 when none.
    pub counts: BTreeMap<String, u64>,
    pub log: LogStatsView,
}

/// The body of `POST /v1/intents`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitBody {
    pub connector: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    pub operation: String,
    #[serde(default)]
    pub params: Value,
}

/// The body of `POST /v1/intents/{id}/payment`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentBody {
    pub payment_id: String,
}

/// The body of `POST /v1/dlq/{id}/resolve`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolveBody {
    #[serde(default)]
    pub evidence: Option<String>,
    pub note: String,
}

/// Stored JSON text as JSON; text that is not JSON stays a string.
fn json_or_text(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

/// A field that is present (even as `null`) is `Some`; a missing one is `None` (by
/// `#[serde(default)]`), so `"evidence": null` survives a round trip.
pub fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}
