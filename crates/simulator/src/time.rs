//! Wall-clock timestamps printed as RFC 3339 UTC strings with milliseconds (via `humantime`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The last instant RFC 3339's four-digit years can print: 9999-12-31T23:59:59.999Z.
/// `humantime` refuses anything later (its `Display` fails, and `to_string` would panic).
const LATEST_PRINTABLE: Duration = Duration::from_millis(253_402_300_799_999);

/// Now, as `2024-05-01T12:34:56.789Z`.
pub(crate) fn now_rfc3339() -> String {
    rfc3339_from_system_time(SystemTime::now())
}

/// `now + offset`, as RFC 3339.
pub(crate) fn rfc3339_after(offset: Duration) -> String {
    rfc3339_from_system_time(SystemTime::now() + offset)
}

fn rfc3339_from_system_time(time: SystemTime) -> String {
    // A clock before 1970 or after 9999 is a broken machine; print the nearest printable
    // instant rather than fail (or panic inside `humantime`) while answering a request.
    let since_epoch = time
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .min(LATEST_PRINTABLE);
    humantime::format_rfc3339_millis(UNIX_EPOCH + since_epoch).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_known_instants() {
        for (millis, expected) in [
            (0, "1970-01-01T00:00:00.000Z"),
            (951_782_400_000, "2000-02-29T00:00:00.000Z"),
            (1_709_210_096_000, "2024-02-29T12:34:56.000Z"),
            (1_714_566_896_789, "2024-05-01T12:34:56.789Z"),
            (1_714_566_896_789_999, "9999-12-31T23:59:59.999Z"),
            (4_102_444_799_001, "2099-12-31T23:59:59.001Z"),
        ] {
            let time = UNIX_EPOCH + Duration::from_millis(millis);
            assert_eq!(rfc3339_from_system_time(time), expected, "{millis}");
        }
    }

    #[test]
    fn a_clock_before_1970_prints_the_epoch() {
        let time = UNIX_EPOCH - Duration::from_secs(86_400);
        assert_eq!(rfc3339_from_system_time(time), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn sub_millisecond_digits_are_cut_not_rounded() {
        let time = UNIX_EPOCH + Duration::from_nanos(1_999_999_999);
        assert_eq!(rfc3339_from_system_time(time), "1970-01-01T00:00:01.999Z");
    }
}
