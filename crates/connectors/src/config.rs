//! Connector configuration: base URL, API key, timeouts and how long keys are remembered.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::secret::{api_key_from_env, Secret};

/// Default time allowed to open a TCP (and TLS) connection.
pub const CONNECT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(5);

/// Default time allowed for a whole request, response body included.
pub const REQUEST_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);

/// Default time a provider remembers an idempotency key (Stripe's figure; both seeds are
/// silent, so this is an assumption to confirm with each provider).
pub const KEY_LIFETIME_DEFAULT: Duration = Duration::from_secs(24 * 60 * 60);

/// The environment variable that conventionally holds the Purple Flea API key
/// (pass it to [`HttpConnectorConfig::from_env`]).
pub const PURPLE_FLEA_API_KEY_VARIABLE: &str = "PURPLE_FLEA_API_KEY";

/// The environment variable that conventionally holds the Aeeron API key
/// (pass it to [`HttpConnectorConfig::from_env`]).
pub const AEERON_API_KEY_VARIABLE: &str = "AEERON_API_KEY";

/// Refuses settings that cannot work. A zero timeout makes every request fail at once
/// (a zero request timeout even makes every attempt ambiguous, so each one costs a round
/// of status checks); a zero key lifetime forbids every re-send.
fn check(
    connect_timeout: Duration,
    request_timeout: Duration,
    key_lifetime: Duration,
) -> Result<()> {
    let zero = [
        ("connect_timeout", connect_timeout),
        ("request_timeout", request_timeout),
        ("key_lifetime", key_lifetime),
    ]
    .into_iter()
    .find(|(_, value)| value.is_zero());
    match zero {
        Some((name, _)) => Err(Error::Config {
            reason: format!("{name} is 0; it must be positive"),
        }),
        None => Ok(()),
    }
}

/// Settings of an HTTP connector ([`crate::PurpleFleaConnector`],
/// [`crate::AeeronConnector`]): both speak HTTP with the same knobs, so they share one
/// struct. `Debug` never shows the key.
#[derive(Clone, Debug)]
pub struct HttpConnectorConfig {
    /// Where the API lives, e.g. `https://api.purpleflea.com` or a simulator's URL
    /// (each connector appends its own paths).
    pub base_url: String,
    /// Sent as `Authorization: Bearer <key>` when set.
    pub api_key: Option<Secret>,
    /// Time allowed to connect; a connect failure is "not sent".
    pub connect_timeout: Duration,
    /// Time allowed for the whole request; running out is "ambiguous".
    pub request_timeout: Duration,
    /// How long the provider remembers a key; the engine never re-sends an older one.
    pub key_lifetime: Duration,
}

impl HttpConnectorConfig {
    /// Refuses a zero timeout or key lifetime (the connector's `new` calls this).
    pub fn validate(&self) -> Result<()> {
        check(
            self.connect_timeout,
            self.request_timeout,
            self.key_lifetime,
        )
    }

    /// Defaults and no API key.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            api_key: None,
            connect_timeout: CONNECT_TIMEOUT_DEFAULT,
            request_timeout: REQUEST_TIMEOUT_DEFAULT,
            key_lifetime: KEY_LIFETIME_DEFAULT,
        }
    }

    /// Defaults, with the API key from the environment variable `api_key_variable` when
    /// it is set: [`PURPLE_FLEA_API_KEY_VARIABLE`] or [`AEERON_API_KEY_VARIABLE`] by
    /// convention.
    pub fn from_env(base_url: impl Into<String>, api_key_variable: &str) -> Result<Self> {
        let mut config = Self::new(base_url);
        config.api_key = api_key_from_env(api_key_variable)?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_timeouts_and_lifetimes_are_refused() {
        // (connect ms, request ms, key lifetime ms, expected error substring or "" for ok)
        let cases: &[(u64, u64, u64, &str)] = &[
            (5_000, 30_000, 86_400_000, ""),
            (0, 30_000, 86_400_000, "connect_timeout is 0"),
            (5_000, 0, 86_400_000, "request_timeout is 0"),
            (5_000, 30_000, 0, "key_lifetime is 0"),
        ];
        for &(connect_ms, request_ms, lifetime_ms, expected) in cases {
            let mut config = HttpConnectorConfig::new("http://127.0.0.1:1");
            config.connect_timeout = Duration::from_millis(connect_ms);
            config.request_timeout = Duration::from_millis(request_ms);
            config.key_lifetime = Duration::from_millis(lifetime_ms);
            let built = [
                crate::PurpleFleaConnector::new(config.clone()).map(|_| ()),
                crate::AeeronConnector::new(config).map(|_| ()),
            ];
            for result in built {
                match result {
                    Ok(()) => assert!(expected.is_empty(), "accepted, expected {expected:?}"),
                    Err(error) => {
                        let message = error.to_string();
                        assert!(!expected.is_empty(), "refused: {message}");
                        assert!(message.contains(expected), "{message}");
                    }
                }
            }
        }
    }

    #[test]
    fn debug_hides_the_key() {
        let mut config = HttpConnectorConfig::new("http://127.0.0.1:1");
        config.api_key = Some(Secret::new("pf_secret_value"));
        let shown = format!("{config:?}");
        assert!(!shown.contains("pf_secret_value"), "{shown}");
        assert!(shown.contains("Secret(***)"), "{shown}");
    }
}
