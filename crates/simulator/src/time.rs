//! Wall-clock timestamps printed as RFC 3339 UTC strings, without a date-time dependency.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Now, as `2024-05-01T12:34:56.789Z`.
pub(crate) fn now_rfc3339() -> String {
    rfc3339_from_system_time(SystemTime::now())
}

/// `now + offset`, as RFC 3339.
pub(crate) fn rfc3339_after(offset: Duration) -> String {
    rfc3339_from_system_time(SystemTime::now() + offset)
}

fn rfc3339_from_system_time(time: SystemTime) -> String {
    // A clock before 1970 is a broken machine; print the epoch rather than fail a request.
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds_total = since_epoch.as_secs();
    let days = (seconds_total / 86_400) as i64;
    let seconds_of_day = seconds_total % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        seconds_of_day / 3600,
        (seconds_of_day / 60) % 60,
        seconds_of_day % 60,
        since_epoch.subsec_millis()
    )
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
fn civil_from_days(days_since_epoch: i64) -> (i64, u32, u32) {
    let z = days_since_epoch + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_known_instants() {
        for (seconds, expected) in [
            (0, "1970-01-01T00:00:00.000Z"),
            (951_782_400, "2000-02-29T00:00:00.000Z"),
            (1_709_210_096, "2024-02-29T12:34:56.000Z"),
            (4_102_444_799, "2099-12-31T23:59:59.000Z"),
        ] {
            let time = UNIX_EPOCH + Duration::from_secs(seconds);
            assert_eq!(rfc3339_from_system_time(time), expected, "{seconds}");
        }
    }
}
