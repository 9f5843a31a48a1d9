//! Names that become KV keys (applications, nodes) and `k=v` labels.

use crate::FleetError;

/// Application and node names: 1-64 of `[A-Za-z0-9_-]`, so they are safe inside a KV key.
pub fn check_name(what: &'static str, value: &str) -> Result<(), FleetError> {
    let invalid = |reason| FleetError::InvalidName {
        what,
        value: value.to_owned(),
        reason,
    };
    if value.is_empty() || value.len() > 64 {
        return Err(invalid("1 to 64 characters"));
    }
    if !value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(invalid("only letters, digits, '-' and '_'"));
    }
    Ok(())
}

/// Parses `key=value` (a node label or a selector term).
pub fn parse_label(text: &str) -> Result<(String, String), FleetError> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(FleetError::InvalidName {
            what: "label",
            value: text.to_owned(),
            reason: "expected key=value",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_labels() {
        assert!(check_name("node", "edge-1_a").is_ok());
        assert!(check_name("node", "").is_err());
        assert!(check_name("node", "a.b").is_err());
        assert!(check_name("node", &"x".repeat(65)).is_err());
        assert_eq!(
            parse_label("zone=eu").unwrap(),
            ("zone".into(), "eu".into())
        );
        assert!(parse_label("zone").is_err());
        assert!(parse_label("=x").is_err());
    }
}
