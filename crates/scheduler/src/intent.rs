//! What an intent is: its immutable specification, its state, and its attempt history.
//! Everything here is plain data that the log records carry and the index stores.

use serde::{Deserialize, Serialize};

/// A unique id for an intent (a UUID v4, assigned by the engine at submit).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct IntentId(pub [u8; 16]);

impl IntentId {
    pub fn random() -> IntentId {
        IntentId(*uuid::Uuid::new_v4().as_bytes())
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

    pub(crate) fn from_detail(detail: &connectors::ErrorDetail) -> Reason {
        Reason {
            code: detail.code.clone(),
            message: detail.message.clone(),
            details_json: detail.details.as_ref().map(|details| details.to_string()),
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
    /// The outcome class (`success`, `ambiguous`, ...); `None` while in flight or when a
    /// crash cut it short.
    pub outcome: Option<String>,
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
            .filter(|attempt| attempt.outcome.as_deref() != Some("already_done"))
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
