//! Money amounts: decimal strings on the wire, checked and parsed into integer minor units.
//!
//! Amounts are never floats. The connectors check an amount before the intent is logged
//! and send the caller's text unchanged, so what is hashed is what goes on the wire.

use crate::error::{echo, Error, Result};

/// Most digits after the decimal point (USDC has 6).
pub const AMOUNT_FRACTION_DIGITS_MAX: u32 = 6;

/// Most digits before the decimal point (up to 10^12 - 1 whole units).
pub const AMOUNT_INTEGER_DIGITS_MAX: usize = 12;

/// A positive amount in millionths of a unit (`"10.5"` → 10_500_000).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Amount {
    /// The amount in units of 10^-[`AMOUNT_FRACTION_DIGITS_MAX`].
    pub micros: u64,
}

impl Amount {
    /// Parses `"12"`, `"12.5"`, `"0.000001"`. Refuses signs, exponents, spaces, empty
    /// parts (`".5"`, `"5."`), more than 6 decimals, more than 12 integer digits, and zero.
    pub fn parse(text: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::InvalidAmount {
            value: echo(text),
            reason: reason.to_owned(),
        };
        let (integer_part, fraction_part) = match text.split_once('.') {
            Some((integer_part, fraction_part)) => (integer_part, Some(fraction_part)),
            None => (text, None),
        };
        if integer_part.is_empty() || !integer_part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid("expected a decimal string such as \"10.00\""));
        }
        if integer_part.len() > AMOUNT_INTEGER_DIGITS_MAX {
            return Err(invalid("too large"));
        }
        let fraction_part = fraction_part.unwrap_or("");
        if text.contains('.') && fraction_part.is_empty() {
            return Err(invalid("expected digits after the decimal point"));
        }
        if !fraction_part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid("expected a decimal string such as \"10.00\""));
        }
        if fraction_part.len() > AMOUNT_FRACTION_DIGITS_MAX as usize {
            return Err(invalid("more than 6 decimal places"));
        }
        let mut micros: u64 = 0;
        for digit in integer_part.bytes() {
            micros = micros * 10 + u64::from(digit - b'0');
        }
        let mut fraction_micros: u64 = 0;
        for index in 0..AMOUNT_FRACTION_DIGITS_MAX as usize {
            let digit = fraction_part
                .as_bytes()
                .get(index)
                .map_or(0, |b| u64::from(b - b'0'));
            fraction_micros = fraction_micros * 10 + digit;
        }
        // At most 12 integer digits: 10^12 * 10^6 + 10^6 fits easily in u64.
        micros = micros * 10u64.pow(AMOUNT_FRACTION_DIGITS_MAX) + fraction_micros;
        if micros == 0 {
            return Err(invalid("must be greater than zero"));
        }
        Ok(Self { micros })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amount_table() {
        #[rustfmt::skip]
        let cases: &[(&str, Option<u64>)] = &[
            ("10.00", Some(10_000_000)),
            ("10", Some(10_000_000)),
            ("0.000001", Some(1)),
            ("16.80", Some(16_800_000)),
            ("999999999999.999999", Some(999_999_999_999_999_999)),
            ("1000000000000", None),
            ("0", None),
            ("0.00", None),
            ("", None),
            (".5", None),
            ("5.", None),
            ("-1.00", None),
            ("+1.00", None),
            ("1e3", None),
            (" 1.00", None),
            ("1.0000001", None),
            ("1.2.3", None),
            ("NaN", None),
            ("١٢", None),
        ];
        for (text, expected) in cases {
            assert_eq!(
                Amount::parse(text).ok().map(|a| a.micros),
                *expected,
                "amount {text:?}"
            );
        }
    }
}
