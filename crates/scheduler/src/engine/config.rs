//! How an engine is configured: the engine's options ([`EngineConfig`]), each connector's
//! ([`ConnectorSettings`]), and the checks that refuse a configuration that could pay
//! twice or forget a key the provider still remembers.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use connectors::Connector;
use intent_log::FileSystem;
use tokio::sync::Semaphore;

use super::ConnectorEntry;
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::guards::SpendingGuard;
use crate::machine;
use crate::policy::{millis, RetryPolicy, StatusCheckPolicy};

/// Largest canonical JSON of one intent's params.
pub const PARAMS_BYTES_MAX: usize = 64 * 1024;
/// How long finished intents stay in the index by default: 30 days.
pub const HISTORY_RETENTION_MS_DEFAULT: u64 = 30 * 24 * 3_600_000;

/// One connector and how the engine drives it.
#[derive(Clone)]
pub struct ConnectorSettings {
    pub connector: Arc<dyn Connector>,
    /// Attempts and status checks in flight at once for this connector.
    pub concurrency: usize,
    pub retry: RetryPolicy,
    pub guard: Option<SpendingGuard>,
    /// How long the provider remembers an idempotency key; `None` takes the connector's
    /// own `key_lifetime()`. Set it from the provider's documentation or contract: the
    /// engine never re-sends a key older than this less `key_lifetime_margin`.
    pub key_lifetime: Option<Duration>,
    /// How long before the key lifetime ends the engine stops re-sending; `None` takes
    /// [`machine::key_lifetime_margin_default`] (the larger of 5 minutes and a tenth of the
    /// lifetime). It must cover the request timeout and the clock skew to the provider.
    pub key_lifetime_margin: Option<Duration>,
}

impl ConnectorSettings {
    pub fn new(connector: Arc<dyn Connector>) -> ConnectorSettings {
        ConnectorSettings {
            connector,
            concurrency: 32,
            retry: RetryPolicy::default(),
            guard: None,
            key_lifetime: None,
            key_lifetime_margin: None,
        }
    }

    /// The key lifetime in force: the setting, else the connector's own.
    pub fn key_lifetime_ms(&self) -> u64 {
        millis(
            self.key_lifetime
                .unwrap_or_else(|| self.connector.key_lifetime()),
        )
    }

    /// The safety margin in force before the key lifetime ends.
    pub fn key_lifetime_margin_ms(&self) -> u64 {
        match self.key_lifetime_margin {
            Some(margin) => millis(margin),
            None => machine::key_lifetime_margin_default(self.key_lifetime_ms()),
        }
    }
}

/// Finished intents leave memory in batches of this many by default.
pub(super) const RETIRE_BATCH_DEFAULT: usize = 1024;

/// How an engine is opened.
#[derive(Clone)]
pub struct EngineConfig {
    /// Holds `wal/` (the log).
    pub data_dir: PathBuf,
    pub log: intent_log::Options,
    pub status_checks: StatusCheckPolicy,
    /// Finished intents (and their keys) stay known this long after they finish; a key
    /// resubmitted later is a new intent.
    pub key_retention_ms: u64,
    /// Finished intents (not dead letters) stay in the index this long after their last
    /// update, then history retention removes them (`history::prune_history`). Default 30
    /// days; at least `key_retention_ms` and every guard window, so nothing still in memory
    /// is pruned.
    pub history_retention_ms: u64,
    /// Compact when the log is larger than this.
    pub compact_log_bytes: u64,
    /// Time source (tests anchor it and pause tokio's clock).
    pub clock: Option<Clock>,
    /// Seed of the jitter; random when `None`.
    pub seed: Option<u64>,
    /// The file system of the log (tests pass a simulated one).
    pub fs: Option<Arc<dyn FileSystem>>,
    /// Keep the sled index in `<data_dir>/index/` (history beyond the key-retention
    /// window). It uses the real disk: turn it off with a simulated file system.
    pub index: bool,
    /// With the index on, finished intents leave memory in batches of this many (0: only
    /// at compaction): the index answers for them (lookups, and dedup of their keys, G4)
    /// and the next checkpoint carries them (`engine/retire.rs`). With the index off they
    /// stay in memory until compaction evicts them after the key-retention window.
    pub retire_batch: usize,
    /// Tests on tokio's paused clock only: while the engine waits for the log's writer
    /// thread, hold the clock still (a blocking task inhibits auto-advance), so simulated
    /// time does not race ahead of real I/O.
    pub(crate) hold_paused_clock_during_io: bool,
}

impl EngineConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> EngineConfig {
        EngineConfig {
            data_dir: data_dir.into(),
            log: intent_log::Options::default(),
            status_checks: StatusCheckPolicy::default(),
            key_retention_ms: 24 * 3_600_000,
            history_retention_ms: HISTORY_RETENTION_MS_DEFAULT,
            compact_log_bytes: 256 << 20,
            clock: None,
            seed: None,
            fs: None,
            index: true,
            retire_batch: RETIRE_BATCH_DEFAULT,
            hold_paused_clock_during_io: false,
        }
    }
}

/// Checks each connector's settings and the retention windows, and gives each connector
/// its concurrency permits.
pub(super) fn register(
    config: &EngineConfig,
    connectors: Vec<ConnectorSettings>,
) -> Result<HashMap<String, ConnectorEntry>> {
    let mut by_name = HashMap::new();
    for settings in connectors {
        if settings.concurrency == 0 {
            return Err(Error::Config(format!(
                "connector {} has concurrency 0",
                settings.connector.name()
            )));
        }
        check_key_lifetime(config, &settings)?;
        let name = settings.connector.name().to_string();
        let permits = Arc::new(Semaphore::new(settings.concurrency));
        if by_name
            .insert(name.clone(), ConnectorEntry { settings, permits })
            .is_some()
        {
            return Err(Error::Config(format!("connector {name} registered twice")));
        }
    }
    check_history_retention(config, &by_name)?;
    Ok(by_name)
}

/// Refuses a key lifetime of zero, and a key retention shorter than the key lifetime. The
/// engine must remember a key at least as long as the provider does: if it forgot first,
/// a resubmit of the same key would become a second intent, sent again, and the provider
/// would answer it as a replay of the first (or, with another payload, as a conflict), so
/// the agent would see a new intent "succeed" without executing, or be refused. Retention
/// counts from when an intent finished, which is after its last request, so retention >=
/// lifetime means the provider has forgotten the key before the engine does.
pub(super) fn check_key_lifetime(
    config: &EngineConfig,
    settings: &ConnectorSettings,
) -> Result<()> {
    let name = settings.connector.name();
    let lifetime_ms = settings.key_lifetime_ms();
    if lifetime_ms == 0 {
        return Err(Error::Config(format!(
            "connector {name} has a key lifetime of 0: every re-send would be refused"
        )));
    }
    if config.key_retention_ms < lifetime_ms {
        return Err(Error::Config(format!(
            "key_retention ({} ms) is shorter than connector {name}'s key lifetime ({lifetime_ms} ms): the engine would forget keys the provider still remembers",
            config.key_retention_ms
        )));
    }
    Ok(())
}

/// History retention may not be shorter than key retention or any guard window: an intent
/// pruned from the index must long since have been evictable from memory (history.rs).
pub(super) fn check_history_retention(
    config: &EngineConfig,
    connectors: &HashMap<String, ConnectorEntry>,
) -> Result<()> {
    let guard_window_ms = connectors
        .values()
        .filter_map(|entry| entry.settings.guard.as_ref().map(|guard| guard.window_ms))
        .max()
        .unwrap_or(0);
    let floor_ms = config.key_retention_ms.max(guard_window_ms);
    if config.history_retention_ms < floor_ms {
        return Err(Error::Config(format!(
            "history_retention_ms ({}) is shorter than key_retention_ms ({}) or a guard \
             window ({guard_window_ms} ms)",
            config.history_retention_ms, config.key_retention_ms
        )));
    }
    Ok(())
}
