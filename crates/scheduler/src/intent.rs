//! What an intent is: its immutable specification, its state, and its attempt history.
//! Everything here is plain data that the log records carry and the index stores.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::record::AttemptOutcome;

/// Most bytes of a provider's error message kept in a [`Reason`].
pub const REASON_MESSAGE_BYTES_MAX: usize = 2 * 1024;
/// Most bytes of a provider's structured error details kept in a [`Reason`] (as JSON);
/// longer details are stored as a [`truncated_json`] marker.
pub const REASON_DETAILS_BYTES_MAX: usize = 16 * 1024;
/// Most bytes of the marker that stands in for a result too large to log (its head
/// included).
pub const TRUNCATED_JSON_BYTES_MAX: usize = 64 * 1024;

/// `json` if it is at most `bytes_max` long, else a marker that says so, as JSON:
/// `{"truncated":{"original_bytes":N,"sha256":"…","head":"…"}}`, with as much of the
/// start of `json` in `head` as fits (none if even the bare marker does not fit).
pub fn truncated_json(json: &str, bytes_max: usize) -> String {
    if json.len() <= bytes_max {
        return json.to_string();
    }
    let sha256: String = Sha256::digest(json.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    let marker = |head: &str| {
        serde_json::json!({"truncated": {
            "original_bytes": json.len(),
            "sha256": sha256,
            "head": head,
        }})
        .to_string()
    };
    // Escaping can make the head longer than its bytes: halve until it fits (bounded).
    let mut head_bytes = bytes_max.min(json.len());
    loop {
        let head = prefix(json, head_bytes);
        let text = marker(head);
        if text.len() <= bytes_max || head_bytes == 0 {
            return text;
        }
        head_bytes /= 2;
    }
}

/// The longest prefix of `text` of at most `bytes_max` bytes that ends on a character.
fn prefix(text: &str, bytes_max: usize) -> &str {
    let mut end = bytes_max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or("")
}

/// `text` cut to at most `bytes_max` bytes, with a note of how much was cut.
fn capped_text(text: &str, bytes_max: usize) -> String {
    if text.len() <= bytes_max {
        return text.to_string();
    }
    let kept = prefix(text, bytes_max);
    format!("{kept}…[{} more bytes cut]", text.len() - kept.len())
}

/// A unique id for an intent (a UUIDv7, assigned by the engine at submit).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct IntentId(pub [u8; 16]);

impl IntentId {
    /// A new id: a UUIDv7 (48 bits of Unix milliseconds, then a counter and random bits:
    /// the uuid crate keeps them increasing within a process), so ids made together sort
    /// together. The index keys intents by id: time-ordered ids make
    /// retirement's inserts land on the tree's newest pages instead of random ones that
    /// the page cache no longer holds (issue 11). Nothing relies on the order; it is
    /// not a clock (the engine's clock decides ages).
    pub fn random() -> IntentId {
        IntentId(*uuid::Uuid::now_v7().as_bytes())
    }

    /// Parses the hyphenated UUID form.
    pub fn parse(text: &str) -> Option<IntentId> {
        uuid::Uuid::parse_str(text)
            .ok()
            .map(|id| IntentId(*id.as_bytes()))
    }
}

impl std::fmt::Display for IntentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", uuid::Uuid::from_bytes(self.0))
    }
}

impl std::fmt::Debug for IntentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

/// What the agent asked for, fixed at submit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntentSpec {
    pub id: IntentId,
    pub connector: String,
    pub operation: String,
    /// The parameters as canonical JSON (sorted keys, no whitespace).
    pub params_json: String,
    pub idempotency_key: String,
    /// SHA-256 of connector, operation and canonical params: the payload identity (G4).
    pub payload_sha256: [u8; 32],
    /// The amount the intent moves, in millionths of a unit, when it has one (for guards).
    pub amount_micros: Option<u64>,
    pub submitted_at_ms: u64,
}

/// Why an intent failed or was dead-lettered, or what an attempt ended with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    /// A short machine code (`budget_exceeded`, `retries_exhausted`, `timeout`, ...).
    pub code: String,
    pub message: String,
    /// Structured details as JSON, when the provider gave some.
    pub details_json: Option<String>,
    /// The HTTP status, for the operator only.
    pub http_status: Option<u16>,
}

impl Reason {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Reason {
        Reason {
            code: code.into(),
            message: message.into(),
            details_json: None,
            http_status: None,
        }
    }

    /// What a connector's detail keeps in the log: the message and details capped, so a
    /// provider's error body (up to the response cap) always fits a record.
    pub(crate) fn from_detail(detail: &connectors::ErrorDetail) -> Reason {
        Reason {
            code: capped_text(&detail.code, REASON_MESSAGE_BYTES_MAX),
            message: capped_text(&detail.message, REASON_MESSAGE_BYTES_MAX),
            details_json: detail
                .details
                .as_ref()
                .map(|details| truncated_json(&details.to_string(), REASON_DETAILS_BYTES_MAX)),
            http_status: detail.http_status,
        }
    }
}

/// The state of an intent (DESIGN.md §4).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum State {
    /// Waiting to be sent (again) at `due_ms`.
    Pending {
        due_ms: u64,
    },
    /// Attempt `attempt` is on the wire; its "attempt started" record is durable.
    Sent {
        attempt: u32,
    },
    /// An attempt may have executed. Nothing is sent until a status check at `due_ms`
    /// decides; `resend_allowed` is false after an execution failure (never auto-replay).
    Ambiguous {
        checks: u32,
        due_ms: u64,
        resend_allowed: bool,
    },
    /// The provider asked for funding; resumes when a payment is attached.
    AwaitingPayment {
        reason: Reason,
    },
    Succeeded {
        result_json: String,
    },
    /// Found by a status check after an ambiguous outcome.
    Reconciled {
        result_json: String,
    },
    /// Provably not executed (bad input, budget exceeded, illegal move).
    Failed {
        reason: Reason,
    },
    /// The engine cannot finish it alone; an operator must look.
    DeadLettered {
        reason: Reason,
    },
    /// An operator closed a dead letter.
    Resolved {
        note: String,
        evidence: Option<String>,
    },
}

/// The state names, for listing and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum StateName {
    Pending,
    Sent,
    Ambiguous,
    AwaitingPayment,
    Succeeded,
    Reconciled,
    Failed,
    DeadLettered,
    Resolved,
}

impl StateName {
    pub const ALL: [StateName; 9] = [
        StateName::Pending,
        StateName::Sent,
        StateName::Ambiguous,
        StateName::AwaitingPayment,
        StateName::Succeeded,
        StateName::Reconciled,
        StateName::Failed,
        StateName::DeadLettered,
        StateName::Resolved,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StateName::Pending => "pending",
            StateName::Sent => "sent",
            StateName::Ambiguous => "ambiguous",
            StateName::AwaitingPayment => "awaiting_payment",
            StateName::Succeeded => "succeeded",
            StateName::Reconciled => "reconciled",
            StateName::Failed => "failed",
            StateName::DeadLettered => "dead_lettered",
            StateName::Resolved => "resolved",
        }
    }

    pub fn parse(text: &str) -> Option<StateName> {
        StateName::ALL
            .into_iter()
            .find(|name| name.as_str() == text)
    }

    /// Terminal: the engine will do nothing more on its own. Dead letters count as terminal
    /// for the engine (an operator may reopen them).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            StateName::Succeeded
                | StateName::Reconciled
                | StateName::Failed
                | StateName::DeadLettered
                | StateName::Resolved
        )
    }
}

impl State {
    pub fn name(&self) -> StateName {
        match self {
            State::Pending { .. } => StateName::Pending,
            State::Sent { .. } => StateName::Sent,
            State::Ambiguous { .. } => StateName::Ambiguous,
            State::AwaitingPayment { .. } => StateName::AwaitingPayment,
            State::Succeeded { .. } => StateName::Succeeded,
            State::Reconciled { .. } => StateName::Reconciled,
            State::Failed { .. } => StateName::Failed,
            State::DeadLettered { .. } => StateName::DeadLettered,
            State::Resolved { .. } => StateName::Resolved,
        }
    }

    /// The one field of the state that can be large (a provider's result or details,
    /// as JSON), so the engine can cut it to fit a record.
    pub(crate) fn bulk_json_mut(&mut self) -> Option<&mut String> {
        match self {
            State::Succeeded { result_json } | State::Reconciled { result_json } => {
                Some(result_json)
            }
            State::Failed { reason }
            | State::DeadLettered { reason }
            | State::AwaitingPayment { reason } => reason.details_json.as_mut(),
            _ => None,
        }
    }

    /// When the engine should next act on its own, if it should.
    pub fn due_ms(&self) -> Option<u64> {
        match self {
            State::Pending { due_ms } | State::Ambiguous { due_ms, .. } => Some(*due_ms),
            _ => None,
        }
    }
}

/// One attempt as the history records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub number: u32,
    pub started_at_ms: u64,
    pub finished_at_ms: Option<u64>,
    /// The outcome class; `None` while in flight or when a crash cut it short.
    pub outcome: Option<AttemptOutcome>,
    pub detail: Option<Reason>,
}

/// An intent with everything the engine knows about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    pub spec: IntentSpec,
    pub state: State,
    pub attempts: Vec<Attempt>,
    pub status_checks: u32,
    /// Funding attached by the agent (Aeeron payment id), as JSON.
    pub payment_json: Option<String>,
    /// The provider's id for the resource, once known.
    pub resource_id: Option<String>,
    pub last_error: Option<Reason>,
    /// Attempts made before the last operator retry; the retry budget counts from here.
    pub attempt_budget_start: u32,
    /// When the current retry budget started: at submit, or at the last operator retry.
    /// The retry deadline counts from here (the key lifetime still counts from the first
    /// attempt).
    pub budget_started_at_ms: u64,
    pub updated_at_ms: u64,
    /// LSN of the last log record applied to this intent.
    pub last_lsn: u64,
}

impl Intent {
    pub fn new(spec: IntentSpec, lsn: u64) -> Intent {
        let now = spec.submitted_at_ms;
        Intent {
            state: State::Pending { due_ms: now },
            spec,
            attempts: Vec::new(),
            status_checks: 0,
            payment_json: None,
            resource_id: None,
            last_error: None,
            attempt_budget_start: 0,
            budget_started_at_ms: now,
            updated_at_ms: now,
            last_lsn: lsn,
        }
    }

    /// Attempts counted against the retry budget: those since the last operator retry,
    /// except the ones the provider answered "already in progress" (409): those executed
    /// nothing new, and the overall deadline still bounds them.
    pub fn attempts_in_budget(&self) -> u32 {
        self.attempts
            .iter()
            .skip(self.attempt_budget_start as usize)
            .filter(|attempt| attempt.outcome != Some(AttemptOutcome::AlreadyDone))
            .count() as u32
    }

    /// No new attempt starts after this: the retry policy's deadline, counted from the
    /// start of the current budget (submit, or the last operator retry).
    pub fn retry_deadline_ms(&self, deadline_ms: u64) -> u64 {
        self.budget_started_at_ms.saturating_add(deadline_ms)
    }

    /// When the first attempt went on the wire (the key's age counts from here).
    pub fn first_sent_at_ms(&self) -> Option<u64> {
        self.attempts.first().map(|attempt| attempt.started_at_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_json_table() {
        // (json, bytes_max) → kept whole, or a marker no longer than bytes_max.
        let check = |json: &str, bytes_max: usize, whole: bool| {
            let stored = truncated_json(json, bytes_max);
            if whole {
                assert_eq!(stored, json);
                return;
            }
            assert!(stored.len() <= bytes_max, "{} > {bytes_max}", stored.len());
            let marker: serde_json::Value = serde_json::from_str(&stored).unwrap();
            assert_eq!(marker["truncated"]["original_bytes"], json.len());
            assert_eq!(marker["truncated"]["sha256"].as_str().unwrap().len(), 64);
            let head = marker["truncated"]["head"].as_str().unwrap();
            assert!(json.starts_with(head), "the head is a prefix");
        };
        check(r#"{"id":"r"}"#, 100, true);
        check(&"x".repeat(1000), 1000, true);
        check(&"x".repeat(1001), 1000, false);
        check(&"\"".repeat(10_000), 1000, false); // escaping doubles the head
        check(&"é".repeat(10_000), 1001, false); // never cuts inside a character
        check(&"\u{1}".repeat(10_000), 500, false); // \u0001: six bytes each
        assert_eq!(capped_text("abc", 3), "abc");
        assert_eq!(capped_text("abcdef", 3), "abc…[3 more bytes cut]");
    }
}
