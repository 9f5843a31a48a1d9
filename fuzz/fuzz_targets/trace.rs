//! Fuzz target `trace`: the Azure Functions 2019 trace parsers of `spark-sim`
//! (invocations, durations, memory) on any bytes.
//!
//! The input is up to three files separated by NUL bytes (`inv\0durations\0memory`), each
//! parsed on its own so that one refusal does not hide the others, then joined as the B4
//! replay joins them ([`TraceSet::assemble`]). A refusal is fine; a panic is a bug. Beyond
//! that it checks what the simulator takes on trust: per-minute counts ascending, non-zero and
//! inside the trace, arrivals inside their minute, durations and memory finite and
//! non-negative.

#![no_main]

use libfuzzer_sys::fuzz_target;
use spark_sim::TraceSet;
use spark_sim::trace::{parse_durations, parse_invocations, parse_memory, read_text};

/// Arrivals checked per input (a count column may say four billion).
const MAX_ARRIVALS: usize = 10_000;

fuzz_target!(|data: &[u8]| {
    let mut files = data.splitn(3, |&b| b == 0);
    let (inv, dur, mem) = (files.next(), files.next(), files.next());
    let text = |bytes: Option<&[u8]>, name: &str| read_text(bytes.unwrap_or_default(), name);

    let invocations = text(inv, "inv.csv").and_then(|t| parse_invocations(&t, "inv.csv"));
    let durations =
        dur.map(|d| text(Some(d), "run.csv").and_then(|t| parse_durations(&t, "run.csv")));
    let memory = mem.map(|m| text(Some(m), "mem.csv").and_then(|t| parse_memory(&t, "mem.csv")));
    for error in [invocations.as_ref().err()]
        .into_iter()
        .chain(durations.iter().map(|d| d.as_ref().err()))
        .chain(memory.iter().map(|m| m.as_ref().err()))
        .flatten()
    {
        assert!(!error.to_string().is_empty());
    }
    let per_app = durations
        .iter()
        .flatten()
        .flat_map(|d| &d.by_app)
        .chain(memory.iter().flatten().flat_map(|m| &m.by_app));
    for (app, value) in per_app {
        assert!(
            value.is_finite() && *value >= 0.0,
            "app {app:?}: {value} is not a finite non-negative number"
        );
    }
    let Ok(invocations) = invocations else { return };
    let trace = TraceSet::assemble(
        invocations,
        durations.as_ref().and_then(|d| d.as_ref().ok()),
        memory.as_ref().and_then(|m| m.as_ref().ok()),
    );
    check(&trace);
});

fn check(trace: &TraceSet) {
    assert!(trace.minutes > 0);
    let _ = trace.invocations();
    for app in &trace.apps {
        assert!(!app.id.is_empty());
        assert!(app.duration_ms.is_finite() && app.duration_ms >= 0.0);
        assert!(app.memory_mb.is_finite() && app.memory_mb >= 0.0);
        for pair in app.counts.windows(2) {
            assert!(pair[0].0 < pair[1].0, "minutes ascending: {:?}", app.counts);
        }
        for &(minute, count) in &app.counts {
            assert!((minute as usize) < trace.minutes && count > 0);
        }
        for t in app.arrivals().take(MAX_ARRIVALS) {
            assert!(
                t.is_finite() && t >= 0.0 && t < trace.minutes as f64,
                "arrival {t}"
            );
        }
    }
}
