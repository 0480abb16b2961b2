//! The `intentctl serve` configuration file (TOML): connectors, log sync mode, key retention.
//!
//! ```toml
//! sync = "data"                 # data | all | none (benchmarks only)
//! key_retention_hours = 24
//! history_retention_hours = 720   # finished intents leave the index after this (>= key retention)
//! status_check_delay_base_ms = 1000
//!
//! [[connectors]]
//! kind = "purple_flea"          # purple_flea | aeeron
//! base_url = "http://127.0.0.1:8080"
//! api_key_env = "PURPLE_FLEA_API_KEY"
//! connect_timeout_ms = 5000
//! request_timeout_ms = 30000
//! retry = "aggressive"          # aggressive | conservative | rate_limit
//! concurrency = 32
//! [connectors.guard]
//! per_intent_max = "100.00"
//! window_max = "1000.00"
//! window_ms = 3600000
//! ```

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use connectors::{AeeronConfig, AeeronConnector, PurpleFleaConfig, PurpleFleaConnector};
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

/// The whole file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    #[serde(default = "sync_default")]
    pub sync: String,
    #[serde(default = "key_retention_hours_default")]
    pub key_retention_hours: u64,
    /// Finished intents (not dead letters) leave the index this long after their last
    /// update; at least `key_retention_hours`.
    #[serde(default = "history_retention_hours_default")]
    pub history_retention_hours: u64,
    /// First delay between status checks of an ambiguous intent (doubles after each).
    #[serde(default)]
    pub status_check_delay_base_ms: Option<u64>,
    #[serde(default)]
    pub connectors: Vec<ConnectorConfig>,
}

/// One `[[connectors]]` table.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorConfig {
    pub kind: String,
    pub base_url: String,
    /// The environment variable holding the API key (the key itself never goes in the file).
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

    pub fn parse(text: &str) -> anyhow::Result<ServeConfig> {
        let config: ServeConfig = toml::from_str(text)?;
        config.sync_mode()?;
        if config.history_retention_hours < config.key_retention_hours {
            bail!(
                "history_retention_hours ({}) must be at least key_retention_hours ({})",
                config.history_retention_hours,
                config.key_retention_hours
            );
        }
        Ok(config)
    }

    /// No file: one connector of each kind at the given URLs (simulators by default).
    pub fn defaults(purple_flea_url: &str, aeeron_url: &str) -> ServeConfig {
        let connector = |kind: &str, base_url: &str, api_key_env: &str| ConnectorConfig {
            kind: kind.to_string(),
            base_url: base_url.to_string(),
            api_key_env: Some(api_key_env.to_string()),
            connect_timeout_ms: CONNECT_TIMEOUT_MS_DEFAULT,
            request_timeout_ms: REQUEST_TIMEOUT_MS_DEFAULT,
            retry: RETRY_PRESET_DEFAULT.to_string(),
            retry_delay_base_ms: None,
            concurrency: CONCURRENCY_DEFAULT,
            guard: None,
        };
        ServeConfig {
            sync: sync_default(),
            key_retention_hours: KEY_RETENTION_HOURS_DEFAULT,
            history_retention_hours: HISTORY_RETENTION_HOURS_DEFAULT,
            status_check_delay_base_ms: None,
            connectors: vec![
                connector(
                    "purple_flea",
                    purple_flea_url,
                    connectors::config::PURPLE_FLEA_API_KEY_VARIABLE,
                ),
                connector(
                    "aeeron",
                    aeeron_url,
                    connectors::config::AEERON_API_KEY_VARIABLE,
                ),
            ],
        }
    }

    fn sync_mode(&self) -> anyhow::Result<intent_log::SyncMode> {
        Ok(match self.sync.as_str() {
            "data" => intent_log::SyncMode::Data,
            "all" => intent_log::SyncMode::All,
            "none" => intent_log::SyncMode::NoSyncBenchmarkOnly,
            other => bail!("sync must be data, all or none, not {other:?}"),
        })
    }

    /// The engine configuration for `data_dir`.
    pub fn engine_config(&self, data_dir: &Path) -> anyhow::Result<EngineConfig> {
        let mut config = EngineConfig::new(data_dir);
        config.log.sync_mode = self.sync_mode()?;
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
    fn build(&self) -> anyhow::Result<ConnectorSettings> {
        let api_key = match &self.api_key_env {
            Some(variable) => connectors::api_key_from_env(variable)?,
            None => None,
        };
        let connect_timeout = Duration::from_millis(self.connect_timeout_ms);
        let request_timeout = Duration::from_millis(self.request_timeout_ms);
        let connector: Arc<dyn connectors::Connector> = match self.kind.as_str() {
            "purple_flea" => {
                let mut config = PurpleFleaConfig::new(&self.base_url);
                config.api_key = api_key;
                config.connect_timeout = connect_timeout;
                config.request_timeout = request_timeout;
                Arc::new(PurpleFleaConnector::new(config)?)
            }
            "aeeron" => {
                let mut config = AeeronConfig::new(&self.base_url);
                config.api_key = api_key;
                config.connect_timeout = connect_timeout;
                config.request_timeout = request_timeout;
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
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        // (file, parses)
        let cases: &[(&str, bool)] = &[
            ("", true),
            ("sync = \"all\"\nkey_retention_hours = 1", true),
            ("sync = \"sometimes\"", false),
            (
                "[[connectors]]\nkind = \"aeeron\"\nbase_url = \"http://127.0.0.1:1\"",
                true,
            ),
            ("[[connectors]]\nkind = \"aeeron\"", false),
            ("colour = \"blue\"", false),
            ("history_retention_hours = 48", true),
            (
                "key_retention_hours = 48\nhistory_retention_hours = 48",
                true,
            ),
            (
                "key_retention_hours = 48\nhistory_retention_hours = 47",
                false,
            ),
            ("key_retention_hours = 1000", false),
        ];
        for (text, parses) in cases {
            assert_eq!(ServeConfig::parse(text).is_ok(), *parses, "{text:?}");
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
            let config = ServeConfig::parse(text).unwrap();
            let engine = config.engine_config(Path::new("/tmp/unused")).unwrap();
            assert_eq!(engine.history_retention_ms, *expected, "{text:?}");
        }
        assert_eq!(
            HISTORY_RETENTION_HOURS_DEFAULT * MS_PER_HOUR,
            scheduler::engine::HISTORY_RETENTION_MS_DEFAULT
        );
    }
}
