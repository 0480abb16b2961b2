//! Money as an integer number of minor units (cents), parsed from and printed as decimal strings.
//!
//! Both simulated APIs use two fraction digits ("10.00"). A float never touches an amount.

/// Fraction digits of every amount on the wire.
pub(crate) const AMOUNT_FRACTION_DIGITS: usize = 2;
/// Minor units in one major unit (10^AMOUNT_FRACTION_DIGITS).
pub(crate) const MINOR_PER_MAJOR: i64 = 100;
/// The largest amount accepted anywhere, in minor units (one trillion major units).
/// Far below `i64::MAX`, so sums and products of two checked amounts cannot overflow.
pub(crate) const AMOUNT_MINOR_MAX: i64 = 1_000_000_000_000 * MINOR_PER_MAJOR;
/// The longest amount string accepted, in bytes (checked before parsing).
const AMOUNT_TEXT_BYTES_MAX: usize = 32;

const _: () = assert!(10_i64.pow(AMOUNT_FRACTION_DIGITS as u32) == MINOR_PER_MAJOR);

/// Parses a non-negative decimal string with at most two fraction digits ("10", "10.5",
/// "10.00") into minor units. Signs, exponents, spaces and more fraction digits are refused.
pub(crate) fn parse_amount_minor(text: &str) -> Option<i64> {
    if text.is_empty() || text.len() > AMOUNT_TEXT_BYTES_MAX {
        return None;
    }
    let (whole_text, fraction_text) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (text, ""),
    };
    if whole_text.is_empty() || !whole_text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    if text.contains('.') && fraction_text.is_empty() {
        return None;
    }
    if fraction_text.len() > AMOUNT_FRACTION_DIGITS
        || !fraction_text.bytes().all(|byte| byte.is_ascii_digit())
    {
        return None;
    }
    let whole: i64 = whole_text.parse().ok()?;
    let mut fraction: i64 = if fraction_text.is_empty() {
        0
    } else {
        fraction_text.parse().ok()?
    };
    for _ in fraction_text.len()..AMOUNT_FRACTION_DIGITS {
        fraction *= 10;
    }
    let minor = whole.checked_mul(MINOR_PER_MAJOR)?.checked_add(fraction)?;
    (minor <= AMOUNT_MINOR_MAX).then_some(minor)
}

/// Parses a strictly positive amount.
pub(crate) fn parse_amount_minor_positive(text: &str) -> Option<i64> {
    parse_amount_minor(text).filter(|minor| *minor > 0)
}

/// Prints minor units as a decimal string with exactly two fraction digits.
pub(crate) fn format_amount_minor(minor: i64) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let magnitude = minor.unsigned_abs();
    let per_major = MINOR_PER_MAJOR.unsigned_abs();
    format!(
        "{sign}{}.{:02}",
        magnitude / per_major,
        magnitude % per_major
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_parse(text: &str, expected: Option<i64>) {
        assert_eq!(parse_amount_minor(text), expected, "parsing {text:?}");
    }

    #[test]
    fn parses_decimal_strings() {
        check_parse("10.00", Some(1000));
        check_parse("10", Some(1000));
        check_parse("10.5", Some(1050));
        check_parse("0.01", Some(1));
        check_parse("0", Some(0));
        check_parse("19.80", Some(1980));
        check_parse("1000000000000.00", Some(AMOUNT_MINOR_MAX));
        check_parse("1000000000000.01", None);
        check_parse("99999999999999999999999", None);
        check_parse("10.001", None);
        check_parse("10.", None);
        check_parse(".5", None);
        check_parse("-1.00", None);
        check_parse("+1.00", None);
        check_parse("1e3", None);
        check_parse(" 1.00", None);
        check_parse("1,00", None);
        check_parse("", None);
        check_parse("NaN", None);
    }

    #[test]
    fn formats_minor_units() {
        for (minor, expected) in [
            (0, "0.00"),
            (1, "0.01"),
            (1980, "19.80"),
            (100_000_000, "1000000.00"),
            (-5, "-0.05"),
        ] {
            assert_eq!(format_amount_minor(minor), expected);
        }
    }

    #[test]
    fn positive_refuses_zero() {
        assert_eq!(parse_amount_minor_positive("0.00"), None);
        assert_eq!(parse_amount_minor_positive("0.01"), Some(1));
    }
}
