//! Spending guards: per connector, a cap on the amount of one intent and on the total
//! accepted over a rolling window, checked at submit before anything is recorded. The
//! amount is reserved in the window by the same locked step that checks it (released if
//! the append fails), so concurrent submits cannot all pass one check. The window is
//! rebuilt from the logged `Submitted` records on replay, so a restarted runaway loop
//! cannot reset it.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Limits for one connector, in millionths of a unit (`"10.00"` = 10_000_000).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpendingGuard {
    pub per_intent_micros_max: Option<u64>,
    pub window_micros_max: Option<u64>,
    pub window_ms: u64,
}

/// The amounts accepted inside the window.
#[derive(Debug, Default)]
pub(crate) struct Window {
    entries: VecDeque<(u64, u64)>,
    total_micros: u64,
}

impl Window {
    pub(crate) fn record(&mut self, at_ms: u64, micros: u64) {
        self.entries.push_back((at_ms, micros));
        self.total_micros = self.total_micros.saturating_add(micros);
    }

    /// The amounts recorded, expired or not (tests look at what a restart rebuilt).
    #[cfg(test)]
    pub(crate) fn total_micros(&self) -> u64 {
        self.total_micros
    }

    /// Gives back an amount `record`ed at `at_ms` that was never accepted (its append
    /// failed). Nothing to give back if it already expired.
    pub(crate) fn release(&mut self, at_ms: u64, micros: u64) {
        let found = self
            .entries
            .iter()
            .rposition(|&entry| entry == (at_ms, micros));
        if let Some(index) = found {
            self.entries.remove(index);
            self.total_micros = self.total_micros.saturating_sub(micros);
        }
    }

    fn expire(&mut self, now_ms: u64, window_ms: u64) {
        while let Some(&(at_ms, micros)) = self.entries.front() {
            if at_ms.saturating_add(window_ms) > now_ms {
                break;
            }
            self.entries.pop_front();
            self.total_micros = self.total_micros.saturating_sub(micros);
        }
    }

    /// Checks `micros` against the guard; `Err` says which limit and by how much.
    pub(crate) fn check(
        &mut self,
        guard: &SpendingGuard,
        now_ms: u64,
        micros: u64,
    ) -> Result<(), String> {
        if let Some(max) = guard.per_intent_micros_max {
            if micros > max {
                return Err(format!(
                    "amount {} exceeds the per-intent limit {}",
                    units(micros),
                    units(max)
                ));
            }
        }
        if let Some(max) = guard.window_micros_max {
            self.expire(now_ms, guard.window_ms);
            let total = self.total_micros.saturating_add(micros);
            if total > max {
                return Err(format!(
                    "accepting {} would bring the total over the last {} s to {}, above the limit {}",
                    units(micros),
                    guard.window_ms / 1000,
                    units(total),
                    units(max)
                ));
            }
        }
        Ok(())
    }
}

/// Millionths as a decimal string (`10_500_000` → `10.5`).
pub fn units(micros: u64) -> String {
    let whole = micros / 1_000_000;
    let fraction = micros % 1_000_000;
    if fraction == 0 {
        whole.to_string()
    } else {
        format!("{whole}.{}", format!("{fraction:06}").trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_table() {
        let guard = SpendingGuard {
            per_intent_micros_max: Some(50_000_000),
            window_micros_max: Some(100_000_000),
            window_ms: 60_000,
        };
        let mut window = Window::default();
        let mut check = |now: u64, micros: u64, ok: bool| {
            let result = window.check(&guard, now, micros);
            assert_eq!(result.is_ok(), ok, "{now} {micros}: {result:?}");
            if result.is_ok() {
                window.record(now, micros);
            }
        };
        check(0, 40_000_000, true);
        check(1_000, 60_000_000, false); // over the per-intent cap
        check(2_000, 50_000_000, true);
        check(3_000, 20_000_000, false); // 110 > 100 in the window
        check(60_000, 20_000_000, true); // the first 40 expired
        window.release(60_000, 20_000_000); // its append failed: given back
        window.release(60_000, 20_000_000); // nothing more to give back
        assert_eq!(window.total_micros(), 50_000_000);
        window.release(0, 40_000_000); // expired already: nothing to give back
        assert_eq!(window.total_micros(), 50_000_000);
        assert_eq!(units(10_500_000), "10.5");
        assert_eq!(units(16_800_000), "16.8");
        assert_eq!(units(7), "0.000007");
    }
}
