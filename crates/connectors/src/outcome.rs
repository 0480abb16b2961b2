//! The engine's vocabulary: what one attempt or one status check came to.

use std::time::Duration;

use serde_json::Value;

/// Most bytes of a raw response body kept in an [`ErrorDetail`] for the operator.
pub const RAW_BODY_BYTES_MAX: usize = 2048;

/// What the provider (or the network) said, kept for the operator and the DLQ.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ErrorDetail {
    /// A short machine code: the provider's (`insufficient_funds`, `budget_exceeded`) or
    /// this crate's for faults it names itself (`timeout`, `connection_refused`, ...).
    pub code: String,
    /// A human sentence.
    pub message: String,
    /// The HTTP status, when a response head arrived. For the operator only: the
    /// scheduler never branches on it.
    pub http_status: Option<u16>,
    /// The provider's structured details (Aeeron `error.details`), when present.
    pub details: Option<Value>,
    /// The start of the raw body (at most [`RAW_BODY_BYTES_MAX`] bytes, lossy UTF-8),
    /// when there was one.
    pub raw_body: Option<String>,
}

impl ErrorDetail {
    /// A detail with only a code and a message (faults this crate names itself).
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            http_status: None,
            details: None,
            raw_body: None,
        }
    }

    /// Sets the HTTP status.
    pub fn with_status(mut self, http_status: u16) -> Self {
        self.http_status = Some(http_status);
        self
    }

    /// Keeps at most [`RAW_BODY_BYTES_MAX`] bytes of `body`.
    pub fn with_raw_body(mut self, body: &[u8]) -> Self {
        self.raw_body = capped_raw_body(body);
        self
    }
}

/// The first [`RAW_BODY_BYTES_MAX`] bytes of `body` as lossy UTF-8, with a note of how
/// much was cut; `None` for an empty body.
pub(crate) fn capped_raw_body(body: &[u8]) -> Option<String> {
    if body.is_empty() {
        return None;
    }
    let kept = body.get(..RAW_BODY_BYTES_MAX).unwrap_or(body);
    let mut text = String::from_utf8_lossy(kept).into_owned();
    if body.len() > kept.len() {
        text.push_str(&format!("…[{} more bytes cut]", body.len() - kept.len()));
    }
    Some(text)
}

/// How far a retryable failure reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RetryScope {
    /// The provider is throttling this client (429): hold every intent of the connector.
    Connector,
    /// Only this intent waits (503, connection refused).
    Intent,
}

/// What one dispatch came to. The scheduler acts on the variant and never on HTTP codes.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Outcome {
    /// Executed; `result` is the provider's resource (a bet, an escrow, an execution).
    Success {
        /// The parsed JSON body.
        result: Value,
    },
    /// Not executed and never will be as sent (bad input, illegal transition, key reused
    /// for another payload): the intent ends `Failed` with this reason.
    Permanent {
        /// Why.
        reason: ErrorDetail,
    },
    /// Provably not executed; send again with the same key after the delay.
    Retryable {
        /// Why.
        reason: ErrorDetail,
        /// The provider's Retry-After, when it gave a readable one.
        retry_after: Option<Duration>,
        /// Whether the whole connector or only this intent should wait.
        scope: RetryScope,
    },
    /// May have executed: send nothing more until a status check decides (G3).
    Ambiguous {
        /// What happened.
        reason: ErrorDetail,
    },
    /// The provider already has this key (409): check status to fetch the existing result.
    AlreadyDone {
        /// What the provider said.
        reason: ErrorDetail,
    },
    /// Valid but unfunded (Aeeron `payment_required`): nothing executed, key not bound.
    /// Wait for a payment to be attached, then send again with the same key.
    PaymentRequired {
        /// The provider's error, `details` holding the amount and currency asked for.
        details: ErrorDetail,
    },
    /// The quote is above the caller's budget (Aeeron `budget_exceeded`): nothing
    /// executed; re-plan, never retry as is.
    BudgetExceeded {
        /// The provider's error, `details` holding budget, quote and currency.
        details: ErrorDetail,
    },
    /// The provider ran and failed part-way (Aeeron `execution_failed`): the payment has
    /// cleared. Reconcile, then dead-letter for the operator; never replay automatically.
    ExecutionFailed {
        /// The provider's error, `details` holding the execution id.
        details: ErrorDetail,
    },
}

impl Outcome {
    /// True only for [`Outcome::Success`].
    pub fn is_success(&self) -> bool {
        matches!(self, Self::Success { .. })
    }

    /// A short name of the variant, for logs, metrics and table tests.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Success { .. } => "success",
            Self::Permanent { .. } => "permanent",
            Self::Retryable { .. } => "retryable",
            Self::Ambiguous { .. } => "ambiguous",
            Self::AlreadyDone { .. } => "already_done",
            Self::PaymentRequired { .. } => "payment_required",
            Self::BudgetExceeded { .. } => "budget_exceeded",
            Self::ExecutionFailed { .. } => "execution_failed",
        }
    }

    /// The error detail of any non-success outcome.
    pub fn detail(&self) -> Option<&ErrorDetail> {
        match self {
            Self::Success { .. } => None,
            Self::Permanent { reason }
            | Self::Retryable { reason, .. }
            | Self::Ambiguous { reason }
            | Self::AlreadyDone { reason } => Some(reason),
            Self::PaymentRequired { details }
            | Self::BudgetExceeded { details }
            | Self::ExecutionFailed { details } => Some(details),
        }
    }
}

/// The provider's view of a resource found by a status check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RemoteStatus {
    /// Done (bet `complete`, execution `succeeded`, escrow in the target state).
    Complete,
    /// Accepted and still running (`pending`, `processing`): check again later.
    Pending,
    /// Executed and failed (`failed`): the key is bound, do not re-send.
    Failed,
}

/// What a status check came to.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum StatusCheck {
    /// The provider has it: adopt `result`.
    Found {
        /// The resource as the provider returned it.
        result: Value,
        /// Its state, mapped.
        remote_status: RemoteStatus,
    },
    /// The provider positively says it has no such thing: safe to re-send with the same key.
    NotFound,
    /// The check itself failed or was unreadable: check again later, then dead-letter.
    Unknown {
        /// Why.
        reason: ErrorDetail,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_body_is_capped() {
        let huge = vec![b'x'; RAW_BODY_BYTES_MAX * 3];
        let kept = capped_raw_body(&huge).unwrap();
        assert!(kept.starts_with(&"x".repeat(RAW_BODY_BYTES_MAX)));
        assert!(kept.ends_with(&format!("[{} more bytes cut]", RAW_BODY_BYTES_MAX * 2)));
        assert_eq!(capped_raw_body(b""), None);
        assert_eq!(
            capped_raw_body(b"\xff\xfeok").unwrap(),
            "\u{fffd}\u{fffd}ok"
        );
    }
}
