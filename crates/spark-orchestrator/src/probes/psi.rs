//! Pressure stall information: the `some`/`full` format of `/proc/pressure/*` and of cgroup
//! v2 `*.pressure` files.
//!
//! The parser is strict about the numbers it keeps (a garbled `avg10` is an error, never a
//! zero) and lenient about what it does not know (extra keys or lines from newer kernels are
//! skipped), so a kernel that adds a field does not degrade the probe.

use serde::{Deserialize, Serialize};

use super::source::Garbled;

/// One PSI line: percentages of wall time some (or all) tasks were stalled, averaged over
/// 10 s, 60 s and 300 s, and the total stall time in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PsiLine {
    /// Percent of wall time stalled over the last 10 s (0..=100).
    pub avg10: f64,
    /// Percent of wall time stalled over the last 60 s (0..=100).
    pub avg60: f64,
    /// Percent of wall time stalled over the last 300 s (0..=100).
    pub avg300: f64,
    /// Total stall time, µs (a counter that only grows).
    pub total_us: u64,
}

/// A whole PSI file. `full` is absent from CPU pressure before Linux 5.13.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Psi {
    /// Time at least one task was stalled.
    pub some: PsiLine,
    /// Time all non-idle tasks were stalled at once.
    pub full: Option<PsiLine>,
}

/// Parses a PSI file; the `some` line is required.
pub(super) fn parse_psi(text: &str) -> Result<Psi, Garbled> {
    let mut some = None;
    let mut full = None;
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let slot = match words.next() {
            Some("some") => &mut some,
            Some("full") => &mut full,
            _ => continue,
        };
        *slot = Some(parse_line(words).map_err(|e| e.in_line(line))?);
    }
    let some = some.ok_or(Garbled::Missing("no `some` line"))?;
    Ok(Psi { some, full })
}

fn parse_line<'a>(pairs: impl Iterator<Item = &'a str>) -> Result<PsiLine, Garbled> {
    let (mut avg10, mut avg60, mut avg300, mut total) = (None, None, None, None);
    for pair in pairs {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| Garbled::bad("pair", pair))?;
        let bad = || Garbled::BadField {
            key: key.to_owned(),
            value: value.to_owned(),
        };
        match key {
            "avg10" => avg10 = Some(percent(value).ok_or_else(bad)?),
            "avg60" => avg60 = Some(percent(value).ok_or_else(bad)?),
            "avg300" => avg300 = Some(percent(value).ok_or_else(bad)?),
            "total" => total = Some(value.parse().map_err(|_| bad())?),
            _ => {}
        }
    }
    match (avg10, avg60, avg300, total) {
        (Some(avg10), Some(avg60), Some(avg300), Some(total_us)) => Ok(PsiLine {
            avg10,
            avg60,
            avg300,
            total_us,
        }),
        _ => Err(Garbled::Missing("missing avg10, avg60, avg300 or total")),
    }
}

fn percent(value: &str) -> Option<f64> {
    value
        .parse::<f64>()
        .ok()
        .filter(|v| (0.0..=100.0).contains(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_some_and_full() {
        let text = "some avg10=51.21 avg60=48.67 avg300=27.34 total=445244858\n\
                    full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
        let psi = parse_psi(text).unwrap();
        assert_eq!(psi.some.avg10, 51.21);
        assert_eq!(psi.some.total_us, 445244858);
        assert_eq!(psi.full.unwrap().avg300, 0.0);
    }

    #[test]
    fn full_is_optional_but_numbers_are_not() {
        let psi = parse_psi("some avg10=1.00 avg60=2.00 avg300=3.00 total=4\n").unwrap();
        assert_eq!(psi.full, None);
        assert!(parse_psi("some avg10=x avg60=2.00 avg300=3.00 total=4\n").is_err());
        assert!(parse_psi("some avg10=1.00 avg60=2.00\n").is_err());
        assert!(parse_psi("").is_err());
    }
}
