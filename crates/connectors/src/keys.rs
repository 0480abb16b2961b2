//! Idempotency keys (random or derived) and the canonical JSON encoding they are derived from.

use std::fmt;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::{echo, Error, Result};

/// Longest key the providers accept (Purple Flea: "any string up to 64 characters").
pub const IDEMPOTENCY_KEY_CHARS_MAX: usize = 64;

/// Longest operation prefix kept in a derived key; the digest covers the full operation.
pub const DERIVED_KEY_PREFIX_CHARS_MAX: usize = 24;

/// Hex characters of the SHA-256 digest kept in a derived key (128 bits).
pub const DERIVED_KEY_DIGEST_HEX_CHARS: usize = 32;

const _: () = assert!(
    DERIVED_KEY_PREFIX_CHARS_MAX + 1 + DERIVED_KEY_DIGEST_HEX_CHARS <= IDEMPOTENCY_KEY_CHARS_MAX
);

/// A key sent as the `Idempotency-Key` header: 1..=64 visible ASCII characters
/// (`!`..=`~`), so it is always a valid header value and fits every provider.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Checks a key that came from elsewhere (the agent, the log).
    pub fn new(key: impl Into<String>) -> Result<Self> {
        let key = key.into();
        let length = key.chars().count();
        if length == 0 {
            return Err(Error::InvalidIdempotencyKey {
                reason: "empty".to_owned(),
            });
        }
        if length > IDEMPOTENCY_KEY_CHARS_MAX {
            return Err(Error::InvalidIdempotencyKey {
                reason: format!(
                    "{length} characters, at most {IDEMPOTENCY_KEY_CHARS_MAX} are allowed"
                ),
            });
        }
        if let Some(bad) = key.chars().find(|c| !c.is_ascii_graphic()) {
            return Err(Error::InvalidIdempotencyKey {
                reason: format!(
                    "character {bad:?} in {:?}: only visible ASCII is allowed",
                    echo(&key)
                ),
            });
        }
        Ok(Self(key))
    }

    /// A fresh random key (UUID v4, 36 characters): the safe default for a new intent.
    pub fn random() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }

    /// A key derived from the intent itself, so a restarted agent computes the same key:
    /// `<operation prefix>-<first 32 hex chars of SHA-256>` where the digest covers
    /// `canonical_json({"namespace":namespace,"operation":operation,"params":params})`.
    ///
    /// The namespace plays the part of the seed's date: put a day, an agent id or a
    /// sequence number in it to keep intentionally repeated intents apart.
    pub fn derived(operation: &str, params: &Value, namespace: &str) -> Self {
        let mut envelope = serde_json::Map::new();
        envelope.insert("namespace".to_owned(), Value::String(namespace.to_owned()));
        envelope.insert("operation".to_owned(), Value::String(operation.to_owned()));
        envelope.insert("params".to_owned(), params.clone());
        let digest = Sha256::digest(canonical_json(&Value::Object(envelope)).as_bytes());
        let mut digest_hex = String::with_capacity(digest.len() * 2);
        for byte in digest {
            digest_hex.push_str(&format!("{byte:02x}"));
        }
        digest_hex.truncate(DERIVED_KEY_DIGEST_HEX_CHARS);
        let prefix: String = operation
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .take(DERIVED_KEY_PREFIX_CHARS_MAX)
            .collect();
        if prefix.is_empty() {
            Self(digest_hex)
        } else {
            Self(format!("{prefix}-{digest_hex}"))
        }
    }

    /// The key as sent on the wire.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl fmt::Debug for IdempotencyKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "IdempotencyKey({:?})", self.0)
    }
}

impl<'de> serde::Deserialize<'de> for IdempotencyKey {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::new(text).map_err(serde::de::Error::custom)
    }
}

/// The canonical JSON encoding: object keys sorted by their UTF-8 bytes, no whitespace,
/// strings escaped as serde_json does, numbers as serde_json prints them (so `1` and
/// `1.0` differ). Two equal `Value`s always encode to the same bytes, whatever map
/// ordering feature serde_json was built with. The scheduler reuses it for payload hashes.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(flag) => out.push_str(if *flag { "true" } else { "false" }),
        Value::Number(number) => out.push_str(&number.to_string()),
        Value::String(text) => write_string(text, out),
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|left, right| left.0.as_bytes().cmp(right.0.as_bytes()));
            out.push('{');
            for (index, (key, item)) in entries.into_iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_string(key, out);
                out.push(':');
                write_canonical(item, out);
            }
            out.push('}');
        }
    }
}

fn write_string(text: &str, out: &mut String) {
    // Serialising a &str cannot fail; the fallback keeps library code free of unwrap.
    match serde_json::to_string(text) {
        Ok(quoted) => out.push_str(&quoted),
        Err(_) => out.push_str("\"\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_validation_table() {
        let long_64 = "k".repeat(64);
        let long_65 = "k".repeat(65);
        #[rustfmt::skip]
        let cases: &[(&str, bool)] = &[
            ("a", true),
            ("3f2b8c1e-0a4d-4c7e-9b1a-2d3e4f5a6b7c", true),
            ("casino-bet-0123456789abcdef", true),
            (long_64.as_str(), true),
            (long_65.as_str(), false),
            ("", false),
            ("has space", false),
            ("new\nline", false),
            ("é", false),
        ];
        for (key, valid) in cases {
            assert_eq!(IdempotencyKey::new(*key).is_ok(), *valid, "key {key:?}");
        }
    }

    #[test]
    fn too_long_key_is_a_typed_error() {
        let error = IdempotencyKey::new("x".repeat(65)).unwrap_err();
        assert!(matches!(error, Error::InvalidIdempotencyKey { .. }));
        assert!(error.to_string().contains("65 characters"));
    }

    #[test]
    fn random_keys_are_valid_and_distinct() {
        let first = IdempotencyKey::random();
        let second = IdempotencyKey::random();
        assert_ne!(first, second);
        assert!(IdempotencyKey::new(first.as_str()).is_ok());
        assert_eq!(first.as_str().len(), 36);
    }

    #[test]
    fn derived_keys_table() {
        let params = json!({"game":"dice","amount":"10.00","target":50,"prediction":"over"});
        let reordered = json!({"prediction":"over","target":50,"amount":"10.00","game":"dice"});
        let base = IdempotencyKey::derived("bet", &params, "agent-7/2026-11-29");
        // Same inputs in any key order give the same key; any change gives another.
        assert_eq!(
            base,
            IdempotencyKey::derived("bet", &reordered, "agent-7/2026-11-29")
        );
        assert_ne!(
            base,
            IdempotencyKey::derived("bet", &params, "agent-7/2026-11-30")
        );
        assert_ne!(
            base,
            IdempotencyKey::derived("bet2", &params, "agent-7/2026-11-29")
        );
        assert_ne!(
            base,
            IdempotencyKey::derived("bet", &json!({"amount":"10.01"}), "agent-7/2026-11-29")
        );
        assert!(base.as_str().starts_with("bet-"));
        assert_eq!(base.as_str().len(), 4 + DERIVED_KEY_DIGEST_HEX_CHARS);
        // Long or odd operation names still give a valid key of bounded length.
        let odd = IdempotencyKey::derived(&"opération longue/".repeat(10), &params, "");
        assert!(IdempotencyKey::new(odd.as_str()).is_ok(), "{odd:?}");
        let empty = IdempotencyKey::derived("", &params, "");
        assert_eq!(empty.as_str().len(), DERIVED_KEY_DIGEST_HEX_CHARS);
    }

    #[test]
    fn derived_key_is_stable_across_releases() {
        // Pinned: changing the derivation would make restarted agents re-execute intents.
        let key = IdempotencyKey::derived("bet", &json!({"amount":"1.00"}), "ns");
        let expected_digest = {
            let text = r#"{"namespace":"ns","operation":"bet","params":{"amount":"1.00"}}"#;
            let digest = Sha256::digest(text.as_bytes());
            digest
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()[..32]
                .to_owned()
        };
        assert_eq!(key.as_str(), format!("bet-{expected_digest}"));
    }

    #[test]
    fn canonical_json_table() {
        #[rustfmt::skip]
        let cases: &[(Value, &str)] = &[
            (json!(null), "null"),
            (json!({"b":1,"a":2}), r#"{"a":2,"b":1}"#),
            (json!({"z":{"y":[1,{"d":true,"c":false}]},"a":"x"}), r#"{"a":"x","z":{"y":[1,{"c":false,"d":true}]}}"#),
            (json!({"text":"quote\" and \\ and \n"}), r#"{"text":"quote\" and \\ and \n"}"#),
            (json!([1.5, -2, 0]), "[1.5,-2,0]"),
            (json!({"B":1,"a":1,"É":1}), r#"{"B":1,"a":1,"É":1}"#),
        ];
        for (value, expected) in cases {
            assert_eq!(canonical_json(value), *expected);
        }
    }
}
