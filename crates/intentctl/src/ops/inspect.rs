//! What `intentctl inspect` reports, the same JSON from a data directory and from a server:
//! counts by state, DLQ depth, the oldest intent still waiting, and the log's size.

use std::collections::BTreeMap;

use scheduler::StateName;
use serde::{Deserialize, Serialize};

use crate::api::{IntentView, StatsView};

/// States in which an intent is still waiting for the engine (or for funding).
pub const WAITING_STATES: [StateName; 4] = [
    StateName::Pending,
    StateName::Sent,
    StateName::Ambiguous,
    StateName::AwaitingPayment,
];

// Fields are in alphabetical order: this replaced a `json!` map, whose keys serde_json
// writes sorted, so `--json` prints the same bytes as before.

/// The output of `inspect`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InspectReport {
    /// Intents by state name; every state is present.
    pub counts: BTreeMap<String, u64>,
    pub dlq_depth: u64,
    pub log: LogSummary,
    pub oldest_waiting: Option<OldestWaiting>,
    pub total: u64,
}

/// The intent that has waited longest (in submit order) in a [`WAITING_STATES`] state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OldestWaiting {
    pub age_ms: u64,
    pub connector: String,
    pub id: String,
    pub operation: String,
    pub state: String,
    pub submitted_at_ms: u64,
}

/// The log's size; a data directory also tells its records, LSNs and torn tail.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogSummary {
    pub bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_lsn: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_lsn: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<u64>,
    pub segments: u64,
    /// Offline only, then `null` when the log has no torn tail.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::api::present"
    )]
    pub torn_tail_bytes: Option<Option<u64>>,
}

impl LogSummary {
    /// Only the size: what a server tells.
    pub fn size(bytes: u64, segments: u64) -> LogSummary {
        LogSummary {
            bytes,
            first_lsn: None,
            next_lsn: None,
            records: None,
            segments,
            torn_tail_bytes: None,
        }
    }
}

/// Counts by state from a server's stats: every state, 0 when the server did not say.
pub fn counts_of(stats: &StatsView) -> BTreeMap<StateName, u64> {
    StateName::ALL
        .iter()
        .map(|name| {
            let count = stats.counts.get(name.as_str()).copied().unwrap_or(0);
            (*name, count)
        })
        .collect()
}

/// The report, the same in both modes.
pub fn inspect_report(
    counts: &BTreeMap<StateName, u64>,
    oldest_waiting: Option<&IntentView>,
    log: LogSummary,
    now_ms: u64,
) -> InspectReport {
    let oldest_waiting = oldest_waiting.map(|view| OldestWaiting {
        age_ms: now_ms.saturating_sub(view.submitted_at_ms),
        connector: view.connector.clone(),
        id: view.id.clone(),
        operation: view.operation.clone(),
        state: view.state.clone(),
        submitted_at_ms: view.submitted_at_ms,
    });
    InspectReport {
        counts: counts
            .iter()
            .map(|(name, count)| (name.as_str().to_string(), *count))
            .collect(),
        dlq_depth: counts.get(&StateName::DeadLettered).copied().unwrap_or(0),
        log,
        oldest_waiting,
        total: counts.values().sum::<u64>(),
    }
}
