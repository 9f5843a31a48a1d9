//! Human-written sizes (`64MiB`) and durations (`250ms`, `30s`) as they appear in manifests.
//!
//! Deliberately strict: an integer and a unit, nothing else, so `64M` (mega or mebi?) and
//! `1.5s` are refused with a message that says what is accepted.

use std::time::Duration;

const SIZE_UNITS: &[(&str, u64)] = &[
    ("B", 1),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("KB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
];

const DURATION_UNITS: &[(&str, u64)] = &[("ms", 1), ("s", 1_000), ("m", 60_000), ("h", 3_600_000)];

/// Why a size or a duration was refused; each variant holds the text as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    /// The value does not start with a digit.
    #[error("invalid value {text:?}: expected an integer followed by a unit")]
    NoNumber {
        /// The value as written.
        text: String,
    },
    /// The number does not fit in a `u64`.
    #[error("number in {text:?} is too large")]
    NumberTooLarge {
        /// The value as written.
        text: String,
    },
    /// A size whose unit is missing or not one of B, KiB, MiB, GiB, KB, MB, GB.
    #[error(
        "invalid size {text:?}: expected an integer and a unit (B, KiB, MiB, GiB, KB, MB, GB), e.g. \"64MiB\""
    )]
    SizeUnit {
        /// The value as written.
        text: String,
    },
    /// A size whose byte count does not fit in a `u64`.
    #[error("size {text:?} is too large")]
    SizeTooLarge {
        /// The value as written.
        text: String,
    },
    /// A duration whose unit is missing or not one of ms, s, m, h.
    #[error(
        "invalid duration {text:?}: expected an integer and a unit (ms, s, m, h), e.g. \"30s\""
    )]
    DurationUnit {
        /// The value as written.
        text: String,
    },
    /// A duration whose millisecond count does not fit in a `u64`.
    #[error("duration {text:?} is too large")]
    DurationTooLarge {
        /// The value as written.
        text: String,
    },
}

/// Parses `"64MiB"`, `"512KiB"`, `"1GB"` or `"4096B"` into bytes.
pub fn parse_byte_size(text: &str) -> Result<u64, UnitError> {
    let (number, unit) = split_number(text)?;
    let (_, factor) = SIZE_UNITS
        .iter()
        .find(|(name, _)| *name == unit)
        .ok_or_else(|| UnitError::SizeUnit { text: text.into() })?;
    number
        .checked_mul(*factor)
        .ok_or_else(|| UnitError::SizeTooLarge { text: text.into() })
}

/// Parses `"250ms"`, `"30s"`, `"5m"` or `"1h"`.
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let (number, unit) = split_number(text)?;
    let (_, millis) = DURATION_UNITS
        .iter()
        .find(|(name, _)| *name == unit)
        .ok_or_else(|| UnitError::DurationUnit { text: text.into() })?;
    let total = number
        .checked_mul(*millis)
        .ok_or_else(|| UnitError::DurationTooLarge { text: text.into() })?;
    Ok(Duration::from_millis(total))
}

fn split_number(text: &str) -> Result<(u64, &str), UnitError> {
    let trimmed = text.trim();
    let digits_end = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    if digits_end == 0 {
        return Err(UnitError::NoNumber { text: text.into() });
    }
    let number = trimmed[..digits_end]
        .parse::<u64>()
        .map_err(|_| UnitError::NumberTooLarge { text: text.into() })?;
    Ok((number, trimmed[digits_end..].trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_byte_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_byte_size("1GB"), Ok(1_000_000_000));
        assert_eq!(parse_byte_size("4096B"), Ok(4096));
        assert!(
            parse_byte_size("64M")
                .unwrap_err()
                .to_string()
                .contains("MiB")
        );
        assert!(parse_byte_size("-1MiB").is_err());
        assert!(parse_byte_size("1.5GiB").is_err());
        assert!(
            parse_byte_size("99999999999999999GiB")
                .unwrap_err()
                .to_string()
                .contains("too large")
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(
            parse_duration("30").unwrap_err().to_string(),
            "invalid duration \"30\": expected an integer and a unit (ms, s, m, h), e.g. \"30s\""
        );
        assert!(parse_duration("s").is_err());
    }
}
