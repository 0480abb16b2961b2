//! The driver loop: wakes at the earliest timer or when notified, starts a worker for
//! each intent that is due (unless its connector is paused), and starts compaction when
//! the log has grown.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::worker::{spawn, Start};
use super::{compaction, lock, Inner};

/// The driver looks at the log's size (to start a compaction) at least this often.
const COMPACTION_CHECK_MS: u64 = 1_000;

/// The driver loop: wakes at the earliest timer or when notified, starts due work.
pub(super) async fn drive(inner: Arc<Inner>) {
    loop {
        if inner.shutting_down.load(Ordering::Acquire) {
            return;
        }
        if inner.log.is_poisoned() {
            tracing::error!("the write-ahead log is poisoned: the engine stops driving intents until it is reopened");
            return;
        }
        let now = inner.clock.now_ms();
        let mut ready = Vec::new();
        let next_due = {
            let mut state = lock(&inner.state);
            while let Some(&(due, id)) = state.timers.first() {
                // Timers are wake-ups, not decisions (see below).
                if due > now {
                    break;
                }
                state.timers.pop_first();
                let Some(intent) = state.folded.intents.get(&id) else {
                    continue;
                };
                // A timer is only a wake-up: the intent's own due time decides. A timer set
                // for an older state, or deferred by a connector pause, is harmless.
                if intent.state.due_ms().is_none_or(|own_due| own_due > now)
                    || state.in_flight.contains(&id)
                {
                    continue;
                }
                if let Some(&until) = state.folded.paused_until_ms.get(&intent.spec.connector) {
                    if until > now {
                        state.timers.insert((until, id));
                        continue;
                    }
                }
                state.in_flight.insert(id);
                ready.push(id);
            }
            state.timers.first().map(|(due, _)| *due)
        };
        for id in ready {
            spawn(&inner, id, Start::Due);
        }
        compaction::maybe_compact(&inner, now);
        // Workers do not wake the driver when they end without setting a timer (a submit's
        // fast path never passes through it), so it looks at the log's size on its own.
        let wake_by = now.saturating_add(COMPACTION_CHECK_MS);
        let sleep = tokio::time::sleep_until(
            inner
                .clock
                .instant_at(next_due.map_or(wake_by, |due| due.min(wake_by))),
        );
        tokio::select! {
            _ = inner.wake.notified() => {}
            _ = sleep => {}
        }
    }
}
