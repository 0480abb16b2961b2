//! The idempotency cache: per key, the request fingerprint and whether it is in progress or finished.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use sha2::{Digest, Sha256};

/// The longest idempotency key accepted, in characters (Purple Flea's documented limit).
pub const IDEMPOTENCY_KEY_CHARS_MAX: usize = 64;

/// The header that carries the key.
pub(crate) const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
/// The header set on a replayed response.
pub(crate) const IDEMPOTENT_REPLAYED_HEADER: &str = "idempotent-replayed";

/// Why a request's key is unusable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyProblem {
    /// No header, or an empty one.
    Missing,
    /// More than [`IDEMPOTENCY_KEY_CHARS_MAX`] characters.
    TooLong,
    /// Not printable ASCII.
    NotPrintable,
}

impl KeyProblem {
    pub(crate) fn message(self) -> String {
        match self {
            KeyProblem::Missing => {
                "the Idempotency-Key header is required on every mutation".to_owned()
            }
            KeyProblem::TooLong => {
                format!("the Idempotency-Key header is longer than {IDEMPOTENCY_KEY_CHARS_MAX} characters")
            }
            KeyProblem::NotPrintable => {
                "the Idempotency-Key header must be printable ASCII".to_owned()
            }
        }
    }
}

/// Reads and checks the `Idempotency-Key` header.
pub(crate) fn read_key(headers: &HeaderMap) -> Result<String, KeyProblem> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY_HEADER) else {
        return Err(KeyProblem::Missing);
    };
    let bytes = value.as_bytes();
    if bytes.is_empty() {
        return Err(KeyProblem::Missing);
    }
    if !bytes.iter().all(|byte| (0x20..0x7f).contains(byte)) {
        return Err(KeyProblem::NotPrintable);
    }
    if bytes.len() > IDEMPOTENCY_KEY_CHARS_MAX {
        return Err(KeyProblem::TooLong);
    }
    Ok(String::from_utf8_lossy(bytes).into_owned())
}

/// SHA-256 of what makes two requests "the same": method, path and canonical JSON body.
pub(crate) type Fingerprint = [u8; 32];

/// Fingerprints a request. `canonical_body` must already be canonical (serde_json without
/// `preserve_order` sorts object keys, so re-serialising a parsed `Value` is canonical).
pub(crate) fn fingerprint(method: &str, path: &str, canonical_body: &str) -> Fingerprint {
    let mut hasher = Sha256::new();
    for part in [method, path, canonical_body] {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    hasher.finalize().into()
}

/// A response kept for replays.
#[derive(Clone, Debug)]
pub(crate) struct StoredResponse {
    pub(crate) status: StatusCode,
    pub(crate) body: Bytes,
}

#[derive(Debug)]
enum Slot {
    InProgress(Fingerprint),
    Finished(Fingerprint, StoredResponse),
}

/// What to do with a request, given its key.
#[derive(Debug)]
pub(crate) enum Begin {
    /// First time: the key is now in progress; execute, then call `finish`.
    Fresh,
    /// Finished before with the same request: return this again.
    Replay(StoredResponse),
    /// The first request with this key is still being processed.
    InProgress,
    /// The key was used for a different request.
    Mismatch,
}

/// Keys to slots. Lives inside the service's state mutex; every method is a few map operations.
#[derive(Debug, Default)]
pub(crate) struct IdempotencyCache {
    slots: HashMap<String, Slot>,
}

impl IdempotencyCache {
    pub(crate) fn begin(&mut self, key: &str, request: Fingerprint) -> Begin {
        match self.slots.get(key) {
            None => {
                self.slots.insert(key.to_owned(), Slot::InProgress(request));
                Begin::Fresh
            }
            Some(Slot::InProgress(stored)) | Some(Slot::Finished(stored, _))
                if *stored != request =>
            {
                Begin::Mismatch
            }
            Some(Slot::InProgress(_)) => Begin::InProgress,
            Some(Slot::Finished(_, response)) => Begin::Replay(response.clone()),
        }
    }

    pub(crate) fn finish(&mut self, key: &str, request: Fingerprint, response: StoredResponse) {
        self.slots
            .insert(key.to_owned(), Slot::Finished(request, response));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_key(value: Option<&str>, expected: Result<&str, KeyProblem>) {
        let mut headers = HeaderMap::new();
        if let Some(value) = value {
            headers.insert(IDEMPOTENCY_KEY_HEADER, value.parse().expect("header value"));
        }
        assert_eq!(
            read_key(&headers).as_deref().map_err(|problem| *problem),
            expected,
            "{value:?}"
        );
    }

    #[test]
    fn checks_keys() {
        let longest = "k".repeat(IDEMPOTENCY_KEY_CHARS_MAX);
        let too_long = "k".repeat(IDEMPOTENCY_KEY_CHARS_MAX + 1);
        check_key(None, Err(KeyProblem::Missing));
        check_key(Some(""), Err(KeyProblem::Missing));
        check_key(Some("a"), Ok("a"));
        check_key(Some("bet-0123456789abcdef"), Ok("bet-0123456789abcdef"));
        check_key(Some(&longest), Ok(&longest));
        check_key(Some(&too_long), Err(KeyProblem::TooLong));
        check_key(Some("tab\there"), Err(KeyProblem::NotPrintable));
    }

    #[test]
    fn cache_moves_through_its_states() {
        let mut cache = IdempotencyCache::default();
        let one = fingerprint("POST", "/casino/bet", "{}");
        let other = fingerprint("POST", "/casino/bet", "{\"a\":1}");
        assert!(matches!(cache.begin("k", one), Begin::Fresh));
        assert!(matches!(cache.begin("k", one), Begin::InProgress));
        assert!(matches!(cache.begin("k", other), Begin::Mismatch));
        cache.finish(
            "k",
            one,
            StoredResponse {
                status: StatusCode::CREATED,
                body: Bytes::from_static(b"{}"),
            },
        );
        assert!(
            matches!(cache.begin("k", one), Begin::Replay(response) if response.status == StatusCode::CREATED)
        );
        assert!(matches!(cache.begin("k", other), Begin::Mismatch));
    }

    #[test]
    fn fingerprint_separates_fields() {
        assert_ne!(
            fingerprint("POST", "/ab", "c"),
            fingerprint("POST", "/a", "bc")
        );
    }
}
