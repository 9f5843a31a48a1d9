//! Variables: application variables (`[variables]`), modules' templates over them
//! (`"{{ app_var }}"`), and their resolution against the environment.
//!
//! Pure: the environment is a function argument, so resolution is tested without touching the
//! process's environment. Names follow Spin's rule (lowercase letters, digits and `_`, starting
//! with a letter), so `SPARK_VARIABLE_<NAME>` is the upper-cased name.

use std::collections::BTreeMap;

use crate::{ManifestKind, VariableSpec};

/// Longest variable name.
pub const MAX_VARIABLE_NAME: usize = 64;

/// Whether `name` is a valid variable name (`[a-z][a-z0-9_]*`, at most 64 bytes).
pub fn valid_variable_name(name: &str) -> bool {
    name.len() <= MAX_VARIABLE_NAME
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Why a template or a variable could not be resolved. Never holds a value (a value may be
/// secret): only names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VariableError {
    /// `{{` without a matching `}}`, or an invalid name between them.
    #[error("template {template:?} is malformed: {why}")]
    Malformed {
        /// The template as written.
        template: String,
        /// What is wrong.
        why: String,
    },
    /// A template names an application variable that is not declared.
    #[error("template refers to undeclared application variable '{0}'")]
    Undeclared(String),
    /// A required variable has no value.
    #[error(
        "application variable '{name}' is required but has no value: set the environment variable {env}"
    )]
    Required {
        /// The variable.
        name: String,
        /// The environment variable(s) that would give it one (`A` or `A or B`).
        env: String,
    },
}

/// The parts of a template: literal text and the names of variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part<'a> {
    /// Text as written.
    Literal(&'a str),
    /// `{{ name }}`.
    Variable(&'a str),
}

/// Splits a template into literal text and `{{ name }}` references.
pub fn parse_template(template: &str) -> Result<Vec<Part<'_>>, VariableError> {
    let malformed = |why: &str| VariableError::Malformed {
        template: template.to_owned(),
        why: why.to_owned(),
    };
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        if open > 0 {
            parts.push(Part::Literal(&rest[..open]));
        }
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .ok_or_else(|| malformed("`{{` is not closed"))?;
        let name = after[..close].trim();
        if !valid_variable_name(name) {
            return Err(malformed(&format!(
                "{name:?} is not a variable name (lowercase letters, digits and '_', starting with a letter)"
            )));
        }
        parts.push(Part::Variable(name));
        rest = &after[close + 2..];
    }
    if rest.contains("}}") {
        return Err(malformed("`}}` without `{{`"));
    }
    if !rest.is_empty() {
        parts.push(Part::Literal(rest));
    }
    Ok(parts)
}

/// The environment variables that set application variable `name`, in order of precedence:
/// `SPARK_VARIABLE_<NAME>`, then (for a Spin application) `SPIN_VARIABLE_<NAME>`.
pub fn env_names(name: &str, kind: ManifestKind) -> Vec<String> {
    let upper = name.to_ascii_uppercase();
    let mut names = vec![format!("SPARK_VARIABLE_{upper}")];
    if kind == ManifestKind::Spin {
        names.push(format!("SPIN_VARIABLE_{upper}"));
    }
    names
}

/// Every application variable's value: the environment's (`env` looks names up), else the
/// default. A required variable without a value is an error naming it (never a value).
pub fn resolve_application(
    variables: &BTreeMap<String, VariableSpec>,
    kind: ManifestKind,
    env: impl Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, String>, VariableError> {
    let mut out = BTreeMap::new();
    for (name, spec) in variables {
        let names = env_names(name, kind);
        let value = names
            .iter()
            .find_map(|n| env(n))
            .or_else(|| spec.default.clone());
        match value {
            Some(value) => {
                out.insert(name.clone(), value);
            }
            None if spec.required => {
                return Err(VariableError::Required {
                    name: name.clone(),
                    env: names.join(" or "),
                });
            }
            None => {}
        }
    }
    Ok(out)
}

/// A module's variables, its templates filled from the application's values. A template
/// naming a variable without a value (neither default nor environment) is an error.
pub fn resolve_module(
    templates: &BTreeMap<String, String>,
    values: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, VariableError> {
    let mut out = BTreeMap::new();
    for (name, template) in templates {
        let mut value = String::new();
        for part in parse_template(template)? {
            match part {
                Part::Literal(text) => value.push_str(text),
                Part::Variable(var) => value.push_str(
                    values
                        .get(var)
                        .ok_or_else(|| VariableError::Undeclared(var.to_owned()))?,
                ),
            }
        }
        out.insert(name.clone(), value);
    }
    Ok(out)
}

/// Whether a module variable's template refers to a secret application variable (its value
/// is then secret too).
pub fn is_secret(template: &str, variables: &BTreeMap<String, VariableSpec>) -> bool {
    parse_template(template).is_ok_and(|parts| {
        parts
            .iter()
            .any(|p| matches!(p, Part::Variable(v) if variables.get(*v).is_some_and(|s| s.secret)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(default: Option<&str>, required: bool) -> VariableSpec {
        VariableSpec {
            default: default.map(str::to_owned),
            required,
            secret: false,
        }
    }

    #[test]
    fn templates_mix_text_and_variables() {
        assert_eq!(
            parse_template("a {{ x }}b{{y_2}}").unwrap(),
            [
                Part::Literal("a "),
                Part::Variable("x"),
                Part::Literal("b"),
                Part::Variable("y_2")
            ]
        );
        assert!(parse_template("{{ x ").is_err());
        assert!(parse_template("{{ X }}").is_err());
        assert!(parse_template("x }}").is_err());
    }

    #[test]
    fn the_environment_overrides_defaults_and_spin_names_only_for_spin() {
        let vars = BTreeMap::from([
            ("greeting".to_owned(), spec(Some("hi"), false)),
            ("token".to_owned(), spec(None, true)),
        ]);
        let env = |n: &str| match n {
            "SPIN_VARIABLE_TOKEN" => Some("spin".to_owned()),
            "SPARK_VARIABLE_GREETING" => Some("hello".to_owned()),
            _ => None,
        };
        let err = resolve_application(&vars, ManifestKind::Spark, env).unwrap_err();
        assert_eq!(
            err.to_string(),
            "application variable 'token' is required but has no value: set the environment variable SPARK_VARIABLE_TOKEN"
        );
        let values = resolve_application(&vars, ManifestKind::Spin, env).unwrap();
        assert_eq!(values["greeting"], "hello");
        assert_eq!(values["token"], "spin");
        let module = BTreeMap::from([("msg".to_owned(), "{{ greeting }}, {{token}}!".to_owned())]);
        assert_eq!(
            resolve_module(&module, &values).unwrap()["msg"],
            "hello, spin!"
        );
    }
}
