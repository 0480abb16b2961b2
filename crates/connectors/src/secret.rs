//! `Secret`: an API key that never shows itself in Debug, Display, logs or errors.

use std::fmt;

use crate::error::{Error, Result};

/// A secret string (an API key). `Debug` and `Display` print `Secret(***)`; the only way
/// to read it is [`Secret::expose`], used when building the request header.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself. Call only to put it on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("Secret(***)")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

/// Reads an API key from the environment variable `variable`.
///
/// Unset or empty → `Ok(None)` (the connector sends no `Authorization` header).
/// Set but not valid Unicode → a [`Error::Config`] naming the variable, never its value.
pub fn api_key_from_env(variable: &str) -> Result<Option<Secret>> {
    match std::env::var(variable) {
        Ok(value) if value.trim().is_empty() => Ok(None),
        Ok(value) => Ok(Some(Secret(value.trim().to_owned()))),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(Error::Config {
            reason: format!("environment variable {variable} is not valid Unicode"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_value() {
        let secret = Secret::new("sk_live_do_not_print");
        assert_eq!(format!("{secret:?}"), "Secret(***)");
        assert_eq!(format!("{secret}"), "Secret(***)");
        assert_eq!(secret.expose(), "sk_live_do_not_print");
        let wrapped = Some(secret);
        assert!(!format!("{wrapped:?}").contains("do_not_print"));
    }

    #[test]
    fn environment_table() {
        // Names unique to this test, so parallel tests never race on them.
        #[rustfmt::skip]
        let cases: &[(&str, Option<&str>, Option<&str>)] = &[
            ("CONNECTORS_TEST_KEY_SET_5e1c", Some("pf_from_env"), Some("pf_from_env")),
            ("CONNECTORS_TEST_KEY_PADDED_5e1c", Some("  pf_padded \n"), Some("pf_padded")),
            ("CONNECTORS_TEST_KEY_EMPTY_5e1c", Some("   "), None),
            ("CONNECTORS_TEST_KEY_UNSET_5e1c", None, None),
        ];
        for (variable, value, expected) in cases {
            if let Some(value) = value {
                std::env::set_var(variable, value);
            }
            let found = api_key_from_env(variable).unwrap();
            assert_eq!(found.as_ref().map(Secret::expose), *expected, "{variable}");
        }
    }

    #[test]
    fn missing_variable_is_no_key() {
        let found = api_key_from_env("CONNECTORS_TEST_VARIABLE_THAT_IS_NEVER_SET_9f3a").unwrap();
        assert!(found.is_none());
    }
}
