//! The durations and memory files: per-application execution time and memory, by header name.
//!
//! Decision worth knowing: both files are reduced to one number per `HashApp` while parsing.
//! Durations are the `Count`-weighted mean of the functions' `Average` (an app whose rows all
//! have `Count` 0 gets the plain mean); memory is the sum of `AverageAllocatedMb` over the rows
//! of the app, because a file with several rows for one app is per function (the Azure original
//! has one row per app, where the sum is that row).

use std::collections::HashMap;

use super::csv::{self, Record};
use crate::error::{ParseErrorKind, TraceError};

/// Average execution time per application, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Durations {
    /// `HashApp` -> Count-weighted mean of `Average` (ms).
    pub by_app: HashMap<String, f64>,
}

/// Average allocated memory per application, in MB.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Memory {
    /// `HashApp` -> sum over the app's rows of `AverageAllocatedMb`.
    pub by_app: HashMap<String, f64>,
}

/// Parses a durations file (`HashApp`, `Average`, `Count` required; other columns ignored).
pub fn parse_durations(text: &str, file: &str) -> Result<Durations, TraceError> {
    let mut acc: HashMap<String, (f64, f64, f64, u32)> = HashMap::new();
    for_each_row(text, file, &["HashApp", "Average", "Count"], |vals| {
        let (average, count) = (vals.nums[0], vals.nums[1]);
        let (weighted, counts, plain, rows) = acc.get(&vals.app).copied().unwrap_or_default();
        let next = (
            weighted + average * count,
            counts + count,
            plain + average,
            rows.saturating_add(1),
        );
        let too_large = |column| ParseErrorKind::SumTooLarge {
            app: vals.app.clone(),
            column,
        };
        if !next.1.is_finite() {
            return Err(too_large("Count"));
        }
        if !(next.0.is_finite() && next.2.is_finite()) {
            return Err(too_large("Average"));
        }
        acc.insert(vals.app, next);
        Ok(())
    })?;
    let by_app = acc
        .into_iter()
        .map(|(app, (weighted, count, plain, rows))| {
            let mean = if count > 0.0 {
                // At most the largest `Average` but for rounding, which may tip a value
                // next to f64::MAX over it.
                (weighted / count).min(f64::MAX)
            } else {
                plain / f64::from(rows)
            };
            (app, mean)
        })
        .collect();
    Ok(Durations { by_app })
}

/// Parses a memory file (`HashApp`, `AverageAllocatedMb` required; other columns ignored).
pub fn parse_memory(text: &str, file: &str) -> Result<Memory, TraceError> {
    let mut by_app: HashMap<String, f64> = HashMap::new();
    for_each_row(text, file, &["HashApp", "AverageAllocatedMb"], |vals| {
        let next = by_app.get(&vals.app).copied().unwrap_or_default() + vals.nums[0];
        if !next.is_finite() {
            return Err(ParseErrorKind::SumTooLarge {
                app: vals.app,
                column: "AverageAllocatedMb",
            });
        }
        by_app.insert(vals.app, next);
        Ok(())
    })?;
    Ok(Memory { by_app })
}

struct RowValues {
    app: String,
    nums: Vec<f64>,
}

/// Finds `required` columns (the first is the app id, the rest numbers) and calls `f` per row;
/// an error from `f` names the row's line.
fn for_each_row(
    text: &str,
    file: &str,
    required: &[&'static str],
    mut f: impl FnMut(RowValues) -> Result<(), ParseErrorKind>,
) -> Result<(), TraceError> {
    let mut records = csv::records(text, file);
    let header = records
        .next()
        .ok_or_else(|| TraceError::whole(file, ParseErrorKind::NoHeader))??;
    let cols = find_columns(&header, required).map_err(|k| TraceError::at(file, header.line, k))?;
    let mut rows = 0;
    for rec in records {
        let rec = rec?;
        rows += 1;
        row_values(&rec, header.fields.len(), &cols, required)
            .and_then(&mut f)
            .map_err(|k| TraceError::at(file, rec.line, k))?;
    }
    if rows == 0 {
        return Err(TraceError::whole(file, ParseErrorKind::NoRows));
    }
    Ok(())
}

fn find_columns(
    header: &Record<'_>,
    required: &[&'static str],
) -> Result<Vec<usize>, ParseErrorKind> {
    for (i, name) in header.fields.iter().enumerate() {
        if header.fields[..i].contains(name) {
            return Err(ParseErrorKind::DuplicateColumn(name.to_string()));
        }
    }
    required
        .iter()
        .map(|&r| {
            header
                .fields
                .iter()
                .position(|f| f == r)
                .ok_or(ParseErrorKind::MissingColumn(r))
        })
        .collect()
}

fn row_values(
    rec: &Record<'_>,
    width: usize,
    cols: &[usize],
    names: &[&'static str],
) -> Result<RowValues, ParseErrorKind> {
    if rec.fields.len() != width {
        return Err(ParseErrorKind::FieldCount {
            expected: width,
            found: rec.fields.len(),
        });
    }
    let app = rec.fields[cols[0]].to_string();
    if app.is_empty() {
        return Err(ParseErrorKind::EmptyId("HashApp"));
    }
    let mut nums = Vec::with_capacity(cols.len() - 1);
    for (&col, &name) in cols[1..].iter().zip(&names[1..]) {
        let value = &rec.fields[col];
        let x = csv::parse_nonneg(value).ok_or_else(|| ParseErrorKind::BadNumber {
            column: name.to_owned(),
            value: value.to_string(),
            what: "number",
        })?;
        nums.push(x);
    }
    Ok(RowValues { app, nums })
}
