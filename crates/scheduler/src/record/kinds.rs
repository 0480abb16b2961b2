//! The closed vocabularies the log stores by name: what an attempt came to, what a status
//! check found, what an operator did.
//!
//! On disk each is the same string format v1 wrote (`"already_done"`, `"not_found"`,
//! `"retry"`), so logs, checkpoints and index entries written before these were enums
//! decode unchanged (`tests/fixture_log.rs` replays such a log). Decoding is closed: a name
//! this build does not know is a decode error naming it, never a silent default.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Declares a fieldless enum stored by name, with `as_str`, `parse`, `ALL` and serde
/// that writes and reads the name.
macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The name stored in the log.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// The value stored under `text`, if this build knows it.
            pub fn parse(text: &str) -> Option<$name> {
                match text {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<$name, D::Error> {
                struct NameVisitor;
                impl Visitor<'_> for NameVisitor {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        write!(f, "the name of {}", $what)
                    }
                    fn visit_str<E: de::Error>(self, text: &str) -> Result<$name, E> {
                        $name::parse(text).ok_or_else(|| {
                            E::custom(format!("unknown {} {text:?}", $what))
                        })
                    }
                }
                deserializer.deserialize_str(NameVisitor)
            }
        }
    };
}

named_enum! {
    /// What an attempt came to: the connector's classification of the answer (DESIGN §5).
    AttemptOutcome, "attempt outcome" {
        Success => "success",
        Permanent => "permanent",
        Retryable => "retryable",
        Ambiguous => "ambiguous",
        /// The provider already holds the key (409): nothing new executed.
        AlreadyDone => "already_done",
        PaymentRequired => "payment_required",
        BudgetExceeded => "budget_exceeded",
        ExecutionFailed => "execution_failed",
    }
}

impl AttemptOutcome {
    /// The class of a connector's outcome.
    pub fn of(outcome: &connectors::Outcome) -> AttemptOutcome {
        use connectors::Outcome;
        match outcome {
            Outcome::Success { .. } => AttemptOutcome::Success,
            Outcome::Permanent { .. } => AttemptOutcome::Permanent,
            Outcome::Retryable { .. } => AttemptOutcome::Retryable,
            Outcome::Ambiguous { .. } => AttemptOutcome::Ambiguous,
            Outcome::AlreadyDone { .. } => AttemptOutcome::AlreadyDone,
            Outcome::PaymentRequired { .. } => AttemptOutcome::PaymentRequired,
            Outcome::BudgetExceeded { .. } => AttemptOutcome::BudgetExceeded,
            Outcome::ExecutionFailed { .. } => AttemptOutcome::ExecutionFailed,
        }
    }
}

named_enum! {
    /// What a `StatusChecked` record says was looked at.
    CheckResult, "status-check result" {
        /// The provider has the request; its state is in the record's next state.
        Found => "found",
        /// The provider has no record of the key.
        NotFound => "not_found",
        /// The check itself failed or could not tell.
        Unknown => "unknown",
        /// No check was made: before a send, the budget, deadline or key lifetime said it
        /// must not go out (format v1 records this decision as a status check).
        NotSent => "not_sent",
    }
}

impl CheckResult {
    /// The result of a connector's status check.
    pub fn of(check: &connectors::StatusCheck) -> CheckResult {
        use connectors::StatusCheck;
        match check {
            StatusCheck::Found { .. } => CheckResult::Found,
            StatusCheck::NotFound => CheckResult::NotFound,
            StatusCheck::Unknown { .. } => CheckResult::Unknown,
        }
    }
}

named_enum! {
    /// An operator's action on a dead letter.
    OperatorAction, "operator action" {
        /// Check again, then re-send with the same key if the provider has no record.
        Retry => "retry",
        /// Close it with a note.
        Resolve => "resolve",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for outcome in AttemptOutcome::ALL {
            let body = intent_log::codec::encode(outcome).unwrap();
            // Stored as the bare string, exactly as format v1 stored `outcome: String`.
            assert_eq!(body, intent_log::codec::encode(&outcome.as_str()).unwrap());
            assert_eq!(
                intent_log::codec::decode::<AttemptOutcome>(&body).unwrap(),
                *outcome
            );
        }
        for result in CheckResult::ALL {
            let body = intent_log::codec::encode(&result.as_str()).unwrap();
            assert_eq!(
                intent_log::codec::decode::<CheckResult>(&body).unwrap(),
                *result
            );
        }
        for action in OperatorAction::ALL {
            let body = intent_log::codec::encode(&action.as_str()).unwrap();
            assert_eq!(
                intent_log::codec::decode::<OperatorAction>(&body).unwrap(),
                *action
            );
        }
        let unknown = intent_log::codec::encode(&"teleported").unwrap();
        let error = intent_log::codec::decode::<AttemptOutcome>(&unknown).unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("unknown attempt outcome") && text.contains("teleported"),
            "{text}"
        );
        assert!(intent_log::codec::decode::<OperatorAction>(&unknown).is_err());
        assert!(intent_log::codec::decode::<CheckResult>(&unknown).is_err());
    }

    #[test]
    fn every_connector_outcome_has_its_v1_name() {
        use connectors::{ErrorDetail, Outcome, RetryScope};
        let detail = || ErrorDetail::new("c", "m");
        let outcomes = [
            Outcome::Success {
                result: serde_json::json!({}),
            },
            Outcome::Permanent { reason: detail() },
            Outcome::Retryable {
                reason: detail(),
                retry_after: None,
                scope: RetryScope::Intent,
            },
            Outcome::Ambiguous { reason: detail() },
            Outcome::AlreadyDone { reason: detail() },
            Outcome::PaymentRequired { details: detail() },
            Outcome::BudgetExceeded { details: detail() },
            Outcome::ExecutionFailed { details: detail() },
        ];
        for outcome in &outcomes {
            assert_eq!(AttemptOutcome::of(outcome).as_str(), outcome.kind());
        }
    }
}
