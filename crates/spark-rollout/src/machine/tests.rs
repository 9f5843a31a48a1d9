//! The state machine on scripted windows.

use super::*;
use crate::stats::bucket;

fn window(requests: u64, errors: u64, millis: f64) -> VersionWindow {
    let mut w = VersionWindow {
        requests,
        errors,
        ..VersionWindow::default()
    };
    w.latency[bucket((millis * 1e3) as u64)] = requests;
    w
}

fn rules() -> StepRules {
    StepRules {
        steps: vec![5.0, 25.0, 50.0, 100.0],
        step_duration_ms: 10_000,
        min_requests: 50,
    }
}

fn windows(
    stable: VersionWindow,
    canary: VersionWindow,
) -> BTreeMap<String, (VersionWindow, VersionWindow)> {
    BTreeMap::from([("api".to_owned(), (stable, canary))])
}

#[test]
fn a_good_canary_walks_its_steps_and_is_promoted() {
    let mut r = Rollout::start(
        Some("r1".into()),
        "r2".into(),
        vec![("api".into(), rules())],
        0,
    );
    let cfg = AnalysisConfig::default();
    assert_eq!(r.share("api"), Some(5.0));
    assert_eq!(r.share("other"), None);
    let good = windows(window(500, 0, 2.0), window(60, 0, 2.0));
    assert!(
        r.evaluate(5_000, &good, &cfg).is_empty(),
        "healthy but the step time is not up"
    );
    assert!(
        r.modules["api"]
            .last
            .as_deref()
            .unwrap()
            .starts_with("healthy so far")
    );
    let d = r.evaluate(10_000, &good, &cfg);
    assert!(
        matches!(&d[..], [RolloutAction::Advance { from, to, .. }] if *from == 5.0 && *to == 25.0),
        "{d:?}"
    );
    let d = r.evaluate(20_000, &good, &cfg);
    assert!(
        matches!(&d[..], [RolloutAction::Advance { to, .. }] if *to == 50.0),
        "{d:?}"
    );
    let d = r.evaluate(30_000, &good, &cfg);
    assert!(
        matches!(&d[..], [RolloutAction::Advance { to, .. }, RolloutAction::Promote { .. }] if *to == 100.0),
        "{d:?}"
    );
    assert!(matches!(r.state, RolloutState::Promoted { .. }));
    assert_eq!(r.share("api"), None, "no longer running");
}

#[test]
fn too_few_requests_hold_the_step() {
    let mut r = Rollout::start(None, "r2".into(), vec![("api".into(), rules())], 0);
    let sparse = windows(window(500, 0, 2.0), window(10, 0, 2.0));
    assert!(
        r.evaluate(60_000, &sparse, &AnalysisConfig::default())
            .is_empty()
    );
    assert_eq!(r.share("api"), Some(5.0));
    assert!(
        r.modules["api"]
            .last
            .as_deref()
            .unwrap()
            .contains("needs 50 requests")
    );
}

#[test]
fn assessing_changes_nothing_and_follows_the_windows_given() {
    let r = Rollout::start(None, "r2".into(), vec![("api".into(), rules())], 0);
    let module = &r.modules["api"];
    let config = AnalysisConfig::default();
    let sparse = module.assess(1_000, &window(500, 0, 2.0), &window(10, 0, 2.0), &config);
    assert!(sparse.starts_with("waiting:"), "{sparse}");
    let enough = module.assess(1_000, &window(500, 0, 2.0), &window(500, 0, 2.0), &config);
    assert!(enough.starts_with("healthy so far"), "{enough}");
    let due = module.assess(60_000, &window(500, 0, 2.0), &window(500, 0, 2.0), &config);
    assert!(due.starts_with("healthy, advancing"), "{due}");
    let failing = module.assess(
        60_000,
        &window(500, 0, 2.0),
        &window(500, 400, 2.0),
        &config,
    );
    assert!(failing.starts_with("failing:"), "{failing}");
    assert_eq!(module.last, None, "assessing is read-only");
}

#[test]
fn a_bad_module_rolls_the_release_back() {
    let mut r = Rollout::start(
        Some("r1".into()),
        "r2".into(),
        vec![("api".into(), rules()), ("web".into(), rules())],
        0,
    );
    let mut w = windows(window(500, 0, 2.0), window(100, 12, 2.0));
    w.insert("web".into(), (window(500, 0, 2.0), window(100, 0, 2.0)));
    let d = r.evaluate(3_000, &w, &AnalysisConfig::default());
    let [RolloutAction::Rollback { reason }] = &d[..] else {
        panic!("{d:?}")
    };
    assert!(
        reason.starts_with("module 'api' at 5%: canary fails more"),
        "{reason}"
    );
    assert!(!r.running());
    assert!(
        r.evaluate(4_000, &w, &AnalysisConfig::default()).is_empty(),
        "a finished rollout does nothing"
    );
}

#[test]
fn people_win_and_state_survives_serialization() {
    let mut r = Rollout::start(
        Some("r1".into()),
        "r2".into(),
        vec![("api".into(), rules())],
        0,
    );
    let json = serde_json::to_string(&r).unwrap();
    let mut restored: Rollout = serde_json::from_str(&json).unwrap();
    assert_eq!(restored, r);
    restored.resume(99_000);
    assert_eq!(restored.modules["api"].step_started_ms, 99_000);
    assert!(matches!(
        r.abort(1, "ops"),
        Some(RolloutAction::Rollback { .. })
    ));
    assert!(
        r.promote(2, "ops").is_none(),
        "nothing to promote once aborted"
    );
    assert!(
        matches!(restored.promote(100_000, "ops"), Some(RolloutAction::Promote { reason }) if reason == "promoted by ops")
    );
}

#[test]
fn mid_step_only_overwhelming_evidence_rolls_back_and_the_step_end_applies_the_final_bar() {
    let mut r = Rollout::start(
        Some("r1".into()),
        "r2".into(),
        vec![("api".into(), rules())],
        0,
    );
    let cfg = AnalysisConfig::default();
    // 8 of 200 failed against none of 200: z = 2.86, between the final bar (2.33) and the
    // early one (3.29).
    let suspect = windows(window(200, 0, 2.0), window(200, 8, 2.0));
    assert!(r.evaluate(2_000, &suspect, &cfg).is_empty());
    assert!(r.evaluate(9_500, &suspect, &cfg).is_empty());
    assert!(r.running(), "{:?}", r.state);
    let d = r.evaluate(10_000, &suspect, &cfg);
    assert!(
        matches!(&d[..], [RolloutAction::Rollback { reason }] if reason.contains("canary fails more")),
        "{d:?}"
    );
    // Overwhelming evidence does not wait for the step's end.
    let mut r = Rollout::start(
        Some("r1".into()),
        "r2".into(),
        vec![("api".into(), rules())],
        0,
    );
    let failing = windows(window(200, 0, 2.0), window(200, 20, 2.0));
    let d = r.evaluate(1_000, &failing, &cfg);
    assert!(matches!(&d[..], [RolloutAction::Rollback { .. }]), "{d:?}");
}
