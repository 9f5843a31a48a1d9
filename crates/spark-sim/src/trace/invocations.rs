//! The invocations file: `HashOwner,HashApp,HashFunction[,Trigger],<minute columns>`.
//!
//! Decision worth knowing: columns are found by header name in any order, and every other
//! column must be a minute column (`17`, `minute_17`, `min17`, ...), consecutive and in order,
//! whatever the first number is (`1..1440`, `480..959`). A column we cannot place is an error,
//! not something we skip: a silently dropped minute would shift every arrival after it.

use std::collections::HashMap;

use super::csv::{self, Record};
use crate::error::{ParseErrorKind, TraceError};

/// Invocation counts, grouped by application.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocations {
    /// Number of minute columns (the trace length in minutes).
    pub minutes: usize,
    /// The number in the first minute column's name (1 for `1..1440`, 480 for `480..`).
    pub first_minute: u64,
    /// Applications, in order of first appearance.
    pub apps: Vec<AppInvocations>,
}

/// One application's invocations (its functions merged).
#[derive(Debug, Clone, PartialEq)]
pub struct AppInvocations {
    /// `HashApp`.
    pub app: String,
    /// `HashFunction` of each merged row, in file order.
    pub functions: Vec<String>,
    /// `(minute index from 0, count)` for minutes with at least one call, ascending.
    pub counts: Vec<(u32, u32)>,
}

struct Header {
    app: usize,
    function: usize,
    minute_cols: Vec<usize>,
    first_minute: u64,
    width: usize,
    names: Vec<String>,
}

/// Parses an invocations file held in memory; `file` names it in errors.
pub fn parse_invocations(text: &str, file: &str) -> Result<Invocations, TraceError> {
    let mut records = csv::records(text, file);
    let header_rec = records
        .next()
        .ok_or_else(|| TraceError::whole(file, ParseErrorKind::NoHeader))??;
    let header = parse_header(&header_rec).map_err(|k| TraceError::at(file, header_rec.line, k))?;
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut apps: Vec<AppInvocations> = Vec::new();
    let mut rows = 0usize;
    for rec in records {
        let rec = rec?;
        rows += 1;
        let (app, function, counts) =
            parse_row(&rec, &header).map_err(|k| TraceError::at(file, rec.line, k))?;
        let slot = *index.entry(app.clone()).or_insert_with(|| {
            apps.push(AppInvocations {
                app,
                functions: Vec::new(),
                counts: Vec::new(),
            });
            apps.len() - 1
        });
        apps[slot].functions.push(function);
        apps[slot].counts.extend(counts);
    }
    if rows == 0 {
        return Err(TraceError::whole(file, ParseErrorKind::NoRows));
    }
    for app in &mut apps {
        merge_minutes(&mut app.counts);
    }
    if apps.iter().all(|a| a.counts.is_empty()) {
        return Err(TraceError::whole(file, ParseErrorKind::NoInvocations));
    }
    Ok(Invocations {
        minutes: header.minute_cols.len(),
        first_minute: header.first_minute,
        apps,
    })
}

fn parse_header(rec: &Record<'_>) -> Result<Header, ParseErrorKind> {
    let names: Vec<String> = rec.fields.iter().map(|f| f.to_string()).collect();
    let (mut owner, mut app, mut function, mut trigger) = (None, None, None, None);
    let mut minute_cols = Vec::new();
    let mut first_minute = 0;
    let mut previous: Option<u64> = None;
    for (i, name) in names.iter().enumerate() {
        let slot = match name.as_str() {
            "HashOwner" => &mut owner,
            "HashApp" => &mut app,
            "HashFunction" => &mut function,
            "Trigger" => &mut trigger,
            other => {
                let n = minute_number(other)
                    .ok_or_else(|| ParseErrorKind::UnknownColumn(other.to_owned()))?;
                match previous {
                    None => first_minute = n,
                    Some(p) if p.checked_add(1) == Some(n) => {}
                    Some(p) => {
                        return Err(ParseErrorKind::NonConsecutiveMinutes {
                            previous: p,
                            found: other.to_owned(),
                        });
                    }
                }
                previous = Some(n);
                minute_cols.push(i);
                continue;
            }
        };
        if slot.replace(i).is_some() {
            return Err(ParseErrorKind::DuplicateColumn(name.clone()));
        }
    }
    owner.ok_or(ParseErrorKind::MissingColumn("HashOwner"))?;
    let app = app.ok_or(ParseErrorKind::MissingColumn("HashApp"))?;
    let function = function.ok_or(ParseErrorKind::MissingColumn("HashFunction"))?;
    if minute_cols.is_empty() {
        return Err(ParseErrorKind::NoMinuteColumns);
    }
    Ok(Header {
        app,
        function,
        minute_cols,
        first_minute,
        width: names.len(),
        names,
    })
}

/// `17`, `minute_17`, `minute17`, `min_17`, `m17` (any case) -> 17.
fn minute_number(name: &str) -> Option<u64> {
    let lower = name.to_ascii_lowercase();
    let digits = ["minute_", "minute", "min_", "min", "m"]
        .iter()
        .find_map(|p| lower.strip_prefix(p))
        .unwrap_or(&lower);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

type Row = (String, String, Vec<(u32, u32)>);

fn parse_row(rec: &Record<'_>, header: &Header) -> Result<Row, ParseErrorKind> {
    if rec.fields.len() != header.width {
        return Err(ParseErrorKind::FieldCount {
            expected: header.width,
            found: rec.fields.len(),
        });
    }
    let app = rec.fields[header.app].to_string();
    if app.is_empty() {
        return Err(ParseErrorKind::EmptyId("HashApp"));
    }
    let function = rec.fields[header.function].to_string();
    let mut counts = Vec::new();
    for (minute, &col) in header.minute_cols.iter().enumerate() {
        let value = &rec.fields[col];
        let n = csv::parse_count(value).ok_or_else(|| ParseErrorKind::BadNumber {
            column: header.names[col].clone(),
            value: value.to_string(),
            what: "integer count",
        })?;
        if n > 0 {
            counts.push((minute as u32, n));
        }
    }
    Ok((app, function, counts))
}

/// Sorts by minute and sums the counts of equal minutes (functions of one app).
fn merge_minutes(counts: &mut Vec<(u32, u32)>) {
    counts.sort_unstable_by_key(|&(m, _)| m);
    let mut merged: Vec<(u32, u32)> = Vec::with_capacity(counts.len());
    for &(m, c) in counts.iter() {
        match merged.last_mut() {
            Some(last) if last.0 == m => last.1 = last.1.saturating_add(c),
            _ => merged.push((m, c)),
        }
    }
    *counts = merged;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minute_names() {
        assert_eq!(minute_number("17"), Some(17));
        assert_eq!(minute_number("minute_17"), Some(17));
        assert_eq!(minute_number("Minute17"), Some(17));
        assert_eq!(minute_number("m5"), Some(5));
        assert_eq!(minute_number("minute_"), None);
        assert_eq!(minute_number("Average"), None);
        assert_eq!(minute_number("1a"), None);
    }

    #[test]
    fn merging_sums_equal_minutes() {
        let mut c = vec![(3, 1), (1, 2), (3, 4)];
        merge_minutes(&mut c);
        assert_eq!(c, vec![(1, 2), (3, 5)]);
    }
}
