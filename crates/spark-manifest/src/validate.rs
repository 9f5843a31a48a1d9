//! From the raw schema to validated types, collecting every problem with its position.

mod app;
mod nn;
mod node;
mod predictor;
pub(crate) mod spin;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use crate::error::{Diagnostic, ManifestError};
use crate::outbound::{AllowedHost, OutboundPolicy};
use crate::routes::Route;
use crate::schema::{RawLimits, RawManifest, RawModule, RawOrchestrator, RawRollout, VersionProbe};
use crate::units::{parse_byte_size, parse_duration};
use crate::{
    AppContext, ComponentRef, DEFAULT_WEIGHT, Limits, MANIFEST_VERSION, Manifest, ManifestKind,
    ModuleId, ModuleSpec, NodeSettings, OrchestratorSettings, Priority, RolloutSettings, Trigger,
    VariableSpec,
};

const MIN_MEMORY: u64 = 64 << 10;
const MAX_CONCURRENCY: i64 = 100_000;
const MAX_QUEUE: i64 = 1_000_000;
const MAX_WEIGHT: i64 = 1000;
pub(super) const MAX_INSTANCES: i64 = 100_000;
/// A guest needs a few handles for its request alone (request, headers, body, streams).
const MIN_RESOURCES: i64 = 16;
/// "far below 100,000": each handle costs host memory the guest does not pay for.
const MAX_RESOURCES: i64 = 100_000;
const MAX_OUTBOUND_REQUESTS: i64 = 10_000;
/// Requests one WASI 0.3 instance may serve at once: beyond a few hundred, one trap ends too
/// many requests and one instance's memory serves too many.
const MAX_CONCURRENT_PER_INSTANCE: i64 = 1_000;
/// The most requests one WASI 0.3 instance may serve over its life.
const MAX_REQUESTS_PER_INSTANCE: i64 = 1_000_000;
const MIN_INTERVAL: Duration = Duration::from_millis(100);
const MAX_INTERVAL: Duration = Duration::from_secs(10);

/// Parses and validates; on success also returns each module's component span, for
/// [`check_files`].
pub(crate) fn parse_and_validate(text: &str, source: &Path) -> Result<Manifest, ManifestError> {
    parse_with_spans(text, source).map(|(manifest, _)| manifest)
}

fn parse_with_spans(
    text: &str,
    source: &Path,
) -> Result<(Manifest, Vec<Range<usize>>), ManifestError> {
    let invalid = |diagnostics| ManifestError::Invalid {
        file: source.to_path_buf(),
        diagnostics,
    };
    check_version(text).map_err(|d| invalid(vec![d]))?;
    let raw: RawManifest =
        toml::from_str(text).map_err(|e| invalid(vec![toml_diagnostic(text, &e)]))?;
    let base = source.parent().unwrap_or(Path::new("")).to_path_buf();
    let mut v = Validator {
        text,
        base,
        diagnostics: Vec::new(),
    };
    let node = v.node(raw.node.as_ref());
    let orchestrator = v.orchestrator(raw.orchestrator.as_ref());
    let predictor = v.predictor(raw.predictor.as_ref());
    let nn = v.nn(raw.nn.as_ref());
    let variables = v.variables(&raw.variables);
    let key_value_stores = v.key_value(&raw.key_value);
    let mut modules = Vec::new();
    let mut spans = Vec::new();
    for raw_module in &raw.modules {
        if let Some(module) = v.module(raw_module, &node, &variables) {
            spans.push(raw_module.get_ref().component.span());
            modules.push(module);
        }
    }
    v.cross_module_checks(&raw.modules);
    if raw.modules.is_empty() {
        v.diagnostics.push(Diagnostic {
            line: 1,
            column: 1,
            message: "the manifest declares no modules: add at least one [[module]]".into(),
        });
    }
    if !v.diagnostics.is_empty() {
        return Err(invalid(v.diagnostics));
    }
    let mut manifest = Manifest {
        text: text.to_owned(),
        source: source.to_path_buf(),
        node,
        orchestrator,
        predictor,
        nn,
        modules,
        kind: ManifestKind::Spark,
        application: None,
        variables,
        key_value_stores,
    };
    manifest.bind_modules();
    Ok((manifest, spans))
}

/// Checks that every component file exists; errors point at the `component` line.
pub(crate) fn check_files(text: &str, manifest: &Manifest) -> Result<(), ManifestError> {
    let (_, spans) = parse_with_spans(text, &manifest.source)?;
    let mut diagnostics = Vec::new();
    for (module, span) in manifest.modules.iter().zip(spans) {
        let ComponentRef::File(file) = &module.component else {
            continue;
        };
        let problem = match std::fs::metadata(file) {
            Ok(meta) if meta.is_file() => continue,
            Ok(_) => "is not a regular file".to_owned(),
            Err(e) => format!("cannot be read: {e}"),
        };
        diagnostics.push(Diagnostic::at(
            text,
            span,
            format!(
                "module '{}': component {} {problem}",
                module.id,
                file.display()
            ),
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
    let probe: VersionProbe = toml::from_str(text).map_err(|e| toml_diagnostic(text, &e))?;
    let Some(version) = probe.version else {
        return Err(Diagnostic {
            line: 1,
            column: 1,
            message: format!("missing `version = {MANIFEST_VERSION}` at the top of the manifest"),
        });
    };
    match version.get_ref().as_integer() {
        Some(MANIFEST_VERSION) => Ok(()),
        _ => Err(Diagnostic::at(
            text,
            version.span(),
            format!(
                "unsupported manifest version {}: this Spark reads version {MANIFEST_VERSION}",
                version.get_ref()
            ),
        )),
    }
}

fn toml_diagnostic(text: &str, error: &toml::de::Error) -> Diagnostic {
    let span = error.span().unwrap_or(0..0);
    Diagnostic::at(text, span, error.message().trim().to_owned())
}

struct Validator<'a> {
    text: &'a str,
    base: PathBuf,
    diagnostics: Vec<Diagnostic>,
}

impl Validator<'_> {
    fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.diagnostics
            .push(Diagnostic::at(self.text, span, message));
    }

    fn orchestrator(&mut self, raw: Option<&RawOrchestrator>) -> OrchestratorSettings {
        let d = OrchestratorSettings::default();
        let Some(raw) = raw else { return d };
        let interval = self.duration(raw.interval.as_ref(), d.interval, "orchestrator.interval");
        if let Some(span) = raw.interval.as_ref().map(Spanned::span)
            && !(MIN_INTERVAL..=MAX_INTERVAL).contains(&interval)
        {
            self.error(span, "orchestrator.interval must be between 100ms and 10s");
        }
        for upstream in &raw.upstreams {
            let text = upstream.get_ref();
            let ok = ["tcp://", "http://", "https://"]
                .iter()
                .any(|p| text.strip_prefix(p).is_some_and(|rest| !rest.is_empty()));
            if !ok {
                self.error(upstream.span(), format!("orchestrator.upstreams: {text:?} must be tcp://host:port, http://host[:port]/path or https://host[:port]"));
            }
        }
        OrchestratorSettings {
            enabled: raw.enabled.unwrap_or(d.enabled),
            interval,
            probe_root: raw
                .probe_root
                .as_ref()
                .map_or(d.probe_root.clone(), |r| self.base.join(r.get_ref())),
            upstreams: raw.upstreams.iter().map(|u| u.get_ref().clone()).collect(),
            background_min_share: self.number(
                raw.background_min_share.as_ref(),
                d.background_min_share,
                0.01..=1.0,
                "orchestrator.background_min_share",
            ),
            background_nice: self.int(
                raw.background_nice.as_ref(),
                i64::from(d.background_nice),
                0..=19,
                "orchestrator.background_nice",
            ) as i32,
            background_idle_class: raw.background_idle_class.unwrap_or(d.background_idle_class),
            critical_first: raw.critical_first.unwrap_or(d.critical_first),
            battery_low: self.number(
                raw.battery_low.as_ref(),
                d.battery_low,
                0.0..=100.0,
                "orchestrator.battery_low (percent)",
            ),
            uplink_slow: self.positive_duration(
                raw.uplink_slow.as_ref(),
                d.uplink_slow,
                "orchestrator.uplink_slow",
            ),
            memory_high: self.number(
                raw.memory_high.as_ref(),
                d.memory_high,
                0.05..=1.0,
                "orchestrator.memory_high",
            ),
            postpone_optimization: raw.postpone_optimization.unwrap_or(d.postpone_optimization),
        }
    }

    fn number(
        &mut self,
        raw: Option<&Spanned<f64>>,
        default: f64,
        range: std::ops::RangeInclusive<f64>,
        what: &str,
    ) -> f64 {
        self.in_range(raw, default, range, what)
    }

    /// `raw` if within `range`, else an error at its span and `default`; `default` if absent.
    fn in_range<T: PartialOrd + Copy + std::fmt::Display>(
        &mut self,
        raw: Option<&Spanned<T>>,
        default: T,
        range: std::ops::RangeInclusive<T>,
        what: &str,
    ) -> T {
        let Some(raw) = raw else { return default };
        let value = *raw.get_ref();
        if range.contains(&value) {
            value
        } else {
            self.error(
                raw.span(),
                format!(
                    "{what} must be between {} and {}, got {value}",
                    range.start(),
                    range.end()
                ),
            );
            default
        }
    }

    fn module(
        &mut self,
        raw: &Spanned<RawModule>,
        node: &NodeSettings,
        app_variables: &BTreeMap<String, VariableSpec>,
    ) -> Option<ModuleSpec> {
        let span = raw.span();
        let raw = raw.get_ref();
        let id = match ModuleId::new(raw.id.get_ref()) {
            Ok(id) => id,
            Err(why) => {
                self.error(raw.id.span(), why.to_string());
                return None;
            }
        };
        let who = format!("module '{id}'");
        if raw.component.get_ref().trim().is_empty() {
            self.error(raw.component.span(), format!("{who}: `component` is empty"));
        }
        let trigger = self.trigger(raw, span, &who)?;
        let health = self.health(raw, &trigger, &who);
        Some(ModuleSpec {
            component: self.component(raw, &who),
            priority: self.priority(raw, &who),
            weight: self.int(
                raw.weight.as_ref(),
                DEFAULT_WEIGHT as i64,
                1..=MAX_WEIGHT,
                &format!("{who}: weight"),
            ) as u32,
            limits: self.limits(raw.limits.as_ref(), node, &who),
            env: self.env(&raw.env, &who),
            config: raw
                .config
                .iter()
                .map(|(k, v)| (k.clone(), v.get_ref().clone()))
                .collect(),
            outbound: self.outbound(&raw.allowed_outbound_hosts, &who),
            rollout: self.rollout(raw.rollout.as_ref(), &who),
            trace_outbound: self.trace_outbound(raw, &who),
            tiering: raw.tiering.unwrap_or(true),
            key_value_stores: self.module_stores(raw, &who),
            variables: self.module_variables(raw, app_variables, &who),
            files: Vec::new(),
            missing_imports: self.missing_imports(raw, &who),
            app: AppContext::default(),
            spin_base_path: None,
            trigger,
            health,
            id,
        })
    }

    /// `trace_outbound = true` needs outbound requests to add the headers to.
    fn trace_outbound(&mut self, raw: &RawModule, who: &str) -> bool {
        let Some(flag) = &raw.trace_outbound else {
            return false;
        };
        if *flag.get_ref() && raw.allowed_outbound_hosts.is_empty() {
            self.error(
                flag.span(),
                format!("{who}: trace_outbound needs allowed_outbound_hosts (the module may make no outbound request)"),
            );
        }
        *flag.get_ref()
    }

    fn component(&mut self, raw: &RawModule, who: &str) -> ComponentRef {
        let text = raw.component.get_ref();
        match ComponentRef::parse_artifact(text) {
            Some(Ok(artifact)) => artifact,
            Some(Err(why)) => {
                self.error(raw.component.span(), format!("{who}: {why}"));
                ComponentRef::Artifact(String::new())
            }
            None => ComponentRef::File(self.base.join(text)),
        }
    }

    fn rollout(&mut self, raw: Option<&RawRollout>, who: &str) -> RolloutSettings {
        let d = RolloutSettings::default();
        let Some(raw) = raw else { return d };
        let steps = match &raw.steps {
            None => d.steps.clone(),
            Some(steps) => {
                let list = steps.get_ref();
                let increasing = list.windows(2).all(|w| w[0] < w[1]);
                let in_range = list.iter().all(|s| *s > 0.0 && *s <= 100.0);
                if list.is_empty() || !increasing || !in_range || list.last() != Some(&100.0) {
                    self.error(steps.span(), format!("{who}: rollout.steps must be increasing percentages in (0, 100] ending at 100, e.g. [5, 25, 50, 100]"));
                    d.steps.clone()
                } else {
                    list.clone()
                }
            }
        };
        let header = raw.sticky_header.as_ref().map(|h| {
            let ok = !h.get_ref().is_empty()
                && h.get_ref()
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !ok {
                self.error(
                    h.span(),
                    format!("{who}: rollout.sticky_header must be a header name"),
                );
            }
            h.get_ref().to_ascii_lowercase()
        });
        RolloutSettings {
            steps,
            step_duration: self.duration(
                raw.step_duration.as_ref(),
                d.step_duration,
                &format!("{who}: rollout.step_duration"),
            ),
            min_requests: self.int(
                raw.min_requests.as_ref(),
                d.min_requests as i64,
                1..=10_000_000,
                &format!("{who}: rollout.min_requests"),
            ) as u64,
            sticky_header: header,
        }
    }

    fn trigger(&mut self, raw: &RawModule, span: Range<usize>, who: &str) -> Option<Trigger> {
        match (&raw.routes, &raw.schedule) {
            (Some(_), Some(schedule)) => {
                self.error(schedule.span(), format!("{who}: give either `routes` (an HTTP module) or `schedule` (a job), not both"));
                None
            }
            (None, None) => {
                self.error(span, format!("{who}: give `routes = [\"/path/...\"]` (an HTTP module) or `schedule = {{ every = \"30s\" }}` (a job)"));
                None
            }
            (Some(routes), None) => {
                if routes.get_ref().is_empty() {
                    self.error(routes.span(), format!("{who}: `routes` is empty"));
                    return None;
                }
                let mut parsed = Vec::new();
                for route in routes.get_ref() {
                    match Route::parse(route.get_ref()) {
                        Ok(r) => parsed.push(r),
                        Err(why) => self.error(route.span(), format!("{who}: {why}")),
                    }
                }
                Some(Trigger::Http { routes: parsed })
            }
            (None, Some(schedule)) => {
                let every = self.duration(
                    Some(&schedule.get_ref().every),
                    Duration::ZERO,
                    &format!("{who}: schedule.every"),
                );
                if every < Duration::from_secs(1) {
                    self.error(
                        schedule.get_ref().every.span(),
                        format!("{who}: schedule.every must be at least 1s"),
                    );
                }
                Some(Trigger::Schedule { every })
            }
        }
    }

    fn health(&mut self, raw: &RawModule, trigger: &Trigger, who: &str) -> Option<String> {
        let health = raw.health.as_ref()?;
        if !matches!(trigger, Trigger::Http { .. }) {
            self.error(
                health.span(),
                format!("{who}: `health` applies to HTTP modules only"),
            );
        } else if !health.get_ref().starts_with('/') {
            self.error(
                health.span(),
                format!("{who}: `health` must be a path starting with '/'"),
            );
        }
        Some(health.get_ref().clone())
    }

    fn priority(&mut self, raw: &RawModule, who: &str) -> Priority {
        let Some(p) = &raw.priority else {
            return Priority::Normal;
        };
        match p.get_ref().as_str() {
            "critical" => Priority::Critical,
            "normal" => Priority::Normal,
            "background" => Priority::Background,
            other => {
                self.error(p.span(), format!("{who}: unknown priority {other:?}: use \"critical\", \"normal\" or \"background\""));
                Priority::Normal
            }
        }
    }

    fn limits(&mut self, raw: Option<&RawLimits>, node: &NodeSettings, who: &str) -> Limits {
        let d = Limits::default();
        let Some(raw) = raw else { return d };
        let memory = self.size(
            raw.memory.as_ref(),
            d.memory,
            &format!("{who}: limits.memory"),
        );
        if let Some(span) = raw.memory.as_ref().map(Spanned::span) {
            if memory < MIN_MEMORY {
                self.error(
                    span.clone(),
                    format!("{who}: limits.memory must be at least 64KiB (one Wasm page)"),
                );
            } else if memory > node.max_module_memory {
                self.error(
                    span,
                    format!(
                        "{who}: limits.memory exceeds node.max_module_memory ({} bytes)",
                        node.max_module_memory
                    ),
                );
            }
        }
        let mut limits = Limits {
            memory,
            concurrency: self.int(
                raw.concurrency.as_ref(),
                d.concurrency as i64,
                1..=MAX_CONCURRENCY,
                &format!("{who}: limits.concurrency"),
            ) as u32,
            queue: self.int(
                raw.queue.as_ref(),
                d.queue as i64,
                0..=MAX_QUEUE,
                &format!("{who}: limits.queue"),
            ) as u32,
            queue_timeout: self.duration(
                raw.queue_timeout.as_ref(),
                d.queue_timeout,
                &format!("{who}: limits.queue_timeout"),
            ),
            timeout: self.positive_duration(
                raw.timeout.as_ref(),
                d.timeout,
                &format!("{who}: limits.timeout"),
            ),
            cpu_time: self.positive_duration(
                raw.cpu_time.as_ref(),
                d.cpu_time,
                &format!("{who}: limits.cpu_time"),
            ),
            response_body: self.size(
                raw.response_body.as_ref(),
                d.response_body,
                &format!("{who}: limits.response_body"),
            ),
            nn_model: self.size(
                raw.nn_model.as_ref(),
                d.nn_model,
                &format!("{who}: limits.nn_model"),
            ),
            nn_tensor: self.size(
                raw.nn_tensor.as_ref(),
                d.nn_tensor,
                &format!("{who}: limits.nn_tensor"),
            ),
            request_body: self.size(
                raw.request_body.as_ref(),
                d.request_body,
                &format!("{who}: limits.request_body"),
            ),
            host_memory: self.size(
                raw.host_memory.as_ref(),
                d.host_memory,
                &format!("{who}: limits.host_memory"),
            ),
            resources: self.int(
                raw.resources.as_ref(),
                i64::from(d.resources),
                MIN_RESOURCES..=MAX_RESOURCES,
                &format!("{who}: limits.resources"),
            ) as u32,
            outbound_requests: self.int(
                raw.outbound_requests.as_ref(),
                i64::from(d.outbound_requests),
                0..=MAX_OUTBOUND_REQUESTS,
                &format!("{who}: limits.outbound_requests"),
            ) as u32,
            log: self.size(raw.log.as_ref(), d.log, &format!("{who}: limits.log")),
            max_concurrent_per_instance: self.int(
                raw.max_concurrent_per_instance.as_ref(),
                i64::from(d.max_concurrent_per_instance),
                1..=MAX_CONCURRENT_PER_INSTANCE,
                &format!("{who}: limits.max_concurrent_per_instance"),
            ) as u32,
            max_requests_per_instance: d.max_requests_per_instance,
            instance_idle_timeout: self.duration(
                raw.instance_idle_timeout.as_ref(),
                d.instance_idle_timeout,
                &format!("{who}: limits.instance_idle_timeout"),
            ),
        };
        // An instance's life follows its bound at once unless the defaults said otherwise.
        let life = match d.max_requests_per_instance == d.max_concurrent_per_instance {
            true => limits.max_concurrent_per_instance,
            false => d.max_requests_per_instance,
        };
        limits.max_requests_per_instance = self.int(
            raw.max_requests_per_instance.as_ref(),
            i64::from(life),
            1..=MAX_REQUESTS_PER_INSTANCE,
            &format!("{who}: limits.max_requests_per_instance"),
        ) as u32;
        if let Some(idle) = &raw.instance_idle_timeout
            && limits.instance_idle_timeout >= limits.timeout
        {
            self.error(
                idle.span(),
                format!(
                    "{who}: limits.instance_idle_timeout ({:?}) must be shorter than limits.timeout ({:?}), the most an instance lives past its last request",
                    limits.instance_idle_timeout, limits.timeout
                ),
            );
        }
        self.host_memory_covers(raw, &mut limits, who);
        limits
    }

    /// Tensors and guest-supplied models live in host memory, so they must fit in it: a
    /// default larger than a smaller `host_memory` is lowered to it; a value written in the
    /// manifest is an error.
    fn host_memory_covers(&mut self, raw: &RawLimits, limits: &mut Limits, who: &str) {
        let host_memory = limits.host_memory;
        let over = [
            ("nn_tensor", &mut limits.nn_tensor, raw.nn_tensor.as_ref()),
            ("nn_model", &mut limits.nn_model, raw.nn_model.as_ref()),
        ];
        for (name, bytes, written) in over {
            if *bytes <= host_memory {
                continue;
            }
            let Some(written) = written else {
                *bytes = host_memory;
                continue;
            };
            {
                let bytes = *bytes;
                let span = written.span();
                self.error(
                    span,
                    format!(
                        "{who}: limits.{name} ({bytes} bytes) exceeds limits.host_memory ({host_memory} bytes), where it would be held"
                    ),
                );
            }
        }
    }

    fn env(
        &mut self,
        raw: &BTreeMap<String, Spanned<String>>,
        who: &str,
    ) -> BTreeMap<String, String> {
        for (key, value) in raw {
            if key.is_empty() || key.contains(['=', '\0']) || value.get_ref().contains('\0') {
                self.error(value.span(), format!("{who}: env {key:?}: names may not be empty or contain '=' or NUL; values may not contain NUL"));
            }
        }
        raw.iter()
            .map(|(k, v)| (k.clone(), v.get_ref().clone()))
            .collect()
    }

    fn outbound(&mut self, raw: &[Spanned<String>], who: &str) -> OutboundPolicy {
        let mut allowed = Vec::new();
        for entry in raw {
            match AllowedHost::parse(entry.get_ref()) {
                Ok(host) => allowed.push(host),
                Err(why) => self.error(entry.span(), format!("{who}: {why}")),
            }
        }
        OutboundPolicy::new(allowed)
    }

    fn cross_module_checks(&mut self, modules: &[Spanned<RawModule>]) {
        let mut ids: HashMap<&str, ()> = HashMap::new();
        let mut routes: HashMap<Route, String> = HashMap::new();
        for module in modules.iter().map(Spanned::get_ref) {
            let id = module.id.get_ref().as_str();
            if ids.insert(id, ()).is_some() {
                self.error(module.id.span(), format!("duplicate module id '{id}'"));
            }
            for route in module.routes.iter().flat_map(|r| r.get_ref()) {
                let Ok(parsed) = Route::parse(route.get_ref()) else {
                    continue;
                };
                if let Some(owner) = routes.insert(parsed.clone(), id.to_owned()) {
                    self.error(route.span(), format!("module '{id}': duplicate route {parsed} (already served by module '{owner}')"));
                }
            }
        }
    }

    fn addr(
        &mut self,
        raw: Option<&Spanned<String>>,
        default: SocketAddr,
        what: &str,
    ) -> SocketAddr {
        let Some(raw) = raw else { return default };
        raw.get_ref().parse().unwrap_or_else(|_| {
            self.error(
                raw.span(),
                format!(
                    "{what}: {:?} is not an address like \"127.0.0.1:8080\"",
                    raw.get_ref()
                ),
            );
            default
        })
    }

    fn int(
        &mut self,
        raw: Option<&Spanned<i64>>,
        default: i64,
        range: std::ops::RangeInclusive<i64>,
        what: &str,
    ) -> i64 {
        self.in_range(raw, default, range, what)
    }

    fn size(&mut self, raw: Option<&Spanned<String>>, default: u64, what: &str) -> u64 {
        let Some(raw) = raw else { return default };
        parse_byte_size(raw.get_ref()).unwrap_or_else(|why| {
            self.error(raw.span(), format!("{what}: {why}"));
            default
        })
    }

    fn duration(
        &mut self,
        raw: Option<&Spanned<String>>,
        default: Duration,
        what: &str,
    ) -> Duration {
        let Some(raw) = raw else { return default };
        parse_duration(raw.get_ref()).unwrap_or_else(|why| {
            self.error(raw.span(), format!("{what}: {why}"));
            default
        })
    }

    fn positive_duration(
        &mut self,
        raw: Option<&Spanned<String>>,
        default: Duration,
        what: &str,
    ) -> Duration {
        let value = self.duration(raw, default, what);
        if value.is_zero() {
            if let Some(raw) = raw {
                self.error(raw.span(), format!("{what} must be greater than zero"));
            }
            return default;
        }
        value
    }
}
