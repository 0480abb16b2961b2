//! Entry points for the `error_payload` fuzz target and its corpus replay test.
//!
//! The invariant: whatever bytes arrive as a body, classification never panics, never
//! calls an error status a success, calls a 2xx a success only when the body is a JSON
//! object result, and keeps at most `RAW_BODY_BYTES_MAX` bytes of it.

use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::classify::{classify, classify_lookup, ErrorModel, Exchange, RawResponse};
use crate::outcome::{Outcome, RAW_BODY_BYTES_MAX};

/// Statuses every body is tried under: each row of both tables, and a few unlisted ones.
pub const FUZZ_STATUSES: &[u16] = &[
    200, 201, 204, 302, 400, 401, 402, 403, 404, 408, 409, 418, 422, 429, 500, 502, 503, 504, 599,
];

/// Classifies `body` under every status of [`FUZZ_STATUSES`], with both error models,
/// and returns `(error model, status, outcome)` for each.
pub fn classify_error_body(body: &[u8]) -> Vec<(ErrorModel, u16, Outcome)> {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let mut outcomes = Vec::with_capacity(FUZZ_STATUSES.len() * 2);
    for model in [ErrorModel::PurpleFlea, ErrorModel::Aeeron] {
        for status in FUZZ_STATUSES {
            let response = RawResponse {
                status: *status,
                retry_after: Some(
                    String::from_utf8_lossy(body.get(..40).unwrap_or(body)).into_owned(),
                ),
                body: body.to_vec(),
                body_cut: false,
            };
            let exchange = Exchange::Response(response);
            let _ = classify_lookup(model, &exchange);
            outcomes.push((model, *status, classify(model, &exchange, now)));
        }
    }
    outcomes
}

/// Checks the invariant for one body; `Err` names the first violation.
pub fn check_error_body(body: &[u8]) -> Result<(), String> {
    let is_result_object = matches!(serde_json::from_slice::<Value>(body), Ok(Value::Object(ref object)) if !object.contains_key("error"));
    for (model, status, outcome) in classify_error_body(body) {
        if outcome.is_success() && (!(200..300).contains(&status) || !is_result_object) {
            return Err(format!(
                "{model:?} classified HTTP {status} with body {:?} as success",
                String::from_utf8_lossy(body)
            ));
        }
        if let Some(raw) = outcome.detail().and_then(|detail| detail.raw_body.as_ref()) {
            // Lossy decoding may turn one bad byte into a 3-byte replacement character.
            if raw.len() > RAW_BODY_BYTES_MAX * 3 + 64 {
                return Err(format!("{model:?} kept {} bytes of raw body", raw.len()));
            }
        }
    }
    Ok(())
}

/// Replays the `error_payload` fuzz corpus: garbage is never success, nothing panics.
#[cfg(test)]
mod corpus {
    use std::path::PathBuf;

    #[test]
    fn error_payload_corpus_never_classifies_garbage_as_success() {
        let directory =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/error_payload");
        let mut replayed = 0;
        for entry in std::fs::read_dir(&directory)
            .unwrap_or_else(|error| panic!("{}: {error}", directory.display()))
        {
            let path = entry.unwrap().path();
            if !path.is_file() {
                continue;
            }
            let body = std::fs::read(&path).unwrap();
            if let Err(violation) = crate::fuzzing::check_error_body(&body) {
                panic!("{}: {violation}", path.display());
            }
            // Stated directly too: no error status ever yields success for these bytes.
            for (model, status, outcome) in crate::fuzzing::classify_error_body(&body) {
                if !(200..300).contains(&status) {
                    assert!(
                        !outcome.is_success(),
                        "{} {model:?} {status}",
                        path.display()
                    );
                }
            }
            replayed += 1;
        }
        assert!(
            replayed >= 20,
            "only {replayed} corpus files in {}",
            directory.display()
        );
    }
}
