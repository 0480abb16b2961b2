//! The `intentctl serve` configuration file (TOML): connectors, log sync mode, key
//! retention and key lifetimes, log segment size, compaction threshold and recovery mode.
//! Every value that could lose an intent or pay twice is checked before the engine
//! opens; a refused file names the key and the reason.
//!
//! ```toml
//! sync = "data"                 # data | all | none (benchmarks only, needs the next key)
//! # unsafe_no_sync_benchmark_only = true
//! key_retention_hours = 24      # >= every connector's key_lifetime_hours
//! history_retention_hours = 720   # finished intents leave the index after this (>= key retention)
//! segment_bytes = 67_108_864    # log segment size; at least 1 MiB + 116 bytes
//! compact_log_bytes = 268_435_456   # compact once the log is larger than this
//! recovery = "tolerate_torn_tail"   # tolerate_torn_tail | absolute | salvage (operator-only)
//! status_check_delay_base_ms = 1000
//!
//! [[connectors]]
//! kind = "purple_flea"          # purple_flea | aeeron
//! base_url = "http://127.0.0.1:8080"
//! api_key_env = "PURPLE_FLEA_API_KEY"   # must be set when named
//! connect_timeout_ms = 5000
//! request_timeout_ms = 30000
//! retry = "aggressive"          # aggressive | conservative | rate_limit
//! concurrency = 32
//! key_lifetime_hours = 24       # how long the provider remembers an idempotency key
//! # key_lifetime_margin_ms = 8640000   # default: max(5 min, lifetime / 10)
//! [connectors.guard]
//! per_intent_max = "100.00"
//! window_max = "1000.00"
//! window_ms = 3600000
//! ```

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use connectors::{AeeronConnector, HttpConnectorConfig, PurpleFleaConnector};
use scheduler::{ConnectorSettings, EngineConfig, RetryPolicy, SpendingGuard};
use serde::Deserialize;

/// Connector timeouts when the file does not say.
const CONNECT_TIMEOUT_MS_DEFAULT: u64 = 5_000;
const REQUEST_TIMEOUT_MS_DEFAULT: u64 = 30_000;
/// Attempts in flight per connector when the file does not say.
const CONCURRENCY_DEFAULT: usize = 32;
const KEY_RETENTION_HOURS_DEFAULT: u64 = 24;
/// 30 days, the engine's default (`scheduler::HISTORY_RETENTION_MS_DEFAULT`).
const HISTORY_RETENTION_HOURS_DEFAULT: u64 = 30 * 24;
const RETRY_PRESET_DEFAULT: &str = "aggressive";
const MS_PER_HOUR: u64 = 3_600_000;
const RECOVERY_DEFAULT: &str = "tolerate_torn_tail";
/// The smallest `segment_bytes`: a segment must hold its header and one batch, and a batch
/// one largest record. The record limit stays at the log's default (1 MiB) because one
/// record can carry a provider's whole response; a smaller segment would make such an
/// intent unrecordable, so serve refuses it.
pub const SEGMENT_BYTES_MIN: u64 = (intent_log::RECORD_BYTES_MAX_DEFAULT
    + intent_log::format::FRAME_HEADER_BYTES
    + intent_log::format::BATCH_HEADER_BYTES
    + intent_log::format::SEGMENT_HEADER_BYTES) as u64;

/// The whole file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    #[serde(default = "sync_default")]
    pub sync: String,
    /// The explicit opt-in that `sync = "none"` needs: without fsync an acknowledged
    /// intent can vanish on power loss (G1 is off).
    #[serde(default)]
    pub unsafe_no_sync_benchmark_only: bool,
    #[serde(default = "key_retention_hours_default")]
    pub key_retention_hours: u64,
    /// Finished intents (not dead letters) leave the index this long after their last
    /// update; at least `key_retention_hours`.
    #[serde(default = "history_retention_hours_default")]
    pub history_retention_hours: u64,
    /// First delay between status checks of an ambiguous intent (doubles after each).
    #[serde(default)]
    pub status_check_delay_base_ms: Option<u64>,
    /// Size of one log segment; the log rotates to a new file before passing it.
    #[serde(default = "segment_bytes_default")]
    pub segment_bytes: u64,
    /// The engine compacts the log once it is larger than this.
    #[serde(default = "compact_log_bytes_default")]
    pub compact_log_bytes: u64,
    /// What opening the log does with bytes that do not verify.
    #[serde(default = "recovery_default")]
    pub recovery: String,
    #[serde(default)]
    pub connectors: Vec<ConnectorConfig>,
}

/// One `[[connectors]]` table.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorConfig {
    pub kind: String,
    pub base_url: String,
    /// The environment variable holding the API key (the key itself never goes in the
    /// file). When named, it must be set: a typo would otherwise run without a key.
    #[serde(default)]
    pub api_key_env: Option<String>,
    #[serde(default = "connect_timeout_ms_default")]
    pub connect_timeout_ms: u64,
    #[serde(default = "request_timeout_ms_default")]
    pub request_timeout_ms: u64,
    #[serde(default = "retry_default")]
    pub retry: String,
    /// Overrides the preset's first backoff delay.
    #[serde(default)]
    pub retry_delay_base_ms: Option<u64>,
    #[serde(default = "concurrency_default")]
    pub concurrency: usize,
    /// How long the provider remembers an idempotency key (the connector's default, 24
    /// hours, when absent). Take it from the provider's documentation or contract.
    #[serde(default)]
    pub key_lifetime_hours: Option<u64>,
    /// No re-send starts within this of the key lifetime's end; it must exceed the
    /// connect and request timeouts together. Default: max(5 minutes, lifetime / 10).
    #[serde(default)]
    pub key_lifetime_margin_ms: Option<u64>,
    #[serde(default)]
    pub guard: Option<GuardConfig>,
}

/// An optional spending guard; amounts are decimal strings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardConfig {
    #[serde(default)]
    pub per_intent_max: Option<String>,
    #[serde(default)]
    pub window_max: Option<String>,
    #[serde(default = "window_ms_default")]
    pub window_ms: u64,
}

fn sync_default() -> String {
    "data".to_string()
}
fn key_retention_hours_default() -> u64 {
    KEY_RETENTION_HOURS_DEFAULT
}
fn segment_bytes_default() -> u64 {
    intent_log::SEGMENT_BYTES_DEFAULT
}
fn compact_log_bytes_default() -> u64 {
    EngineConfig::new("").compact_log_bytes
}
fn recovery_default() -> String {
    RECOVERY_DEFAULT.to_string()
}
fn history_retention_hours_default() -> u64 {
    HISTORY_RETENTION_HOURS_DEFAULT
}
fn connect_timeout_ms_default() -> u64 {
    CONNECT_TIMEOUT_MS_DEFAULT
}
fn request_timeout_ms_default() -> u64 {
    REQUEST_TIMEOUT_MS_DEFAULT
}
fn retry_default() -> String {
    RETRY_PRESET_DEFAULT.to_string()
}
fn concurrency_default() -> usize {
    CONCURRENCY_DEFAULT
}
fn window_ms_default() -> u64 {
    MS_PER_HOUR
}

impl ServeConfig {
    /// Reads and checks a file.
    pub fn load(path: &Path) -> anyhow::Result<ServeConfig> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        ServeConfig::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    /// Parses and checks a file's text (the environment is read later, when connectors
    /// are built).
    pub fn parse(text: &str) -> anyhow::Result<ServeConfig> {
        let config: ServeConfig = toml::from_str(text)?;
        config.validate()?;
        config.log_options()?;
        if config.compact_log_bytes == 0 {
            bail!("compact_log_bytes must be greater than 0");
        }
        if config.history_retention_hours < config.key_retention_hours {
            bail!(
                "history_retention_hours ({}) must be at least key_retention_hours ({})",
                config.history_retention_hours,
                config.key_retention_hours
            );
        }
        Ok(config)
    }

    /// No file: one connector of each kind at the given URLs (simulators by default). An
    /// API key is read from the usual variable when it is set, and not required.
    pub fn defaults(purple_flea_url: &str, aeeron_url: &str) -> ServeConfig {
        let connector = |kind: &str, base_url: &str, api_key_env: &str| ConnectorConfig {
            kind: kind.to_string(),
            base_url: base_url.to_string(),
            api_key_env: std::env::var(api_key_env)
                .ok()
                .filter(|value| !value.trim().is_empty())
                .map(|_| api_key_env.to_string()),
            connect_timeout_ms: CONNECT_TIMEOUT_MS_DEFAULT,
            request_timeout_ms: REQUEST_TIMEOUT_MS_DEFAULT,
            retry: RETRY_PRESET_DEFAULT.to_string(),
            retry_delay_base_ms: None,
            concurrency: CONCURRENCY_DEFAULT,
            key_lifetime_hours: None,
            key_lifetime_margin_ms: None,
            guard: None,
        };
        ServeConfig {
            sync: sync_default(),
            unsafe_no_sync_benchmark_only: false,
            key_retention_hours: KEY_RETENTION_HOURS_DEFAULT,
            history_retention_hours: HISTORY_RETENTION_HOURS_DEFAULT,
            status_check_delay_base_ms: None,
            segment_bytes: segment_bytes_default(),
            compact_log_bytes: compact_log_bytes_default(),
            recovery: recovery_default(),
            connectors: vec![
                connector(
                    "purple_flea",
                    purple_flea_url,
                    connectors::PURPLE_FLEA_API_KEY_VARIABLE,
                ),
                connector("aeeron", aeeron_url, connectors::AEERON_API_KEY_VARIABLE),
            ],
        }
    }

    /// Refuses what could lose an intent or pay twice; each message names the key.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.sync_mode()? == intent_log::SyncMode::NoSyncBenchmarkOnly
            && !self.unsafe_no_sync_benchmark_only
        {
            bail!("sync = \"none\" never syncs the log: an acknowledged intent can be lost on power failure (G1 off). Only for benchmarks, and only with unsafe_no_sync_benchmark_only = true as well");
        }
        if self.key_retention_hours == 0 {
            bail!("key_retention_hours is 0: finished intents and their keys would be forgotten at once, so a resubmitted key would be sent again as a new intent");
        }
        if self.status_check_delay_base_ms == Some(0) {
            bail!("status_check_delay_base_ms is 0: an ambiguous intent's status checks would run back to back and dead-letter it at once");
        }
        if self.connectors.is_empty() {
            bail!("no [[connectors]] table: the engine would accept no intent");
        }
        for (number, connector) in self.connectors.iter().enumerate() {
            connector
                .validate(self.key_retention_hours)
                .with_context(|| format!("connectors[{number}] ({})", connector.kind))?;
            if self.connectors[..number]
                .iter()
                .any(|earlier| earlier.kind == connector.kind)
            {
                bail!(
                    "connectors[{number}]: kind {:?} appears twice; one table per provider",
                    connector.kind
                );
            }
        }
        Ok(())
    }

    fn sync_mode(&self) -> anyhow::Result<intent_log::SyncMode> {
        Ok(match self.sync.as_str() {
            "data" => intent_log::SyncMode::Data,
            "all" => intent_log::SyncMode::All,
            "none" => intent_log::SyncMode::NoSyncBenchmarkOnly,
            other => bail!("sync must be data, all or none, not {other:?}"),
        })
    }

    fn recovery_mode(&self) -> anyhow::Result<intent_log::RecoveryMode> {
        Ok(match self.recovery.as_str() {
            "tolerate_torn_tail" => intent_log::RecoveryMode::TolerateTornTail,
            "absolute" => intent_log::RecoveryMode::Absolute,
            "salvage" => intent_log::RecoveryMode::Salvage,
            other => {
                bail!("recovery must be tolerate_torn_tail, absolute or salvage, not {other:?}")
            }
        })
    }

    /// The log's options. `intent_log::Options::validate` is private to the log, so its
    /// size rules are mirrored here to refuse a bad file before anything is opened: the
    /// batch limit shrinks with the segment (a segment holds its header and one batch), and
    /// the record limit stays at the log's default.
    fn log_options(&self) -> anyhow::Result<intent_log::Options> {
        if self.segment_bytes < SEGMENT_BYTES_MIN {
            bail!(
                "segment_bytes must be at least {SEGMENT_BYTES_MIN} (one largest record of {} bytes \
                 plus its frame and segment headers), not {}",
                intent_log::RECORD_BYTES_MAX_DEFAULT,
                self.segment_bytes
            );
        }
        let batch_room = self.segment_bytes
            - (intent_log::format::SEGMENT_HEADER_BYTES + intent_log::format::BATCH_HEADER_BYTES)
                as u64;
        let mut options = intent_log::Options {
            sync_mode: self.sync_mode()?,
            recovery_mode: self.recovery_mode()?,
            segment_bytes: self.segment_bytes,
            // Segments of synced zeros, overwritten in place: an append's fdatasync has no
            // file size to journal (docs/wal-format.md, "Preallocated segments").
            preallocate_segments: true,
            ..intent_log::Options::default()
        };
        options.batch_bytes_max = options
            .batch_bytes_max
            .min(usize::try_from(batch_room).unwrap_or(usize::MAX));
        Ok(options)
    }

    /// The engine configuration for `data_dir`. Called at every open (and reopen), so
    /// the unsafe sync mode is announced every time.
    pub fn engine_config(&self, data_dir: &Path) -> anyhow::Result<EngineConfig> {
        let mut config = EngineConfig::new(data_dir);
        config.log = self.log_options()?;
        if config.log.sync_mode == intent_log::SyncMode::NoSyncBenchmarkOnly {
            tracing::warn!("UNSAFE: sync = \"none\" (unsafe_no_sync_benchmark_only = true): the log is never synced; acknowledged intents can be lost on power failure or a kernel crash. For benchmarks only");
        }
        if config.log.recovery_mode == intent_log::RecoveryMode::Salvage {
            tracing::warn!(
                "recovery = \"salvage\": opening the log keeps only its valid prefix and MOVES \
                 every record from the first bad byte on into salvage-<time>/ beside the log; \
                 those records are no longer part of the log. Use it once, by hand, on a damaged \
                 log, then set recovery back to tolerate_torn_tail"
            );
        }
        if self.compact_log_bytes == 0 {
            bail!("compact_log_bytes must be greater than 0");
        }
        config.compact_log_bytes = self.compact_log_bytes;
        config.key_retention_ms = self.key_retention_hours.saturating_mul(MS_PER_HOUR);
        config.history_retention_ms = self.history_retention_hours.saturating_mul(MS_PER_HOUR);
        if let Some(delay) = self.status_check_delay_base_ms {
            config.status_checks.delay_base_ms = delay;
        }
        Ok(config)
    }

    /// Builds every connector.
    pub fn connector_settings(&self) -> anyhow::Result<Vec<ConnectorSettings>> {
        self.connectors.iter().map(ConnectorConfig::build).collect()
    }
}

fn micros(text: &Option<String>, field: &str) -> anyhow::Result<Option<u64>> {
    text.as_deref()
        .map(|text| {
            connectors::amount::Amount::parse(text)
                .map(|amount| amount.micros)
                .map_err(|error| anyhow::anyhow!("guard.{field}: {error}"))
        })
        .transpose()
}

impl ConnectorConfig {
    /// The key lifetime in force: the file's, else the connectors' default.
    fn key_lifetime_ms(&self) -> u64 {
        match self.key_lifetime_hours {
            Some(hours) => hours.saturating_mul(MS_PER_HOUR),
            None => u64::try_from(connectors::KEY_LIFETIME_DEFAULT.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// The margin in force before the key lifetime ends.
    fn key_lifetime_margin_ms(&self) -> u64 {
        self.key_lifetime_margin_ms.unwrap_or_else(|| {
            scheduler::machine::key_lifetime_margin_default(self.key_lifetime_ms())
        })
    }

    fn validate(&self, key_retention_hours: u64) -> anyhow::Result<()> {
        let zero = [
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("request_timeout_ms", self.request_timeout_ms),
            ("key_lifetime_hours", self.key_lifetime_hours.unwrap_or(1)),
            ("concurrency", self.concurrency as u64),
        ];
        if let Some((name, _)) = zero.iter().find(|(_, value)| *value == 0) {
            bail!("{name} is 0; it must be positive");
        }
        let lifetime_ms = self.key_lifetime_ms();
        if key_retention_hours.saturating_mul(MS_PER_HOUR) < lifetime_ms {
            bail!("key_retention_hours ({key_retention_hours}) is shorter than the key lifetime ({} h): the engine would forget keys the provider still remembers, and a resubmit would become a second intent", lifetime_ms / MS_PER_HOUR);
        }
        // A re-send that starts just inside the margin may reach the provider a connect
        // and a request timeout later; the margin must cover both.
        let margin_ms = self.key_lifetime_margin_ms();
        let flight_ms = self
            .connect_timeout_ms
            .saturating_add(self.request_timeout_ms);
        if margin_ms <= flight_ms {
            bail!("key_lifetime_margin_ms ({margin_ms}, the default is max(5 min, lifetime / 10)) must exceed connect_timeout_ms + request_timeout_ms ({flight_ms}): a re-send could reach the provider after it forgot the key");
        }
        if margin_ms >= lifetime_ms {
            bail!("key_lifetime_margin_ms ({margin_ms}) is not shorter than the key lifetime ({lifetime_ms} ms): no re-send could ever happen");
        }
        Ok(())
    }

    fn build(&self) -> anyhow::Result<ConnectorSettings> {
        let api_key = match &self.api_key_env {
            Some(variable) => match connectors::api_key_from_env(variable)? {
                Some(key) => Some(key),
                None => bail!("api_key_env: the environment variable {variable} is not set (or is empty); set it, or remove api_key_env to send no key"),
            },
            None => None,
        };
        let connect_timeout = Duration::from_millis(self.connect_timeout_ms);
        let request_timeout = Duration::from_millis(self.request_timeout_ms);
        let key_lifetime = Duration::from_millis(self.key_lifetime_ms());
        let connector: Arc<dyn connectors::Connector> = match self.kind.as_str() {
            "purple_flea" => {
                let mut config = HttpConnectorConfig::new(&self.base_url);
                config.api_key = api_key;
                config.connect_timeout = connect_timeout;
                config.request_timeout = request_timeout;
                config.key_lifetime = key_lifetime;
                Arc::new(PurpleFleaConnector::new(config)?)
            }
            "aeeron" => {
                let mut config = HttpConnectorConfig::new(&self.base_url);
                config.api_key = api_key;
                config.connect_timeout = connect_timeout;
                config.request_timeout = request_timeout;
                config.key_lifetime = key_lifetime;
                Arc::new(AeeronConnector::new(config)?)
            }
            other => bail!("connector kind must be purple_flea or aeeron, not {other:?}"),
        };
        let mut retry = RetryPolicy::preset(&self.retry).with_context(|| {
            format!(
                "retry preset {:?} is unknown (aggressive, conservative, rate_limit)",
                self.retry
            )
        })?;
        if let Some(delay) = self.retry_delay_base_ms {
            retry.delay_base_ms = delay;
        }
        let guard = match &self.guard {
            Some(guard) => Some(SpendingGuard {
                per_intent_micros_max: micros(&guard.per_intent_max, "per_intent_max")?,
                window_micros_max: micros(&guard.window_max, "window_max")?,
                window_ms: guard.window_ms,
            }),
            None => None,
        };
        let mut settings = ConnectorSettings::new(connector);
        settings.concurrency = self.concurrency;
        settings.retry = retry;
        settings.guard = guard;
        settings.key_lifetime = Some(key_lifetime);
        settings.key_lifetime_margin = Some(Duration::from_millis(self.key_lifetime_margin_ms()));
        Ok(settings)
    }
}

// The file is over 600 lines only with these tests; the library part above is ~470 lines,
// and the tests stay beside the checks they exercise.
#[cfg(test)]
mod tests {
    use super::*;

    /// The example at the top of this file, kept in step with it.
    const EXAMPLE: &str = r#"
sync = "data"                 # data | all | none (benchmarks only)
key_retention_hours = 24
status_check_delay_base_ms = 1000

[[connectors]]
kind = "purple_flea"          # purple_flea | aeeron
base_url = "http://127.0.0.1:8080"
api_key_env = "PURPLE_FLEA_API_KEY"
connect_timeout_ms = 5000
request_timeout_ms = 30000
retry = "aggressive"          # aggressive | conservative | rate_limit
concurrency = 32
key_lifetime_hours = 24
[connectors.guard]
per_intent_max = "100.00"
window_max = "1000.00"
window_ms = 3600000
"#;

    /// One connector with everything else at its default.
    const ONE: &str = "[[connectors]]\nkind = \"aeeron\"\nbase_url = \"http://127.0.0.1:1\"\n";

    /// Parses, then builds the engine config and every connector: the whole of what
    /// `serve` does with a file before it opens the engine.
    fn check(text: &str) -> Result<(), String> {
        let config = ServeConfig::parse(text).map_err(|error| format!("{error:#}"))?;
        config
            .engine_config(Path::new("/nonexistent"))
            .map_err(|error| format!("{error:#}"))?;
        config
            .connector_settings()
            .map_err(|error| format!("{error:#}"))?;
        Ok(())
    }

    #[test]
    fn unsafe_configuration_is_refused() {
        let one = |extra: &str| format!("{ONE}{extra}\n");
        let top = |extra: &str| format!("{extra}\n{ONE}");
        // (file, expected error substring; "" = it loads)
        let cases: Vec<(String, &str)> = vec![
            (one(""), ""),
            (top("sync = \"all\"\nkey_retention_hours = 48"), ""),
            (String::new(), "no [[connectors]]"),
            (top("sync = \"none\""), "unsafe_no_sync_benchmark_only"),
            (
                top("sync = \"none\"\nunsafe_no_sync_benchmark_only = false"),
                "unsafe_no_sync_benchmark_only",
            ),
            (
                top("sync = \"none\"\nunsafe_no_sync_benchmark_only = true"),
                "",
            ),
            (top("sync = \"sometimes\""), "sync must be"),
            (top("key_retention_hours = 0"), "key_retention_hours is 0"),
            (
                top("key_retention_hours = 12"),
                "shorter than the key lifetime",
            ),
            (
                one("key_lifetime_hours = 48"),
                "shorter than the key lifetime",
            ),
            (
                top("key_retention_hours = 1").replace(ONE, &one("key_lifetime_hours = 1")),
                "",
            ),
            (one("key_lifetime_hours = 0"), "key_lifetime_hours is 0"),
            (one("request_timeout_ms = 0"), "request_timeout_ms is 0"),
            (one("connect_timeout_ms = 0"), "connect_timeout_ms is 0"),
            (one("concurrency = 0"), "concurrency is 0"),
            (
                top("status_check_delay_base_ms = 0"),
                "status_check_delay_base_ms is 0",
            ),
            (
                one("key_lifetime_hours = 1\nrequest_timeout_ms = 600000"),
                "key_lifetime_margin_ms",
            ),
            (
                one("key_lifetime_margin_ms = 30000"),
                "key_lifetime_margin_ms",
            ),
            (one("key_lifetime_margin_ms = 600000"), ""),
            (
                one("key_lifetime_margin_ms = 86400000"),
                "key_lifetime_margin_ms",
            ),
            (
                one("api_key_env = \"INTENTCTL_TEST_NEVER_SET_7C1E\""),
                "INTENTCTL_TEST_NEVER_SET_7C1E is not set",
            ),
            (format!("{ONE}{ONE}"), "twice"),
            ("[[connectors]]\nkind = \"aeeron\"".to_string(), "base_url"),
            (
                one("kind = \"stripe\"").replace("kind = \"aeeron\"\n", ""),
                "connector kind",
            ),
            (top("colour = \"blue\""), "colour"),
            (top("history_retention_hours = 48"), ""),
            (
                top("key_retention_hours = 48\nhistory_retention_hours = 48"),
                "",
            ),
            (
                top("key_retention_hours = 48\nhistory_retention_hours = 47"),
                "history_retention_hours",
            ),
            (top("key_retention_hours = 1000"), "history_retention_hours"),
        ];
        for (text, expected) in &cases {
            match check(text) {
                Ok(()) => assert!(
                    expected.is_empty(),
                    "loaded, expected {expected:?}:\n{text}"
                ),
                Err(message) => {
                    assert!(!expected.is_empty(), "refused: {message}\n{text}");
                    assert!(
                        message.contains(expected),
                        "{message:?} lacks {expected:?}:\n{text}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_example_config_loads() {
        let config = ServeConfig::parse(EXAMPLE).unwrap();
        config.engine_config(Path::new("/nonexistent")).unwrap();
        // The example names the real key variable; a test must not depend on it being set.
        let mut config = config;
        config.connectors[0].api_key_env = None;
        let settings = config.connector_settings().unwrap();
        assert_eq!(settings[0].key_lifetime_ms(), 24 * MS_PER_HOUR);
    }

    #[test]
    fn the_defaults_without_a_file_are_valid() {
        let config = ServeConfig::defaults("http://127.0.0.1:1", "http://127.0.0.1:2");
        config.validate().unwrap();
        config.connector_settings().unwrap();
    }

    /// The least a valid file holds besides the keys under test.
    const ONE_CONNECTOR: &str =
        "[[connectors]]\nkind = \"purple_flea\"\nbase_url = \"http://127.0.0.1:1\"\n";

    #[test]
    fn segment_bytes_table() {
        // (segment_bytes, accepted, batch_bytes_max it maps to)
        let min = SEGMENT_BYTES_MIN;
        let header =
            intent_log::format::SEGMENT_HEADER_BYTES + intent_log::format::BATCH_HEADER_BYTES;
        let cases: &[(u64, bool, usize)] = &[
            (0, false, 0),
            (65_536, false, 0),
            (min - 1, false, 0),
            (min, true, (min as usize) - header),
            (2 << 20, true, (2 << 20) - header),
            (
                intent_log::SEGMENT_BYTES_DEFAULT,
                true,
                intent_log::BATCH_BYTES_MAX_DEFAULT,
            ),
            (1 << 40, true, intent_log::BATCH_BYTES_MAX_DEFAULT),
        ];
        for &(segment_bytes, accepted, batch_bytes_max) in cases {
            let text = format!("segment_bytes = {segment_bytes}\n{ONE_CONNECTOR}");
            let parsed = ServeConfig::parse(&text);
            assert_eq!(parsed.is_ok(), accepted, "{text}: {parsed:?}");
            let Ok(config) = parsed else {
                let error = format!("{:#}", parsed.unwrap_err());
                assert!(error.contains("segment_bytes must be at least"), "{error}");
                continue;
            };
            let engine = config.engine_config(Path::new("/nonexistent")).unwrap();
            assert_eq!(engine.log.segment_bytes, segment_bytes, "{text}");
            assert_eq!(engine.log.batch_bytes_max, batch_bytes_max, "{text}");
            assert_eq!(
                engine.log.record_bytes_max,
                intent_log::RECORD_BYTES_MAX_DEFAULT
            );
            // What serve accepts, the log accepts: the mirrored rule is the log's.
            let directory = tempfile::tempdir().unwrap();
            let opened = intent_log::Log::open(directory.path(), engine.log.clone());
            assert!(opened.is_ok(), "{text}: {:?}", opened.err());
        }
    }

    #[test]
    fn compact_log_bytes_table() {
        // (file, accepted, threshold)
        let default = EngineConfig::new("").compact_log_bytes;
        let cases: &[(&str, bool, u64)] = &[
            ("", true, default),
            ("compact_log_bytes = 1", true, 1),
            ("compact_log_bytes = 131_072", true, 131_072),
            ("compact_log_bytes = 0", false, 0),
            ("compact_log_bytes = -1", false, 0),
            ("compact_log_bytes = \"1GiB\"", false, 0),
        ];
        for &(text, accepted, threshold) in cases {
            let parsed = ServeConfig::parse(&format!("{text}\n{ONE_CONNECTOR}"));
            assert_eq!(parsed.is_ok(), accepted, "{text}: {parsed:?}");
            if let Ok(config) = parsed {
                let engine = config.engine_config(Path::new("/nonexistent")).unwrap();
                assert_eq!(engine.compact_log_bytes, threshold, "{text}");
            }
        }
    }

    #[test]
    fn recovery_table() {
        use intent_log::RecoveryMode;
        // (file, mode it maps to; None = refused)
        let cases: &[(&str, Option<RecoveryMode>)] = &[
            ("", Some(RecoveryMode::TolerateTornTail)),
            (
                "recovery = \"tolerate_torn_tail\"",
                Some(RecoveryMode::TolerateTornTail),
            ),
            ("recovery = \"absolute\"", Some(RecoveryMode::Absolute)),
            ("recovery = \"salvage\"", Some(RecoveryMode::Salvage)),
            ("recovery = \"Salvage\"", None),
            ("recovery = \"tolerate-torn-tail\"", None),
            ("recovery = \"\"", None),
            ("recovery = 1", None),
        ];
        for &(text, mode) in cases {
            let parsed = ServeConfig::parse(&format!("{text}\n{ONE_CONNECTOR}"));
            assert_eq!(parsed.is_ok(), mode.is_some(), "{text}: {parsed:?}");
            if let (Ok(config), Some(mode)) = (parsed, mode) {
                let engine = config.engine_config(Path::new("/nonexistent")).unwrap();
                assert_eq!(engine.log.recovery_mode, mode, "{text}");
            }
        }
    }

    #[test]
    fn connectors_build_table() {
        // (kind, retry, guard amount, builds)
        let cases: &[(&str, &str, Option<&str>, bool)] = &[
            ("purple_flea", "aggressive", None, true),
            ("aeeron", "conservative", Some("10.00"), true),
            ("aeeron", "sometimes", None, false),
            ("stripe", "aggressive", None, false),
            ("purple_flea", "aggressive", Some("ten"), false),
        ];
        for (kind, retry, amount, builds) in cases {
            let mut config = ServeConfig::defaults("http://127.0.0.1:1", "http://127.0.0.1:2");
            config.connectors.truncate(1);
            config.connectors[0].kind = kind.to_string();
            config.connectors[0].retry = retry.to_string();
            config.connectors[0].api_key_env = None;
            config.connectors[0].guard = amount.map(|amount| GuardConfig {
                per_intent_max: Some(amount.to_string()),
                window_max: None,
                window_ms: 1_000,
            });
            let built = config.connector_settings();
            assert_eq!(built.is_ok(), *builds, "{kind} {retry} {amount:?}");
        }
    }

    #[test]
    fn history_retention_maps_into_the_engine_config() {
        // (file, history retention in ms), one case a line.
        let cases: &[(&str, u64)] = &[
            ("", 30 * 24 * MS_PER_HOUR),
            ("history_retention_hours = 48", 48 * MS_PER_HOUR),
        ];
        for (text, expected) in cases {
            let config = ServeConfig::parse(&format!("{text}\n{ONE_CONNECTOR}")).unwrap();
            let engine = config.engine_config(Path::new("/tmp/unused")).unwrap();
            assert_eq!(engine.history_retention_ms, *expected, "{text:?}");
        }
        assert_eq!(
            HISTORY_RETENTION_HOURS_DEFAULT * MS_PER_HOUR,
            scheduler::HISTORY_RETENTION_MS_DEFAULT
        );
    }
}
