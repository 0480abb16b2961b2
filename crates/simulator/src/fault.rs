//! The seeded fault plan: which request gets which fault, decided from a hash, not from arrival order.
//!
//! Every API request gets an attempt number: how many times its idempotency key (or, for
//! requests without one, its `?key=` query parameter, else the empty string) has been seen
//! on its route before. For each rule `i` that matches, a 64-bit draw is computed as
//! `mix(seed, i, route, key, attempt)` and the rule fires when `draw / 2^64 < probability`.
//! So the same seed and the same request sequence (per key) give the same faults, no matter
//! how requests for *different* keys interleave. Latency rules add up; the first other rule
//! that fires is the request's fault.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The most rules one plan may hold.
pub const FAULT_RULES_MAX: usize = 64;
/// The longest latency one rule may add, in milliseconds.
pub const FAULT_LATENCY_MS_MAX: u64 = 60_000;
/// The longest response hold, in milliseconds.
pub const FAULT_HOLD_MS_MAX: u64 = 600_000;
/// The largest `Retry-After`, in seconds.
pub const FAULT_RETRY_AFTER_S_MAX: u64 = 3_600;
/// The longest time an execution stays `processing` after `provider_unavailable_after_provider`.
pub const FAULT_SETTLE_MS_MAX: u64 = 600_000;
/// The longest route pattern, in bytes.
const FAULT_ROUTE_BYTES_MAX: usize = 128;

/// `Retry-After` when a `rate_limit` rule does not say.
pub(crate) const RETRY_AFTER_S_DEFAULT: u64 = 1;
/// Hold time when a `hold_after_commit` rule does not say: longer than any sane client timeout.
pub(crate) const HOLD_MS_DEFAULT: u64 = 30_000;
/// Time an execution stays `processing` when `provider_unavailable_after_provider` does not say.
pub(crate) const SETTLE_MS_DEFAULT: u64 = 200;

/// Which simulated service a rule is limited to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceName {
    /// The Purple Flea casino, escrow and wallet API.
    PurpleFlea,
    /// The Aeeron paid-action API.
    Aeeron,
}

impl ServiceName {
    /// The name used on the wire and in the audit (`purple_flea`, `aeeron`).
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceName::PurpleFlea => "purple_flea",
            ServiceName::Aeeron => "aeeron",
        }
    }
}

/// What a fault does. "Before commit" faults answer without executing anything; "after
/// commit" faults execute and store the result first, then spoil the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Delay the request by `latency_ms` (while its key is held in progress). Adds up with other faults.
    Latency,
    /// Before commit: 429 `rate_limited` with `Retry-After: retry_after_s`.
    RateLimit,
    /// Before commit: 503 (`unavailable` on Purple Flea; Aeeron's `provider_unavailable`
    /// with `payment_cleared` and `provider_touched` false).
    Unavailable,
    /// Before commit: 502 `bad_gateway` (a proxy in front could not reach the application).
    BadGateway,
    /// Before commit: 408 `timeout` (the server gave up waiting for the request).
    RequestTimeout,
    /// After commit: 500 `internal_error`.
    ErrorAfterCommit,
    /// After commit: 504 `timeout`.
    TimeoutAfterCommit,
    /// After commit: hold the real response for `hold_ms`, longer than the client waits.
    HoldAfterCommit,
    /// After commit: close the connection without writing any response.
    DropAfterCommit,
    /// Aeeron: the same as `unavailable` (the provider was never touched, the key stays free).
    ProviderUnavailableBeforeProvider,
    /// Aeeron `POST /v1/executions` only: the payment cleared and the provider started, then
    /// 503 `provider_unavailable` with `provider_touched` true; the execution stays
    /// `processing` for `settle_ms`, then succeeds.
    ProviderUnavailableAfterProvider,
    /// Aeeron `POST /v1/executions` only: the provider failed mid-way; 502 `execution_failed`,
    /// the execution resource is `failed` with `steps_completed < steps_total`.
    ExecutionFailed,
}

impl FaultKind {
    fn only_for_aeeron_executions(self) -> bool {
        matches!(
            self,
            FaultKind::ProviderUnavailableAfterProvider | FaultKind::ExecutionFailed
        )
    }
}

/// One line of a fault plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    /// `"POST /casino/bet"`, `"GET /escrow/{id}"` (the route template) or `"*"` for every API route.
    #[serde(default = "route_any")]
    pub route: String,
    /// Limit the rule to one service (useful when one file configures both).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceName>,
    /// What happens when the rule fires.
    pub kind: FaultKind,
    /// Chance in `0.0..=1.0` that the rule fires for a given (key, attempt). Not money: a float is fine.
    #[serde(default = "probability_always")]
    pub probability: f64,
    /// `latency`: added delay in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// `rate_limit`: the `Retry-After` value in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_s: Option<u64>,
    /// `hold_after_commit`: how long the response is held, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_ms: Option<u64>,
    /// `provider_unavailable_after_provider`: how long the execution stays `processing`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settle_ms: Option<u64>,
    /// Fire only on the first N attempts of each key (attempt numbers `0..N`); absent = every attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts_max_per_key: Option<u64>,
}

fn route_any() -> String {
    "*".to_owned()
}

fn probability_always() -> f64 {
    1.0
}

impl FaultRule {
    /// A rule of `kind` on `route` that fires with `probability`, with default parameters.
    pub fn new(route: &str, kind: FaultKind, probability: f64) -> FaultRule {
        FaultRule {
            route: route.to_owned(),
            service: None,
            kind,
            probability,
            latency_ms: None,
            retry_after_s: None,
            hold_ms: None,
            settle_ms: None,
            attempts_max_per_key: None,
        }
    }

    fn validate(&self, index: usize) -> Result<()> {
        let fail = |why: String| Err(Error::InvalidFaultPlan(format!("rule {index}: {why}")));
        if !(0.0..=1.0).contains(&self.probability) {
            return fail(format!("probability {} is outside 0..=1", self.probability));
        }
        if self.route.len() > FAULT_ROUTE_BYTES_MAX {
            return fail(format!(
                "route is longer than {FAULT_ROUTE_BYTES_MAX} bytes"
            ));
        }
        if self.route != "*" {
            let valid = self.route.split_once(' ').is_some_and(|(method, path)| {
                ["GET", "POST"].contains(&method) && path.starts_with('/') && !path.contains(' ')
            });
            if !valid {
                return fail(format!(
                    "route {:?} is not \"*\" or \"GET /path\" / \"POST /path\"",
                    self.route
                ));
            }
        }
        let limits = [
            ("latency_ms", self.latency_ms, FAULT_LATENCY_MS_MAX),
            ("hold_ms", self.hold_ms, FAULT_HOLD_MS_MAX),
            ("retry_after_s", self.retry_after_s, FAULT_RETRY_AFTER_S_MAX),
            ("settle_ms", self.settle_ms, FAULT_SETTLE_MS_MAX),
        ];
        for (name, value, maximum) in limits {
            if value.is_some_and(|value| value > maximum) {
                return fail(format!("{name} is above its maximum {maximum}"));
            }
        }
        if self.kind == FaultKind::Latency && self.latency_ms.is_none() {
            return fail("a latency rule needs latency_ms".to_owned());
        }
        Ok(())
    }

    fn applies(&self, service: ServiceName, route: &str, attempt: u64) -> bool {
        if self.service.is_some_and(|only| only != service) {
            return false;
        }
        if self.route != "*" && self.route != route {
            return false;
        }
        if self
            .attempts_max_per_key
            .is_some_and(|maximum| attempt >= maximum)
        {
            return false;
        }
        if self.kind.only_for_aeeron_executions()
            && (service != ServiceName::Aeeron || route != "POST /v1/executions")
        {
            return false;
        }
        true
    }
}

/// A seed and an ordered list of rules. Parse from TOML or JSON; both have the same shape:
///
/// ```toml
/// seed = 42
/// [[rules]]
/// route = "POST /casino/bet"
/// kind = "drop_after_commit"
/// probability = 0.05
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultPlan {
    /// Drives every fault decision (and the Purple Flea dice rolls).
    #[serde(default)]
    pub seed: u64,
    /// Checked in order; see the module documentation.
    #[serde(default)]
    pub rules: Vec<FaultRule>,
}

impl FaultPlan {
    /// No faults at all.
    pub fn none(seed: u64) -> FaultPlan {
        FaultPlan {
            seed,
            rules: Vec::new(),
        }
    }

    /// Parses and validates TOML.
    pub fn from_toml_str(text: &str) -> Result<FaultPlan> {
        let plan: FaultPlan =
            toml::from_str(text).map_err(|error| Error::ParseFaultPlan(error.to_string()))?;
        plan.validate()?;
        Ok(plan)
    }

    /// Parses and validates JSON (the shape `POST /_sim/faults` takes).
    pub fn from_json_str(text: &str) -> Result<FaultPlan> {
        let plan: FaultPlan =
            serde_json::from_str(text).map_err(|error| Error::ParseFaultPlan(error.to_string()))?;
        plan.validate()?;
        Ok(plan)
    }

    /// Reads a file: JSON when its name ends in `.json`, TOML otherwise.
    pub fn load(path: &Path) -> Result<FaultPlan> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ReadFaultPlan {
            path: path.to_owned(),
            source,
        })?;
        if path
            .extension()
            .is_some_and(|extension| extension == "json")
        {
            FaultPlan::from_json_str(&text)
        } else {
            FaultPlan::from_toml_str(&text)
        }
    }

    /// Checks probabilities, limits and route patterns.
    pub fn validate(&self) -> Result<()> {
        if self.rules.len() > FAULT_RULES_MAX {
            return Err(Error::InvalidFaultPlan(format!(
                "more than {FAULT_RULES_MAX} rules"
            )));
        }
        for (index, rule) in self.rules.iter().enumerate() {
            rule.validate(index)?;
        }
        Ok(())
    }

    /// Decides the fault of one request. `route` is `"METHOD /template"`; `attempt` counts
    /// earlier requests with the same key on the same route.
    pub(crate) fn decide(
        &self,
        service: ServiceName,
        route: &str,
        key: &str,
        attempt: u64,
    ) -> FaultDecision {
        let mut decision = FaultDecision::default();
        for (index, rule) in self.rules.iter().enumerate() {
            if !rule.applies(service, route, attempt) {
                continue;
            }
            if !fires(
                draw(self.seed, index as u64, route, key, attempt),
                rule.probability,
            ) {
                continue;
            }
            let outcome = match rule.kind {
                FaultKind::Latency => {
                    decision.latency_ms = decision
                        .latency_ms
                        .saturating_add(rule.latency_ms.unwrap_or(0));
                    continue;
                }
                FaultKind::RateLimit => FaultOutcome::RateLimit {
                    retry_after_s: rule.retry_after_s.unwrap_or(RETRY_AFTER_S_DEFAULT),
                },
                FaultKind::Unavailable | FaultKind::ProviderUnavailableBeforeProvider => {
                    FaultOutcome::Unavailable
                }
                FaultKind::BadGateway => FaultOutcome::BadGateway,
                FaultKind::RequestTimeout => FaultOutcome::RequestTimeout,
                FaultKind::ErrorAfterCommit => FaultOutcome::ErrorAfterCommit,
                FaultKind::TimeoutAfterCommit => FaultOutcome::TimeoutAfterCommit,
                FaultKind::HoldAfterCommit => FaultOutcome::HoldAfterCommit {
                    hold_ms: rule.hold_ms.unwrap_or(HOLD_MS_DEFAULT),
                },
                FaultKind::DropAfterCommit => FaultOutcome::DropAfterCommit,
                FaultKind::ProviderUnavailableAfterProvider => {
                    FaultOutcome::ProviderUnavailableAfterProvider {
                        settle_ms: rule.settle_ms.unwrap_or(SETTLE_MS_DEFAULT),
                    }
                }
                FaultKind::ExecutionFailed => FaultOutcome::ExecutionFailed,
            };
            if decision.outcome.is_none() {
                decision.outcome = Some(outcome);
            }
        }
        decision
    }
}

/// The fault chosen for one request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct FaultDecision {
    /// Total added latency.
    pub(crate) latency_ms: u64,
    /// The first non-latency rule that fired, if any.
    pub(crate) outcome: Option<FaultOutcome>,
}

/// A decided fault with its parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FaultOutcome {
    RateLimit { retry_after_s: u64 },
    Unavailable,
    BadGateway,
    RequestTimeout,
    ErrorAfterCommit,
    TimeoutAfterCommit,
    HoldAfterCommit { hold_ms: u64 },
    DropAfterCommit,
    ProviderUnavailableAfterProvider { settle_ms: u64 },
    ExecutionFailed,
}

/// True with probability `probability` for a uniformly distributed `draw`.
fn fires(draw: u64, probability: f64) -> bool {
    // 53 bits are exactly representable in an f64, so this is a uniform value in [0, 1).
    let uniform = (draw >> 11) as f64 / (1_u64 << 53) as f64;
    uniform < probability
}

/// A stable 64-bit hash of the decision inputs: FNV-1a over the bytes, then the SplitMix64
/// finaliser. Written out (rather than `DefaultHasher`) so it never changes between Rust releases.
pub(crate) fn draw(seed: u64, rule_index: u64, route: &str, key: &str, attempt: u64) -> u64 {
    let mut hash = Fnv1a::new();
    hash.write(&seed.to_le_bytes());
    hash.write(&rule_index.to_le_bytes());
    hash.write(&(route.len() as u64).to_le_bytes());
    hash.write(route.as_bytes());
    hash.write(&(key.len() as u64).to_le_bytes());
    hash.write(key.as_bytes());
    hash.write(&attempt.to_le_bytes());
    splitmix64(hash.finish())
}

struct Fnv1a(u64);

impl Fnv1a {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    fn new() -> Fnv1a {
        Fnv1a(Fnv1a::OFFSET_BASIS)
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(Fnv1a::PRIME);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

fn splitmix64(mut value: u64) -> u64 {
    value = value.wrapping_add(0x9e37_79b9_7f4a_7c15);
    value = (value ^ (value >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    value ^ (value >> 31)
}

// The file passes 600 lines only through these tests, which stay beside the code they
// pin; the library part above is 420 lines.
#[cfg(test)]
mod tests {
    use super::*;

    fn check_parse(toml_text: &str, valid: bool) {
        assert_eq!(
            FaultPlan::from_toml_str(toml_text).is_ok(),
            valid,
            "{toml_text}"
        );
    }

    #[test]
    fn parses_and_validates_plans() {
        check_parse("", true);
        check_parse("seed = 3", true);
        check_parse("[[rules]]\nkind = \"unavailable\"\nprobability = 0.5", true);
        check_parse(
            "[[rules]]\nroute = \"POST /casino/bet\"\nkind = \"drop_after_commit\"",
            true,
        );
        check_parse("[[rules]]\nkind = \"latency\"\nlatency_ms = 5", true);
        check_parse("[[rules]]\nkind = \"latency\"", false);
        check_parse(
            "[[rules]]\nkind = \"unavailable\"\nprobability = 1.5",
            false,
        );
        check_parse(
            "[[rules]]\nkind = \"unavailable\"\nprobability = -0.1",
            false,
        );
        check_parse("[[rules]]\nkind = \"teleport\"", false);
        check_parse("[[rules]]\nkind = \"unavailable\"\ncolour = \"red\"", false);
        check_parse(
            "[[rules]]\nroute = \"PATCH /x\"\nkind = \"unavailable\"",
            false,
        );
        check_parse(
            "[[rules]]\nroute = \"casino/bet\"\nkind = \"unavailable\"",
            false,
        );
        check_parse(
            "[[rules]]\nkind = \"hold_after_commit\"\nhold_ms = 600001",
            false,
        );
        check_parse("[[rules]]\nkind = \"rate_limit\"\nretry_after_s = 2", true);
    }

    #[test]
    fn json_and_toml_are_the_same_shape() {
        let from_toml = FaultPlan::from_toml_str(
            "seed = 9\n[[rules]]\nroute = \"*\"\nkind = \"rate_limit\"\nprobability = 0.25\nretry_after_s = 3\n",
        )
        .expect("toml");
        let json = serde_json::to_string(&from_toml).expect("serialise");
        assert_eq!(FaultPlan::from_json_str(&json).expect("json"), from_toml);
    }

    #[test]
    fn decisions_are_a_function_of_their_inputs() {
        let plan = FaultPlan {
            seed: 11,
            rules: vec![FaultRule::new("*", FaultKind::Unavailable, 0.5)],
        };
        let decide = |key: &str, attempt| {
            plan.decide(ServiceName::PurpleFlea, "POST /casino/bet", key, attempt)
        };
        let first: Vec<_> = (0..200)
            .map(|index| decide(&format!("k{index}"), 0))
            .collect();
        let second: Vec<_> = (0..200)
            .map(|index| decide(&format!("k{index}"), 0))
            .rev()
            .collect();
        let second: Vec<_> = second.into_iter().rev().collect();
        assert_eq!(first, second);
        let fired = first
            .iter()
            .filter(|decision| decision.outcome.is_some())
            .count();
        assert!(
            (60..=140).contains(&fired),
            "probability 0.5 fired {fired} of 200"
        );
        let other_seed = FaultPlan {
            seed: 12,
            ..plan.clone()
        };
        let third: Vec<_> = (0..200)
            .map(|index| {
                other_seed.decide(
                    ServiceName::PurpleFlea,
                    "POST /casino/bet",
                    &format!("k{index}"),
                    0,
                )
            })
            .collect();
        assert_ne!(first, third, "another seed gives other faults");
    }

    #[test]
    fn rules_match_route_service_attempt_and_kind() {
        let rule = |route: &str, kind| FaultRule::new(route, kind, 1.0);
        let pf = ServiceName::PurpleFlea;
        let ae = ServiceName::Aeeron;
        let cases: &[(FaultRule, ServiceName, &str, u64, bool)] = &[
            (
                rule("*", FaultKind::Unavailable),
                pf,
                "POST /casino/bet",
                0,
                true,
            ),
            (
                rule("POST /casino/bet", FaultKind::Unavailable),
                pf,
                "POST /casino/bet",
                0,
                true,
            ),
            (
                rule("POST /casino/bet", FaultKind::Unavailable),
                pf,
                "POST /escrow/create",
                0,
                false,
            ),
            (
                FaultRule {
                    service: Some(ae),
                    ..rule("*", FaultKind::Unavailable)
                },
                pf,
                "POST /casino/bet",
                0,
                false,
            ),
            (
                FaultRule {
                    attempts_max_per_key: Some(1),
                    ..rule("*", FaultKind::Unavailable)
                },
                pf,
                "POST /casino/bet",
                0,
                true,
            ),
            (
                FaultRule {
                    attempts_max_per_key: Some(1),
                    ..rule("*", FaultKind::Unavailable)
                },
                pf,
                "POST /casino/bet",
                1,
                false,
            ),
            (
                rule("*", FaultKind::ExecutionFailed),
                pf,
                "POST /casino/bet",
                0,
                false,
            ),
            (
                rule("*", FaultKind::ExecutionFailed),
                ae,
                "POST /v1/quotes",
                0,
                false,
            ),
            (
                rule("*", FaultKind::ExecutionFailed),
                ae,
                "POST /v1/executions",
                0,
                true,
            ),
        ];
        for (rule, service, route, attempt, expected) in cases {
            assert_eq!(
                rule.applies(*service, route, *attempt),
                *expected,
                "{rule:?} {service:?} {route} {attempt}"
            );
        }
    }

    #[test]
    fn latency_adds_up_and_the_first_other_rule_wins() {
        let mut plan = FaultPlan::none(1);
        plan.rules.push(FaultRule {
            latency_ms: Some(5),
            ..FaultRule::new("*", FaultKind::Latency, 1.0)
        });
        plan.rules
            .push(FaultRule::new("*", FaultKind::TimeoutAfterCommit, 1.0));
        plan.rules.push(FaultRule {
            latency_ms: Some(7),
            ..FaultRule::new("*", FaultKind::Latency, 1.0)
        });
        plan.rules
            .push(FaultRule::new("*", FaultKind::Unavailable, 1.0));
        let decision = plan.decide(ServiceName::PurpleFlea, "GET /wallet/balance", "", 0);
        assert_eq!(
            decision,
            FaultDecision {
                latency_ms: 12,
                outcome: Some(FaultOutcome::TimeoutAfterCommit)
            }
        );
    }
}
