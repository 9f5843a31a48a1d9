//! One `[component.<id>]` of a Spin manifest to a module (routes are added by the caller).
//!
//! `files` are mounted read-only as whole directories (WASI preopens): a pattern is accepted
//! only when it names a whole directory (`dir`, `dir/**`, `dir/**/*`), because mounting a
//! directory for a narrower glob would let the guest read files the author did not list.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Component as PathPart, Path};

use toml::Spanned;

use super::super::Validator;
use super::{FileCheck, is_label, is_lower_snake};
use crate::spin::{RawComponent, RawSparkComponent};
use crate::{
    ComponentRef, DEFAULT_WEIGHT, FileMount, MissingImports, ModuleId, ModuleSpec, NodeSettings,
    OutboundPolicy, Priority, Trigger, VariableSpec,
};

/// What a component is validated against.
#[derive(Clone, Copy)]
pub(super) struct Scope<'a> {
    pub node: &'a NodeSettings,
    pub variables: &'a BTreeMap<String, VariableSpec>,
}

impl Validator<'_> {
    /// The module for a component, with an empty route list; `None` when its id is invalid.
    pub(super) fn spin_component(
        &mut self,
        id: &Spanned<String>,
        raw: &Spanned<RawComponent>,
        scope: Scope<'_>,
        checks: &mut Vec<FileCheck>,
    ) -> Option<ModuleSpec> {
        let module_id = match ModuleId::new(id.get_ref()) {
            Ok(module_id) => module_id,
            Err(why) => {
                self.error(id.span(), format!("component: {why}"));
                return None;
            }
        };
        let who = format!("component '{module_id}'");
        let raw = raw.get_ref();
        self.refuse_unsupported(raw, &who);
        let component = self.source(&raw.source, &who, checks);
        let spark = raw.tool.as_ref().and_then(|t| t.spark.as_ref());
        let settings = self.spark_settings(spark, scope.node, &who);
        Some(ModuleSpec {
            id: module_id,
            component,
            trigger: Trigger::Http { routes: Vec::new() },
            env: self.env(&raw.environment, &who),
            config: BTreeMap::new(),
            outbound: self.spin_outbound(&raw.allowed_outbound_hosts, &who),
            key_value_stores: self.labels(&raw.key_value_stores, &who),
            variables: self.component_variables(&raw.variables, scope.variables, &who),
            files: self.files(raw, &who, checks),
            ..settings
        })
    }

    /// Spin fields Spark cannot honour: refused when they ask for anything.
    fn refuse_unsupported(&mut self, raw: &RawComponent, who: &str) {
        let asks = |value: &toml::Value| match value {
            toml::Value::Array(a) => !a.is_empty(),
            toml::Value::Table(t) => !t.is_empty(),
            _ => true,
        };
        let fields = [
            (
                "sqlite_databases",
                &raw.sqlite_databases,
                "SQLite databases are not provided",
            ),
            (
                "ai_models",
                &raw.ai_models,
                "AI models (Serverless AI) are not provided",
            ),
            (
                "dependencies",
                &raw.dependencies,
                "component dependencies are not composed: compose the component before deploying it",
            ),
            (
                "profile",
                &raw.profile,
                "build profiles are not supported: point `source` at the build to run",
            ),
            (
                "allowed_http_hosts",
                &raw.allowed_http_hosts,
                "use allowed_outbound_hosts = [\"https://host\"] instead of the deprecated allowed_http_hosts",
            ),
        ];
        for (field, value, why) in fields {
            if let Some(value) = value
                && asks(value.get_ref())
            {
                self.error(
                    value.span(),
                    format!("{who}: {field} is not supported by Spark: {why}"),
                );
            }
        }
        if let Some(flag) = &raw.dependencies_inherit_configuration
            && *flag.get_ref()
        {
            self.error(flag.span(), format!("{who}: dependencies_inherit_configuration is not supported by Spark (no component dependencies)"));
        }
        if let Some(first) = raw.exclude_files.first() {
            self.error(first.span(), format!("{who}: exclude_files is not supported by Spark: it mounts whole directories; move the excluded files out of the mounted one"));
        }
    }

    /// `source`: a file (or a `sha256:` artifact, as `spark deploy` records); a remote source
    /// is refused, since the node fetches nothing.
    fn source(
        &mut self,
        raw: &Spanned<toml::Value>,
        who: &str,
        checks: &mut Vec<FileCheck>,
    ) -> ComponentRef {
        let fallback = ComponentRef::Artifact(String::new());
        match raw.get_ref() {
            toml::Value::String(text) if text.trim().is_empty() => {
                self.error(raw.span(), format!("{who}: `source` is empty"));
                fallback
            }
            toml::Value::String(text) => match ComponentRef::parse_artifact(text) {
                Some(Ok(artifact)) => artifact,
                Some(Err(why)) => {
                    self.error(raw.span(), format!("{who}: {why}"));
                    fallback
                }
                None => {
                    let path = self.base.join(text);
                    checks.push(FileCheck {
                        what: format!("{who}: source"),
                        path: path.clone(),
                        directory: false,
                        span: raw.span(),
                    });
                    ComponentRef::File(path)
                }
            },
            toml::Value::Table(table) if table.contains_key("url") => {
                let url = table
                    .get("url")
                    .and_then(toml::Value::as_str)
                    .unwrap_or("?");
                self.error(raw.span(), format!("{who}: source {{ url = {url:?}, digest = .. }} cannot be fetched here: Spark downloads nothing; download the file, check its digest and give its path (`source = \"app.wasm\"`)"));
                fallback
            }
            toml::Value::Table(table)
                if table.contains_key("registry") || table.contains_key("package") =>
            {
                self.error(raw.span(), format!("{who}: a registry source cannot be fetched here: Spark downloads nothing; fetch the package and give its file path"));
                fallback
            }
            _ => {
                self.error(
                    raw.span(),
                    format!("{who}: `source` must be a file path, or {{ url, digest }}"),
                );
                fallback
            }
        }
    }

    /// `allowed_outbound_hosts`: Spark's syntax is Spin's for http and https; templates are not
    /// expanded.
    fn spin_outbound(&mut self, raw: &[Spanned<String>], who: &str) -> OutboundPolicy {
        let (templated, plain): (Vec<_>, Vec<_>) = raw
            .iter()
            .cloned()
            .partition(|h| h.get_ref().contains("{{"));
        for host in templated {
            self.error(host.span(), format!("{who}: variables in allowed_outbound_hosts are not supported by Spark: write the host out"));
        }
        self.outbound(&plain, who)
    }

    fn labels(&mut self, raw: &[Spanned<String>], who: &str) -> Vec<String> {
        let mut labels = Vec::new();
        for label in raw {
            if !is_label(label.get_ref()) {
                self.error(
                    label.span(),
                    format!(
                        "{who}: key-value store {:?}: labels are kebab-case or snake_case",
                        label.get_ref()
                    ),
                );
            } else if !labels.contains(label.get_ref()) {
                labels.push(label.get_ref().clone());
            }
        }
        labels
    }

    /// Component variables: lower_snake_case names, templates naming declared application
    /// variables only.
    fn component_variables(
        &mut self,
        raw: &BTreeMap<Spanned<String>, Spanned<String>>,
        app: &BTreeMap<String, VariableSpec>,
        who: &str,
    ) -> BTreeMap<String, String> {
        let mut variables = BTreeMap::new();
        for (name, template) in raw {
            if !is_lower_snake(name.get_ref()) {
                self.error(
                    name.span(),
                    format!(
                        "{who}: variable {:?}: names are lower_snake_case, starting with a letter",
                        name.get_ref()
                    ),
                );
            }
            match template_references(template.get_ref()) {
                Ok(names) => {
                    for missing in names.iter().filter(|n| !app.contains_key(*n)) {
                        self.error(template.span(), format!("{who}: variable {:?} refers to {{{{ {missing} }}}}, which is not declared in [variables]", name.get_ref()));
                    }
                }
                Err(why) => self.error(
                    template.span(),
                    format!("{who}: variable {:?}: {why}", name.get_ref()),
                ),
            }
            variables.insert(name.get_ref().clone(), template.get_ref().clone());
        }
        variables
    }

    fn files(
        &mut self,
        raw: &RawComponent,
        who: &str,
        checks: &mut Vec<FileCheck>,
    ) -> Vec<FileMount> {
        let mut mounts = Vec::new();
        for entry in &raw.files {
            let span = entry.span();
            let Some((source, guest_path)) = self.file_entry(entry.get_ref(), span.clone(), who)
            else {
                continue;
            };
            let source = self.base.join(source);
            checks.push(FileCheck {
                what: format!("{who}: files"),
                path: source.clone(),
                directory: true,
                span,
            });
            mounts.push(FileMount { source, guest_path });
        }
        mounts
    }

    /// One `files` entry as (directory relative to the manifest, guest path).
    fn file_entry(
        &mut self,
        raw: &toml::Value,
        span: Range<usize>,
        who: &str,
    ) -> Option<(String, String)> {
        match raw {
            toml::Value::String(pattern) => {
                let dir = pattern
                    .strip_suffix("/**/*")
                    .or_else(|| pattern.strip_suffix("/**"))
                    .unwrap_or(pattern);
                let dir = if matches!(pattern.as_str(), "**/*" | "**") {
                    "."
                } else {
                    dir
                };
                if dir.contains(['*', '?', '[', '{']) {
                    self.error(span, format!("{who}: files pattern {pattern:?} is not supported by Spark: it mounts whole directories (\"dir\", \"dir/**/*\" or {{ source = \"dir\", destination = \"/dir\" }})"));
                    return None;
                }
                if !is_relative_inside(dir) {
                    self.error(span, format!("{who}: files pattern {pattern:?} must be a relative path inside the application directory"));
                    return None;
                }
                let guest = Path::new("/").join(dir).display().to_string();
                let guest = if dir == "." { "/".to_owned() } else { guest };
                Some((dir.to_owned(), guest))
            }
            toml::Value::Table(table) => {
                let source = table.get("source").and_then(toml::Value::as_str);
                let destination = table.get("destination").and_then(toml::Value::as_str);
                match (source, destination, table.len()) {
                    (Some(source), Some(destination), 2)
                        if destination.starts_with('/') && !source.is_empty() =>
                    {
                        Some((source.to_owned(), destination.to_owned()))
                    }
                    _ => {
                        self.error(span, format!("{who}: a files entry is a directory pattern or {{ source = \"dir\", destination = \"/guest/path\" }} (an absolute destination)"));
                        None
                    }
                }
            }
            _ => {
                self.error(
                    span,
                    format!(
                        "{who}: a files entry is a directory pattern or {{ source, destination }}"
                    ),
                );
                None
            }
        }
    }

    /// The settings of `[component.<id>.tool.spark]` on a module with no routes yet.
    fn spark_settings(
        &mut self,
        raw: Option<&RawSparkComponent>,
        node: &NodeSettings,
        who: &str,
    ) -> ModuleSpec {
        let mut spec = ModuleSpec::with_defaults(
            ModuleId::new("placeholder").expect("literal id is valid"),
            ComponentRef::Artifact(String::new()),
            Trigger::Http { routes: Vec::new() },
        );
        let Some(raw) = raw else { return spec };
        let who = format!("{who}: tool.spark");
        if let Some(p) = &raw.priority {
            spec.priority = match p.get_ref().as_str() {
                "critical" => Priority::Critical,
                "normal" => Priority::Normal,
                "background" => Priority::Background,
                other => {
                    self.error(p.span(), format!("{who}: unknown priority {other:?}: use \"critical\", \"normal\" or \"background\""));
                    Priority::Normal
                }
            };
        }
        spec.weight = self.int(
            raw.weight.as_ref(),
            i64::from(DEFAULT_WEIGHT),
            1..=super::super::MAX_WEIGHT,
            &format!("{who}: weight"),
        ) as u32;
        spec.limits = self.limits(raw.limits.as_ref(), node, &who);
        spec.rollout = self.rollout(raw.rollout.as_ref(), &who);
        if let Some(health) = &raw.health {
            if !health.get_ref().starts_with('/') {
                self.error(
                    health.span(),
                    format!("{who}: `health` must be a path starting with '/'"),
                );
            }
            spec.health = Some(health.get_ref().clone());
        }
        spec.tiering = raw.tiering.unwrap_or(true);
        spec.trace_outbound = raw.trace_outbound.as_ref().is_some_and(|t| *t.get_ref());
        if let Some(m) = &raw.missing_imports {
            spec.missing_imports = match m.get_ref().as_str() {
                "refuse" => MissingImports::Refuse,
                "trap" => MissingImports::Trap,
                other => {
                    self.error(m.span(), format!("{who}: missing_imports {other:?}: use \"refuse\" (the deploy is refused) or \"trap\" (calls fail, naming the interface)"));
                    MissingImports::Refuse
                }
            };
        }
        spec
    }
}

/// The application variables a template names (`"https://{{ host }}/x"` -> `["host"]`).
pub(crate) fn template_references(template: &str) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            return Err(format!("unclosed '{{{{' in {template:?}"));
        };
        let name = after[..close].trim();
        if !is_lower_snake(name) {
            return Err(format!(
                "{{{{ {name} }}}} is not a variable name (lower_snake_case)"
            ));
        }
        names.push(name.to_owned());
        rest = &after[close + 2..];
    }
    Ok(names)
}

/// A relative path that stays inside its base (no `..`, not absolute).
fn is_relative_inside(path: &str) -> bool {
    !path.is_empty()
        && Path::new(path)
            .components()
            .all(|part| matches!(part, PathPart::Normal(_) | PathPart::CurDir))
}
