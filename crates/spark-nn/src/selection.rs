//! Picking the execution tier by measurement: which of a target's usable backends serves a
//! model, from how fast each one has served *this model on this node*.
//!
//! The decision worth knowing: the guest's target is a hint, not an order. A weak integrated
//! GPU, a software Vulkan device or a busy NPU can be far slower than the CPU for a small
//! model (B6 saw `ort-webgpu` at 86 ms and `ort-cpu` at 0.94 ms on one node), so each backend
//! of the chain is measured on the model while it serves real requests (in the chain's order,
//! so the hinted device goes first), then the fastest serves and the others are re-probed
//! with one inference each now and then. Compile time is kept apart from steady-state time (the median
//! of the last few inferences): a slow first compile does not condemn a backend that is fast
//! afterwards, and one slow inference does not either.
//!
//! [`select`] is pure (time and measurements are arguments) and tested as such; the router
//! ([`crate::router`]) records measurements and applies the order, after the policy's filters
//! ([`crate::policy::route`]: preference, health, benches) have said who may serve at all.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// How many recent steady-state inferences a backend's typical time is the median of.
const RECENT: usize = 8;

/// How one backend has done on one model.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    /// Compile + first inference, µs (`None` until the backend compiled the model).
    pub first_us: Option<u64>,
    /// Steady-state inferences measured (compile excluded).
    pub samples: u64,
    /// The latest steady-state inferences, µs, oldest first (at most [`RECENT`]).
    pub recent: VecDeque<u64>,
    /// When it was last measured.
    pub last: Instant,
}

impl Measured {
    /// Adds one inference: `compiled` when this call also compiled the model.
    pub fn record(
        entry: Option<&mut Measured>,
        micros: u64,
        compiled: bool,
        now: Instant,
    ) -> Measured {
        let mut m = entry.cloned().unwrap_or(Measured {
            first_us: None,
            samples: 0,
            recent: VecDeque::with_capacity(RECENT),
            last: now,
        });
        m.last = now;
        if compiled {
            m.first_us = Some(micros);
        } else {
            if m.recent.len() == RECENT {
                m.recent.pop_front();
            }
            m.recent.push_back(micros);
            m.samples += 1;
        }
        m
    }

    /// The median of the recent steady-state inferences, µs: robust to the odd slow one (a
    /// page fault, a preempted thread), and following a real change within a few inferences.
    pub fn typical_us(&self) -> Option<f64> {
        let mut sorted: Vec<u64> = self.recent.iter().copied().collect();
        sorted.sort_unstable();
        let n = sorted.len();
        match n {
            0 => None,
            _ if n % 2 == 1 => Some(sorted[n / 2] as f64),
            _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) as f64 / 2.0),
        }
    }

    /// The latest steady-state inference, µs.
    pub fn last_us(&self) -> Option<u64> {
        self.recent.back().copied()
    }
}

/// The rules of measured selection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SelectionRules {
    /// Steady-state samples a backend needs before it counts as measured.
    pub min_samples: u64,
    /// How long a slower backend goes unmeasured before one inference re-probes it (zero:
    /// never).
    pub reprobe: Duration,
}

impl Default for SelectionRules {
    fn default() -> Self {
        SelectionRules {
            min_samples: 2,
            reprobe: spark_manifest::DEFAULT_NN_REPROBE,
        }
    }
}

/// Why the first backend of a [`select`]ed order goes first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "why", rename_all = "kebab-case")]
pub enum Choice {
    /// The chain's order decides (selection `chain`, or one usable backend).
    Chain,
    /// This backend has too few measurements on the model yet.
    Measuring,
    /// Measured fastest among the usable backends.
    Fastest {
        /// Its typical (median recent) steady-state time, ms.
        typical_ms: f64,
        /// The runner-up and its typical time, ms (`None`: nobody else measured).
        next: Option<(String, f64)>,
    },
    /// A slower backend measured again after [`SelectionRules::reprobe`].
    Reprobe,
}

/// Orders `usable` (the policy's attempts, in chain order) for one inference: the backend
/// that should serve first, then the rest in chain order as fall-throughs.
pub fn select(
    usable: &[String],
    measured: &HashMap<String, Measured>,
    rules: &SelectionRules,
    now: Instant,
) -> (Vec<String>, Choice) {
    if usable.len() <= 1 {
        return (usable.to_vec(), Choice::Chain);
    }
    let steady = |name: &str| {
        measured
            .get(name)
            .filter(|m| m.samples >= rules.min_samples)
    };
    let first = |name: &String| {
        let mut order = vec![name.clone()];
        order.extend(usable.iter().filter(|n| *n != name).cloned());
        order
    };
    if let Some(unmeasured) = usable.iter().find(|n| steady(n).is_none()) {
        return (first(unmeasured), Choice::Measuring);
    }
    let mut ranked: Vec<(&String, f64)> = usable
        .iter()
        .filter_map(|n| steady(n).and_then(|m| m.typical_us()).map(|t| (n, t)))
        .collect();
    ranked.sort_by(|a, b| a.1.total_cmp(&b.1));
    let (fastest, typical_us) = ranked[0];
    // A slower backend whose latest inference beat the fastest's typical time (a re-probe
    // that found it faster now) keeps serving until its own typical time says which is right.
    if let Some(rising) = usable.iter().find(|n| {
        *n != fastest
            && steady(n)
                .and_then(Measured::last_us)
                .is_some_and(|last| (last as f64) < typical_us)
    }) {
        return (first(rising), Choice::Measuring);
    }
    if !rules.reprobe.is_zero()
        && let Some(stale) = usable.iter().find(|n| {
            *n != fastest
                && steady(n).is_some_and(|m| now.saturating_duration_since(m.last) >= rules.reprobe)
        })
    {
        return (first(stale), Choice::Reprobe);
    }
    let next = ranked
        .get(1)
        .map(|(name, typical)| ((*name).clone(), typical / 1e3));
    (
        first(fastest),
        Choice::Fastest {
            typical_ms: typical_us / 1e3,
            next,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ORT_CPU, ORT_WEBGPU, TRACT};

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    /// Serves `times` inferences of `backend` at `micros` each (the first one compiling).
    fn serve(
        measured: &mut HashMap<String, Measured>,
        backend: &str,
        micros: u64,
        times: usize,
        at: Instant,
    ) {
        for _ in 0..times {
            let compiled = measured.get(backend).is_none_or(|m| m.first_us.is_none());
            let next = Measured::record(measured.get_mut(backend), micros, compiled, at);
            measured.insert(backend.to_owned(), next);
        }
    }

    #[test]
    fn the_hint_is_measured_first_then_the_others_then_the_fastest_serves() {
        let chain = names(&[ORT_WEBGPU, ORT_CPU, TRACT]);
        let rules = SelectionRules::default();
        let t0 = Instant::now();
        let mut measured = HashMap::new();
        let (order, why) = select(&chain, &measured, &rules, t0);
        assert_eq!((order[0].as_str(), why), (ORT_WEBGPU, Choice::Measuring));
        serve(&mut measured, ORT_WEBGPU, 86_000, 3, t0);
        let (order, why) = select(&chain, &measured, &rules, t0);
        assert_eq!(
            (order, why),
            (names(&[ORT_CPU, ORT_WEBGPU, TRACT]), Choice::Measuring)
        );
        serve(&mut measured, ORT_CPU, 940, 3, t0);
        serve(&mut measured, TRACT, 2_500, 3, t0);
        let (order, why) = select(&chain, &measured, &rules, t0);
        assert_eq!(
            order,
            names(&[ORT_CPU, ORT_WEBGPU, TRACT]),
            "fastest, then the chain"
        );
        assert_eq!(
            why,
            Choice::Fastest {
                typical_ms: 0.94,
                next: Some((TRACT.to_owned(), 2.5))
            }
        );
    }

    #[test]
    fn a_slow_compile_does_not_count_against_a_fast_backend() {
        let chain = names(&[ORT_WEBGPU, ORT_CPU]);
        let rules = SelectionRules::default();
        let t0 = Instant::now();
        let mut measured = HashMap::new();
        serve(&mut measured, ORT_WEBGPU, 900_000, 1, t0); // a 0.9 s compile
        serve(&mut measured, ORT_WEBGPU, 500, 2, t0);
        serve(&mut measured, ORT_CPU, 1_000, 3, t0);
        let (order, _) = select(&chain, &measured, &rules, t0);
        assert_eq!(order[0], ORT_WEBGPU);
        assert_eq!(measured[ORT_WEBGPU].first_us, Some(900_000));
    }

    #[test]
    fn slower_backends_are_reprobed_and_a_change_is_followed() {
        let chain = names(&[ORT_WEBGPU, ORT_CPU]);
        let rules = SelectionRules {
            min_samples: 2,
            reprobe: Duration::from_secs(30),
        };
        let t0 = Instant::now();
        let mut measured = HashMap::new();
        serve(&mut measured, ORT_WEBGPU, 80_000, 3, t0);
        serve(&mut measured, ORT_CPU, 1_000, 3, t0);
        let later = t0 + Duration::from_secs(10);
        serve(&mut measured, ORT_CPU, 1_000, 1, later);
        assert_eq!(select(&chain, &measured, &rules, later).0[0], ORT_CPU);
        // 30 s after its last measurement the GPU gets one inference again...
        let t30 = t0 + Duration::from_secs(30);
        let (order, why) = select(&chain, &measured, &rules, t30);
        assert_eq!((order[0].as_str(), why), (ORT_WEBGPU, Choice::Reprobe));
        // ...and once it has become fast (the device freed), it keeps serving while its typical
        // time comes down, then serves as the fastest.
        serve(&mut measured, ORT_WEBGPU, 200, 1, t30);
        let (order, why) = select(&chain, &measured, &rules, t30);
        assert_eq!((order[0].as_str(), why), (ORT_WEBGPU, Choice::Measuring));
        serve(&mut measured, ORT_WEBGPU, 200, 8, t30);
        let (order, why) = select(&chain, &measured, &rules, t30);
        assert_eq!(order[0], ORT_WEBGPU);
        assert!(matches!(why, Choice::Fastest { .. }), "{why:?}");
        let never = SelectionRules {
            reprobe: Duration::ZERO,
            ..rules
        };
        let far = t0 + Duration::from_secs(3600);
        assert!(matches!(
            select(&chain, &measured, &never, far).1,
            Choice::Fastest { .. }
        ));
    }

    #[test]
    fn one_usable_backend_is_the_chain() {
        let measured = HashMap::new();
        let (order, why) = select(
            &names(&[TRACT]),
            &measured,
            &SelectionRules::default(),
            Instant::now(),
        );
        assert_eq!((order, why), (names(&[TRACT]), Choice::Chain));
    }
}
