//! `Retry-After` in both of its forms: delta-seconds (`120`) and an HTTP date.

use std::time::{Duration, SystemTime};

use crate::error::echo;

/// Longest delay honoured; a larger value is clamped to this (with a warning) so one
/// bad header cannot park a connector for days.
pub const RETRY_AFTER_SECONDS_MAX: u64 = 24 * 60 * 60;

/// Parses a `Retry-After` value relative to `now`.
///
/// `"120"` → 120 s; `"Sun, 06 Nov 1994 08:49:37 GMT"` (any of the three HTTP date
/// forms) → the time left until then, zero if it is past. Anything else (negative,
/// fractional, empty, garbage) is ignored with a warning and gives `None`, so the
/// scheduler falls back to its own backoff.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let trimmed = value.trim();
    if !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit()) {
        // Only digits, so the one possible failure is overflow: clamp like any huge value.
        let seconds = trimmed.parse::<u64>().unwrap_or(u64::MAX);
        return Some(clamp(Duration::from_secs(seconds), value));
    }
    match httpdate::parse_http_date(trimmed) {
        Ok(when) => Some(clamp(
            when.duration_since(now).unwrap_or(Duration::ZERO),
            value,
        )),
        Err(_) => {
            tracing::warn!(retry_after = %echo(value), "ignoring an unreadable Retry-After header");
            None
        }
    }
}

fn clamp(delay: Duration, value: &str) -> Duration {
    let ceiling = Duration::from_secs(RETRY_AFTER_SECONDS_MAX);
    if delay > ceiling {
        tracing::warn!(retry_after = %echo(value), "clamping a Retry-After longer than a day");
        return ceiling;
    }
    delay
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_table() {
        // 784111777 = Sun, 06 Nov 1994 08:49:37 GMT.
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        #[rustfmt::skip]
        let cases: &[(&str, Option<u64>)] = &[
            ("0", Some(0)),
            ("5", Some(5)),
            (" 120 ", Some(120)),
            ("86400", Some(86_400)),
            ("86401", Some(RETRY_AFTER_SECONDS_MAX)),
            ("99999999999999999999999", Some(RETRY_AFTER_SECONDS_MAX)),
            ("Sun, 06 Nov 1994 08:50:07 GMT", Some(30)),
            ("Sunday, 06-Nov-94 08:50:07 GMT", Some(30)),
            ("Sun Nov  6 08:50:07 1994", Some(30)),
            ("Sun, 06 Nov 1994 08:49:00 GMT", Some(0)),
            ("Mon, 06 Nov 1995 08:49:37 GMT", Some(RETRY_AFTER_SECONDS_MAX)),
            ("", None),
            ("-5", None),
            ("1.5", None),
            ("soon", None),
            ("5 seconds", None),
            ("Sun, 32 Nov 1994 08:49:37 GMT", None),
        ];
        for (value, expected) in cases {
            let parsed = parse_retry_after(value, now).map(|d| d.as_secs());
            assert_eq!(parsed, *expected, "Retry-After {value:?}");
        }
    }
}
