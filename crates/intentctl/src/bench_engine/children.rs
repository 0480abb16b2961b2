//! The bench's child processes, both this same binary: the Purple Flea simulator
//! (`intentctl sim`), so the bench process's CPU is the engine and its clients only, and
//! the sidecar (`intentctl serve`) for the HTTP rows. Both bind 127.0.0.1 on a free port
//! and are killed when dropped.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

/// Time a child may take to print its address.
const CHILD_START_MS: u64 = 15_000;
/// The simulator's starting balance: enough for many millions of bets of [`super::BET_AMOUNT`].
const SIM_BALANCE: &str = "1000000000.00";

/// A child process and the base URL it serves.
pub struct ChildServer {
    pub child: Child,
    pub base_url: String,
    /// Kept open so the child never writes into a closed pipe.
    _stdout: Lines<BufReader<ChildStdout>>,
}

impl ChildServer {
    /// The child's process id (for /proc).
    pub fn pid(&self) -> anyhow::Result<u32> {
        self.child.id().context("the child has exited")
    }

    /// Stops the child with SIGKILL and reaps it.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.child.kill().await.context("stopping a child")
    }
}

fn command(arguments: &[&str]) -> anyhow::Result<tokio::process::Command> {
    let exe = std::env::current_exe().context("finding the intentctl binary")?;
    let mut command = tokio::process::Command::new(exe);
    command
        .args(arguments)
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    Ok(command)
}

/// Spawns `command` and reads its first line of output.
async fn spawn(
    mut command: tokio::process::Command,
    what: &str,
) -> anyhow::Result<(Child, String, Lines<BufReader<ChildStdout>>)> {
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {what}"))?;
    let stdout = child.stdout.take().context("child stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_millis(CHILD_START_MS), lines.next_line())
        .await
        .with_context(|| format!("{what} did not print its address in time"))??
        .with_context(|| format!("{what} exited before listening"))?;
    Ok((child, line, lines))
}

/// `intentctl sim` with no faults and a large balance; its Purple Flea URL.
pub async fn start_simulator() -> anyhow::Result<ChildServer> {
    let command = command(&["sim", "--json", "--balance", SIM_BALANCE])?;
    let (child, line, stdout) = spawn(command, "intentctl sim").await?;
    let urls: serde_json::Value = serde_json::from_str(&line)
        .with_context(|| format!("intentctl sim printed {line:?}, not JSON"))?;
    let base_url = urls["purple_flea"]
        .as_str()
        .with_context(|| format!("intentctl sim printed no purple_flea URL: {line}"))?
        .to_string();
    Ok(ChildServer {
        child,
        base_url,
        _stdout: stdout,
    })
}

/// `intentctl serve` on a fresh data directory, with the default configuration except the
/// connector's URL (only Purple Flea is configured).
pub async fn start_sidecar(data: &Path, purple_flea_url: &str) -> anyhow::Result<ChildServer> {
    std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
    let config_path = data.with_extension("toml");
    let config =
        format!("[[connectors]]\nkind = \"purple_flea\"\nbase_url = \"{purple_flea_url}\"\n");
    std::fs::write(&config_path, config)
        .with_context(|| format!("writing {}", config_path.display()))?;
    let data_text = data.to_str().context("the data directory is not UTF-8")?;
    let config_text = config_path
        .to_str()
        .context("the config path is not UTF-8")?;
    let command = command(&[
        "serve",
        "--data",
        data_text,
        "--listen",
        "127.0.0.1:0",
        "--config",
        config_text,
    ])?;
    let (child, line, stdout) = spawn(command, "intentctl serve").await?;
    let base_url = line
        .strip_prefix("listening ")
        .with_context(|| format!("unexpected first line from intentctl serve: {line:?}"))?
        .to_string();
    Ok(ChildServer {
        child,
        base_url,
        _stdout: stdout,
    })
}
