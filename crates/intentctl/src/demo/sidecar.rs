//! The sidecar of the demo: `intentctl serve` as a child process, started, and killed
//! with SIGKILL and started again on the same data directory.

use std::path::Path;
use std::process::Stdio;
use std::sync::PoisonError;
use std::time::Duration;

use anyhow::Context;
use tokio::io::AsyncBufReadExt;

use super::agents::Shared;
use super::CHILD_START_MS;

/// The sidecar child process and where it listens.
pub struct Sidecar {
    pub child: tokio::process::Child,
    pub base_url: String,
}

pub async fn start_sidecar(data: &Path, config: &Path) -> anyhow::Result<Sidecar> {
    let exe = std::env::current_exe().context("finding the intentctl binary")?;
    let mut child = tokio::process::Command::new(exe)
        .arg("serve")
        .arg("--data")
        .arg(data)
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("starting intentctl serve")?;
    let stdout = child.stdout.take().context("child stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_millis(CHILD_START_MS), lines.next_line())
        .await
        .context("intentctl serve did not print its address in time")??
        .context("intentctl serve exited before listening")?;
    let base_url = line
        .strip_prefix("listening ")
        .with_context(|| format!("unexpected first line from intentctl serve: {line:?}"))?
        .to_string();
    Ok(Sidecar { child, base_url })
}

pub async fn kill_and_restart(
    sidecar: &mut Sidecar,
    data: &Path,
    config: &Path,
    shared: &Shared,
) -> anyhow::Result<()> {
    // tokio's Child::kill sends SIGKILL on Unix: no drain, no flush, no goodbye.
    sidecar.child.kill().await.context("killing the sidecar")?;
    *sidecar = start_sidecar(data, config).await?;
    *shared
        .base_url
        .write()
        .unwrap_or_else(PoisonError::into_inner) = sidecar.base_url.clone();
    Ok(())
}
