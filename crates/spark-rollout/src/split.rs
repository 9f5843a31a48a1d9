//! Which version a request goes to.
//!
//! During a step the canary takes its share, a *baseline* (a fresh copy of the stable version,
//! started with the canary) takes as much again, and the stable version the rest. The
//! analysis compares canary with baseline: two copies of the same age serving the same amount
//! of traffic, so a canary is not judged slower for being new or for seeing a tenth of the
//! requests (colder caches, fewer reused instances), only for its code.
//!
//! With a sticky key (a header value such as a user id) the choice is a hash of the key, so a
//! client stays on one version for the whole step and moves towards the canary, never back,
//! as its share grows. Without one, each request is decided by mixing a counter (SplitMix64),
//! which spreads requests evenly without a random number generator on the request path.

/// The version picked for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// The running stable version, which takes what canary and baseline leave.
    Stable,
    /// The fresh copy of the stable version the canary is compared with.
    Baseline,
    /// The new release under test.
    Canary,
}

/// The baseline's share for a canary share, both in percent: as much as the canary, within
/// what is left.
pub fn baseline_share(canary_percent: f64) -> f64 {
    canary_percent.clamp(0.0, 100.0 - canary_percent.clamp(0.0, 100.0))
}

/// Picks this request's version, given the canary's share in percent and whether a baseline
/// runs beside it.
pub fn choose_version(
    share_percent: f64,
    with_baseline: bool,
    sticky_key: Option<&[u8]>,
    sequence: u64,
) -> Pick {
    if share_percent >= 100.0 {
        return Pick::Canary;
    }
    let draw = match sticky_key {
        Some(key) => fnv1a(key),
        None => splitmix64(sequence),
    };
    let point = (draw % 10_000) as f64;
    let canary_end = share_percent.max(0.0) * 100.0;
    let baseline_end = canary_end
        + if with_baseline {
            baseline_share(share_percent) * 100.0
        } else {
            0.0
        };
    if point < canary_end {
        Pick::Canary
    } else if point < baseline_end {
        Pick::Baseline
    } else {
        Pick::Stable
    }
}

/// Whether this request goes to the canary, given the canary's share in percent.
pub fn choose_canary(share_percent: f64, sticky_key: Option<&[u8]>, sequence: u64) -> bool {
    choose_version(share_percent, false, sticky_key, sequence) == Pick::Canary
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    splitmix64(h)
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_respected_without_a_key() {
        for share in [5.0, 25.0, 50.0] {
            let hits = (0..100_000u64)
                .filter(|&i| choose_canary(share, None, i))
                .count();
            let got = hits as f64 / 1000.0;
            assert!((got - share).abs() < 0.5, "share {share}%: got {got}%");
        }
        assert!(!choose_canary(0.0, None, 1));
        assert!(choose_canary(100.0, None, 1));
    }

    #[test]
    fn a_sticky_key_keeps_its_version_and_only_moves_forward() {
        let keys: Vec<String> = (0..10_000).map(|i| format!("user-{i}")).collect();
        let at = |share: f64| -> Vec<bool> {
            keys.iter()
                .map(|k| choose_canary(share, Some(k.as_bytes()), 0))
                .collect()
        };
        let (five, fifty) = (at(5.0), at(50.0));
        assert_eq!(five, at(5.0), "same key, same answer");
        assert!(
            five.iter().zip(&fifty).all(|(a, b)| !a || *b),
            "a client on the canary at 5% stays there at 50%"
        );
        let share = five.iter().filter(|&&c| c).count() as f64 / 100.0;
        assert!((share - 5.0).abs() < 1.0, "{share}%");
    }

    #[test]
    fn the_baseline_takes_as_much_as_the_canary_within_what_is_left() {
        for (share, expected_baseline) in [(10.0, 10.0), (25.0, 25.0), (50.0, 50.0), (80.0, 20.0)] {
            let mut counts = [0u32; 3];
            for i in 0..100_000u64 {
                counts[match choose_version(share, true, None, i) {
                    Pick::Canary => 0,
                    Pick::Baseline => 1,
                    Pick::Stable => 2,
                }] += 1;
            }
            let pct = |n: u32| f64::from(n) / 1000.0;
            assert!(
                (pct(counts[0]) - share).abs() < 0.5,
                "canary at {share}%: {counts:?}"
            );
            assert!(
                (pct(counts[1]) - expected_baseline).abs() < 0.5,
                "baseline at {share}%: {counts:?}"
            );
        }
        assert_eq!(choose_version(100.0, true, None, 7), Pick::Canary);
        assert_eq!(choose_version(0.0, true, None, 7), Pick::Stable);
    }

    #[test]
    fn a_sticky_client_only_moves_towards_the_canary() {
        let rank = |p: Pick| match p {
            Pick::Stable | Pick::Baseline => 0,
            Pick::Canary => 1,
        };
        for i in 0..5_000 {
            let key = format!("user-{i}");
            let picks: Vec<Pick> = [5.0, 25.0, 50.0, 100.0]
                .iter()
                .map(|&s| choose_version(s, true, Some(key.as_bytes()), 0))
                .collect();
            assert!(
                picks.windows(2).all(|w| rank(w[0]) <= rank(w[1])),
                "{key}: {picks:?}"
            );
        }
    }
}
