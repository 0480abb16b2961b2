//! The signals that stop a long-running command (`sim`, `serve`). The handlers are
//! installed before the command announces itself (`listening ...`), so a SIGTERM that
//! follows the announcement at once is a graceful stop, not the default action (death
//! without draining).

use anyhow::Context;
use tokio::signal::unix::{signal, Signal, SignalKind};

/// SIGINT and SIGTERM, caught from the moment this is made.
pub struct Signals {
    interrupt: Signal,
    terminate: Signal,
}

impl Signals {
    pub fn install() -> anyhow::Result<Signals> {
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            terminate: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
        })
    }

    /// Waits for SIGINT or SIGTERM and names the one that came.
    pub async fn wait(mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}
