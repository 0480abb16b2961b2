//! Waiting for the signals that stop a long-running command (`sim`, `serve`).

use anyhow::Context;

/// Waits for SIGINT or SIGTERM and names the one that came.
pub async fn wait_for_signal() -> anyhow::Result<&'static str> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => {
            result.context("installing the SIGINT handler")?;
            Ok("SIGINT")
        }
        _ = terminate.recv() => Ok("SIGTERM"),
    }
}
