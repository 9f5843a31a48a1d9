//! Validation of an application's variables (`[variables]`), key-value stores
//! (`[key_value.<label>]`) and what a module takes of them (`key_value_stores`,
//! `[module.variables]`, `missing_imports`).

use std::collections::BTreeMap;

use toml::Spanned;

use super::Validator;
use crate::schema::{RawKeyValue, RawModule, RawVariable};
use crate::{
    KeyValueStoreSpec, MissingImports, Part, VariableSpec, parse_template, valid_variable_name,
};

impl Validator<'_> {
    pub(super) fn variables(
        &mut self,
        raw: &BTreeMap<String, Spanned<RawVariable>>,
    ) -> BTreeMap<String, VariableSpec> {
        let mut out = BTreeMap::new();
        for (name, spec) in raw {
            let span = spec.span();
            let spec = spec.get_ref();
            if !valid_variable_name(name) {
                self.error(span.clone(), format!("variables.{name}: a variable name is lowercase letters, digits and '_', starting with a letter (at most 64)"));
            }
            let required = spec.required.unwrap_or(false);
            if required && let Some(default) = &spec.default {
                self.error(
                    default.span(),
                    format!("variables.{name}: a required variable has no default (give one or the other)"),
                );
            }
            if !required && spec.default.is_none() {
                self.error(
                    span,
                    format!("variables.{name}: give a `default` or `required = true`"),
                );
            }
            out.insert(
                name.clone(),
                VariableSpec {
                    default: spec.default.as_ref().map(|d| d.get_ref().clone()),
                    required,
                    secret: spec.secret.unwrap_or(false),
                },
            );
        }
        out
    }

    pub(super) fn key_value(
        &mut self,
        raw: &BTreeMap<String, Spanned<RawKeyValue>>,
    ) -> BTreeMap<String, KeyValueStoreSpec> {
        let d = KeyValueStoreSpec::default();
        let mut out = BTreeMap::new();
        for (label, store) in raw {
            if !valid_label(label) {
                self.error(store.span(), format!("key_value.{label}: a store label is 1-63 lowercase letters, digits, '-' or '_'"));
            }
            let raw = store.get_ref();
            let what = format!("key_value.{label}");
            let spec = KeyValueStoreSpec {
                max_value_size: self.size(
                    raw.max_value_size.as_ref(),
                    d.max_value_size,
                    &format!("{what}.max_value_size"),
                ),
                max_keys: self.int(
                    raw.max_keys.as_ref(),
                    d.max_keys as i64,
                    1..=100_000_000,
                    &format!("{what}.max_keys"),
                ) as u64,
                max_bytes: self.size(
                    raw.max_bytes.as_ref(),
                    d.max_bytes,
                    &format!("{what}.max_bytes"),
                ),
                fleet: raw.fleet.unwrap_or(false),
            };
            if spec.max_value_size == 0 || spec.max_value_size > spec.max_bytes {
                let span = raw
                    .max_value_size
                    .as_ref()
                    .map_or(store.span(), Spanned::span);
                self.error(
                    span,
                    format!("{what}.max_value_size must be between 1 byte and max_bytes"),
                );
            }
            out.insert(label.clone(), spec);
        }
        out
    }

    pub(super) fn module_stores(&mut self, raw: &RawModule, who: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for label in &raw.key_value_stores {
            if !valid_label(label.get_ref()) {
                self.error(label.span(), format!("{who}: key_value_stores: {:?} is not a store label (1-63 lowercase letters, digits, '-' or '_')", label.get_ref()));
            } else if !out.contains(label.get_ref()) {
                out.push(label.get_ref().clone());
            }
        }
        out
    }

    pub(super) fn module_variables(
        &mut self,
        raw: &RawModule,
        app: &BTreeMap<String, VariableSpec>,
        who: &str,
    ) -> BTreeMap<String, String> {
        for (name, template) in &raw.variables {
            if !valid_variable_name(name) {
                self.error(template.span(), format!("{who}: variables.{name}: a variable name is lowercase letters, digits and '_', starting with a letter"));
            }
            match parse_template(template.get_ref()) {
                Err(why) => self.error(template.span(), format!("{who}: variables.{name}: {why}")),
                Ok(parts) => {
                    for part in parts {
                        if let Part::Variable(v) = part
                            && !app.contains_key(v)
                        {
                            self.error(template.span(), format!("{who}: variables.{name}: refers to '{v}', which [variables] does not declare"));
                        }
                    }
                }
            }
        }
        raw.variables
            .iter()
            .map(|(k, v)| (k.clone(), v.get_ref().clone()))
            .collect()
    }

    pub(super) fn missing_imports(&mut self, raw: &RawModule, who: &str) -> MissingImports {
        let Some(value) = &raw.missing_imports else {
            return MissingImports::Refuse;
        };
        match value.get_ref().as_str() {
            "refuse" => MissingImports::Refuse,
            "trap" => MissingImports::Trap,
            other => {
                self.error(
                    value.span(),
                    format!("{who}: missing_imports must be \"refuse\" or \"trap\", got {other:?}"),
                );
                MissingImports::Refuse
            }
        }
    }
}

/// A key-value store label: 1-63 lowercase letters, digits, `-` or `_`.
fn valid_label(label: &str) -> bool {
    (1..=63).contains(&label.len())
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}
