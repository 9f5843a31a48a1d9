//! Probes: node telemetry (CPU, memory pressure, power, network latency) as one [`Telemetry`]
//! snapshot per call of [`Probes::sample`].
//!
//! Every file probe reads under a configurable root ("/" in production, a fixture tree in
//! tests), keeps no global state, and is driven by the caller's clock (`now_ms`). A source
//! that is missing, unreadable or garbled degrades only the probe that reads it: its fields
//! become `None` (or [`PowerSource::Mains`]), its [`ProbeHealth`] says why, and the log says
//! so once when it breaks and once when it recovers. `sample` never fails and never panics.
//!
//! The decision worth knowing: the file probes run on Tokio's blocking pool while the network
//! probes run concurrently on the async side. Most of `/proc` is instant, but sysfs battery
//! reads can go through ACPI firmware and take tens of milliseconds on real laptops, and the
//! control loop shares its runtime with the request path.

mod battery;
mod cpu;
mod health;
mod memory;
mod network;
mod outbound;
mod psi;
mod signals;
mod source;
mod upstream;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use battery::{BatteryProbe, Power, PowerSource};
pub use cpu::{CpuProbe, CpuReading};
pub use health::ProbeHealth;
pub use memory::{
    MemoryProbe, MemoryReading, PSI_FULL_SATURATION, PSI_SOME_SATURATION, USED_THRESHOLD,
};
pub use network::{
    EWMA_ALPHA, MeasureError, NetworkProbe, NetworkReading, UpstreamReading, measure,
};
pub use outbound::{OutboundLatency, OutboundReading, WINDOW_CAPACITY};
pub use psi::{Psi, PsiLine};
pub use upstream::{Target, Upstream, UpstreamError, UpstreamProblem};

/// How long an active network probe may take unless configured otherwise.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// How often upstreams are actively probed unless configured otherwise.
pub const DEFAULT_NETWORK_EVERY: Duration = Duration::from_secs(2);

/// One snapshot of everything the probes know. `Default` is "nothing known": every reading
/// empty and every probe [`ProbeHealth::NotSampled`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Telemetry {
    /// The caller's clock when the sample was taken, ms.
    pub at_ms: u64,
    /// What the CPU probe read.
    pub cpu: CpuReading,
    /// What the memory probe read.
    pub memory: MemoryReading,
    /// What the battery probe read.
    pub power: Power,
    /// Upstream round trips and outbound latency.
    pub network: NetworkReading,
}

/// What the probes read and measure.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeConfig {
    /// Directory standing for "/" (fixture trees in tests).
    pub root: PathBuf,
    /// `tcp://host:port`, `http://host[:port][/path]` or `https://host[:port]`.
    pub upstreams: Vec<String>,
    /// Limit for each active network measurement.
    pub probe_timeout: Duration,
    /// How often upstreams are actively probed (samples in between reuse the last readings).
    pub network_every: Duration,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            root: PathBuf::from("/"),
            upstreams: Vec::new(),
            probe_timeout: DEFAULT_PROBE_TIMEOUT,
            network_every: DEFAULT_NETWORK_EVERY,
        }
    }
}

/// A probe configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeConfigError {
    /// An upstream entry that does not parse.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The same upstream entry twice (readings are named by the entry).
    #[error("upstream {0:?} is listed twice")]
    DuplicateUpstream(String),
    /// A `probe_timeout` of zero.
    #[error("probe_timeout must be more than zero")]
    ZeroTimeout,
}

/// All probes of one node.
#[derive(Debug)]
pub struct Probes {
    root: PathBuf,
    /// Taken while a sample runs on the blocking pool; rebuilt if that task is lost.
    files: Option<FileProbes>,
    network: NetworkProbe,
    network_every_ms: u64,
    last_active_ms: Option<u64>,
    last_file_cpu: Duration,
}

impl Probes {
    /// Validates the configuration; nothing is read or measured yet.
    pub fn new(config: ProbeConfig) -> Result<Probes, ProbeConfigError> {
        if config.probe_timeout.is_zero() {
            return Err(ProbeConfigError::ZeroTimeout);
        }
        let mut upstreams: Vec<Upstream> = Vec::with_capacity(config.upstreams.len());
        for entry in &config.upstreams {
            if upstreams.iter().any(|u| u.name == *entry) {
                return Err(ProbeConfigError::DuplicateUpstream(entry.clone()));
            }
            upstreams.push(Upstream::parse(entry)?);
        }
        Ok(Probes {
            files: Some(FileProbes::new(&config.root)),
            root: config.root,
            network: NetworkProbe::new(upstreams, config.probe_timeout),
            network_every_ms: config.network_every.as_millis() as u64,
            last_active_ms: None,
            last_file_cpu: Duration::ZERO,
        })
    }

    /// The handle the runtime records observed outbound request latencies into.
    pub fn outbound(&self) -> OutboundLatency {
        self.network.outbound()
    }

    /// CPU time the last sample's file reads took on the blocking pool (the caller cannot see
    /// it from its own thread; the control loop adds it to its cost).
    pub fn last_sample_cpu(&self) -> Duration {
        self.last_file_cpu
    }

    /// Takes one snapshot. Needs a Tokio runtime; takes about the probe timeout at most.
    pub async fn sample(&mut self, now_ms: u64) -> Telemetry {
        let mut files = self
            .files
            .take()
            .unwrap_or_else(|| FileProbes::new(&self.root));
        let blocking = tokio::task::spawn_blocking(move || {
            let started = thread_cpu();
            let readings = files.sample(now_ms);
            (files, readings, thread_cpu().saturating_sub(started))
        });
        let active = self
            .last_active_ms
            .is_none_or(|last| now_ms.saturating_sub(last) >= self.network_every_ms);
        if active {
            self.last_active_ms = Some(now_ms);
        }
        let network = self.network.sample(active).await;
        let (cpu, memory, power) = match blocking.await {
            Ok((files, readings, spent)) => {
                self.files = Some(files);
                self.last_file_cpu = spent;
                readings
            }
            Err(e) => lost(&e.to_string()),
        };
        Telemetry {
            at_ms: now_ms,
            cpu,
            memory,
            power,
            network,
        }
    }
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// The probes that read files (blocking reads).
#[derive(Debug)]
struct FileProbes {
    cpu: CpuProbe,
    memory: MemoryProbe,
    battery: BatteryProbe,
}

impl FileProbes {
    fn new(root: &Path) -> FileProbes {
        FileProbes {
            cpu: CpuProbe::new(root),
            memory: MemoryProbe::new(root),
            battery: BatteryProbe::new(root),
        }
    }

    fn sample(&mut self, now_ms: u64) -> (CpuReading, MemoryReading, Power) {
        (
            self.cpu.sample(now_ms),
            self.memory.sample(),
            self.battery.sample(),
        )
    }
}

/// Readings for a sample whose blocking task was lost (cancelled at shutdown, or panicked).
fn lost(reason: &str) -> (CpuReading, MemoryReading, Power) {
    tracing::warn!(
        reason,
        "file probes' task was lost; they restart on the next sample"
    );
    let health = ProbeHealth::Degraded(format!("probe task lost: {reason}"));
    (
        CpuReading {
            health: health.clone(),
            ..Default::default()
        },
        MemoryReading {
            health: health.clone(),
            ..Default::default()
        },
        Power {
            health,
            ..Default::default()
        },
    )
}
