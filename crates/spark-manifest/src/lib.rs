//! The `spark.toml` manifest: what a node serves and under which limits.
//!
//! Parsing happens in two stages, as Spin's manifest crate does. [`schema`] mirrors the file
//! (`deny_unknown_fields`, spans kept on every value worth pointing at); [`validate`] turns it into
//! the types the rest of Spark uses ([`Manifest`], [`ModuleSpec`], ...), where every value has
//! been checked. A value that survives validation is never checked again downstream.
//!
//! The decision worth knowing: errors are collected, not short-circuited, and each one names the
//! file, the line and the column of the offending value, because the person reading it is
//! usually editing the file on a node over SSH.
//!
//! This crate does no I/O beyond reading the manifest and checking that referenced files exist
//! ([`Manifest::load`]); [`Manifest::parse`] is pure and is what tests use.

mod error;
mod listener;
mod nn;
mod outbound;
mod predictor;
mod routes;
mod schema;
mod spin;
mod tracing;
mod units;
mod validate;
mod variables;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use error::{Diagnostic, ManifestError};
pub use listener::{
    CertificateFiles, DEFAULT_ADMIN_MAX_CONNECTIONS, DEFAULT_H2_KEEPALIVE_INTERVAL,
    DEFAULT_H2_MAX_CONCURRENT_STREAMS, DEFAULT_H2_RESET_BUDGET, DEFAULT_HEADER_READ_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT, DEFAULT_LINGER_BYTES, DEFAULT_LINGER_TIME,
    DEFAULT_MAX_CONNECTION_RATE_PER_CLIENT, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS_APART,
    DEFAULT_MAX_CONNECTIONS_PER_CLIENT, DEFAULT_REQUEST_BODY_TIMEOUT, DEFAULT_SEND_TIMEOUT,
    H2_KEEPALIVE_TIMEOUT, ListenerLimits,
};
pub use nn::{
    DEFAULT_NN_MODEL, DEFAULT_NN_REDISCOVER, DEFAULT_NN_REPROBE, DEFAULT_NN_TENSOR, NN_BACKENDS,
    NnModel, NnSelection, NnSettings,
};
pub use outbound::{AllowedHost, HostProblem, OutboundHostError, OutboundPolicy};
pub use predictor::{
    DEFAULT_KEEP_ALIVE, DEFAULT_PREDICTOR_INTERVAL, DEFAULT_WARM_MEMORY, PredictorSettings,
    WarmthPolicy,
};
pub use routes::{Route, RouteError, RouteTable};
pub use spin::{SPIN_MANIFEST_VERSION, SpinRouteHeaders, is_spin_manifest};
pub use tracing::{
    DEFAULT_OTLP_QUEUE, DEFAULT_OTLP_TIMEOUT, OtlpEndpoint, OtlpEndpointError, TraceExport,
};
pub use units::{UnitError, parse_byte_size, parse_duration};
pub use variables::{
    MAX_VARIABLE_NAME, Part, VariableError, env_names, is_secret, parse_template,
    resolve_application, resolve_module, valid_variable_name,
};

/// The only manifest version this build reads.
pub const MANIFEST_VERSION: i64 = 1;

/// A validated manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// Where the manifest came from (for messages); relative paths inside it were resolved
    /// against its directory.
    pub source: PathBuf,
    /// The text it was parsed from (what a release records).
    pub text: String,
    /// Node-wide settings (`[node]`).
    pub node: NodeSettings,
    /// Orchestrator settings (`[orchestrator]`).
    pub orchestrator: OrchestratorSettings,
    /// Predictor settings (`[predictor]`).
    pub predictor: PredictorSettings,
    /// The inference host (`[nn]`); `None`: the node runs none.
    pub nn: Option<NnSettings>,
    /// The applications (`[[module]]`), in declaration order; never empty.
    pub modules: Vec<ModuleSpec>,
    /// Which format the text is in (a `spark.toml` or a Spin `spin.toml`).
    pub kind: ManifestKind,
    /// The application's name: Spin's `[application] name`; for a `spark.toml`, `None`.
    /// Key-value stores are scoped by it.
    pub application: Option<String>,
    /// Application variables (`[variables]`), by name: what modules' variable templates
    /// (`ModuleSpec::variables`) refer to.
    pub variables: BTreeMap<String, VariableSpec>,
    /// Key-value stores declared for the application, by label. A module opens only the
    /// labels in its `ModuleSpec::key_value_stores`.
    pub key_value_stores: BTreeMap<String, KeyValueStoreSpec>,
}

/// The format a manifest was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ManifestKind {
    /// Spark's own `spark.toml` (`version = 1`).
    #[default]
    Spark,
    /// A Spin application manifest (`spin_manifest_version = 2`).
    Spin,
}

/// One application variable (`[variables] name = { default = "..", required = .., secret = .. }`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VariableSpec {
    /// The value when the environment does not set one; `None` with `required`.
    pub default: Option<String>,
    /// Must be given (by the environment) for the node to start.
    pub required: bool,
    /// Never printed in status, logs or events.
    pub secret: bool,
}

/// One key-value store an application declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValueStoreSpec {
    /// Largest value accepted, in bytes.
    pub max_value_size: u64,
    /// Most keys the store holds.
    pub max_keys: u64,
    /// Most bytes (keys plus values) the store holds.
    pub max_bytes: u64,
    /// Replicated across the fleet (through a JetStream KV bucket) when the node runs with
    /// `--fleet`; node-local otherwise.
    pub fleet: bool,
}

/// Default `max_value_size` of a key-value store: 1 MiB.
pub const DEFAULT_KV_MAX_VALUE_SIZE: u64 = 1 << 20;
/// Default `max_keys` of a key-value store.
pub const DEFAULT_KV_MAX_KEYS: u64 = 10_000;
/// Default `max_bytes` of a key-value store: 64 MiB.
pub const DEFAULT_KV_MAX_BYTES: u64 = 64 << 20;

impl Default for KeyValueStoreSpec {
    /// What a store gets when a module lists its label and no `[key_value.<label>]` table
    /// sets its limits.
    fn default() -> Self {
        KeyValueStoreSpec {
            max_value_size: DEFAULT_KV_MAX_VALUE_SIZE,
            max_keys: DEFAULT_KV_MAX_KEYS,
            max_bytes: DEFAULT_KV_MAX_BYTES,
            fleet: false,
        }
    }
}

/// What a module sees of its application: resolved from the [`Manifest`] by
/// [`Manifest::bind_modules`], so a module spec carries everything needed to build it (and a
/// change to its stores or variables makes it a changed module in a deploy).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AppContext {
    /// Scopes the key-value stores: the application's name, or `-` for a `spark.toml`.
    pub scope: String,
    /// The manifest's format (decides whether `SPIN_VARIABLE_*` is read).
    pub kind: ManifestKind,
    /// The stores this module may open (its `key_value_stores`), with their limits.
    pub key_value_stores: BTreeMap<String, KeyValueStoreSpec>,
    /// The application variables its templates refer to.
    pub variables: BTreeMap<String, VariableSpec>,
}

/// A file or directory mounted read-only into a module (Spin's `files`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMount {
    /// On the node (manifest-relative paths resolved).
    pub source: PathBuf,
    /// Where the guest sees it (an absolute guest path).
    pub guest_path: String,
}

impl Manifest {
    /// Parses and validates manifest text. `source` names the file in error messages and its
    /// parent directory anchors relative paths. Does not touch the file system.
    /// A Spin manifest (`spin_manifest_version = 2`) is read as one (see [`is_spin_manifest`]).
    pub fn parse(text: &str, source: &Path) -> Result<Manifest, ManifestError> {
        if spin::is_spin_manifest(text) {
            return validate::spin::parse(text, source).map(|(manifest, _)| manifest);
        }
        validate::parse_and_validate(text, source)
    }

    /// Reads, parses and validates a manifest file, then checks that every component it names
    /// exists and is a regular file (and, for a Spin manifest, that every `files` mount is a
    /// directory).
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let manifest = Manifest::parse(&text, path)?;
        match manifest.kind {
            ManifestKind::Spark => validate::check_files(&text, &manifest)?,
            ManifestKind::Spin => validate::spin::check_files(&text, &manifest)?,
        }
        Ok(manifest)
    }

    /// A manifest for one component served at `/...` with default limits: what `spark serve`
    /// runs.
    pub fn single(component: PathBuf, listen: SocketAddr) -> Manifest {
        let id = ModuleId::new("app").expect("literal id is valid");
        let text = format!(
            "version = 1\n\n[[module]]\nid = \"app\"\ncomponent = {:?}\nroutes = [\"/...\"]\n",
            component.display().to_string()
        );
        Manifest {
            text,
            source: component.clone(),
            node: NodeSettings {
                listen,
                ..NodeSettings::default()
            },
            orchestrator: OrchestratorSettings::default(),
            predictor: PredictorSettings::default(),
            nn: None,
            kind: ManifestKind::Spark,
            application: None,
            variables: BTreeMap::new(),
            key_value_stores: BTreeMap::new(),
            modules: vec![ModuleSpec {
                app: AppContext {
                    scope: "-".to_owned(),
                    ..AppContext::default()
                },
                ..ModuleSpec::with_defaults(
                    id,
                    ComponentRef::File(component),
                    Trigger::Http {
                        routes: vec![Route::parse("/...").expect("literal route is valid")],
                    },
                )
            }],
        }
    }

    /// Fills every module's [`ModuleSpec::app`] from the manifest (a reader calls it last):
    /// a label a module lists with no store declared gets a store with the default limits.
    pub fn bind_modules(&mut self) {
        for module in &mut self.modules {
            for label in &module.key_value_stores {
                self.key_value_stores.entry(label.clone()).or_default();
            }
        }
        let scope = self.application.clone().unwrap_or_else(|| "-".to_owned());
        for module in &mut self.modules {
            let referenced: Vec<String> = module
                .variables
                .values()
                .filter_map(|t| parse_template(t).ok())
                .flatten()
                .filter_map(|p| match p {
                    Part::Variable(v) => Some(v.to_owned()),
                    Part::Literal(_) => None,
                })
                .collect();
            module.app = AppContext {
                scope: scope.clone(),
                kind: self.kind,
                key_value_stores: module
                    .key_value_stores
                    .iter()
                    .filter_map(|l| Some((l.clone(), self.key_value_stores.get(l)?.clone())))
                    .collect(),
                variables: referenced
                    .into_iter()
                    .filter_map(|v| Some((v.clone(), self.variables.get(&v)?.clone())))
                    .collect(),
            };
        }
    }

    /// The module with this id, if any.
    pub fn module(&self, id: &str) -> Option<&ModuleSpec> {
        self.modules.iter().find(|m| m.id.as_str() == id)
    }
}

/// Node-wide settings from the optional `[node]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSettings {
    /// Where applications are served.
    pub listen: SocketAddr,
    /// Where `/healthz`, `/metrics` and the admin API are served.
    pub admin: SocketAddr,
    /// The node's embedded store (AOT cache, releases, history). `None`: the CLI decides.
    pub data_dir: Option<PathBuf>,
    /// Instances that may exist at once across all modules (sizes the pooling allocator).
    pub max_instances: u32,
    /// The largest linear memory any module may be given.
    pub max_module_memory: u64,
    /// How long in-flight requests get to finish after SIGTERM/SIGINT.
    pub shutdown_grace: Duration,
    /// What running invocations may commit node-wide: the sum of their `limits.memory` and
    /// `limits.host_memory`. `None`: three quarters of the machine's (or the cgroup's) memory,
    /// read when the node starts.
    pub max_memory: Option<u64>,
    /// Front-door limits of the public listener (the admin listener shares the timeouts).
    pub limits: ListenerLimits,
    /// Connections the admin listener takes at once.
    pub admin_max_connections: u32,
    /// Certificates of the public listener; empty: plain HTTP.
    pub tls: Vec<CertificateFiles>,
    /// Certificates of the admin listener; empty: plain HTTP.
    pub admin_tls: Vec<CertificateFiles>,
    /// Where request spans are exported (`otlp_endpoint`, `otlp_timeout`, `otlp_queue`).
    pub trace_export: TraceExport,
    /// Tiered compilation (default [`DEFAULT_TIERING`]): a component with no compiled code yet
    /// is served at once from a baseline compiler (Winch) while the optimizing compiler
    /// (Cranelift) works in the background; off, every component waits for Cranelift.
    pub tiering: bool,
}

/// Default `node.listen`: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default `node.admin`: loopback only.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:9090";
/// Default `node.max_instances`.
pub const DEFAULT_MAX_INSTANCES: u32 = 1000;
/// Default `node.max_module_memory`: 1 GiB.
pub const DEFAULT_MAX_MODULE_MEMORY: u64 = 1 << 30;
/// Default `node.tiering`: on.
pub const DEFAULT_TIERING: bool = true;
/// Default `node.shutdown_grace`: 30 s.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

impl Default for NodeSettings {
    fn default() -> Self {
        NodeSettings {
            listen: DEFAULT_LISTEN.parse().expect("literal address"),
            admin: DEFAULT_ADMIN.parse().expect("literal address"),
            data_dir: None,
            max_instances: DEFAULT_MAX_INSTANCES,
            max_module_memory: DEFAULT_MAX_MODULE_MEMORY,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            max_memory: None,
            limits: ListenerLimits::default(),
            admin_max_connections: DEFAULT_ADMIN_MAX_CONNECTIONS,
            tls: Vec::new(),
            admin_tls: Vec::new(),
            trace_export: TraceExport::default(),
            tiering: DEFAULT_TIERING,
        }
    }
}

/// The orchestrator's settings from the optional `[orchestrator]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct OrchestratorSettings {
    /// Off: every module runs alike (plain FIFO on one executor), nothing is throttled.
    pub enabled: bool,
    /// How often telemetry is sampled and the plan revised.
    pub interval: Duration,
    /// Root of the `/proc` and `/sys` trees the probes read (tests point it at fixtures).
    pub probe_root: PathBuf,
    /// Upstreams whose round trip is probed: `tcp://host:port` or `http://host:port/path`.
    pub upstreams: Vec<String>,
    /// Fraction of the node's CPU background modules keep during a surge (split by weight).
    pub background_min_share: f64,
    /// Nice value of the threads that run background guests (0 = same as the rest), when they
    /// are not in the idle scheduling class or the kernel refuses it.
    pub background_nice: i32,
    /// Background guests' threads in the kernel's idle scheduling class (`SCHED_IDLE`,
    /// default true): preempted the moment any other thread wants the CPU. See
    /// [`DEFAULT_BACKGROUND_NICE`] for the price and the alternative.
    pub background_idle_class: bool,
    /// Critical work first (default true): while a critical module's guests run or ran in the
    /// last second, normal modules' new guests start on threads in the kernel's idle scheduling
    /// class, preempted the moment a critical guest or a connection wants the core; and a
    /// HTTP/1 connection (plaintext or TLS) whose first request is for a critical module is
    /// served on the critical executor, apart from other connections (at most
    /// `node.max_connections_apart` at once). B9, a critical module's p99 over
    /// calm in the same run (five runs without, four with): beside normal guests looping
    /// until their clients leave 2.1-2.6x without, 1.0-1.2x with; looping on host calls
    /// 2.0-2.6x, 0.9-1.5x; logging at their limit 1.4-1.7x, 0.8-1.1x; 2,000 slowloris clients
    /// 1.5-2.3x, 1.1-1.4x. The price, while critical work is live: normal guests get what
    /// critical guests, connections and other processes leave, on equal terms with background
    /// guests. `false`: normal guests always at normal priority, every connection on the main
    /// runtime.
    pub critical_first: bool,
    /// Battery percentage at or below which the node saves power.
    pub battery_low: f64,
    /// Upstream round trip above which the uplink counts as slow.
    pub uplink_slow: Duration,
    /// Memory pressure (0..1) above which low-priority warm instances are dropped.
    pub memory_high: f64,
    /// Hold background optimization (Cranelift tier-up) during a surge, memory pressure or
    /// power save (default true).
    pub postpone_optimization: bool,
}

/// Default `orchestrator.interval`: 500 ms.
pub const DEFAULT_ORCHESTRATOR_INTERVAL: Duration = Duration::from_millis(500);
/// Default `orchestrator.background_min_share`: 10% of the node's CPU.
pub const DEFAULT_BACKGROUND_MIN_SHARE: f64 = 0.10;
/// Background guests run in the kernel's idle scheduling class by default: the kernel runs them
/// in the gaps and preempts them the moment foreground work wakes (B3, a critical module's p99
/// during a surge: 0.98-1.04x running alone; at nice 19 without the idle class, 1.72-1.91x,
/// because a woken request thread could wait out a background thread's time slice; at nice
/// 10 about twice as high again). The price: when foreground work alone saturates every CPU,
/// background gets almost nothing (about 0.3%; 1.5% at nice 19), below a
/// `background_min_share` of 10%. `background_idle_class = false` with `background_nice = 10`
/// makes the kernel itself hold ~10%. Nice 19 is also what a background thread falls back to
/// where the idle class is refused.
pub const DEFAULT_BACKGROUND_NICE: i32 = 19;
/// Default `orchestrator.battery_low`, in percent.
pub const DEFAULT_BATTERY_LOW: f64 = 20.0;
/// Default `orchestrator.uplink_slow`: 300 ms round trip.
pub const DEFAULT_UPLINK_SLOW: Duration = Duration::from_millis(300);
/// Default `orchestrator.memory_high`: memory pressure 0.6.
pub const DEFAULT_MEMORY_HIGH: f64 = 0.6;

impl Default for OrchestratorSettings {
    fn default() -> Self {
        OrchestratorSettings {
            enabled: true,
            interval: DEFAULT_ORCHESTRATOR_INTERVAL,
            probe_root: PathBuf::from("/"),
            upstreams: Vec::new(),
            background_min_share: DEFAULT_BACKGROUND_MIN_SHARE,
            background_nice: DEFAULT_BACKGROUND_NICE,
            background_idle_class: true,
            critical_first: true,
            battery_low: DEFAULT_BATTERY_LOW,
            uplink_slow: DEFAULT_UPLINK_SLOW,
            memory_high: DEFAULT_MEMORY_HIGH,
            postpone_optimization: true,
        }
    }
}

/// A module's identifier: lowercase letters, digits, `-` and `_`, starting with a letter or
/// digit, at most 63 characters (it appears in metric labels, paths and log lines).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ModuleId(String);

/// Why a module id was refused (holds the id as written).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid module id {id:?}: use 1-63 lowercase letters, digits, '-' or '_', starting with a letter or digit"
)]
pub struct ModuleIdError {
    /// The id as written.
    pub id: String,
}

impl ModuleId {
    /// Validates `id` against the rules stated on [`ModuleId`].
    pub fn new(id: &str) -> Result<ModuleId, ModuleIdError> {
        let valid_char =
            |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_';
        let first_ok = id
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if !first_ok || id.len() > 63 || !id.chars().all(valid_char) {
            return Err(ModuleIdError { id: id.to_owned() });
        }
        Ok(ModuleId(id.to_owned()))
    }

    /// The id as written in the manifest.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ModuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One application on the node.
#[derive(Debug, Clone, PartialEq)]
pub struct ModuleSpec {
    /// Unique within the manifest.
    pub id: ModuleId,
    /// The `.wasm` component: a file (manifest-relative paths resolved) or an artifact.
    pub component: ComponentRef,
    /// What makes it run: HTTP routes or a schedule.
    pub trigger: Trigger,
    /// Priority class; default `normal`.
    pub priority: Priority,
    /// Relative CPU weight within the priority class (1..=1000).
    pub weight: u32,
    /// Resource limits (`[module.limits]`); each one not set takes its `DEFAULT_*`.
    pub limits: Limits,
    /// Environment variables the guest sees (`wasi:cli/environment`).
    pub env: BTreeMap<String, String>,
    /// Configuration values the guest reads through `wasi:config/store`.
    pub config: BTreeMap<String, String>,
    /// Hosts the guest may call over `wasi:http/outgoing-handler`.
    pub outbound: OutboundPolicy,
    /// Path that must answer 2xx before the module takes traffic (HTTP modules only).
    pub health: Option<String>,
    /// How a new version of this module is rolled out.
    pub rollout: RolloutSettings,
    /// Whether the node adds W3C `traceparent`/`tracestate` to the guest's outbound requests
    /// (`trace_outbound`; only while tracing is on). Off: the guest's headers are left alone.
    pub trace_outbound: bool,
    /// `false` (`tiering = false` in the module's table): this module always waits for the
    /// optimizing compiler. A module can only opt out: with `[node] tiering = false` no module
    /// is tiered.
    pub tiering: bool,
    /// Labels of the application's key-value stores this module may open.
    pub key_value_stores: Vec<String>,
    /// The module's variables (`spin:variables`, `fermyon:spin/variables`): name to template,
    /// a literal or one referring to application variables (`"{{ app_var }}"`).
    pub variables: BTreeMap<String, String>,
    /// Files and directories mounted read-only.
    pub files: Vec<FileMount>,
    /// What to do with imports the node does not provide.
    pub missing_imports: MissingImports,
    /// A module of a Spin application (`spin.toml`): the application's HTTP base path (`"/"`
    /// when it sets none). The node then gives the guest Spin's request headers
    /// (`spin-path-info`, `spin-full-url`, ...). `None` for a `spark.toml` module.
    pub spin_base_path: Option<String>,
    /// Its application's stores and variables ([`Manifest::bind_modules`] fills it).
    pub app: AppContext,
}

impl ModuleSpec {
    /// A module with every setting at its default: normal priority, default weight and limits,
    /// no environment, configuration, outbound hosts, stores, variables or files, imports
    /// refused, tiered, not yet bound to an application ([`Manifest::bind_modules`]).
    pub fn with_defaults(id: ModuleId, component: ComponentRef, trigger: Trigger) -> ModuleSpec {
        ModuleSpec {
            id,
            component,
            trigger,
            priority: Priority::Normal,
            weight: DEFAULT_WEIGHT,
            limits: Limits::default(),
            env: BTreeMap::new(),
            config: BTreeMap::new(),
            outbound: OutboundPolicy::deny_all(),
            health: None,
            rollout: RolloutSettings::default(),
            trace_outbound: false,
            tiering: true,
            key_value_stores: Vec::new(),
            variables: BTreeMap::new(),
            files: Vec::new(),
            missing_imports: MissingImports::Refuse,
            spin_base_path: None,
            app: AppContext::default(),
        }
    }
}

/// What happens to a component's imports that Spark does not provide (sqlite, redis, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MissingImports {
    /// The deploy is refused with a message listing them.
    #[default]
    Refuse,
    /// They are linked as traps that name the missing interface when called.
    Trap,
}

/// Canary settings of a module (`[module.rollout]`).
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutSettings {
    /// Shares of traffic (percent, increasing, ending at 100) the new version gets in turn.
    pub steps: Vec<f64>,
    /// Least time a step lasts before the analysis may advance it.
    pub step_duration: Duration,
    /// Requests each version must have served in a step before the analysis may advance it.
    pub min_requests: u64,
    /// A request header whose value keeps a client on one version (sticky canary).
    pub sticky_header: Option<String>,
}

/// Default `rollout.steps`: 5%, 25%, 50%, then all traffic.
pub const DEFAULT_ROLLOUT_STEPS: [f64; 4] = [5.0, 25.0, 50.0, 100.0];
/// Default `rollout.step_duration`: 30 s.
pub const DEFAULT_STEP_DURATION: Duration = Duration::from_secs(30);
/// Default `rollout.min_requests`.
pub const DEFAULT_MIN_REQUESTS: u64 = 100;

impl Default for RolloutSettings {
    fn default() -> Self {
        RolloutSettings {
            steps: DEFAULT_ROLLOUT_STEPS.to_vec(),
            step_duration: DEFAULT_STEP_DURATION,
            min_requests: DEFAULT_MIN_REQUESTS,
            sticky_header: None,
        }
    }
}

/// Default module `weight`.
pub const DEFAULT_WEIGHT: u32 = 1;

/// Where a module's component comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ComponentRef {
    /// A file; relative paths in a manifest are resolved against the manifest's directory.
    File(PathBuf),
    /// An artifact in the node's content-addressed store, written `sha256:<hex>` in a
    /// manifest (what `spark deploy` sends after uploading the files).
    Artifact(String),
}

/// Why a `sha256:` component reference was refused (holds the text as written).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid artifact reference {text:?}: expected sha256: and 64 lowercase hex digits")]
pub struct ArtifactRefError {
    /// The reference as written.
    pub text: String,
}

impl ComponentRef {
    /// `sha256:<64 lowercase hex>` as an artifact reference, if that is what `text` is.
    pub fn parse_artifact(text: &str) -> Option<Result<ComponentRef, ArtifactRefError>> {
        let hex = text.strip_prefix("sha256:")?;
        let valid = hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        Some(if valid {
            Ok(ComponentRef::Artifact(hex.to_owned()))
        } else {
            Err(ArtifactRefError {
                text: text.to_owned(),
            })
        })
    }
}

impl fmt::Display for ComponentRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ComponentRef::File(path) => write!(f, "{}", path.display()),
            ComponentRef::Artifact(digest) => write!(f, "sha256:{digest}"),
        }
    }
}

/// What makes a module run.
#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    /// Serve HTTP requests on these routes.
    Http {
        /// Never empty.
        routes: Vec<Route>,
    },
    /// Run as a job every `every` (the first run one period after start).
    Schedule {
        /// The period; at least 1 s.
        every: Duration,
    },
}

/// Priority class: who gets CPU and capacity first when the node is short.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Takes node capacity only above the reserves of both classes above it; runs on
    /// low-priority (niced) threads.
    Background,
    /// The default: takes node capacity only above the reserve kept for critical work.
    Normal,
    /// Waits for node capacity instead of being refused, and always stays loaded.
    Critical,
}

impl Priority {
    /// The name as written in a manifest (`"critical"`, `"normal"`, `"background"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Critical => "critical",
            Priority::Normal => "normal",
            Priority::Background => "background",
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Per-module resource limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Linear memory per instance, in bytes.
    pub memory: u64,
    /// Requests (or job runs) executing at once.
    pub concurrency: u32,
    /// Requests waiting for a free slot before new ones get 503.
    pub queue: u32,
    /// How long a request may wait in the queue before it gets 503.
    pub queue_timeout: Duration,
    /// Wall-clock time per request, from admission to the end of the response body.
    pub timeout: Duration,
    /// Guest CPU time per request.
    pub cpu_time: Duration,
    /// Bytes of response body the guest may produce per request.
    pub response_body: u64,
    /// Largest model the guest may pass as bytes to `wasi:nn` `graph.load` (0: only models
    /// the host serves by name).
    pub nn_model: u64,
    /// Largest input tensor (bytes of data) the guest may pass to `wasi:nn`.
    pub nn_tensor: u64,
    /// Bytes of request body the guest may receive (a larger `Content-Length` is a 413).
    pub request_body: u64,
    /// Host memory one invocation may hold outside its linear memory: headers, bodies in
    /// flight, tensors, models, resource handles, log lines.
    pub host_memory: u64,
    /// Resource handles (fields, streams, requests, tensors, ...) one invocation may hold.
    pub resources: u32,
    /// Outbound HTTP requests one invocation may have in flight at once.
    pub outbound_requests: u32,
    /// Bytes one invocation may write to stdout and stderr together.
    pub log: u64,
    /// WASI 0.3 HTTP components only: requests one instance serves at once (1: one at a
    /// time). Requests sharing an instance share its linear memory and its fate (a trap ends
    /// them all).
    pub max_concurrent_per_instance: u32,
    /// WASI 0.3 HTTP components only: requests one instance serves over its life. Defaults to
    /// `max_concurrent_per_instance` (one burst); with both at 1, a fresh instance per
    /// request, as for WASI 0.2.
    pub max_requests_per_instance: u32,
    /// WASI 0.3 HTTP components only: how long an instance with no request left waits for the
    /// next one (0, the default: it takes none, so no state survives from one burst of
    /// requests to the next). Shorter than `timeout`.
    pub instance_idle_timeout: Duration,
}

/// Default `limits.memory`: 128 MiB.
pub const DEFAULT_MEMORY: u64 = 128 << 20;
/// Default `limits.concurrency`.
pub const DEFAULT_CONCURRENCY: u32 = 64;
/// Default `limits.queue`.
pub const DEFAULT_QUEUE: u32 = 256;
/// Default `limits.queue_timeout`: 2 s.
pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(2);
/// Default `limits.timeout`: 30 s.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `limits.cpu_time`: 10 s.
pub const DEFAULT_CPU_TIME: Duration = Duration::from_secs(10);
/// Default `limits.response_body`: 64 MiB.
pub const DEFAULT_RESPONSE_BODY: u64 = 64 << 20;
/// Default `limits.request_body`: 16 MiB.
pub const DEFAULT_REQUEST_BODY: u64 = 16 << 20;
/// Default `limits.host_memory`: 32 MiB.
pub const DEFAULT_HOST_MEMORY: u64 = 32 << 20;
/// Default `limits.resources`.
pub const DEFAULT_RESOURCES: u32 = 1_000;
/// Default `limits.outbound_requests`.
pub const DEFAULT_OUTBOUND_REQUESTS: u32 = 16;
/// Default `limits.log`: 256 KiB.
pub const DEFAULT_LOG: u64 = 256 << 10;
/// Default `limits.max_concurrent_per_instance` (what `wasmtime serve` lets a WASI 0.3
/// instance take at once).
pub const DEFAULT_MAX_CONCURRENT_PER_INSTANCE: u32 = 16;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory: DEFAULT_MEMORY,
            concurrency: DEFAULT_CONCURRENCY,
            queue: DEFAULT_QUEUE,
            queue_timeout: DEFAULT_QUEUE_TIMEOUT,
            timeout: DEFAULT_TIMEOUT,
            cpu_time: DEFAULT_CPU_TIME,
            response_body: DEFAULT_RESPONSE_BODY,
            nn_model: DEFAULT_NN_MODEL,
            nn_tensor: DEFAULT_NN_TENSOR,
            request_body: DEFAULT_REQUEST_BODY,
            host_memory: DEFAULT_HOST_MEMORY,
            resources: DEFAULT_RESOURCES,
            outbound_requests: DEFAULT_OUTBOUND_REQUESTS,
            log: DEFAULT_LOG,
            max_concurrent_per_instance: DEFAULT_MAX_CONCURRENT_PER_INSTANCE,
            max_requests_per_instance: DEFAULT_MAX_CONCURRENT_PER_INSTANCE,
            instance_idle_timeout: Duration::ZERO,
        }
    }
}

#[cfg(test)]
mod tests;
