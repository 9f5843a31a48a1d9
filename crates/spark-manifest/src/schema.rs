//! The manifest exactly as written: serde structs that mirror `spark.toml` version 1.
//!
//! Every table refuses unknown fields, and every value that validation may complain about is
//! `Spanned` so the complaint can name its line. Nothing here is trusted; see `validate`.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// Read first, alone and leniently, so a manifest of another version gets a version error
/// rather than a confusing field error.
#[derive(Debug, Deserialize)]
pub(crate) struct VersionProbe {
    pub version: Option<Spanned<toml::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawManifest {
    #[allow(dead_code)] // checked by VersionProbe
    pub version: i64,
    pub node: Option<RawNode>,
    pub orchestrator: Option<RawOrchestrator>,
    pub predictor: Option<RawPredictor>,
    pub nn: Option<RawNn>,
    #[serde(default, rename = "module")]
    pub modules: Vec<Spanned<RawModule>>,
    #[serde(default)]
    pub variables: BTreeMap<String, Spanned<RawVariable>>,
    #[serde(default)]
    pub key_value: BTreeMap<String, Spanned<RawKeyValue>>,
}

/// `[variables] name = { default = "..", required = .., secret = .. }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVariable {
    pub default: Option<Spanned<String>>,
    pub required: Option<bool>,
    pub secret: Option<bool>,
}

/// `[key_value.<label>]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawKeyValue {
    pub max_value_size: Option<Spanned<String>>,
    pub max_keys: Option<Spanned<i64>>,
    pub max_bytes: Option<Spanned<String>>,
    pub fleet: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNode {
    pub listen: Option<Spanned<String>>,
    pub admin: Option<Spanned<String>>,
    pub data_dir: Option<Spanned<String>>,
    pub max_instances: Option<Spanned<i64>>,
    pub max_module_memory: Option<Spanned<String>>,
    pub shutdown_grace: Option<Spanned<String>>,
    pub max_memory: Option<Spanned<String>>,
    pub max_connections: Option<Spanned<i64>>,
    pub max_connections_per_client: Option<Spanned<i64>>,
    pub max_connection_rate_per_client: Option<Spanned<i64>>,
    pub max_connections_apart: Option<Spanned<i64>>,
    pub admin_max_connections: Option<Spanned<i64>>,
    pub header_read_timeout: Option<Spanned<String>>,
    pub idle_timeout: Option<Spanned<String>>,
    pub send_timeout: Option<Spanned<String>>,
    pub request_body_timeout: Option<Spanned<String>>,
    pub h2_max_concurrent_streams: Option<Spanned<i64>>,
    pub h2_keepalive_interval: Option<Spanned<String>>,
    pub h2_reset_budget: Option<Spanned<i64>>,
    pub linger_time: Option<Spanned<String>>,
    pub linger_bytes: Option<Spanned<String>>,
    pub otlp_endpoint: Option<Spanned<String>>,
    pub otlp_timeout: Option<Spanned<String>>,
    pub otlp_queue: Option<Spanned<i64>>,
    pub tiering: Option<bool>,
    #[serde(default)]
    pub tls: Vec<Spanned<RawCertificate>>,
    #[serde(default)]
    pub admin_tls: Vec<Spanned<RawCertificate>>,
}

/// One `[[node.tls]]` / `[[node.admin_tls]]` entry: a certificate chain and its key (PEM).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCertificate {
    pub cert: Spanned<String>,
    pub key: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawModule {
    pub id: Spanned<String>,
    pub component: Spanned<String>,
    pub routes: Option<Spanned<Vec<Spanned<String>>>>,
    pub schedule: Option<Spanned<RawSchedule>>,
    pub priority: Option<Spanned<String>>,
    pub weight: Option<Spanned<i64>>,
    pub limits: Option<RawLimits>,
    #[serde(default)]
    pub env: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub config: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<Spanned<String>>,
    pub health: Option<Spanned<String>>,
    pub rollout: Option<RawRollout>,
    pub trace_outbound: Option<Spanned<bool>>,
    pub tiering: Option<bool>,
    #[serde(default)]
    pub key_value_stores: Vec<Spanned<String>>,
    #[serde(default)]
    pub variables: BTreeMap<String, Spanned<String>>,
    pub missing_imports: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRollout {
    pub steps: Option<Spanned<Vec<f64>>>,
    pub step_duration: Option<Spanned<String>>,
    pub min_requests: Option<Spanned<i64>>,
    pub sticky_header: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSchedule {
    pub every: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    pub memory: Option<Spanned<String>>,
    pub concurrency: Option<Spanned<i64>>,
    pub queue: Option<Spanned<i64>>,
    pub queue_timeout: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub cpu_time: Option<Spanned<String>>,
    pub response_body: Option<Spanned<String>>,
    pub nn_model: Option<Spanned<String>>,
    pub nn_tensor: Option<Spanned<String>>,
    pub request_body: Option<Spanned<String>>,
    pub host_memory: Option<Spanned<String>>,
    pub resources: Option<Spanned<i64>>,
    pub outbound_requests: Option<Spanned<i64>>,
    pub log: Option<Spanned<String>>,
    pub max_concurrent_per_instance: Option<Spanned<i64>>,
    pub max_requests_per_instance: Option<Spanned<i64>>,
    pub instance_idle_timeout: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOrchestrator {
    pub enabled: Option<bool>,
    pub interval: Option<Spanned<String>>,
    pub probe_root: Option<Spanned<String>>,
    #[serde(default)]
    pub upstreams: Vec<Spanned<String>>,
    pub background_min_share: Option<Spanned<f64>>,
    pub background_nice: Option<Spanned<i64>>,
    pub background_idle_class: Option<bool>,
    pub critical_first: Option<bool>,
    pub battery_low: Option<Spanned<f64>>,
    pub uplink_slow: Option<Spanned<String>>,
    pub memory_high: Option<Spanned<f64>>,
    pub postpone_optimization: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPredictor {
    pub enabled: Option<bool>,
    pub memory_budget: Option<Spanned<String>>,
    pub interval: Option<Spanned<String>>,
    pub time_scale: Option<Spanned<f64>>,
    pub keep_alive: Option<Spanned<String>>,
    pub policy: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNn {
    pub backends: Option<Spanned<Vec<Spanned<String>>>>,
    pub ort_library: Option<Spanned<String>>,
    pub allow_software_adapters: Option<bool>,
    pub device_root: Option<Spanned<String>>,
    pub cpu_threads: Option<Spanned<i64>>,
    pub rediscover: Option<Spanned<String>>,
    pub power_save_cpu_only: Option<bool>,
    pub saturation: Option<Spanned<i64>>,
    pub selection: Option<Spanned<String>>,
    pub reprobe: Option<Spanned<String>>,
    #[serde(default, rename = "model")]
    pub models: Vec<Spanned<RawNnModel>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNnModel {
    pub name: Spanned<String>,
    pub path: Spanned<String>,
    pub sha256: Option<Spanned<String>>,
}
