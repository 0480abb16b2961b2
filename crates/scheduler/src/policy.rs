//! Retry and status-check policies: attempts, base delay, multiplier, cap, jitter and an
//! overall deadline, with the Purple Flea seed's presets. Pure arithmetic; the random
//! jitter is passed in so tests and replays are deterministic.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How an intent is re-sent after a failure that provably did not execute.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts_max: u32,
    pub delay_base_ms: u64,
    pub multiplier: f64,
    pub delay_max_ms: u64,
    /// ± this fraction of the delay, at random (0.25 = ±25%).
    pub jitter: f64,
    /// No new attempt starts later than this after submit.
    pub deadline_ms: u64,
}

impl RetryPolicy {
    /// The seed's `AGGRESSIVE_RETRY`: 10 attempts, 0.5 s base, 30 s cap.
    pub fn aggressive() -> RetryPolicy {
        RetryPolicy {
            attempts_max: 10,
            delay_base_ms: 500,
            multiplier: 2.0,
            delay_max_ms: 30_000,
            jitter: 0.25,
            deadline_ms: 3_600_000,
        }
    }

    /// The seed's `CONSERVATIVE_RETRY`: 3 attempts, 2 s base, 60 s cap.
    pub fn conservative() -> RetryPolicy {
        RetryPolicy {
            attempts_max: 3,
            delay_base_ms: 2_000,
            multiplier: 2.0,
            delay_max_ms: 60_000,
            jitter: 0.25,
            deadline_ms: 3_600_000,
        }
    }

    /// The seed's `RATE_LIMIT_RETRY`: 20 attempts, 5 s base, 120 s cap.
    pub fn rate_limit() -> RetryPolicy {
        RetryPolicy {
            attempts_max: 20,
            delay_base_ms: 5_000,
            multiplier: 2.0,
            delay_max_ms: 120_000,
            jitter: 0.25,
            deadline_ms: 6 * 3_600_000,
        }
    }

    /// A preset by name (`aggressive`, `conservative`, `rate_limit`).
    pub fn preset(name: &str) -> Option<RetryPolicy> {
        match name {
            "aggressive" => Some(RetryPolicy::aggressive()),
            "conservative" => Some(RetryPolicy::conservative()),
            "rate_limit" | "rate-limit" => Some(RetryPolicy::rate_limit()),
            _ => None,
        }
    }

    /// The delay before attempt `after_attempt + 1`, given a uniform random `unit` in [0, 1).
    pub fn delay_ms(&self, after_attempt: u32, unit: f64) -> u64 {
        backoff_ms(
            self.delay_base_ms,
            self.multiplier,
            self.delay_max_ms,
            self.jitter,
            after_attempt.saturating_sub(1),
            unit,
        )
    }
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy::aggressive()
    }
}

/// How an ambiguous intent is checked before it is dead-lettered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatusCheckPolicy {
    /// Checks that answer "unknown" (or "still pending") before the intent is dead-lettered.
    pub checks_max: u32,
    pub delay_base_ms: u64,
    pub multiplier: f64,
    pub delay_max_ms: u64,
    pub jitter: f64,
}

impl Default for StatusCheckPolicy {
    fn default() -> StatusCheckPolicy {
        StatusCheckPolicy {
            checks_max: 8,
            delay_base_ms: 1_000,
            multiplier: 2.0,
            delay_max_ms: 60_000,
            jitter: 0.25,
        }
    }
}

impl StatusCheckPolicy {
    /// The delay before check `checks_done + 1`.
    pub fn delay_ms(&self, checks_done: u32, unit: f64) -> u64 {
        backoff_ms(
            self.delay_base_ms,
            self.multiplier,
            self.delay_max_ms,
            self.jitter,
            checks_done,
            unit,
        )
    }
}

/// `min(base * multiplier^step, cap)` with ±`jitter` applied, never negative, never above
/// the cap plus its jitter.
pub fn backoff_ms(
    base_ms: u64,
    multiplier: f64,
    cap_ms: u64,
    jitter: f64,
    step: u32,
    unit: f64,
) -> u64 {
    let raw = (base_ms as f64) * multiplier.max(1.0).powi(step.min(64) as i32);
    let capped = raw.min(cap_ms as f64);
    let spread = capped * jitter.clamp(0.0, 1.0);
    let jittered = capped - spread + 2.0 * spread * unit.clamp(0.0, 1.0);
    jittered.max(0.0) as u64
}

/// Converts a duration to whole milliseconds, saturating.
pub fn millis(duration: Duration) -> u64 {
    duration.as_millis().min(u128::from(u64::MAX)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_table() {
        let check = |step: u32, unit: f64, expected: u64| {
            assert_eq!(
                backoff_ms(1000, 2.0, 60_000, 0.25, step, unit),
                expected,
                "step {step} unit {unit}"
            )
        };
        check(0, 0.5, 1000);
        check(1, 0.5, 2000);
        check(3, 0.5, 8000);
        check(0, 0.0, 750);
        check(0, 1.0, 1250);
        check(10, 0.5, 60_000);
        check(200, 1.0, 75_000);
    }

    #[test]
    fn presets_match_the_seed() {
        let check = |name: &str, attempts: u32, base: u64, cap: u64| {
            let policy = RetryPolicy::preset(name).unwrap();
            assert_eq!(
                (
                    policy.attempts_max,
                    policy.delay_base_ms,
                    policy.delay_max_ms
                ),
                (attempts, base, cap),
                "{name}"
            );
        };
        check("aggressive", 10, 500, 30_000);
        check("conservative", 3, 2_000, 60_000);
        check("rate_limit", 20, 5_000, 120_000);
        assert!(RetryPolicy::preset("yolo").is_none());
    }
}
