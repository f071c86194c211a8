//! Parsing and formatting of the deadline headers, without allocation on
//! the parse side.

use std::fmt;
use std::time::Duration;

/// Why a deadline header could not be read. Its `Display` is the `reason`
/// of the 400 answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderError {
    /// The value is empty.
    Empty,
    /// The value is negative.
    Negative,
    /// The value has a character that is not an ASCII digit where a digit
    /// belongs.
    InvalidCharacter,
    /// A `grpc-timeout` with a unit but no digits.
    NoDigits,
    /// A `grpc-timeout` with more than 8 digits.
    TooManyDigits,
    /// A `grpc-timeout` without a unit.
    MissingUnit,
    /// A `grpc-timeout` whose unit is not one of `H M S m u n`.
    InvalidUnit,
    /// The number does not fit.
    Overflow,
}

impl HeaderError {
    /// The reason as a static phrase.
    pub const fn as_str(self) -> &'static str {
        match self {
            HeaderError::Empty => "empty value",
            HeaderError::Negative => "negative value",
            HeaderError::InvalidCharacter => "not a decimal number",
            HeaderError::NoDigits => "no digits before the unit",
            HeaderError::TooManyDigits => "more than 8 digits",
            HeaderError::MissingUnit => "missing unit (one of H, M, S, m, u, n)",
            HeaderError::InvalidUnit => "unknown unit (expected one of H, M, S, m, u, n)",
            HeaderError::Overflow => "value too large",
        }
    }
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for HeaderError {}

fn trim(value: &[u8]) -> &[u8] {
    value.trim_ascii()
}

/// The largest value `grpc-timeout` allows: 8 digits.
const GRPC_MAX: u64 = 99_999_999;

/// Parses a `grpc-timeout` value: 1 to 8 ASCII digits and a unit, `H`
/// (hours), `M` (minutes), `S` (seconds), `m` (milliseconds), `u`
/// (microseconds) or `n` (nanoseconds). Surrounding spaces are ignored.
///
/// ```
/// use std::time::Duration;
/// use battlement_deadline::http::{HeaderError, parse_grpc_timeout};
///
/// assert_eq!(parse_grpc_timeout(b"250m"), Ok(Duration::from_millis(250)));
/// assert_eq!(parse_grpc_timeout(b"123456789S"), Err(HeaderError::TooManyDigits));
/// ```
pub fn parse_grpc_timeout(value: &[u8]) -> Result<Duration, HeaderError> {
    let value = trim(value);
    let Some((&unit, digits)) = value.split_last() else {
        return Err(HeaderError::Empty);
    };
    if value[0] == b'-' {
        return Err(HeaderError::Negative);
    }
    if unit.is_ascii_digit() {
        return Err(HeaderError::MissingUnit);
    }
    if digits.is_empty() {
        return Err(HeaderError::NoDigits);
    }
    if digits.len() > 8 {
        return Err(HeaderError::TooManyDigits);
    }
    let mut n: u64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return Err(HeaderError::InvalidCharacter);
        }
        n = n * 10 + u64::from(b - b'0');
    }
    Ok(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return Err(HeaderError::InvalidUnit),
    })
}

/// Parses a whole number of milliseconds (the `x-request-timeout-ms`
/// convention). Surrounding spaces are ignored; a sign, a fraction or a
/// value beyond `u64` is an error.
///
/// ```
/// use std::time::Duration;
/// use battlement_deadline::http::{HeaderError, parse_millis};
///
/// assert_eq!(parse_millis(b"1500"), Ok(Duration::from_millis(1500)));
/// assert_eq!(parse_millis(b"-5"), Err(HeaderError::Negative));
/// assert_eq!(parse_millis(b"99999999999999999999"), Err(HeaderError::Overflow));
/// ```
pub fn parse_millis(value: &[u8]) -> Result<Duration, HeaderError> {
    let value = trim(value);
    match value.first() {
        None => return Err(HeaderError::Empty),
        Some(b'-') => return Err(HeaderError::Negative),
        Some(_) => {}
    }
    let mut n: u64 = 0;
    for &b in value {
        if !b.is_ascii_digit() {
            return Err(HeaderError::InvalidCharacter);
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
            .ok_or(HeaderError::Overflow)?;
    }
    Ok(Duration::from_millis(n))
}

/// Formats `d` as a `grpc-timeout` value in the finest unit that fits in 8
/// digits, rounding down (so the receiver never gets more time than was
/// left). Beyond 99,999,999 hours it saturates.
///
/// ```
/// use std::time::Duration;
/// use battlement_deadline::http::format_grpc_timeout;
///
/// assert_eq!(format_grpc_timeout(Duration::from_millis(1500)), "1500000u");
/// assert_eq!(format_grpc_timeout(Duration::from_secs(300)), "300000m");
/// ```
pub fn format_grpc_timeout(d: Duration) -> String {
    let nanos = d.as_nanos();
    const UNITS: [(u128, char); 6] = [
        (1, 'n'),
        (1_000, 'u'),
        (1_000_000, 'm'),
        (1_000_000_000, 'S'),
        (60_000_000_000, 'M'),
        (3_600_000_000_000, 'H'),
    ];
    for (size, unit) in UNITS {
        let n = nanos / size;
        if n <= u128::from(GRPC_MAX) {
            return format!("{n}{unit}");
        }
    }
    format!("{GRPC_MAX}H")
}

/// Formats `d` as whole milliseconds, rounding down. Beyond `u64::MAX`
/// milliseconds (585 million years) it saturates there, the largest value
/// [`parse_millis`] reads, so a far-future deadline stays readable at the
/// next hop.
///
/// ```
/// use std::time::Duration;
/// use battlement_deadline::http::{format_millis, parse_millis};
///
/// assert_eq!(format_millis(Duration::from_micros(1999)), "1");
/// assert!(parse_millis(format_millis(Duration::MAX).as_bytes()).is_ok());
/// ```
pub fn format_millis(d: Duration) -> String {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).to_string()
}
