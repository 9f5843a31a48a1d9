//! A minimal CSV reader for the trace files: one record per line, optional double quotes.
//!
//! Decision worth knowing: we do not pull in a CSV crate. The Azure files are plain
//! comma-separated hashes and numbers; what we need that a generic reader does not give for free
//! is exact 1-based line numbers in every error, and refusing (not guessing) when a row has the
//! wrong number of fields. Quoted fields are accepted (with `""` as an escaped quote) but may not
//! span lines.

use std::borrow::Cow;

use crate::error::{ParseErrorKind, TraceError};

/// One non-blank line of a file, split into fields.
#[derive(Debug)]
pub(crate) struct Record<'a> {
    /// 1-based line number in the file.
    pub line: usize,
    /// The fields, unquoted.
    pub fields: Vec<Cow<'a, str>>,
}

/// Splits `text` into records, skipping blank lines. The first record is the header.
pub(crate) fn records<'a>(
    text: &'a str,
    file: &'a str,
) -> impl Iterator<Item = Result<Record<'a>, TraceError>> + 'a {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(move |(i, l)| {
            let line = i + 1;
            split(l)
                .map(|fields| Record { line, fields })
                .map_err(|k| TraceError::at(file, line, k))
        })
}

/// Splits one line into fields; surrounding spaces of unquoted fields are trimmed.
pub(crate) fn split(line: &str) -> Result<Vec<Cow<'_, str>>, ParseErrorKind> {
    let mut fields = Vec::new();
    let mut rest = line;
    loop {
        let trimmed = rest.trim_start();
        if let Some(quoted) = trimmed.strip_prefix('"') {
            let (value, after) = take_quoted(quoted)?;
            fields.push(Cow::Owned(value));
            let after = after.trim_start();
            match after.strip_prefix(',') {
                Some(next) => rest = next,
                None if after.is_empty() => return Ok(fields),
                None => return Err(ParseErrorKind::UnterminatedQuote),
            }
        } else {
            match rest.find(',') {
                Some(pos) => {
                    fields.push(Cow::Borrowed(rest[..pos].trim()));
                    rest = &rest[pos + 1..];
                }
                None => {
                    fields.push(Cow::Borrowed(rest.trim()));
                    return Ok(fields);
                }
            }
        }
    }
}

/// Reads a quoted field body (after the opening quote); returns the value and the rest.
fn take_quoted(s: &str) -> Result<(String, &str), ParseErrorKind> {
    let mut value = String::new();
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c != '"' {
            value.push(c);
            continue;
        }
        if let Some((_, '"')) = chars.peek() {
            value.push('"');
            chars.next();
            continue;
        }
        return Ok((value, &s[i + 1..]));
    }
    Err(ParseErrorKind::UnterminatedQuote)
}

/// Parses a non-negative integer count; accepts `3` and `3.0`, refuses `-1`, `2.5`, `x`, ``.
pub(crate) fn parse_count(value: &str) -> Option<u32> {
    if let Ok(n) = value.parse::<u32>() {
        return Some(n);
    }
    let x: f64 = value.parse().ok()?;
    let ok = x.is_finite() && x >= 0.0 && x.fract() == 0.0 && x <= f64::from(u32::MAX);
    ok.then_some(x as u32)
}

/// Parses a finite non-negative number.
pub(crate) fn parse_nonneg(value: &str) -> Option<f64> {
    let x: f64 = value.parse().ok()?;
    (x.is_finite() && x >= 0.0).then_some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_plain_and_quoted_fields() {
        let f = split(r#"a, b ,"c,d","e""f""#).unwrap();
        assert_eq!(f, vec!["a", "b", "c,d", "e\"f"]);
        assert_eq!(split("x,,y").unwrap(), vec!["x", "", "y"]);
        assert_eq!(split("").unwrap(), vec![""]);
    }

    #[test]
    fn refuses_unterminated_quotes() {
        assert_eq!(split(r#"a,"bc"#), Err(ParseErrorKind::UnterminatedQuote));
        assert_eq!(split(r#"a,"b"c"#), Err(ParseErrorKind::UnterminatedQuote));
    }

    #[test]
    fn counts_accept_integral_values_only() {
        assert_eq!(parse_count("7"), Some(7));
        assert_eq!(parse_count("7.0"), Some(7));
        assert_eq!(parse_count("7.5"), None);
        assert_eq!(parse_count("-1"), None);
        assert_eq!(parse_count("abc"), None);
        assert_eq!(parse_count(""), None);
        assert_eq!(parse_nonneg("2.5"), Some(2.5));
        assert_eq!(parse_nonneg("NaN"), None);
    }

    #[test]
    fn records_keep_physical_line_numbers() {
        let text = "h1,h2\r\n\r\n1,2\n3,4\n";
        let lines: Vec<usize> = records(text, "f").map(|r| r.unwrap().line).collect();
        assert_eq!(lines, vec![1, 3, 4]);
    }
}
