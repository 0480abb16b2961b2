//! Time, injectable: wall-clock milliseconds for records, tokio instants for timers. With
//! tokio's paused clock (`start_paused`) tests run hours of backoff in milliseconds.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, advancing with tokio's clock.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    anchor_wall_ms: u64,
    anchor: tokio::time::Instant,
}

impl Clock {
    /// Anchored at the system's wall clock now.
    pub fn system() -> Clock {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Clock::anchored_at(wall)
    }

    /// Anchored at a fixed wall time (deterministic tests).
    pub fn anchored_at(anchor_wall_ms: u64) -> Clock {
        Clock {
            anchor_wall_ms,
            anchor: tokio::time::Instant::now(),
        }
    }

    pub fn now_ms(&self) -> u64 {
        self.anchor_wall_ms
            .saturating_add(self.anchor.elapsed().as_millis() as u64)
    }

    /// The tokio instant at which the wall clock reads `wall_ms`.
    pub fn instant_at(&self, wall_ms: u64) -> tokio::time::Instant {
        let offset = wall_ms.saturating_sub(self.anchor_wall_ms);
        self.anchor + std::time::Duration::from_millis(offset)
    }
}
