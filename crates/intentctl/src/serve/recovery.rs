//! A poisoned log (disk full, or any failed write or sync; G7) and the way back: the engine
//! being served sits in an [`EngineSlot`]; a background task stops a poisoned engine and
//! reopens it on the same data directory every [`RECOVERY_INTERVAL_MS`] until a space
//! probe and the reopen succeed.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use scheduler::Engine;
use tokio::sync::watch;

use crate::config::ServeConfig;

/// How often the recovery task checks the log, and waits between attempts to reopen it.
pub const RECOVERY_INTERVAL_MS: u64 = 1_000;
/// How long a poisoned engine may take to stop gracefully before it is stopped at once.
const POISONED_SHUTDOWN_MS_MAX: u64 = 5_000;
/// Bytes written and synced in the data directory to check that space is back before
/// reopening (so a still-full disk is not reopened only to be poisoned again).
const SPACE_PROBE_BYTES: usize = 256 * 1024;
const SPACE_PROBE_FILE_NAME: &str = ".space-probe";

/// The engine being served; swapped for a reopened one after its log is poisoned.
pub struct EngineSlot {
    current: RwLock<Engine>,
}

impl EngineSlot {
    pub fn new(engine: Engine) -> EngineSlot {
        EngineSlot {
            current: RwLock::new(engine),
        }
    }

    pub fn get(&self) -> Engine {
        match self.current.read() {
            Ok(engine) => engine.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set(&self, engine: Engine) {
        match self.current.write() {
            Ok(mut current) => *current = engine,
            Err(poisoned) => *poisoned.into_inner() = engine,
        }
    }
}

/// Opens the engine on `data` with `config`. A reopen after a poisoned log never salvages:
/// `recovery = "salvage"` is an operator's choice for one start, not something to do
/// unasked after a full disk.
pub async fn open_engine(
    config: &ServeConfig,
    data: &Path,
    reopen: bool,
) -> anyhow::Result<(Engine, scheduler::OpenReport)> {
    let mut engine_config = config.engine_config(data)?;
    if reopen && engine_config.log.recovery_mode == intent_log::RecoveryMode::Salvage {
        tracing::warn!(
            "reopening after a poisoned log with the default recovery mode, not salvage"
        );
        engine_config.log.recovery_mode = intent_log::RecoveryMode::TolerateTornTail;
    }
    let opened = Engine::open(engine_config, config.connector_settings()?)
        .await
        .context("opening the engine")?;
    Ok(opened)
}

/// Writes, syncs and deletes a small file in `data`: fails while the disk is still full.
async fn probe_space(data: &Path) -> anyhow::Result<()> {
    let path = data.join(SPACE_PROBE_FILE_NAME);
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let written = std::fs::File::create(&path).and_then(|mut file| {
            std::io::Write::write_all(&mut file, &[0u8; SPACE_PROBE_BYTES])?;
            file.sync_all()
        });
        // The probe's verdict is `written`; a leftover probe file is overwritten next time.
        let _ = std::fs::remove_file(&path);
        written.with_context(|| format!("space probe {}", path.display()))
    })
    .await
    .context("space probe task")?
}

/// Sleeps one interval; false when the server is stopping instead.
async fn pause(shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_millis(RECOVERY_INTERVAL_MS)) => true,
        _ = shutdown.wait_for(|stopping| *stopping) => false,
    }
}

/// Watches the log; once it is poisoned, stops the engine and reopens it on the same data
/// until that works (G7: the log is never written again through the poisoned handle).
pub async fn recover_poisoned_log(
    slot: Arc<EngineSlot>,
    config: ServeConfig,
    data: PathBuf,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        if !pause(&mut shutdown).await {
            return;
        }
        let engine = slot.get();
        if !engine.is_log_poisoned() {
            continue;
        }
        tracing::error!(
            "the write-ahead log is poisoned (a write or sync failed; disk full?): refusing \
             new intents, answering reads from memory, stopping the engine to reopen it"
        );
        let graceful = Duration::from_millis(POISONED_SHUTDOWN_MS_MAX);
        if tokio::time::timeout(graceful, engine.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("the poisoned engine did not stop in time; stopping it at once");
        }
        // Stops whatever is left and releases the log's lock and the index.
        engine.kill();
        if !reopen_until_it_works(&slot, &config, &data, &mut shutdown).await {
            return;
        }
    }
}

/// Probes space and reopens until both work (then the slot holds the new engine and this
/// returns true), or until the server stops (false).
async fn reopen_until_it_works(
    slot: &EngineSlot,
    config: &ServeConfig,
    data: &Path,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    let mut attempts: u64 = 0;
    loop {
        attempts += 1;
        let reopened = match probe_space(data).await {
            Ok(()) => open_engine(config, data, true).await,
            Err(error) => Err(error),
        };
        match reopened {
            Ok((engine, report)) => {
                slot.set(engine);
                tracing::warn!(
                    attempts,
                    intents = report.intents,
                    recovered_in_flight = report.recovered_in_flight,
                    "the write-ahead log recovered: the engine is reopened and accepts intents again"
                );
                return true;
            }
            Err(error) => {
                tracing::warn!(
                    attempts,
                    error = format!("{error:#}"),
                    "reopening the engine failed; still refusing intents, retrying"
                );
            }
        }
        if !pause(shutdown).await {
            return false;
        }
    }
}
