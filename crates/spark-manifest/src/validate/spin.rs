//! From a Spin manifest (`crate::spin`) to the validated [`Manifest`] a `spark.toml` gives.
//!
//! A Spin component becomes a module (its id is the component id); the `[[trigger.http]]`
//! entries naming it become its routes, prefixed by `[application.trigger.http] base`. A
//! component reached only through private routes (Spin's service chaining) or through none is
//! checked but not served: Spark has no internal network for it. Spark's module settings come
//! from `[component.<id>.tool.spark]`, the node's from `[application.tool.spark]`; everything
//! else takes the defaults a `spark.toml` would.

mod component;

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::{Validator, toml_diagnostic};
use crate::error::{Diagnostic, ManifestError};
use crate::routes::Route;
use crate::spin::{
    RawHttpTrigger, RawHttpTriggers, RawSpin, RawStoreLimits, SPIN_MANIFEST_VERSION, SpinProbe,
};
use crate::units::parse_byte_size;
use crate::{
    KeyValueStoreSpec, Manifest, ManifestKind, NodeSettings, OrchestratorSettings,
    PredictorSettings, Trigger, VariableSpec,
};

/// Something on disk the manifest names, checked by [`check_files`] (not by the pure parse).
pub(crate) struct FileCheck {
    /// What names it, for the message (`component 'x': source`).
    pub what: String,
    pub path: PathBuf,
    /// A directory (a `files` mount) rather than a regular file (a component).
    pub directory: bool,
    pub span: Range<usize>,
}

/// Parses and validates a Spin manifest; also returns what [`check_files`] looks at.
pub(crate) fn parse(
    text: &str,
    source: &Path,
) -> Result<(Manifest, Vec<FileCheck>), ManifestError> {
    let invalid = |diagnostics| ManifestError::Invalid {
        file: source.to_path_buf(),
        diagnostics,
    };
    check_version(text).map_err(|d| invalid(vec![d]))?;
    let raw: RawSpin =
        toml::from_str(text).map_err(|e| invalid(vec![toml_diagnostic(text, &e)]))?;
    let http: RawHttpTriggers =
        toml::from_str(text).map_err(|e| invalid(vec![toml_diagnostic(text, &e)]))?;
    let mut v = Validator {
        text,
        base: source.parent().unwrap_or(Path::new("")).to_path_buf(),
        diagnostics: Vec::new(),
    };
    let app = raw.application.get_ref();
    let name = app.name.get_ref().trim();
    if name.is_empty() {
        v.error(app.name.span(), "application.name is empty");
    }
    let spark = app.tool.as_ref().and_then(|t| t.spark.as_ref());
    let node = spark.map_or_else(NodeSettings::default, |s| v.node(s.node.as_ref()));
    let orchestrator = spark.map_or_else(OrchestratorSettings::default, |s| {
        v.orchestrator(s.orchestrator.as_ref())
    });
    let predictor = spark.map_or_else(PredictorSettings::default, |s| {
        v.predictor(s.predictor.as_ref())
    });
    let nn = spark.and_then(|s| v.nn(s.nn.as_ref()));
    let base_path = v.http_base(&app.trigger);
    let variables = v.app_variables(&raw.variables);
    v.trigger_types(&raw.trigger);
    let routes = v.http_routes(&http.trigger.http, &base_path, &raw);
    let mut modules = Vec::new();
    let mut checks = Vec::new();
    let mut labels = Vec::new();
    for (id, component) in &raw.component {
        let public = routes.get(id.get_ref()).cloned().unwrap_or_default();
        let scope = component::Scope {
            node: &node,
            variables: &variables,
        };
        let Some(module) = v.spin_component(id, component, scope, &mut checks) else {
            continue;
        };
        labels.extend(module.key_value_stores.iter().cloned());
        if !public.is_empty() {
            let base = if base_path.is_empty() {
                "/"
            } else {
                &base_path
            };
            modules.push(crate::ModuleSpec {
                trigger: Trigger::Http { routes: public },
                spin_base_path: Some(base.to_owned()),
                ..module
            });
        }
    }
    if modules.is_empty() && v.diagnostics.is_empty() {
        v.diagnostics.push(Diagnostic {
            line: 1,
            column: 1,
            message: "the application serves nothing: add a [[trigger.http]] with a public route and a [component.<id>] it names".into(),
        });
    }
    let key_value_stores = v.stores(labels, spark.map(|s| &s.key_value_stores));
    if !v.diagnostics.is_empty() {
        return Err(invalid(v.diagnostics));
    }
    let mut manifest = Manifest {
        source: source.to_path_buf(),
        text: text.to_owned(),
        node,
        orchestrator,
        predictor,
        nn,
        modules,
        kind: ManifestKind::Spin,
        application: Some(name.to_owned()),
        variables,
        key_value_stores,
    };
    manifest.bind_modules();
    Ok((manifest, checks))
}

/// Checks that every component source is a regular file and every `files` mount a directory.
pub(crate) fn check_files(text: &str, manifest: &Manifest) -> Result<(), ManifestError> {
    let (_, checks) = parse(text, &manifest.source)?;
    let mut diagnostics = Vec::new();
    for check in checks {
        let problem = match std::fs::metadata(&check.path) {
            Ok(meta) if check.directory && meta.is_dir() => continue,
            Ok(meta) if !check.directory && meta.is_file() => continue,
            Ok(_) if check.directory => {
                "is not a directory (Spark mounts directories: put the file in one and mount that)"
                    .to_owned()
            }
            Ok(_) => "is not a regular file".to_owned(),
            Err(e) => format!("cannot be read: {e}"),
        };
        diagnostics.push(Diagnostic::at(
            text,
            check.span,
            format!("{} {} {problem}", check.what, check.path.display()),
        ));
    }
    if diagnostics.is_empty() {
        Ok(())
    } else {
        Err(ManifestError::Invalid {
            file: manifest.source.clone(),
            diagnostics,
        })
    }
}

fn check_version(text: &str) -> Result<(), Diagnostic> {
    let probe: SpinProbe = toml::from_str(text).map_err(|e| toml_diagnostic(text, &e))?;
    let Some(version) = probe.spin_manifest_version else {
        return Err(Diagnostic {
            line: 1,
            column: 1,
            message: "missing `spin_manifest_version = 2`".into(),
        });
    };
    match version.get_ref() {
        toml::Value::Integer(SPIN_MANIFEST_VERSION) => Ok(()),
        toml::Value::String(s) if s == "1" => Err(Diagnostic::at(
            text,
            version.span(),
            "Spin manifest version 1 is not supported: Spark reads `spin_manifest_version = 2` (convert the file with `spin doctor` or by hand)",
        )),
        other => Err(Diagnostic::at(
            text,
            version.span(),
            format!(
                "unsupported spin_manifest_version {other}: Spark reads version {SPIN_MANIFEST_VERSION}"
            ),
        )),
    }
}

/// Lowercase letters and digits in words joined by `_`, starting with a letter: Spin's rule
/// for variable names.
pub(crate) fn is_lower_snake(name: &str) -> bool {
    is_words(name, '_')
}

/// A key-value store label: kebab-case or snake_case.
fn is_label(name: &str) -> bool {
    is_words(name, '-') || is_words(name, '_')
}

fn is_words(name: &str, separator: char) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.split(separator).all(|word| {
            !word.is_empty()
                && word
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
}

impl Validator<'_> {
    /// `[application.trigger.http] base`: a path prefix for every route (Spin 2; Spin 3
    /// dropped it). `""` when not set.
    fn http_base(&mut self, raw: &BTreeMap<Spanned<String>, Spanned<toml::Value>>) -> String {
        let mut base = String::new();
        for (kind, table) in raw {
            if kind.get_ref() != "http" {
                self.error(
                    kind.span(),
                    format!(
                        "application.trigger.{}: Spark serves HTTP triggers only",
                        kind.get_ref()
                    ),
                );
                continue;
            }
            let Some(table) = table.get_ref().as_table() else {
                self.error(table.span(), "application.trigger.http must be a table");
                continue;
            };
            for (key, value) in table {
                match (key.as_str(), value.as_str()) {
                    ("base", Some(path)) if path.starts_with('/') && !path.contains("...") => {
                        base = path.trim_end_matches('/').to_owned();
                    }
                    ("base", _) => self.error(
                        kind.span(),
                        "application.trigger.http.base must be a path starting with '/'",
                    ),
                    (other, _) => self.error(
                        kind.span(),
                        format!("application.trigger.http.{other} is not supported by Spark"),
                    ),
                }
            }
        }
        base
    }

    fn app_variables(
        &mut self,
        raw: &BTreeMap<Spanned<String>, Spanned<crate::spin::RawVariable>>,
    ) -> BTreeMap<String, VariableSpec> {
        let mut variables = BTreeMap::new();
        for (name, spec) in raw {
            if !is_lower_snake(name.get_ref()) {
                self.error(
                    name.span(),
                    format!(
                        "variable {:?}: names are lower_snake_case (letters, digits, '_'), starting with a letter",
                        name.get_ref()
                    ),
                );
            }
            let spec_ref = spec.get_ref();
            let required = spec_ref.required.as_ref().is_some_and(|r| *r.get_ref());
            match (&spec_ref.default, required) {
                (Some(default), true) => self.error(
                    default.span(),
                    format!(
                        "variable {:?}: give a default or `required = true`, not both",
                        name.get_ref()
                    ),
                ),
                (None, false) => self.error(
                    spec.span(),
                    format!(
                        "variable {:?}: give a default or `required = true`",
                        name.get_ref()
                    ),
                ),
                _ => {}
            }
            variables.insert(
                name.get_ref().clone(),
                VariableSpec {
                    default: spec_ref.default.as_ref().map(|d| d.get_ref().clone()),
                    required,
                    secret: spec_ref.secret.unwrap_or(false),
                },
            );
        }
        variables
    }

    /// Every trigger type but `http` is refused, at its name.
    fn trigger_types(&mut self, raw: &BTreeMap<Spanned<String>, Spanned<toml::Value>>) {
        for kind in raw.keys().filter(|k| k.get_ref() != "http") {
            self.error(
                kind.span(),
                format!(
                    "trigger type '{}' is not supported: Spark serves [[trigger.http]] only",
                    kind.get_ref()
                ),
            );
        }
    }

    /// The public routes of each component id (private routes are checked, not served).
    fn http_routes(
        &mut self,
        raw: &[Spanned<RawHttpTrigger>],
        base: &str,
        spin: &RawSpin,
    ) -> BTreeMap<String, Vec<Route>> {
        let mut routes: BTreeMap<String, Vec<Route>> = BTreeMap::new();
        let mut owners: std::collections::HashMap<Route, String> = std::collections::HashMap::new();
        for trigger in raw {
            let span = trigger.span();
            let trigger = trigger.get_ref();
            for (field, value) in [
                ("components", &trigger.components),
                ("static_response", &trigger.static_response),
            ] {
                if let Some(value) = value {
                    self.error(
                        value.span(),
                        format!("trigger.http.{field} is not supported by Spark"),
                    );
                }
            }
            self.executor(trigger.executor.as_ref());
            let Some(id) = self.trigger_component(trigger, span, spin) else {
                continue;
            };
            let Some(route) = self.spin_route(&trigger.route, base) else {
                continue;
            };
            let Some(route) = route else { continue }; // private
            if let Some(owner) = owners.insert(route.clone(), id.clone()) {
                self.error(
                    trigger.route.span(),
                    format!("duplicate route {route} (already served by component '{owner}')"),
                );
                continue;
            }
            routes.entry(id).or_default().push(route);
        }
        routes
    }

    /// The component id a trigger names, if it names a declared one.
    fn trigger_component(
        &mut self,
        trigger: &RawHttpTrigger,
        span: Range<usize>,
        spin: &RawSpin,
    ) -> Option<String> {
        let Some(component) = &trigger.component else {
            self.error(span, "[[trigger.http]] needs `component = \"<id>\"`");
            return None;
        };
        let Some(id) = component.get_ref().as_str() else {
            self.error(
                component.span(),
                "an inline component table in [[trigger.http]] is not supported by Spark: declare it as [component.<id>] and give `component = \"<id>\"`",
            );
            return None;
        };
        if !spin.component.keys().any(|k| k.get_ref() == id) {
            self.error(
                component.span(),
                format!("[[trigger.http]] names component '{id}', which is not declared: add [component.{id}]"),
            );
            return None;
        }
        Some(id.to_owned())
    }

    /// `executor = { type = "spin" }` is what Spark does; Wagi is refused.
    fn executor(&mut self, raw: Option<&Spanned<toml::Value>>) {
        let Some(raw) = raw else { return };
        let kind = raw
            .get_ref()
            .as_table()
            .and_then(|t| t.get("type"))
            .and_then(toml::Value::as_str);
        if kind != Some("spin") {
            self.error(
                raw.span(),
                "trigger.http.executor: Spark runs `{ type = \"spin\" }` (WASI HTTP) components only; Wagi is not supported",
            );
        }
    }

    /// A route as written, under `base`: `Some(None)` for a private route.
    fn spin_route(&mut self, raw: &Spanned<toml::Value>, base: &str) -> Option<Option<Route>> {
        let text = match raw.get_ref() {
            toml::Value::String(text) => text,
            toml::Value::Table(t)
                if t.len() == 1
                    && t.get("private").and_then(toml::Value::as_bool) == Some(true) =>
            {
                return Some(None);
            }
            _ => {
                self.error(
                    raw.span(),
                    "trigger.http.route must be a path (\"/x\", \"/x/...\") or { private = true }",
                );
                return None;
            }
        };
        if text.split('/').any(|segment| segment.starts_with(':')) {
            self.error(
                raw.span(),
                format!("route {text:?}: single-segment wildcards (':name') are not supported by Spark; use a trailing wildcard (\"/x/...\") and read the path"),
            );
            return None;
        }
        if !base.is_empty() && !text.starts_with('/') {
            self.error(raw.span(), format!("route {text:?} must start with '/'"));
            return None;
        }
        match Route::parse(&format!("{base}{text}")) {
            Ok(route) => Some(Some(route)),
            Err(why) => {
                self.error(raw.span(), why.to_string());
                None
            }
        }
    }

    /// The application's stores: every label a component uses, with the limits from
    /// `[application.tool.spark.key_value_stores.<label>]` or the defaults.
    fn stores(
        &mut self,
        used: Vec<String>,
        raw: Option<&BTreeMap<Spanned<String>, Spanned<RawStoreLimits>>>,
    ) -> BTreeMap<String, KeyValueStoreSpec> {
        let default = KeyValueStoreSpec::default();
        let mut stores: BTreeMap<String, KeyValueStoreSpec> = used
            .into_iter()
            .map(|label| (label, default.clone()))
            .collect();
        for (label, limits) in raw.into_iter().flatten() {
            if !is_label(label.get_ref()) {
                self.error(
                    label.span(),
                    format!(
                        "key-value store {:?}: labels are kebab-case or snake_case",
                        label.get_ref()
                    ),
                );
            }
            let limits = limits.get_ref();
            let who = format!("key-value store '{}'", label.get_ref());
            let spec = KeyValueStoreSpec {
                max_value_size: self.store_size(
                    limits.max_value_size.as_ref(),
                    default.max_value_size,
                    &who,
                    "max_value_size",
                ),
                max_keys: self.int(
                    limits.max_keys.as_ref(),
                    default.max_keys as i64,
                    1..=100_000_000,
                    &format!("{who}: max_keys"),
                ) as u64,
                max_bytes: self.store_size(
                    limits.max_bytes.as_ref(),
                    default.max_bytes,
                    &who,
                    "max_bytes",
                ),
                fleet: limits.fleet.unwrap_or(false),
            };
            stores.insert(label.get_ref().clone(), spec);
        }
        stores
    }

    fn store_size(
        &mut self,
        raw: Option<&Spanned<String>>,
        default: u64,
        who: &str,
        field: &str,
    ) -> u64 {
        let Some(raw) = raw else { return default };
        match parse_byte_size(raw.get_ref()) {
            Ok(0) => {
                self.error(
                    raw.span(),
                    format!("{who}: {field} must be greater than zero"),
                );
                default
            }
            Ok(bytes) => bytes,
            Err(why) => {
                self.error(raw.span(), format!("{who}: {field}: {why}"));
                default
            }
        }
    }
}

#[cfg(test)]
mod tests;
