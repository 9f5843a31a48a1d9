//! The bridge from a [`Telemetry`] snapshot to the policy's [`NodeSignals`].
//!
//! The decision worth knowing: every reduction is conservative. CPU utilisation is the worse
//! of the node's and the cgroup's (other tenants' load takes CPU from a limited node too), and
//! the uplink latency is the worst smoothed value among the upstreams and the observed
//! outbound p90; unknowns stay `None` so the policy can tell "fine" from "not measured".

use super::{PowerSource, Telemetry};
use crate::policy::{NodeSignals, PowerSignal};

impl Telemetry {
    /// What the policy needs from this snapshot.
    pub fn node_signals(&self) -> NodeSignals {
        let defaults = NodeSignals::default();
        let utilisation = [self.cpu.utilisation, self.cpu.cgroup_utilisation];
        let uplink = self.network.upstreams.iter().map(|u| u.ewma_ms);
        NodeSignals {
            cpus: self.cpu.effective_cores().unwrap_or(defaults.cpus),
            cpu_utilisation: utilisation.into_iter().flatten().reduce(f64::max),
            memory_pressure: self.memory.pressure(),
            power: match self.power.source {
                PowerSource::Mains => PowerSignal::Mains,
                PowerSource::Battery { percent, charging } => {
                    PowerSignal::Battery { percent, charging }
                }
            },
            uplink_latency_ms: uplink
                .chain([self.network.outbound.ewma_p90_ms])
                .flatten()
                .reduce(f64::max),
            // Not a probe's: the node adds what its inference host reports.
            accelerators_in_flight: defaults.accelerators_in_flight,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::{CpuReading, NetworkReading, OutboundReading, Power, UpstreamReading};

    #[test]
    fn nothing_known_gives_the_policy_defaults() {
        assert_eq!(Telemetry::default().node_signals(), NodeSignals::default());
    }

    #[test]
    fn reductions_take_the_worst_known_value() {
        let cpu = CpuReading {
            cpus: Some(4),
            utilisation: Some(0.3),
            cgroup_limit_cores: Some(1.5),
            cgroup_utilisation: Some(0.9),
            ..Default::default()
        };
        let source = PowerSource::Battery {
            percent: 15.0,
            charging: false,
        };
        let upstream = |ewma_ms| UpstreamReading {
            ewma_ms,
            ..Default::default()
        };
        let network = NetworkReading {
            upstreams: vec![upstream(Some(40.0)), upstream(None), upstream(Some(120.0))],
            outbound: OutboundReading {
                ewma_p90_ms: Some(80.0),
                ..Default::default()
            },
            ..Default::default()
        };
        let power = Power {
            source,
            ..Default::default()
        };
        let telemetry = Telemetry {
            cpu,
            power,
            network,
            ..Default::default()
        };
        let signals = telemetry.node_signals();
        assert_eq!(signals.cpus, 1.5);
        assert_eq!(signals.cpu_utilisation, Some(0.9));
        assert_eq!(
            signals.power,
            PowerSignal::Battery {
                percent: 15.0,
                charging: false
            }
        );
        assert_eq!(signals.uplink_latency_ms, Some(120.0));
    }
}
