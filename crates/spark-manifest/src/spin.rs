//! A Spin application manifest (`spin.toml`, `spin_manifest_version = 2`) exactly as written.
//!
//! People moving to Spark bring a `spin.toml`; Spark reads it as it is and produces the same
//! [`crate::Manifest`] a `spark.toml` gives (`kind = Spin`), so releases, `spark deploy`, the
//! fleet and everything that re-reads a recorded manifest text work unchanged:
//! [`crate::Manifest::parse`] tells the two apart by the `spin_manifest_version` key.
//!
//! The decision worth knowing: Spark reads only what it can honour. Every field Spin defines
//! is named here (serde structs with `deny_unknown_fields`, as Spin's own `schema/v2.rs`), and
//! those Spark cannot serve (other triggers, SQLite, AI models, component dependencies, ...)
//! are refused at their `file:line:column` rather than skipped, because silently dropping a
//! database or a route would fail later, at request time, far from the cause. Spark's own
//! settings (priority, limits, rollout, ...) live in Spin's tool tables, which Spin ignores:
//! `[component.<id>.tool.spark]` and `[application.tool.spark]`. Mapping to validated types is
//! in `validate::spin`.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::schema::{RawLimits, RawNn, RawNode, RawOrchestrator, RawPredictor, RawRollout};

/// The only Spin manifest version Spark reads.
pub const SPIN_MANIFEST_VERSION: i64 = 2;

/// Read first, leniently: is this a Spin manifest at all, and of which version?
#[derive(Debug, Deserialize)]
pub(crate) struct SpinProbe {
    pub spin_manifest_version: Option<Spanned<toml::Value>>,
}

/// Whether `text` is a Spin manifest (it has a top-level `spin_manifest_version`). Text that is
/// not TOML at all is not: the `spark.toml` reader reports its syntax error.
pub fn is_spin_manifest(text: &str) -> bool {
    toml::from_str::<SpinProbe>(text).is_ok_and(|p| p.spin_manifest_version.is_some())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSpin {
    #[allow(dead_code)] // checked by SpinProbe
    pub spin_manifest_version: toml::Value,
    pub application: Spanned<RawApplication>,
    #[serde(default)]
    pub variables: BTreeMap<Spanned<String>, Spanned<RawVariable>>,
    /// Trigger types by name; `http` is read again with its fields by [`RawHttpTriggers`].
    #[serde(default)]
    pub trigger: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
    #[serde(default)]
    pub component: BTreeMap<Spanned<String>, Spanned<RawComponent>>,
}

/// The `[[trigger.http]]` entries with their fields (a second read of the same text, so each
/// field keeps its span).
#[derive(Debug, Deserialize)]
pub(crate) struct RawHttpTriggers {
    #[serde(default)]
    pub trigger: RawTriggerTable,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawTriggerTable {
    #[serde(default)]
    pub http: Vec<Spanned<RawHttpTrigger>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawApplication {
    pub name: Spanned<String>,
    #[allow(dead_code)] // descriptive only
    pub version: Option<String>,
    #[allow(dead_code)] // descriptive only
    pub description: Option<String>,
    #[allow(dead_code)] // descriptive only
    pub authors: Option<Vec<String>>,
    /// Spin environments the app must be compatible with: a `spin build` / deploy check.
    #[allow(dead_code)]
    pub targets: Option<toml::Value>,
    /// Application-level trigger settings (`[application.trigger.http] base = "/"`).
    #[serde(default)]
    pub trigger: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
    pub tool: Option<RawApplicationTools>,
}

/// `[application.tool]`: only Spark's own table is read; other tools' tables are left alone.
#[derive(Debug, Deserialize)]
pub(crate) struct RawApplicationTools {
    pub spark: Option<RawSparkApplication>,
}

/// `[application.tool.spark]`: the node-wide tables of a `spark.toml`, and limits for the
/// application's key-value stores.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSparkApplication {
    pub node: Option<RawNode>,
    pub orchestrator: Option<RawOrchestrator>,
    pub predictor: Option<RawPredictor>,
    pub nn: Option<RawNn>,
    #[serde(default)]
    pub key_value_stores: BTreeMap<Spanned<String>, Spanned<RawStoreLimits>>,
}

/// `[application.tool.spark.key_value_stores.<label>]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStoreLimits {
    pub max_value_size: Option<Spanned<String>>,
    pub max_keys: Option<Spanned<i64>>,
    pub max_bytes: Option<Spanned<String>>,
    pub fleet: Option<bool>,
}

/// `[variables] name = { default = "..", required = .., secret = .. }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVariable {
    pub default: Option<Spanned<String>>,
    pub required: Option<Spanned<bool>>,
    pub secret: Option<bool>,
}

/// One `[[trigger.http]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHttpTrigger {
    #[allow(dead_code)] // an optional label
    pub id: Option<String>,
    /// A path pattern, or `{ private = true }`.
    pub route: Spanned<toml::Value>,
    /// A component id, or an inline component table (refused).
    pub component: Option<Spanned<toml::Value>>,
    /// Reserved by Spin for future use (refused).
    pub components: Option<Spanned<toml::Value>>,
    /// `{ type = "spin" }` (the default) or `{ type = "wagi", .. }` (refused).
    pub executor: Option<Spanned<toml::Value>>,
    /// A fixed response without a component (refused).
    pub static_response: Option<Spanned<toml::Value>>,
}

/// `[component.<id>]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawComponent {
    /// A file path, `{ url, digest }` or `{ registry, package, version }`.
    pub source: Spanned<toml::Value>,
    #[allow(dead_code)] // descriptive only
    pub description: Option<String>,
    #[serde(default)]
    pub variables: BTreeMap<Spanned<String>, Spanned<String>>,
    #[serde(default)]
    pub environment: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub files: Vec<Spanned<toml::Value>>,
    #[serde(default)]
    pub exclude_files: Vec<Spanned<String>>,
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<Spanned<String>>,
    #[serde(default)]
    pub key_value_stores: Vec<Spanned<String>>,
    /// For `spin build`: Spark runs what was built.
    #[allow(dead_code)]
    pub build: Option<toml::Value>,
    pub tool: Option<RawComponentTools>,
    // Spin fields Spark refuses (when not empty): named so the error can say so.
    pub allowed_http_hosts: Option<Spanned<toml::Value>>,
    pub sqlite_databases: Option<Spanned<toml::Value>>,
    pub ai_models: Option<Spanned<toml::Value>>,
    pub dependencies: Option<Spanned<toml::Value>>,
    pub dependencies_inherit_configuration: Option<Spanned<bool>>,
    pub profile: Option<Spanned<toml::Value>>,
}

/// `[component.<id>.tool]`: only Spark's own table is read.
#[derive(Debug, Deserialize)]
pub(crate) struct RawComponentTools {
    pub spark: Option<RawSparkComponent>,
}

/// `[component.<id>.tool.spark]`: a `spark.toml` module's own settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSparkComponent {
    pub priority: Option<Spanned<String>>,
    pub weight: Option<Spanned<i64>>,
    pub limits: Option<RawLimits>,
    pub rollout: Option<RawRollout>,
    pub health: Option<Spanned<String>>,
    pub tiering: Option<bool>,
    pub trace_outbound: Option<Spanned<bool>>,
    pub missing_imports: Option<Spanned<String>>,
}

/// What Spin tells a component about the route that matched, as its `spin-*` request headers
/// say it (the node adds them for modules of a Spin application).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpinRouteHeaders {
    /// `spin-path-info`: the path below the matched route (`/x/y` for `/api/...`).
    pub path_info: String,
    /// `spin-matched-route`: the route that matched, base included, with its `/...`.
    pub matched_route: String,
    /// `spin-base-path`: the application's base path (`/` when none).
    pub base_path: String,
    /// `spin-raw-component-route`: the route as the trigger wrote it (base excluded), with
    /// its `/...`.
    pub raw_component_route: String,
    /// `spin-component-route`: the same without the `/...`.
    pub component_route: String,
}

impl SpinRouteHeaders {
    /// The headers for `path` (which `route` matched) in an application based at `base`.
    pub fn new(route: &crate::Route, base: &str, path: &str) -> SpinRouteHeaders {
        let base = base.trim_end_matches('/');
        let matched = route.to_string();
        let raw = matched.strip_prefix(base).unwrap_or(&matched);
        let raw = if raw.is_empty() { "/" } else { raw };
        SpinRouteHeaders {
            path_info: route.path_info(path).to_owned(),
            base_path: if base.is_empty() {
                "/".into()
            } else {
                base.into()
            },
            component_route: raw.strip_suffix("/...").unwrap_or(raw).to_owned(),
            raw_component_route: raw.to_owned(),
            matched_route: matched,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SpinRouteHeaders;
    use crate::Route;

    fn headers(route: &str, base: &str, path: &str) -> SpinRouteHeaders {
        SpinRouteHeaders::new(&Route::parse(route).unwrap(), base, path)
    }

    #[test]
    fn route_headers_as_spin_gives_them() {
        let h = headers("/shop/api/...", "/shop", "/shop/api/cart/1");
        assert_eq!(h.path_info, "/cart/1");
        assert_eq!(h.matched_route, "/shop/api/...");
        assert_eq!(h.base_path, "/shop");
        assert_eq!(h.raw_component_route, "/api/...");
        assert_eq!(h.component_route, "/api");

        let h = headers("/hello", "/", "/hello");
        assert_eq!(
            (
                h.path_info.as_str(),
                h.base_path.as_str(),
                h.component_route.as_str()
            ),
            ("", "/", "/hello")
        );
        let h = headers("/...", "", "/a/b");
        assert_eq!(h.path_info, "/a/b");
        assert_eq!(h.raw_component_route, "/...");
        assert_eq!(h.component_route, "");
        // The application's root under a base path.
        let h = headers("/shop", "/shop", "/shop");
        assert_eq!(h.raw_component_route, "/");
    }
}
